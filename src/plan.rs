//! The checked plan: what the analyzer hands the executor. Includes are
//! inlined, ids are resolved to their full dotted form, variables have
//! their values, and every template is compiled. The executor trusts it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::diagnostic::Span;
use crate::template::{TValue, Templates};

#[derive(Debug)]
pub struct Plan {
    /// The playbook's `name` (or its file stem).
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub steps: Vec<PlanStep>,
    pub always: Vec<PlanStep>,
    pub templates: Templates,
    /// Resolved variables, one set per playbook file included (index 0: the top one).
    pub scopes: Vec<Scope>,
    /// Values that must never be written anywhere: replaced by `***`.
    pub secrets: crate::secret::Secrets,
    /// From the playbook's `deadline:`: how long the plan gives the run.
    pub deadline: Option<Duration>,
    /// SHA-256 of everything the plan was made from: the playbook files,
    /// template files and resolved variables.
    pub fingerprint: String,
    /// The run's named facts, the top playbook's first.
    pub facts: Vec<Fact>,
    /// The template of report.md (`report:`); none for the built-in one.
    pub report: Option<PathBuf>,
    /// Variables a rehearsal sets (a declaration's `rehearsal:`), by name.
    pub rehearsal: Vec<(String, String)>,
    /// What `check` says that does not stop the plan (a secret in a command line).
    pub warnings: Vec<crate::diagnostic::Diagnostic>,
}

/// A fact the playbook declares about its run (`facts:`): evaluated when the
/// steps are over, in its playbook's scope; templates read `run.facts.NAME`.
#[derive(Debug)]
pub struct Fact {
    pub name: String,
    pub expression: String,
    pub scope: usize,
}

#[derive(Debug)]
pub struct Scope {
    pub vars: Map<String, Json>,
}

#[derive(Debug)]
pub struct PlanStep {
    /// Unique in the whole plan: `include-id.step-id` for included steps.
    pub id: String,
    /// The id as written, which templates in the same playbook use (`steps.<id>`).
    pub local_id: String,
    pub name: String,
    pub span: Span,
    pub scope: usize,
    pub body: Body,
    pub when: Option<String>,
    pub require: Vec<PlanCheck>,
    pub verify: Vec<PlanCheck>,
    pub skip_if: Vec<PlanCheck>,
    pub fallback: Vec<PlanStep>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub timeout: Option<Duration>,
    /// By when, from the start of the run, the step should be done.
    pub deadline: Option<Duration>,
    pub confirm: Option<TValue>,
}

#[derive(Debug)]
pub enum Body {
    Action {
        action: String,
        args: TValue,
        mutates: bool,
    },
    /// Another playbook's steps, run in its own scope.
    Include {
        file: PathBuf,
        scope: usize,
        steps: Vec<PlanStep>,
        always: Vec<PlanStep>,
    },
}

#[derive(Debug)]
pub struct PlanCheck {
    /// How reports name it: its `name`, or the expression / action.
    pub name: String,
    pub kind: CheckKind,
}

#[derive(Debug)]
pub enum CheckKind {
    That(String),
    Action {
        action: String,
        args: TValue,
        /// An expression over `result`, the action's outputs.
        expect: Option<String>,
    },
}

impl Plan {
    /// Every step in run order, includes and fallbacks flattened.
    pub fn all_steps(&self) -> Vec<&PlanStep> {
        fn walk<'a>(steps: &'a [PlanStep], out: &mut Vec<&'a PlanStep>) {
            for s in steps {
                out.push(s);
                if let Body::Include { steps, always, .. } = &s.body {
                    walk(steps, out);
                    walk(always, out);
                }
                walk(&s.fallback, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        walk(&self.always, &mut out);
        out
    }

    /// Every file the plan was made from, by its real path, with the text
    /// that was analyzed: the playbook, its includes, its templates.
    pub fn sources(&self) -> std::io::Result<Vec<(PathBuf, String)>> {
        let mut out: std::collections::BTreeMap<PathBuf, String> =
            std::collections::BTreeMap::new();
        for step in self.all_steps() {
            let file = &step.span.file;
            let path = std::fs::canonicalize(&file.path)?;
            out.entry(path).or_insert_with(|| file.text.clone());
        }
        let top = std::fs::canonicalize(&self.file)?;
        if let std::collections::btree_map::Entry::Vacant(entry) = out.entry(top) {
            let text = std::fs::read_to_string(entry.key())?;
            entry.insert(text);
        }
        out.extend(self.templates.files());
        Ok(out.into_iter().collect())
    }

    /// The steps that put a question to the operator: a `confirm:` on the
    /// step, the `confirm` action, a `backup.delete` not forced, or a
    /// `fleet` that asks before going on from its canary.
    pub fn questions(&self) -> Vec<&PlanStep> {
        self.all_steps()
            .into_iter()
            .filter(|step| {
                step.confirm.is_some()
                    || match &step.body {
                        Body::Action { action, args, .. } => {
                            action == "confirm"
                                || (action == "backup.delete" && !forced(args))
                                || (action == "fleet" && written_true(args, "confirm_canary"))
                        }
                        Body::Include { .. } => false,
                    }
            })
            .collect()
    }

    /// The databases and backup directories the plan's mutating steps act
    /// on, as far as their variables alone tell (a path that depends on an
    /// earlier step's outputs cannot be known before the run): what the
    /// install lock must cover.
    pub fn changes(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for step in self.all_steps() {
            let Body::Action {
                action,
                args: TValue::Map(args),
                mutates: true,
            } = &step.body
            else {
                continue;
            };
            if !(action.starts_with("sqlite.") || action.starts_with("backup.")) {
                continue;
            }
            let Some(scope) = self.scopes.get(step.scope) else {
                continue;
            };
            let ctx = crate::template::value(&scope.vars);
            for (key, value) in args {
                if key != "db" && key != "dir" {
                    continue;
                }
                if let Ok(Json::String(path)) = self.templates.render(value, &ctx) {
                    let path = PathBuf::from(path);
                    if !path.as_os_str().is_empty() && !out.contains(&path) {
                        out.push(path);
                    }
                }
            }
        }
        out
    }
}

/// Whether arguments say `force: true` as written (not as a template).
fn forced(args: &TValue) -> bool {
    written_true(args, "force")
}

/// Whether the argument `key` is `true` as written (not as a template).
fn written_true(args: &TValue, key: &str) -> bool {
    match args {
        TValue::Map(entries) => entries
            .iter()
            .any(|(k, v)| k == key && matches!(v, TValue::Const(Json::Bool(true)))),
        _ => false,
    }
}
