//! The playbook as written: the YAML tree turned into typed fields, each
//! with its position, but nothing resolved yet (no includes followed, no
//! templates compiled). Every structural problem in the file is collected,
//! so one `runbook check` shows them all.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics, SourceFile, Span};
use crate::node::{self, Key, Node, Value};

/// A value together with where it was written.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub value: T,
    pub span: Span,
}

#[derive(Debug)]
pub struct Playbook {
    pub file: Arc<SourceFile>,
    pub name: Option<Located<String>>,
    pub description: Option<String>,
    pub vars: Vec<VarDecl>,
    pub steps: Vec<Step>,
    pub always: Vec<Step>,
    /// Named facts about the run, each an expression over its steps'
    /// outputs, evaluated when the steps are over: what e-mails and the
    /// report state, declared by the playbook rather than known to the engine.
    pub facts: Vec<(Located<String>, Located<String>)>,
    /// `report:`: the template of the run's report.md, relative to the playbook.
    pub report: Option<Located<String>>,
    /// `deadline:`: how long the run has, a template over the variables
    /// that renders to a duration (`15m`), or to nothing for no deadline.
    pub deadline: Option<Node>,
    /// The ids of steps that had other errors: they are written, so a
    /// reference to one is not a second error.
    pub unparsed_ids: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct VarDecl {
    pub name: Located<String>,
    /// The default, a template over the variables declared before it.
    pub default: Option<Node>,
    pub required: bool,
    pub secret: bool,
    pub description: Option<String>,
    pub choices: Vec<String>,
    /// The value a rehearsal gives it instead (`true` for a command that
    /// would stop the real app), unless the operator gives one.
    pub rehearsal: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub span: Span,
    pub id: Located<String>,
    pub name: Option<String>,
    pub body: StepBody,
    pub when: Option<Located<String>>,
    pub require: Vec<Check>,
    pub verify: Vec<Check>,
    pub skip_if: Vec<Check>,
    pub fallback: Vec<Step>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub timeout: Option<Duration>,
    /// By when, from the start of the run, the step should be done.
    pub deadline: Option<Duration>,
    /// A manual step: the question put to the operator before the action runs.
    pub confirm: Option<Located<String>>,
}

#[derive(Clone, Debug)]
pub enum StepBody {
    Action {
        action: Located<String>,
        with: Option<Node>,
    },
    Include {
        playbook: Located<String>,
        vars: Vec<(Key, Node)>,
    },
}

#[derive(Clone, Debug)]
pub struct Check {
    pub span: Span,
    pub name: Option<String>,
    pub kind: CheckKind,
}

#[derive(Clone, Debug)]
pub enum CheckKind {
    /// An expression that must be true.
    That(Located<String>),
    /// A read-only action that must succeed, and whose `result` must satisfy `expect`.
    Action {
        action: Located<String>,
        with: Option<Node>,
        expect: Option<Located<String>>,
    },
}

pub const PLAYBOOK_KEYS: &[&str] = &[
    "name",
    "description",
    "vars",
    "steps",
    "always",
    "facts",
    "report",
    "deadline",
];
pub const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "action",
    "with",
    "playbook",
    "vars",
    "when",
    "require",
    "verify",
    "skip_if",
    "fallback",
    "retries",
    "retry_delay",
    "timeout",
    "deadline",
    "confirm",
];
pub const CHECK_KEYS: &[&str] = &["name", "that", "action", "with", "expect"];
pub const VAR_KEYS: &[&str] = &[
    "default",
    "required",
    "secret",
    "description",
    "choices",
    "rehearsal",
];

