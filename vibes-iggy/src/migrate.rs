//! Moving a data directory's log to another backend (`vibesd migrate`):
//! every record at its offset, byte for byte, and every group's committed
//! offset; then the record of the data directory is switched. The old log
//! stays where it was, for the operator to delete.
//!
//! Refused, with nothing changed, while vibesd runs on the data directory,
//! when the target already holds events or groups, and when the source is
//! the target.

use std::path::{Path, PathBuf};

use crate::record::{DataDirLock, Recorded};
use crate::select::{OpenedLog, open_recorded, recorded};
use crate::{BackendConfig, BackendKind, EventLog, LogError, Offset, SeekTo, StartPosition};

/// Records copied per read and append.
const PAGE: usize = 1000;

/// Why a migration did not happen (or did not finish).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "vibesd is running on the data directory {data_dir}: stop it, then run `vibesd migrate` \
         again"
    )]
    Running { data_dir: PathBuf },

    #[error("the data directory {data_dir} holds no log yet: there is nothing to migrate")]
    NothingToMigrate { data_dir: PathBuf },

    #[error("the log can only move to iggy or embedded, not to {to}")]
    BadTarget { to: BackendKind },

    #[error("the data directory {data_dir} already holds {source_log}: there is nothing to move")]
    SameBackend {
        data_dir: PathBuf,
        source_log: Recorded,
    },

    #[error(
        "the target, {target} ({location}), is not empty ({events} events, {groups} groups): \
         nothing was copied; delete it first if it is a leftover"
    )]
    TargetNotEmpty {
        target: Recorded,
        location: String,
        events: Offset,
        groups: usize,
    },

    #[error(
        "the copy does not match its source ({what}); the data directory still uses its old \
         log; delete the copy at {location} before trying again"
    )]
    Mismatch { what: String, location: String },

    #[error(transparent)]
    Log(#[from] LogError),
}

/// What a migration did.
#[derive(Debug, Clone)]
pub struct Migrated {
    pub from: Recorded,
    pub to: Recorded,
    /// Records copied: the log's high-water mark.
    pub events: Offset,
    /// Groups copied with their committed offsets.
    pub groups: usize,
    /// Where the old log stays.
    pub old_location: String,
    /// How to delete the old log.
    pub delete_old: String,
}

/// Moves the data directory's log to the backend `to` (`iggy`: the
/// external server if `iggy.address` is configured, else a managed one).
pub async fn migrate(config: &BackendConfig, to: BackendKind) -> Result<Migrated, MigrateError> {
    let data_dir = &config.data_dir;
    let target = match to {
        BackendKind::Embedded => Recorded::Embedded,
        BackendKind::Iggy => match &config.iggy.address {
            Some(address) => Recorded::ExternalIggy {
                address: address.clone(),
            },
            None => Recorded::ManagedIggy,
        },
        BackendKind::Memory => return Err(MigrateError::BadTarget { to }),
    };
    if !data_dir.exists() {
        return Err(MigrateError::NothingToMigrate {
            data_dir: data_dir.clone(),
        });
    }
    let _lock = match DataDirLock::take(data_dir) {
        Ok(lock) => lock,
        Err(LogError::Locked { .. }) => {
            return Err(MigrateError::Running {
                data_dir: data_dir.clone(),
            });
        }
        Err(err) => return Err(err.into()),
    };
    let Some((source, was_recorded)) = recorded(data_dir, None)? else {
        return Err(MigrateError::NothingToMigrate {
            data_dir: data_dir.clone(),
        });
    };
    if source == target {
        return Err(MigrateError::SameBackend {
            data_dir: data_dir.clone(),
            source_log: source,
        });
    }
    if !was_recorded {
        // Opening the target may create its files; from now on the record,
        // not the files, says which log this directory uses.
        source.write(data_dir)?;
    }
    // The target first: a target that is not empty is refused before the
    // source is touched.
    let into = open_recorded(config, &target, "migrating to".into()).await?;
    if let Err(err) = check_empty(into.log.as_ref(), &target, data_dir).await {
        stop(into).await;
        return Err(err);
    }
    let from = match open_recorded(config, &source, "migrating from".into()).await {
        Ok(from) => from,
        Err(err) => {
            stop(into).await;
            return Err(err.into());
        }
    };
    let copied = copy(from.log.as_ref(), into.log.as_ref(), &target, data_dir).await;
    stop(from).await;
    stop(into).await;
    let (events, groups) = copied?;
    target.write(data_dir)?;
    tracing::info!(from = %source, to = %target, events, groups, "log migrated");
    Ok(Migrated {
        old_location: source.location(data_dir),
        delete_old: source.how_to_delete(data_dir),
        from: source,
        to: target,
        events,
        groups,
    })
}

/// Stops what keeps a log running once it is no longer used.
async fn stop(opened: OpenedLog) {
    let OpenedLog { log, manager, .. } = opened;
    drop(log);
    if let Some(manager) = manager {
        manager.stop().await;
    }
}

/// Refuses a target that holds any event or group.
async fn check_empty(
    target: &dyn EventLog,
    target_is: &Recorded,
    data_dir: &Path,
) -> Result<(), MigrateError> {
    let events = target.high_water_mark().await?;
    let groups = target.groups().await?.len();
    if events > 0 || groups > 0 {
        return Err(MigrateError::TargetNotEmpty {
            target: target_is.clone(),
            location: target_is.location(data_dir),
            events,
            groups,
        });
    }
    Ok(())
}

/// Copies every record and every group's committed offset from `source`
/// into the empty `target`, then checks the copy.
async fn copy(
    source: &dyn EventLog,
    target: &dyn EventLog,
    target_is: &Recorded,
    data_dir: &Path,
) -> Result<(Offset, usize), MigrateError> {
    let location = target_is.location(data_dir);
    let mismatch = |what: String| MigrateError::Mismatch {
        what,
        location: location.clone(),
    };
    let end = source.high_water_mark().await?;
    let mut next = 0;
    while next < end {
        let page = source.read(next, PAGE).await?;
        let Some(first) = page.first() else {
            return Err(mismatch(format!("the source ends at {next}, not {end}")));
        };
        if first.offset != next {
            return Err(mismatch(format!("the source has no record {next}")));
        }
        let count = page.len() as Offset;
        let written = target
            .append_records(page.into_iter().map(|record| record.payload).collect())
            .await?;
        if written != (next..next + count) {
            return Err(mismatch(format!(
                "records {next}..{} landed at {written:?}",
                next + count
            )));
        }
        next += count;
    }
    let groups = source.groups().await?;
    for group in &groups {
        let mut consumer = target
            .consumer(&group.group, StartPosition::Beginning)
            .await?;
        if let Some(committed) = group.committed {
            consumer.seek(SeekTo::Offset(committed + 1)).await?;
        }
    }
    let copied_end = target.high_water_mark().await?;
    if copied_end != end {
        return Err(mismatch(format!(
            "its high-water mark is {copied_end}, not {end}"
        )));
    }
    let copied_groups = target.groups().await?;
    if copied_groups != groups {
        return Err(mismatch(format!(
            "its groups are {copied_groups:?}, not {groups:?}"
        )));
    }
    Ok((end, groups.len()))
}
