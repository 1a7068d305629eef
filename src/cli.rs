//! The command line, as clap types. Parsing only; `lib.rs` acts on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Runs declarative YAML runbooks: ordered steps with checks, fallbacks and a journal"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Execute a playbook
    Run(RunArgs),
    /// Parse and validate playbooks; execute nothing
    Check {
        /// Playbook files to check
        #[arg(required = true, value_name = "PLAYBOOK")]
        playbooks: Vec<PathBuf>,
        /// One JSON object per playbook on stdout, problems included
        #[arg(long)]
        json: bool,
    },
    /// Make, list, check, restore or delete backups of a database, ad hoc
    Backup(BackupArgs),
    /// Render a run's incident report from its journal
    Report {
        #[command(flatten)]
        which: RunRef,
        /// markdown or json (the run summary)
        #[arg(long, value_enum, default_value = "markdown")]
        format: ReportFormat,
        /// The run summary as JSON, as every other command's --json
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Continue an interrupted or failed run from its journal
    Resume {
        #[command(flatten)]
        which: RunRef,
        /// Resume even though the playbook changed since the run started
        #[arg(long)]
        force: bool,
        /// Confirm manual steps in advance
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print one JSON event per line instead of the human view
        #[arg(long)]
        json: bool,
        /// Show every included step, fallback and condition, and lines in full
        #[arg(long, short = 'v')]
        verbose: bool,
        /// If another run holds the install, wait up to this long for it (e.g. 10m) instead of refusing
        #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
        wait: Option<std::time::Duration>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Build the bundled sample install and run its emergency rollback playbook on it
    Demo {
        /// Where to build it [default: a new temporary directory]
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Only build the install (to practise the workflow on it), and keep it; run nothing
        #[arg(long)]
        build_only: bool,
        /// Keep the temporary directory (install, run directory, report, outbox) after the demo
        #[arg(long)]
        keep: bool,
    },
    /// Draw a playbook's flow: steps, includes, fallbacks, always-steps
    Graph {
        /// The playbook file
        #[arg(value_name = "PLAYBOOK")]
        playbook: PathBuf,
        /// mermaid (renders on GitHub) or dot (Graphviz)
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell): `source <(runbook completions bash)`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff): runbook's, or a subcommand's
    Man {
        /// The subcommand whose page to print, e.g. `backup create` [default: runbook's own]
        #[arg(value_name = "SUBCOMMAND")]
        command: Vec<String>,
        /// Write every page into this directory instead (runbook.1, runbook-run.1, …), e.g. ~/.local/share/man/man1
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of playbooks (for editors)
    Schema,
    /// Run what a fleet controller sends on stdin (started by the `fleet` action over ssh)
    #[command(hide = true)]
    Host,
    /// List playbooks with their descriptions
    List {
        /// Directory to list
        #[arg(default_value = "playbooks", value_name = "DIR")]
        dir: PathBuf,
        /// One JSON object per playbook on stdout
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook file
    #[arg(value_name = "PLAYBOOK")]
    pub playbook: PathBuf,
    /// Set a variable (repeatable); the value is taken literally, never as a template
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Change nothing: run read-only checks, describe every other step
    #[arg(long, conflicts_with = "rehearse")]
    pub dry_run: bool,
    /// Run for real on copies of the databases, in the run directory; the live ones are not touched
    #[arg(long)]
    pub rehearse: bool,
    /// In a rehearsal, make this step fail (repeatable), to prove its fallbacks
    #[arg(long = "fail", value_name = "STEP", requires = "rehearse")]
    pub fail: Vec<String>,
    /// With --dry-run: keep what it saw beside the runs directory (reviews/FP.json), so that --expect-plan FP lists what changed since
    #[arg(long, requires = "dry_run")]
    pub save_review: bool,
    /// Refuse to start unless a dry run now gives this fingerprint (printed by the reviewed --dry-run)
    #[arg(long, value_name = "FP", conflicts_with = "dry_run")]
    pub expect_plan: Option<String>,
    /// Confirm manual steps in advance
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print one JSON event per line instead of the human view
    #[arg(long)]
    pub json: bool,
    /// Show every included step, fallback and condition, and lines in full
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// If another run holds the install, wait up to this long for it (e.g. 10m) instead of refusing
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Option<std::time::Duration>,
    /// Where run directories are created
    #[arg(
        long,
        value_name = "DIR",
        env = "RUNBOOK_RUNS",
        default_value = ".runbook/runs"
    )]
    pub runs: PathBuf,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// How a `fleet` step reaches its hosts, decided by the operator at the run.
#[derive(Clone, Debug, Default, Args)]
pub struct RemoteArgs {
    /// In a fleet, accept the key of a host never seen (a changed key is refused all the same)
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// In a fleet, ship this runbook (built for the hosts' system) instead of this one
    #[arg(long, value_name = "PATH")]
    pub remote_binary: Option<PathBuf>,
}

/// A run that already happened, for the commands that read its journal.
#[derive(Debug, Args)]
pub struct RunRef {
    /// The run: its directory, its name under --runs, or `latest`
    #[arg(value_name = "RUN", add = clap_complete::ArgValueCandidates::new(crate::command::completions::run_names))]
    pub run: String,
    /// Where run directories are
    #[arg(
        long,
        value_name = "DIR",
        env = "RUNBOOK_RUNS",
        default_value = ".runbook/runs"
    )]
    pub runs: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub op: BackupOp,
}

