//! Integration tests: the real binary on temporary directories, with real
//! SQLite files and real child processes.

mod gofastcdn;
mod support;

mod actions;
mod backups;
mod check;
mod conventions;
mod demo;
mod dry_run;
mod emergency;
mod fleet;
mod general;
mod includes;
mod inputs;
mod lock;
mod resume;
mod rollback;
mod semantics;
pub mod terminal;
mod verified;
mod views;