/// Reads and parses a playbook file; the path is kept as given, for messages.
/// Returns what could be read together with the problems found in it, so
/// that analysis can go on and report the rest; only a file that cannot be
/// read or parsed as YAML at all is an `Err`.
pub fn load(path: &Path) -> Result<(Playbook, Diagnostics), Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        Diagnostic::bare(format!("cannot read playbook {}: {err}", path.display()))
            .help("check the path; `runbook list` shows the playbooks in playbooks/")
    })?;
    // Named a playbook where it really is, links followed.
    let named_yaml = std::fs::canonicalize(path).is_ok_and(|real| is_playbook_name(&real));
    if named_yaml {
        return parse_file(path, text, true);
    }
    // Not named a playbook: read as one, but on any problem said to be none,
    // with no word of what it holds (a key, a line) in the message.
    let unquoted = |n: usize| {
        Diagnostics(vec![Diagnostic::bare(format!(
            "{} is not a playbook: reading it as one found {n} problem{}; its content is not shown",
            path.display(),
            if n == 1 { "" } else { "s" }
        ))
        .help("playbooks are YAML files named *.yaml or *.yml")])
    };
    match parse_file(path, text, false) {
        Ok((pb, problems)) if problems.is_empty() => Ok((pb, problems)),
        Ok((_, problems)) | Err(problems) => Err(unquoted(problems.0.len())),
    }
}

/// Whether a file's name says it is a playbook: `*.yaml` or `*.yml`.
pub fn is_playbook_name(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

/// Parses playbook text as if read from `path`.
pub fn parse(path: &Path, text: String) -> Result<(Playbook, Diagnostics), Diagnostics> {
    parse_file(path, text, true)
}

fn parse_file(
    path: &Path,
    text: String,
    quotable: bool,
) -> Result<(Playbook, Diagnostics), Diagnostics> {
    let file = Arc::new(SourceFile {
        path: path.to_path_buf(),
        text,
        quotable,
    });
    let root = node::parse(&file)?;
    let mut reader = Reader {
        file: &file,
        diagnostics: Diagnostics::default(),
        unparsed_ids: Vec::new(),
    };
    let mut playbook = reader.playbook(&root);
    playbook.unparsed_ids = reader.unparsed_ids;
    Ok((playbook, reader.diagnostics))
}

struct Reader<'a> {
    file: &'a Arc<SourceFile>,
    unparsed_ids: Vec<String>,
    diagnostics: Diagnostics,
}

/// The entries of one mapping, handed out by name; whatever is left unclaimed
/// at the end is an unknown key.
struct Fields<'n> {
    entries: Vec<(&'n Key, &'n Node, bool)>,
}

impl<'n> Fields<'n> {
    fn take(&mut self, name: &str) -> Option<(&'n Key, &'n Node)> {
        self.entries
            .iter_mut()
            .find(|(k, _, used)| k.name == name && !*used)
            .map(|(k, v, used)| {
                *used = true;
                (*k, *v)
            })
    }

    fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| k.name == name)
    }
}

impl<'a> Reader<'a> {
    fn span(&self, node_pos: node::Pos) -> Span {
        Span::new(self.file, node_pos.line, node_pos.column)
    }

    fn error(&mut self, pos: node::Pos, message: impl Into<String>) {
        let d = Diagnostic::at(&self.span(pos), message);
        self.diagnostics.push(d);
    }

