//! What the benchmarks share: the release binary they time.

use std::path::PathBuf;

/// `target/release/runbook`, which the benchmark times as a user runs it;
/// it is not built here, so that building is never part of a timing.
pub fn release_binary() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/runbook");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --release --locked` first",
        binary.display()
    );
    binary
}
