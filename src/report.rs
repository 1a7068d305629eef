//! The incident report: the run summary rendered through a template
//! (`templates/report.md`, or the playbook's own `report:`) as `report.md`,
//! or as data (`runbook report --format json`). Both come from the events
//! alone, so they can be rebuilt from the journal at any time.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Event, Sink};
use crate::summary::Summary;
use crate::template::{CompileError, Templates};

pub const FILE_NAME: &str = "report.md";

/// The report template a playbook without `report:` gets.
pub const BUILT_IN: &str = include_str!("../templates/report.md");
const BUILT_IN_NAME: &str = "report.md (built in)";

/// The template a report is rendered through.
pub struct Layout {
    templates: Templates,
    name: String,
}

impl Layout {
    /// The template at `path` as it is on disk now, or the built-in one:
    /// what `runbook report` re-renders with.
    pub fn load(path: Option<&Path>) -> Result<Layout, CompileError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| CompileError {
                    message: format!("cannot read it: {e}"),
                    line: None,
                    pos: None,
                    name: None,
                })?;
                Layout::of(&path.display().to_string(), &text)
            }
            None => Layout::of(BUILT_IN_NAME, BUILT_IN),
        }
    }

    /// A template from its text: a run renders the text `check` compiled
    /// and the plan's fingerprint covers, not the file as it is later.
    pub fn of(name: &str, source: &str) -> Result<Layout, CompileError> {
        let mut templates = Templates::new();
        templates.compile_named(name, source)?;
        Ok(Layout {
            templates,
            name: name.to_owned(),
        })
    }

    /// The report of a run as its summary stands.
    pub fn render(&self, summary: &Arc<Summary>) -> io::Result<String> {
        let ctx = minijinja::context! { run => summary.view(None) };
        self.templates.render_named(&self.name, &ctx).map_err(|e| {
            io::Error::other(format!(
                "the report template: {}",
                crate::template::render_error(&e)
            ))
        })
    }
}

/// Writes the report from the run's summary as the run goes and when it ends.
pub struct Report {
    path: PathBuf,
    layout: Layout,
    /// When report.md was last written, and how long writing it took.
    written: Option<(Instant, Duration)>,
}

impl Report {
    /// The report at `path`.
    pub fn new(path: PathBuf, layout: Layout) -> Report {
        Report {
            path,
            layout,
            written: None,
        }
    }

    fn write(&mut self, run: &Arc<Summary>) -> io::Result<()> {
        let start = Instant::now();
        let text = self.layout.render(run)?;
        write_atomically(&self.path, text.as_bytes())?;
        self.written = Some((Instant::now(), start.elapsed()));
        Ok(())
    }
}

impl Sink for Report {
    fn event(&mut self, event: &Event, run: &Arc<Summary>) -> io::Result<()> {
        // Kept current as the run goes, so that a run that dies still leaves
        // its timeline, and always complete when the `always` steps start
        // (the outcome e-mail attaches it). Rewriting it after every step of
        // a long playbook would cost time quadratic in its length, so in
        // between it is rewritten at most twice a second, and no sooner
        // than twenty times the last writing took: a report of thousands
        // of steps, longer to write, is rewritten less often, and the
        // rewriting stays under a twentieth of the run.
        let due = match event {
            Event::AlwaysStarted { .. } => true,
            Event::StepFinished { .. } => self
                .written
                .is_none_or(|(at, took)| at.elapsed() >= Duration::from_millis(500).max(took * 20)),
            _ => false,
        };
        if due {
            self.write(run)?;
        }
        Ok(())
    }

    fn finish(&mut self, run: &Arc<Summary>) -> io::Result<()> {
        self.write(run)
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a report.
/// A write that fails (a full disk) leaves no temporary file behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    synced_beside(path, bytes)?
        .persist(path)
        .map(drop)
        .map_err(|e| e.error)
}

/// Writes a file that must not replace one already there (two writers at
/// once: the first one's stays whole). `false` if it was there.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    match synced_beside(path, bytes)?.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// `bytes` on disk in a file of its own beside `path`, removed if dropped:
/// two writers never share a temporary file.
fn synced_beside(path: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Readable as a file made with the usual umask is, not 0600 as a
    // temporary file would stay.
    let mut tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    crate::shadow::sync(tmp.as_file(), path)?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_that_stops_early_renders_as_not_finished() {
        let events = vec![Event::RunStarted {
            format: crate::event::FORMAT,
            at: "2026-11-23T03:00:00.000Z".into(),
            playbook: "emergency".into(),
            file: "pb.yaml".into(),
            dry_run: false,
            rehearsal: false,
            fail: Vec::new(),
            deadline: None,
            deadline_at: None,
            cli_vars: Vec::new(),
            plan: String::new(),
            resumed: false,
            run_dir: None,
            vars: serde_json::Map::new(),
            report: None,
        }];
        let Ok(layout) = Layout::load(None) else {
            panic!("the built-in template does not compile");
        };
        let md = layout
            .render(&Arc::new(Summary::from_events(&events)))
            .expect("renders");
        assert!(md.contains("**not finished**"), "{md}");
        assert!(md.contains("# Run of `emergency`"), "{md}");
    }
}
