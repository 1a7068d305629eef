//! runbook: a declarative runbook executor. A playbook (YAML) is parsed
//! ([`playbook`]), analyzed into a checked [`plan::Plan`] ([`analyzer`]),
//! executed ([`executor`]) and observed through events ([`event`]) by the
//! journal, the report and the terminal view.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// A line on stdout (`say!("…")`), or text as it is (`say!(raw: text)`).
/// A reader that went away (`runbook list | head -1`) is not a failure: the
/// command goes on to its end and its exit code, as cargo and ripgrep do.
macro_rules! say {
    (raw: $text:expr) => {{
        use std::io::Write as _;
        let _ = std::io::stdout().write_all(AsRef::<[u8]>::as_ref(&$text));
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod action;
pub mod analyzer;
pub mod backup;
pub mod checksum;
pub mod child;
pub mod cli;
pub mod command;
pub mod comparison;
pub mod control;
pub mod database;
pub mod diagnostic;
pub mod event;
pub mod executor;
pub mod exit;
pub mod fault;
pub mod fleet;
pub mod fleet_view;
pub mod holders;
pub mod interrupt;
pub mod inventory;
pub mod journal;
pub mod lock;
pub mod mapped;
pub mod node;
pub mod plan;
pub mod playbook;
pub mod progress;
pub mod rehearsal;
pub mod report;
pub mod reporter;
pub mod review;
pub mod run_dir;
pub mod sample_install;
pub mod schema;
pub mod secret;
pub mod shadow;
pub mod shipment;
pub mod ssh;
pub mod summary;
pub mod template;

use cli::{Cli, Command};
use exit::Exit;

/// Runs the command line and returns the process's exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    catch_file_size_signal();
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if let Some(exit) = command::completions::answer(&args) {
        return exit.into();
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => {
            // What runbook reads from its environment has been read (the
            // command line's, fault injection's; the secrets next): no
            // program it starts is given any of it.
            fault::configure();
            secret::take_environment();
            cli
        }
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Invalid
            } else {
                Exit::Success
            }
            .into();
        }
    };
    let exit = match cli.command {
        Command::Run(args) => command::run::run_playbook(&args),
        Command::Check { playbooks, json } => command::check::check(&playbooks, json),
        Command::List { dir, json } => command::list::list(&dir, json),
        Command::Backup(args) => command::backup::backup(&args),
        Command::Graph { playbook, format } => command::graph::graph(&playbook, format),
        Command::Completions { shell } => command::completions::completions(shell),
        Command::Man { command, dir } => command::man::man(&command, dir.as_deref()),
        Command::Host => command::host::host(),
        Command::Schema => {
            say!(raw: schema::rendered());
            Exit::Success
        }
        Command::Demo {
            dir,
            build_only,
            keep,
        } => command::demo::demo(dir.as_deref(), build_only, keep),
        Command::Report {
            which,
            format,
            json,
        } => {
            let format = if json {
                cli::ReportFormat::Json
            } else {
                format
            };
            command::report::report(&which, format)
        }
        Command::Resume {
            which,
            force,
            yes,
            json,
            verbose,
            wait,
            remote,
        } => command::resume::resume(&which, force, yes, json, verbose, wait, remote),
    };
    exit.into()
}

/// A file-size limit (`ulimit -f`, a quota) must be a write error we can
/// report and clean up after, not SIGXFSZ killing the process mid-backup.
/// The signal is caught, not ignored: an ignored signal stays ignored in
/// every program a step starts, which a limit would then not stop as it
/// stops them from a shell; a caught one is back to its default in them.
fn catch_file_size_signal() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn nothing(_: libc::c_int) {}
    let action = SigAction::new(
        SigHandler::Handler(nothing),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: installed before any thread is started; the handler does
    // nothing, so it is async-signal-safe. The write that raised the signal
    // still fails with EFBIG, which is what is reported.
    let _ = unsafe { sigaction(Signal::SIGXFSZ, &action) };
}
