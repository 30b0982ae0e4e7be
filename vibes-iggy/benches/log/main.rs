//! Log benchmarks (being written).
fn main() {}
