//! The journal: every event of a run, one JSON object per line, written as
//! it happens and forced to disk at the end of each step, so that a crash
//! or a kill leaves a record of everything that was done up to it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use crate::event::{Event, Sink};

pub const FILE_NAME: &str = "journal.jsonl";

pub struct Journal {
    file: File,
}

impl Journal {
    /// Creates the journal; an existing one is never overwritten.
    pub fn create(path: &Path) -> io::Result<Journal> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Journal { file })
    }
}

impl Sink for Journal {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_string(event).map_err(io::Error::other)?;
        line.push('\n');
        // One write per event, unbuffered: each line reaches the file as it happens.
        self.file.write_all(line.as_bytes())?;
        if matches!(
            event,
            Event::StepFinished { .. } | Event::RunFinished { .. }
        ) {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// Reads a journal back. A torn last line (the process died mid-write) is
/// ignored; any other bad line is an error naming its line number.
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    use anyhow::Context as _;
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<io::Result<_>>()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut events = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(e) => events.push(e),
            Err(_) if i + 1 == lines.len() => break,
            Err(err) => anyhow::bail!("{}:{}: not a journal event: {err}", path.display(), i + 1),
        }
    }
    Ok(events)
}
