//! Rebuilds vibesd when a file of the web UI changes, is added or removed:
//! the files are embedded in the binary (`src/ui.rs`).

fn main() {
    println!("cargo:rerun-if-changed=ui");
}
