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
    /// Events this process wrote, for [`crate::fault`].
    written: u64,
}

impl Journal {
    /// Creates the journal; an existing one is never overwritten.
    pub fn create(path: &Path) -> io::Result<Journal> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Journal::owned(file)
    }

    /// Opens an existing journal to go on writing it (`runbook resume`).
    /// `WouldBlock` if another process is still writing it.
    pub fn append(path: &Path) -> io::Result<Journal> {
        let file = OpenOptions::new().append(true).open(path)?;
        Journal::owned(file)
    }

    /// One writer per journal: the run writing it holds an exclusive
    /// `flock` on it until it ends, so a resume cannot interleave with it.
    fn owned(file: File) -> io::Result<Journal> {
        if crate::lock::try_exclusive(&file)? {
            Ok(Journal { file, written: 0 })
        } else {
            Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "another process is writing this journal",
            ))
        }
    }
}

impl Sink for Journal {
    fn event(
        &mut self,
        event: &Event,
        _: &std::sync::Arc<crate::summary::Summary>,
    ) -> io::Result<()> {
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
        self.written += 1;
        crate::fault::journal_event(self.written);
        Ok(())
    }

    fn finish(&mut self, _: &std::sync::Arc<crate::summary::Summary>) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_ignored_but_a_bad_middle_line_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let mut j = Journal::create(&path).expect("create");
        let e = Event::StepStarted {
            at: "2026-01-01T00:00:00.000Z".into(),
            step: "a".into(),
            name: "A".into(),
        };
        j.event(&e, &Default::default()).expect("write");
        j.event(&e, &Default::default()).expect("write");
        drop(j);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{\"event\":\"step_fin");
        std::fs::write(&path, &text).expect("write");
        assert_eq!(read(&path).expect("read").len(), 2);

        let broken = text.replacen("{\"event\"", "{\"evnt\"", 1);
        std::fs::write(&path, broken).expect("write");
        let err = read(&path).expect_err("bad line");
        assert!(err.to_string().contains(":1: not a journal event"), "{err}");
    }

    #[test]
    fn an_existing_journal_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "keep").expect("write");
        assert!(Journal::create(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "keep");
    }
}
