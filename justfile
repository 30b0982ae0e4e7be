# The everyday commands. Each recipe is one plain command: copy it to run it
# without `just`.

# Run the log end to end in the default data directory (embedded unless an
# iggy-server is on PATH).
run *ARGS:
    cargo run --release -p vibes-iggy --example quickstart -- {{ARGS}}

# Every test (the Iggy ones skip unless VIBES_IGGY_SERVER names a binary).
test:
    cargo test --workspace --locked

# Every test, the Iggy ones against a real server: just test-iggy /path/to/iggy-server
test-iggy SERVER:
    VIBES_IGGY_SERVER={{SERVER}} cargo test --workspace --locked

# Throughput and latency figures (docs/benchmarks.md).
bench:
    cargo bench --workspace

# Formatting and lints, as warnings-are-errors.
lint:
    cargo fmt --all --check && cargo clippy --workspace --all-targets --locked -- -D warnings
