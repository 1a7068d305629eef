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
