//! Errors that belong to the user's input: a position in a file, a message,
//! and an optional hint. They are collected during analysis (so `check`
//! reports every problem at once) and rendered exactly once, at the edge.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file whose text we keep so that diagnostics can quote the offending line.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user should read it (relative when it was given so).
    pub path: PathBuf,
    pub text: String,
    /// Whether messages may quote its lines: only a file that is a playbook
    /// by its name. A playbook that includes `/etc/shadow` gets the path
    /// and the reason, never the content (under sudo, that would be a leak).
    pub quotable: bool,
}

/// A position in a source file, 1-based like every editor's.
#[derive(Clone, Debug)]
pub struct Span {
    pub file: Arc<SourceFile>,
    pub line: usize,
    pub column: usize,
}

impl Span {
    pub fn new(file: &Arc<SourceFile>, line: usize, column: usize) -> Span {
        Span {
            file: Arc::clone(file),
            line: line.max(1),
            column: column.max(1),
        }
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// The position of `name` inside the value that starts here: a caret
    /// under the bad reference, not under the string's opening quote. The
    /// value is the rest of this line, or the more indented lines below it
    /// for a block (`|`, `>`) or folded scalar. Where `name` is not written
    /// out there (a synthetic value), the value's start is the best we know.
    #[must_use]
    pub fn pointing_at(&self, name: &str) -> Span {
        let mut lines = self.file.text.lines().enumerate().skip(self.line - 1);
        let Some((_, first)) = lines.next() else {
            return self.clone();
        };
        let start = first
            .char_indices()
            .nth(self.column - 1)
            .map_or(first.len(), |(i, _)| i);
        if let Some(at) = find_word(&first[start..], name) {
            let column = self.column + first[start..start + at].chars().count();
            return Span::new(&self.file, self.line, column);
        }
        // A value that begins its line (a block scalar's text) goes on while
        // lines are indented as far; one that begins after a key goes on
        // while they are indented further than the key.
        let indent = indentation(first);
        let begins_line = first[..start].trim().is_empty();
        for (index, line) in lines {
            let deeper = if begins_line {
                indentation(line) >= indent
            } else {
                indentation(line) > indent
            };
            if !line.trim().is_empty() && !deeper {
                break;
            }
            if let Some(at) = find_word(line, name) {
                return Span::new(&self.file, index + 1, line[..at].chars().count() + 1);
            }
        }
        self.clone()
    }
}

pub(crate) fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The byte offset of `word` in `text` where it stands as a whole name,
/// not as part of a longer one (`db` in `dbb` is not `db`).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_name = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    if word.is_empty() {
        return None;
    }
    text.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.path.display(),
            self.line,
            self.column
        )
    }
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub span: Option<Span>,
    pub message: String,
    pub help: Option<String>,
    /// Said, but not in the way: the playbook still runs.
    pub warning: bool,
}

impl Diagnostic {
    pub fn at(span: &Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span: Some(span.clone()),
            message: message.into(),
            help: None,
            warning: false,
        }
    }

    pub fn bare(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span: None,
            message: message.into(),
            help: None,
            warning: false,
        }
    }

    /// The same, as a warning.
    #[must_use]
    pub fn as_warning(mut self) -> Diagnostic {
        self.warning = true;
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean" when `name` is a near miss of one of `candidates`.
    #[must_use]
    pub fn suggest<'a>(
        self,
        name: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Diagnostic {
        match did_you_mean(name, candidates) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    /// "Did you mean" when `name` is a near miss of one of `candidates`,
    /// and `otherwise` (what to do instead) when it is not.
    #[must_use]
    pub fn suggest_or<'a>(
        self,
        name: &str,
        candidates: impl IntoIterator<Item = &'a str>,
        otherwise: impl Into<String>,
    ) -> Diagnostic {
        let d = self.suggest(name, candidates);
        if d.help.is_none() {
            d.help(otherwise)
        } else {
            d
        }
    }
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

impl fmt::Display for Diagnostic {
    /// `error: file:line:col: message`, then the line with a caret, then the hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.warning { "warning" } else { "error" };
        let Some(span) = &self.span else {
            write!(f, "{kind}: {}", self.message)?;
            if let Some(help) = &self.help {
                write!(f, "\n  help: {help}")?;
            }
            return Ok(());
        };
        write!(f, "{kind}: {span}: {}", self.message)?;
        let quoted = span
            .file
            .quotable
            .then(|| span.file.text.lines().nth(span.line - 1));
        if let Some(text) = quoted.flatten() {
            let gutter = span.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_pad: String = text
                .chars()
                .take(span.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{pad} |\n{gutter} | {text}\n{pad} | {caret_pad}^")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in one pass, in the order they were found.
#[derive(Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// The problems that stop a playbook from running.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.warning)
    }

    /// The ones said alongside, which do not.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.warning)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Diagnostics {
        Diagnostics(vec![d])
    }
}
