//! Blocking work inside a handler, without copying its batch.

/// Runs `work` (SQLite, files) from an async handler on the thread it is
/// on: `block_in_place` on a multi-threaded runtime (the worker's other
/// tasks move to another worker), directly on a current-thread one.
/// `spawn_blocking` would need the batch copied into the task, which is
/// most of the cost of a batch of small events and megabytes for large
/// ones. A panic in `work` comes back as `Err` with its message, after
/// whatever `work` held was dropped (a SQLite transaction rolls back).
pub fn run_blocking<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let caught = || std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    let ran = match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(caught),
        _ => caught(),
    };
    ran.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_threaded_runtime_it_runs_in_place_and_catches_a_panic() {
        let batch = [1, 2, 3];
        assert_eq!(run_blocking(|| batch.iter().sum::<i32>()), Ok(6));
        let err = run_blocking(|| -> i32 { panic!("disk on fire") }).unwrap_err();
        assert_eq!(err, "disk on fire");
    }

    #[tokio::test]
    async fn on_a_current_thread_runtime_it_runs_directly() {
        let n = 7;
        assert_eq!(run_blocking(|| n * 6), Ok(42));
        let err =
            run_blocking(|| -> i32 { panic!("{}", String::from("owned message")) }).unwrap_err();
        assert_eq!(err, "owned message");
    }
}
