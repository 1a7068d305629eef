//! The exit codes, as documented in the README.

use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: the run (or command) succeeded.
    Success,
    /// 1: a step failed and no fallback succeeded.
    Failed,
    /// 2: invalid usage, playbook or template; nothing was executed.
    Invalid,
    /// 3: an operator declined, or the run was aborted.
    Aborted,
    /// 4: another run holds the install; nothing was executed.
    Locked,
    /// 5: a dry run cannot tell whether the run would succeed.
    Unpredictable,
    /// 130: interrupted by Ctrl-C (stopped between steps, `always` steps run).
    Interrupted,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(match e {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Invalid => 2,
            Exit::Aborted => 3,
            Exit::Locked => 4,
            Exit::Unpredictable => 5,
            Exit::Interrupted => 130,
        })
    }
}