    /// Opens a mapping, reporting duplicate keys; `what` names it in messages.
    fn fields<'n>(&mut self, node: &'n Node, what: &str) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.value.kind()),
            );
            return None;
        };
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in entries {
            if seen.contains(&k.name.as_str()) {
                self.error(k.pos, format!("duplicate key `{}` in {what}", k.name));
            }
            seen.push(&k.name);
        }
        Some(Fields {
            entries: entries.iter().map(|(k, v)| (k, v, false)).collect(),
        })
    }

    fn finish(&mut self, fields: Fields<'_>, what: &str, known: &[&str]) {
        for (k, _, used) in fields.entries {
            if !used {
                let d = Diagnostic::at(
                    &self.span(k.pos),
                    format!("unknown key `{}` in {what}", k.name),
                )
                .suggest_or(
                    &k.name,
                    known.iter().copied(),
                    format!("the keys of {what} are: {}", known.join(", ")),
                );
                self.diagnostics.push(d);
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Located<String>> {
        match &node.value {
            Value::Str(s) => Some(Located {
                value: s.clone(),
                span: self.span(node.pos),
            }),
            // Numbers and booleans in a text position are almost always meant as text.
            Value::Int(i) => Some(Located {
                value: i.to_string(),
                span: self.span(node.pos),
            }),
            Value::Bool(b) => Some(Located {
                value: b.to_string(),
                span: self.span(node.pos),
            }),
            other => {
                let kind = other.kind();
                self.error(node.pos, format!("{what} must be a string, found {kind}"));
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        if let Value::Bool(b) = node.value {
            Some(b)
        } else {
            let kind = node.value.kind();
            self.error(
                node.pos,
                format!("{what} must be true or false, found {kind}"),
            );
            None
        }
    }

    fn list<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            other => {
                let kind = other.kind();
                self.error(node.pos, format!("{what} must be a list, found {kind}"));
                &[]
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        match &node.value {
            Value::Int(secs) if *secs >= 0 => Some(Duration::from_secs(secs.unsigned_abs())),
            Value::Float(secs) if *secs >= 0.0 && secs.is_finite() => {
                Some(Duration::from_secs_f64(*secs))
            }
            Value::Str(s) => match humantime::parse_duration(s) {
                Ok(d) => Some(d),
                Err(err) => {
                    let d = Diagnostic::at(
                        &self.span(node.pos),
                        format!("{what}: `{s}` is not a duration: {err}"),
                    )
                    .help("write a duration like `30s`, `5m` or `1h 30m`, or a number of seconds");
                    self.diagnostics.push(d);
                    None
                }
            },
            other => {
                let kind = other.kind();
                self.error(
                    node.pos,
                    format!("{what} must be a duration like `30s`, found {kind}"),
                );
                None
            }
        }
    }

    fn playbook(&mut self, root: &Node) -> Playbook {
        let mut playbook = Playbook {
            file: Arc::clone(self.file),
            name: None,
            description: None,
            vars: Vec::new(),
            steps: Vec::new(),
            always: Vec::new(),
            facts: Vec::new(),
            report: None,
            deadline: None,
            unparsed_ids: Vec::new(),
        };
        let Some(mut f) = self.fields(root, "a playbook") else {
            return playbook;
        };
        if let Some((_, v)) = f.take("name") {
            playbook.name = self.string(v, "`name`");
        }
        if let Some((_, v)) = f.take("description") {
            playbook.description = self.string(v, "`description`").map(|l| l.value);
        }
        if let Some((_, v)) = f.take("vars") {
            playbook.vars = self.vars(v);
        }
        match f.take("steps") {
            Some((_, v)) => playbook.steps = self.steps(v, "`steps`"),
            None => self.error(
                root.pos,
                "a playbook needs `steps`: the list of steps to run",
            ),
        }
        if let Some((_, v)) = f.take("always") {
            playbook.always = self.steps(v, "`always`");
        }
        if let Some((_, v)) = f.take("facts") {
            playbook.facts = self.facts(v);
        }
        if let Some((_, v)) = f.take("report") {
            playbook.report = self.string(v, "`report`");
        }
        if let Some((_, v)) = f.take("deadline") {
            playbook.deadline = Some(v.clone());
        }
        self.finish(f, "a playbook", PLAYBOOK_KEYS);
        playbook
    }

    /// `facts:`: a mapping of names to expressions.
    fn facts(&mut self, node: &Node) -> Vec<(Located<String>, Located<String>)> {
        let Value::Map(entries) = &node.value else {
            let kind = node.value.kind();
            self.error(
                node.pos,
                format!("`facts` must be a mapping of names to expressions, found {kind}"),
            );
            return Vec::new();
        };
        let mut out: Vec<(Located<String>, Located<String>)> = Vec::new();
        for (key, value) in entries {
            if out.iter().any(|(n, _)| n.value == key.name) {
                self.error(key.pos, format!("fact `{}` is declared twice", key.name));
                continue;
            }
            let name = Located {
                value: key.name.clone(),
                span: self.span(key.pos),
            };
            if let Some(expr) = self.string(value, &format!("fact `{}`", key.name)) {
                out.push((name, expr));
            }
        }
        out
    }

    fn vars(&mut self, node: &Node) -> Vec<VarDecl> {
        let Value::Map(entries) = &node.value else {
            let kind = node.value.kind();
            self.error(
                node.pos,
                format!("`vars` must be a mapping of names to defaults, found {kind}"),
            );
            return Vec::new();
        };
        let mut out: Vec<VarDecl> = Vec::new();
        for (key, value) in entries {
            let name = Located {
                value: key.name.clone(),
                span: self.span(key.pos),
            };
            if out.iter().any(|v| v.name.value == key.name) {
                self.error(
                    key.pos,
                    format!("variable `{}` is declared twice", key.name),
                );
                continue;
            }
            out.push(self.var(name, value));
        }
        out
    }

    /// A variable is either its default value, or a mapping of declaration keys.
    fn var(&mut self, name: Located<String>, value: &Node) -> VarDecl {
        let mut decl = VarDecl {
            name,
            default: Some(value.clone()),
            required: false,
            secret: false,
            description: None,
            choices: Vec::new(),
            rehearsal: None,
        };
        let Value::Map(entries) = &value.value else {
            return decl;
        };
        if !entries
            .iter()
            .any(|(k, _)| VAR_KEYS.contains(&k.name.as_str()))
        {
            let d = Diagnostic::at(&self.span(value.pos), format!("variable `{}` is declared with unknown keys", decl.name.value))
                .help("declare a variable as its default value, or as a mapping of default, required, secret, description, choices, rehearsal");
            self.diagnostics.push(d);
            return decl;
        }
        let Some(mut f) = self.fields(value, "a variable declaration") else {
            return decl;
        };
        decl.default = f.take("default").map(|(_, v)| v.clone());
        if let Some((_, v)) = f.take("required") {
            decl.required = self.bool(v, "`required`").unwrap_or(false);
        }
        if let Some((_, v)) = f.take("secret") {
            decl.secret = self.bool(v, "`secret`").unwrap_or(false);
        }
        if let Some((_, v)) = f.take("description") {
            decl.description = self.string(v, "`description`").map(|l| l.value);
        }
        if let Some((_, v)) = f.take("rehearsal") {
            decl.rehearsal = self.string(v, "`rehearsal`").map(|l| l.value);
        }
        if let Some((_, v)) = f.take("choices") {
            for item in self.list(v, "`choices`") {
                if let Some(s) = self.string(item, "a choice") {
                    decl.choices.push(s.value);
                }
            }
        }
        self.finish(f, "a variable declaration", VAR_KEYS);
        decl
    }

    fn steps(&mut self, node: &Node, what: &str) -> Vec<Step> {
        self.list(node, what)
            .iter()
            .filter_map(|item| self.step(item))
            .collect()
    }

    fn step(&mut self, node: &Node) -> Option<Step> {
        let mut f = self.fields(node, "a step")?;
        let id = match f.take("id") {
            Some((_, v)) => self.string(v, "a step `id`"),
            None => {
                let d = Diagnostic::at(&self.span(node.pos), "a step needs an `id`")
                    .help("give every step a unique `id`, e.g. `id: stop-app`; reports and `--fail` name steps by it");
                self.diagnostics.push(d);
                None
            }
        };
        let name = f
            .take("name")
            .and_then(|(_, v)| self.string(v, "`name`"))
            .map(|l| l.value);
        let body = self.body(node, &mut f);
        let when = f.take("when").and_then(|(_, v)| self.string(v, "`when`"));
        let require = f
            .take("require")
            .map(|(_, v)| self.checks(v, "`require`"))
            .unwrap_or_default();
        let verify = f
            .take("verify")
            .map(|(_, v)| self.checks(v, "`verify`"))
            .unwrap_or_default();
        let skip_if = f
            .take("skip_if")
            .map(|(_, v)| self.checks(v, "`skip_if`"))
            .unwrap_or_default();
        let fallback = f
            .take("fallback")
            .map(|(_, v)| self.steps(v, "`fallback`"))
            .unwrap_or_default();
        let retries = match f.take("retries") {
            Some((_, v)) => match v.value {
                Value::Int(n) if (0..=1000).contains(&n) => u32::try_from(n).unwrap_or(0),
                _ => {
                    self.error(v.pos, "`retries` must be a whole number from 0 to 1000");
                    0
                }
            },
            None => 0,
        };
        let retry_delay = f
            .take("retry_delay")
            .and_then(|(_, v)| self.duration(v, "`retry_delay`"))
            .unwrap_or(Duration::from_secs(1));
        let timeout = f
            .take("timeout")
            .and_then(|(_, v)| self.duration(v, "`timeout`"));
        let deadline = f
            .take("deadline")
            .and_then(|(_, v)| self.duration(v, "`deadline`"));
        let confirm = match f.take("confirm") {
            Some((_, v)) => match &v.value {
                Value::Bool(false) => None,
                Value::Bool(true) => Some(Located {
                    value: format!("Proceed with {}?", name.as_deref().unwrap_or("this step")),
                    span: self.span(v.pos),
                }),
                _ => self.string(v, "`confirm`"),
            },
            None => None,
        };
        self.finish(f, "a step", STEP_KEYS);
        let id = id?;
        let Some(body) = body else {
            self.unparsed_ids.push(id.value);
            return None;
        };
        Some(Step {
            span: self.span(node.pos),
            id,
            name,
            body,
            when,
            require,
            verify,
            skip_if,
            fallback,
            retries,
            retry_delay,
            timeout,
            deadline,
            confirm,
        })
    }

    fn body(&mut self, node: &Node, f: &mut Fields<'_>) -> Option<StepBody> {
        if f.has("action") && f.has("playbook") {
            self.error(
                node.pos,
                "a step has either `action` or `playbook`, not both",
            );
            return None;
        }
        if let Some((_, v)) = f.take("action") {
            let action = self.string(v, "`action`")?;
            let with = f.take("with").map(|(_, v)| v.clone());
            return Some(StepBody::Action { action, with });
        }
        if let Some((_, v)) = f.take("playbook") {
            let playbook = self.string(v, "`playbook`")?;
            let vars = match f.take("vars") {
                Some((_, v)) => match &v.value {
                    Value::Map(entries) => entries.clone(),
                    other => {
                        let kind = other.kind();
                        self.error(
                            v.pos,
                            format!("`vars` of an include must be a mapping, found {kind}"),
                        );
                        Vec::new()
                    }
                },
                None => Vec::new(),
            };
            return Some(StepBody::Include { playbook, vars });
        }
        // Claim the arguments so they are not also reported as unknown keys.
        let _ = (f.take("with"), f.take("vars"));
        let misspelt = f
            .entries
            .iter()
            .any(|(k, _, _)| did_you_mean(&k.name, ["action", "playbook"]).is_some());
        if !misspelt {
            let d = Diagnostic::at(
                &self.span(node.pos),
                "a step needs `action` (with its `with` arguments) or `playbook` (to include one)",
            )
            .help("e.g. `action: shell` with `with: {command: [echo, hello]}`");
            self.diagnostics.push(d);
        }
        None
    }

    fn checks(&mut self, node: &Node, what: &str) -> Vec<Check> {
        self.list(node, what)
            .iter()
            .filter_map(|item| self.check(item))
            .collect()
    }

    /// A check is an expression string, or a mapping with `that`, or a read-only action.
    fn check(&mut self, node: &Node) -> Option<Check> {
        if let Value::Str(_) = node.value {
            let that = self.string(node, "a check")?;
            return Some(Check {
                span: that.span.clone(),
                name: None,
                kind: CheckKind::That(that),
            });
        }
        let mut f = self.fields(node, "a check")?;
        let name = f
            .take("name")
            .and_then(|(_, v)| self.string(v, "`name`"))
            .map(|l| l.value);
        let kind = if let Some((_, v)) = f.take("that") {
            if f.has("action") {
                self.error(node.pos, "a check has either `that` or `action`, not both");
            }
            self.string(v, "`that`").map(CheckKind::That)
        } else if let Some((_, v)) = f.take("action") {
            let action = self.string(v, "`action`");
            let with = f.take("with").map(|(_, v)| v.clone());
            let expect = f
                .take("expect")
                .and_then(|(_, v)| self.string(v, "`expect`"));
            action.map(|action| CheckKind::Action {
                action,
                with,
                expect,
            })
        } else {
            let d = Diagnostic::at(
                &self.span(node.pos),
                "a check needs `that` (an expression) or `action` (a read-only action)",
            )
            .help("e.g. `- that: \"steps.count.rows[0].n > 0\"`");
            self.diagnostics.push(d);
            None
        };
        self.finish(f, "a check", CHECK_KEYS);
        Some(Check {
            span: self.span(node.pos),
            name,
            kind: kind?,
        })
    }
}
