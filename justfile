# The everyday commands. Each recipe is one plain command: copy it to run it
# without `just`.

# Run vibesd (embedded unless an iggy-server is on PATH); ARGS go to vibesd.
run *ARGS:
    cargo run --release --bin vibesd -- {{ARGS}}

# The log library on its own: append and read back in the data directory.
quickstart *ARGS:
    cargo run --release -p vibes-iggy --example quickstart -- {{ARGS}}

# Every test (the Iggy ones skip unless VIBES_IGGY_SERVER names a binary).
test:
    cargo test --workspace --locked

# Every test, the Iggy ones against a real server: just test-iggy /path/to/iggy-server
test-iggy SERVER:
    VIBES_IGGY_SERVER={{SERVER}} cargo test --workspace --locked

# Throughput, latency and memory figures (docs/benchmarks.md); the memory
# one runs ten minutes (VIBES_MEMORY_BENCH_SECS shortens it).
bench:
    cargo bench --workspace

# Formatting and lints, as warnings-are-errors.
lint:
    cargo fmt --all --check && cargo clippy --workspace --all-targets --locked -- -D warnings

# Before a commit: formatting checked, clippy with warnings as errors, and
# every test, in that order; stops at the first that fails.
pre-commit:
    cargo fmt --all --check && cargo clippy --workspace --all-targets --locked -- -D warnings && cargo test --workspace --locked