#[derive(Debug, Subcommand)]
pub enum BackupOp {
    /// Back up a live database, consistently while the app runs, with a manifest (sha256, fingerprint)
    Create {
        /// The live database
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
        /// The backup directory [default: `backups/` beside `db_data/`, or beside the database]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// A word for the new backup's name: emergency, before-upgrade…
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        counting: CountingArgs,
        #[command(flatten)]
        wait: WaitArg,
        /// Print JSON: the new backup's path and manifest
        #[arg(long)]
        json: bool,
    },
    /// List a directory's backups, newest first, each with its fingerprint
    List {
        /// The backup directory
        #[arg(long, value_name = "DIR", required_unless_present = "db")]
        dir: Option<PathBuf>,
        /// The live database, to list its default backup directory
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// The prefix of the application's own backups in the directory (PREFIX + YYYYMMDD-HHMMSS.db), listed too
        #[arg(long, value_name = "PREFIX")]
        app_backups: Option<String>,
        #[command(flatten)]
        counting: CountingArgs,
        /// Print JSON: `{count, backups}`, the `backup.list` action's outputs
        #[arg(long)]
        json: bool,
    },
    /// Check a backup: SQLite integrity, its sha256 against its manifest, its fingerprint
    Verify {
        /// The backup file
        #[arg(long, value_name = "FILE")]
        backup: PathBuf,
        #[command(flatten)]
        counting: CountingArgs,
        /// Print JSON: integrity, sha256, manifest, fingerprint
        #[arg(long)]
        json: bool,
    },
    /// Replace a live database with a backup, after backing up what it replaces
    Restore {
        /// The live database
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
        /// The backup file to restore
        #[arg(long, value_name = "FILE")]
        backup: PathBuf,
        /// Where the pre-restore backup goes [default: `backups/` beside `db_data/`, or beside the database]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Restore without asking
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        counting: CountingArgs,
        #[command(flatten)]
        wait: WaitArg,
        /// Print JSON: the restore's outputs
        #[arg(long)]
        json: bool,
    },
    /// Delete a backup and its manifest
    Delete {
        /// The backup file
        #[arg(long, value_name = "FILE")]
        backup: PathBuf,
        /// Delete without asking
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArg,
        /// Print JSON: the path deleted
        #[arg(long)]
        json: bool,
    },
}

/// The terms a fingerprint is read in.
#[derive(Debug, Args)]
pub struct CountingArgs {
    /// Count the rows of this table in fingerprints (repeatable) [default: every table]
    #[arg(long = "count", value_name = "TABLE")]
    pub count: Vec<String>,
    /// A column that marks a row deleted when it is not NULL: fingerprints count live rows too
    #[arg(long, value_name = "COLUMN")]
    pub soft_delete: Option<String>,
    /// Where the app records the migrations it ran: TABLE.COLUMN, or a SELECT returning them
    #[arg(long, value_name = "TABLE.COLUMN|QUERY")]
    pub markers: Option<String>,
}

#[derive(Debug, Args)]
pub struct WaitArg {
    /// If another run holds the install, wait up to this long for it (e.g. 10m) instead of refusing
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Option<std::time::Duration>,
}

impl CountingArgs {
    /// The terms fingerprints are read in, from `--count`, `--soft-delete`
    /// and `--markers`.
    pub fn counting(&self) -> crate::database::Counting {
        use crate::database::Markers;
        let markers = self.markers.as_deref().map(|m| {
            let is_query = m
                .trim_start()
                .get(..6)
                .is_some_and(|w| w.eq_ignore_ascii_case("select"));
            match m.split_once('.') {
                Some((table, column)) if !is_query => Markers::Column {
                    table: table.to_owned(),
                    column: column.to_owned(),
                    done: None,
                },
                _ => Markers::Query {
                    query: m.to_owned(),
                },
            }
        });
        crate::database::Counting {
            tables: (!self.count.is_empty()).then(|| self.count.clone()),
            soft_delete: self.soft_delete.clone(),
            markers,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE (e.g. --var db=app.db)"))?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`{k}` is not a variable name (letters, digits and _)"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration (e.g. 30s, 10m): {e}"))
}
