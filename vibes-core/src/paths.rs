//! Where vibesd keeps its data when no directory is given.

use std::path::PathBuf;

/// `$XDG_DATA_HOME/vibes`, else `$HOME/.local/share/vibes`; `None` when
/// neither variable names an absolute directory (then the caller must be
/// told where to keep data).
pub fn default_data_dir() -> Option<PathBuf> {
    let absolute = |name| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_DATA_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("share")))
        .map(|base| base.join("vibes"))
}
