//! Repairs a torn write at the end of `iggy-server` 0.8's partitions before
//! the managed server starts.
//!
//! Why: the server persists a batch by writing the segment's `.log` file and
//! then its `.index` file. Killed between the two, it leaves messages in the
//! `.log` that the `.index` does not list. On restart it takes its offsets
//! from the index but appends after the end of the `.log`, so the next batch
//! gets the unlisted messages' offsets and reads across them fail ("invalid
//! offset") for good. Those messages were never acknowledged (the server
//! answers a send only after both writes), so dropping them is safe; the
//! server's own index rebuilder cannot help, as it writes another format.
//!
//! The repair is deliberately narrow: it looks only at the last segment of
//! each partition, cuts a partial index entry, and cuts the `.log` back to
//! the end of the last indexed message when the `.log` is longer. Anything
//! else it does not understand it leaves alone, with a warning.
//!
//! The layout it relies on (`streams/*/topics/*/partitions/*/<start>.log` and
//! `.index`, 16-byte index entries: relative offset u32, end position u32,
//! timestamp u64, little-endian) is that of iggy-server 0.8.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The size of one index entry.
const INDEX_ENTRY: u64 = 16;

/// Repairs every partition under `system_path` (the server's data).
pub(crate) fn repair_partitions(system_path: &Path) {
    for partition in partitions(system_path) {
        if let Err(err) = repair_partition(&partition) {
            tracing::warn!(
                partition = %partition.display(),
                error = %err,
                "cannot check the end of an iggy partition; leaving it as it is"
            );
        }
    }
}

/// `streams/*/topics/*/partitions/*` under `system_path`.
fn partitions(system_path: &Path) -> Vec<PathBuf> {
    let mut level = vec![system_path.join("streams")];
    for name in ["topics", "partitions"] {
        level = subdirectories(&level)
            .into_iter()
            .map(|dir| dir.join(name))
            .collect();
    }
    subdirectories(&level)
}

fn subdirectories(parents: &[PathBuf]) -> Vec<PathBuf> {
    parents
        .iter()
        .filter_map(|parent| fs::read_dir(parent).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect()
}

/// The last segment of a partition: the `.log` with the highest start offset.
fn last_segment(partition: &Path) -> io::Result<Option<(PathBuf, PathBuf)>> {
    let mut last: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(partition)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "log")
            && let Some(start) = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .and_then(|stem| stem.parse::<u64>().ok())
            && last.as_ref().is_none_or(|(best, _)| start > *best)
        {
            last = Some((start, path));
        }
    }
    Ok(last.map(|(_, log)| {
        let index = log.with_extension("index");
        (log, index)
    }))
}

fn repair_partition(partition: &Path) -> io::Result<()> {
    let Some((log_path, index_path)) = last_segment(partition)? else {
        return Ok(());
    };
    if !index_path.exists() {
        return Ok(());
    }
    let index = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&index_path)?;
    let mut index_len = index.metadata()?.len();
    if index_len % INDEX_ENTRY != 0 {
        let whole = index_len - index_len % INDEX_ENTRY;
        tracing::warn!(index = %index_path.display(), "cutting a partial entry off the end of an iggy index");
        index.set_len(whole)?;
        index.sync_all()?;
        index_len = whole;
    }
    let indexed_end = match index_len {
        0 => 0,
        _ => {
            let mut entry = [0u8; INDEX_ENTRY as usize];
            let mut reader = &index;
            reader.seek(SeekFrom::Start(index_len - INDEX_ENTRY))?;
            reader.read_exact(&mut entry)?;
            u64::from(u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]))
        }
    };
    let log = OpenOptions::new().write(true).open(&log_path)?;
    let log_len = log.metadata()?.len();
    if log_len > indexed_end {
        tracing::warn!(
            log = %log_path.display(),
            indexed_end,
            log_len,
            "dropping messages an interrupted iggy-server wrote but never indexed (never acknowledged)"
        );
        log.set_len(indexed_end)?;
        log.sync_all()?;
    } else if log_len < indexed_end {
        tracing::warn!(
            log = %log_path.display(),
            indexed_end,
            log_len,
            "an iggy index lists more than its log holds; leaving it to iggy-server"
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing test should stop at the failure.
mod tests {
    use super::*;

    fn entry(offset: u32, end: u32) -> Vec<u8> {
        let mut bytes = offset.to_le_bytes().to_vec();
        bytes.extend(end.to_le_bytes());
        bytes.extend(7u64.to_le_bytes());
        bytes
    }

    fn partition(root: &Path) -> PathBuf {
        let dir = root.join("streams/0/topics/0/partitions/0");
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_unindexed_tail_is_cut_off_the_last_segment_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = partition(root.path());
        // An older segment is never touched.
        fs::write(dir.join("00000000000000000000.log"), vec![1; 500]).unwrap();
        fs::write(dir.join("00000000000000000000.index"), entry(0, 100)).unwrap();
        let mut index = entry(0, 240);
        index.extend(entry(1, 481));
        index.extend(&entry(2, 722)[..5]); // torn
        fs::write(dir.join("00000000000000000010.log"), vec![1; 965]).unwrap();
        fs::write(dir.join("00000000000000000010.index"), &index).unwrap();

        repair_partitions(root.path());

        let len = |name: &str| fs::metadata(dir.join(name)).unwrap().len();
        assert_eq!(len("00000000000000000010.log"), 481);
        assert_eq!(len("00000000000000000010.index"), 32);
        assert_eq!(len("00000000000000000000.log"), 500);
    }

    #[test]
    fn a_consistent_segment_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = partition(root.path());
        fs::write(dir.join("00000000000000000000.log"), vec![1; 240]).unwrap();
        fs::write(dir.join("00000000000000000000.index"), entry(0, 240)).unwrap();
        repair_partitions(root.path());
        assert_eq!(
            fs::metadata(dir.join("00000000000000000000.log"))
                .unwrap()
                .len(),
            240
        );
    }
}
