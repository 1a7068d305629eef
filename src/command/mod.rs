//! The subcommands, one file each; `lib.rs` dispatches to them.

pub mod backup;
pub mod check;
pub mod demo;
pub mod graph;
pub mod list;
pub mod report;
pub mod resume;
pub mod run;
