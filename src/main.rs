//! The `runbook` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    runbook::run(std::env::args_os())
}
