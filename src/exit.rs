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

impl Exit {
    /// Every exit code, in order: for the manual's EXIT STATUS.
    pub const EVERY: [Exit; 7] = [
        Exit::Success,
        Exit::Failed,
        Exit::Invalid,
        Exit::Aborted,
        Exit::Locked,
        Exit::Unpredictable,
        Exit::Interrupted,
    ];

    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Invalid => 2,
            Exit::Aborted => 3,
            Exit::Locked => 4,
            Exit::Unpredictable => 5,
            Exit::Interrupted => 130,
        }
    }

    /// What the code means, in the words the manual gives it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "The run or command succeeded (a run with warnings included).",
            Exit::Failed => "A step failed and no fallback succeeded, or the command failed.",
            Exit::Invalid => "Invalid usage, playbook or template; nothing was executed.",
            Exit::Aborted => "An operator declined a confirmation, or the run was aborted.",
            Exit::Locked => "Another run holds the install; nothing was executed.",
            Exit::Unpredictable => "A dry run cannot tell whether the run would succeed.",
            Exit::Interrupted => "Interrupted (Ctrl-C, SIGTERM): stopped between steps after the always-steps ran; resume it.",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}
