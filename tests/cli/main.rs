//! Integration tests: the real binary on temporary directories, with real
//! SQLite files and real child processes.

mod support;

mod actions;
mod check;
mod dry_run;
mod includes;
mod inputs;
mod semantics;
mod views;
