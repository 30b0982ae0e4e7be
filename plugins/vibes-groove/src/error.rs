//! Why the groove store could not be opened, read or written.

use std::path::PathBuf;

/// A failure of the groove store. Each cause is kept as `#[source]` and
/// left out of the message, so a printed chain shows it once.
#[derive(Debug, thiserror::Error)]
pub enum GrooveError {
    #[error("groove store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("groove store")]
    Sql(#[from] rusqlite::Error),
    /// A session's saved state does not read back: the store was written by
    /// another build; delete it to rebuild it from the log.
    #[error("groove state of session {session:?} does not decode")]
    State {
        session: String,
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be serialized (cannot happen with these types,
    /// but is not worth a panic).
    #[error("groove record at offset {offset} does not encode")]
    Encode {
        offset: u64,
        #[source]
        source: serde_json::Error,
    },
    /// The config does not compile (checked at load, so only a caller that
    /// skipped `check_config` sees this).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}
