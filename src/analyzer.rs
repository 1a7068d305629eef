//! Turns a playbook file into a [`Plan`], or into every problem that stops
//! it from being one. Everything that can be known before running is
//! checked here: includes and their cycles, unique ids, known actions and
//! their arguments, templates that compile, and every variable and step a
//! template reads. Nothing runs until this has passed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::action::{self, Call};
use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics, Span};
use crate::node::{Key, Node, Value};
use crate::plan::{self, Body, Plan, PlanCheck, PlanStep, Scope};
use crate::playbook::{self, Check, CheckKind, Located, Playbook, Step, StepBody};
use crate::template::{CompileError, TValue, Templates};

/// Names a template may read besides the playbook's variables.
const RUN: &str = "run";
const STEPS: &str = "steps";
/// How deep includes may nest: far beyond any plan a person reads, and far
/// within what the analysis and the run can recurse through.
const MAX_INCLUDE_DEPTH: usize = 32;
const RESULT: &str = "result";

#[derive(Debug, Default)]
pub struct Options {
    /// `--var KEY=VALUE`, in the order given.
    pub vars: Vec<(String, String)>,
    /// Whether required variables must have values (a run) or not (`check`).
    pub require_values: bool,
}

pub fn analyze(path: &Path, options: &Options) -> Result<Plan, Diagnostics> {
    analyze_parsed(path, playbook::load(path)?, options)
}

/// Analyzes playbook text as if read from `path` (includes are still
/// read from files, relative to it).
pub fn analyze_source(path: &Path, text: String, options: &Options) -> Result<Plan, Diagnostics> {
    analyze_parsed(path, playbook::parse(path, text)?, options)
}

fn analyze_parsed(
    path: &Path,
    parsed: (Playbook, Diagnostics),
    options: &Options,
) -> Result<Plan, Diagnostics> {
    let (top, problems) = parsed;
    let secret_env = crate::secret::from_environment();
    let mut a = Analyzer {
        templates: Templates::new(),
        scopes: Vec::new(),
        secrets: secret_env.iter().map(|(_, v)| v.clone()).collect(),
        secret_env,
        diagnostics: problems,
        options,
        cli_used: HashSet::new(),
        bad_choices: HashSet::new(),
        declared: BTreeSet::new(),
        stack: vec![canonical(path)],
        facts: Vec::new(),
        rehearsal: Vec::new(),
        secret_names: HashSet::new(),
        warnings: Vec::new(),
        included: HashMap::new(),
    };
    let scope = a.scope(&top, &Map::new(), None);
    let (steps, always) = a.playbook_steps(&top, scope, "");
    // After the steps: the report may read the facts included playbooks declare.
    let report = top.report.as_ref().map(|r| a.report_template(r));
    let deadline = top
        .deadline
        .as_ref()
        .and_then(|node| a.deadline(node, scope, &top.file));
    a.check_cli_vars();
    let secrets = crate::secret::Secrets::new(std::mem::take(&mut a.secrets));
    let errors = tidy(std::mem::take(&mut a.diagnostics), &secrets);
    let warnings = tidy(Diagnostics(std::mem::take(&mut a.warnings)), &secrets);
    if !errors.is_empty() {
        // Said alongside the errors, in file order: the one report to fix from.
        let mut all = errors;
        all.extend(warnings);
        return Err(tidy(all, &crate::secret::Secrets::default()));
    }
    let name = top.name.as_ref().map_or_else(
        || {
            path.file_stem().map_or_else(
                || "playbook".to_owned(),
                |s| s.to_string_lossy().into_owned(),
            )
        },
        |n| n.value.clone(),
    );
    let fingerprint = plan_fingerprint(&steps, &always, &top, &a.templates, &a.scopes, &secrets);
    Ok(Plan {
        fingerprint,
        name,
        description: top.description.clone(),
        file: path.to_path_buf(),
        steps,
        always,
        templates: a.templates,
        scopes: a.scopes,
        secrets,
        deadline,
        facts: a.facts,
        rehearsal: a.rehearsal,
        warnings: warnings.0,
        report,
    })
}

/// Problems as they are said: a value rendered from a secret (`cannot
/// split 'curl -u admin:…'`, a program named by one) redacted like
/// everything else, in file order, and a playbook included twice reporting
/// its own problems once.
fn tidy(mut found: Diagnostics, secrets: &crate::secret::Secrets) -> Diagnostics {
    for d in &mut found.0 {
        d.message = secrets.redact_text(&d.message);
        d.help = d.help.as_deref().map(|h| secrets.redact_text(h));
    }
    found.0.sort_by_key(|d| {
        d.span
            .as_ref()
            .map(|s| (s.file.path.clone(), s.line, s.column))
    });
    found.0.dedup_by(|x, y| {
        x.message == y.message
            && x.span.as_ref().map(ToString::to_string) == y.span.as_ref().map(ToString::to_string)
    });
    found
}

/// A path as a chain of includes names it: its file name.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

struct Analyzer<'o> {
    templates: Templates,
    scopes: Vec<Scope>,
    secret_env: Vec<(String, String)>,
    secrets: Vec<String>,
    diagnostics: Diagnostics,
    options: &'o Options,
    cli_used: HashSet<String>,
    /// Values already said not to be one of a variable's choices.
    bad_choices: HashSet<String>,
    declared: BTreeSet<String>,
    /// The include chain being analyzed, for cycle detection.
    stack: Vec<PathBuf>,
    /// The facts declared so far, outermost first: the top playbook's win
    /// over an included one's of the same name (its default).
    facts: Vec<plan::Fact>,
    /// What a rehearsal gives variables instead, outermost declaration first.
    rehearsal: Vec<(String, String)>,
    /// The names of the secret variables, in any playbook of the plan.
    secret_names: HashSet<String>,
    /// What is said but does not stop the plan.
    warnings: Vec<Diagnostic>,
    /// Included playbooks read so far, by real path: one included twice
    /// (notify.yaml, before and after) is read and its problems told once.
    included: HashMap<PathBuf, Option<std::rc::Rc<Playbook>>>,
}

/// What an include passes down: its `vars:` and the scope they are rendered in.
struct Passed<'p> {
    vars: &'p [(Key, Node)],
    parent: usize,
    file: &'p Playbook,
}

impl Analyzer<'_> {
    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Resolves a playbook's variables into a new scope. Precedence, highest
    /// first: the include's `vars:`, `--var`, secret environment variables,
    /// the including playbook's value of the same name, the default.
    fn scope(
        &mut self,
        pb: &Playbook,
        inherited: &Map<String, Json>,
        passed: Option<Passed<'_>>,
    ) -> usize {
        let mut vars = Map::new();
        if let Some(p) = &passed {
            for (key, _) in p.vars {
                if !pb.vars.iter().any(|d| d.name.value == key.name) {
                    let span = Span::new(&p.file.file, key.pos.line, key.pos.column);
                    let names: Vec<&str> = pb.vars.iter().map(|d| d.name.value.as_str()).collect();
                    let d = Diagnostic::at(
                        &span,
                        format!(
                            "{} declares no variable `{}`",
                            pb.file.path.display(),
                            key.name
                        ),
                    )
                    .suggest(&key.name, names);
                    self.error(d);
                }
            }
        }
        for decl in &pb.vars {
            let name = decl.name.value.clone();
            self.declared.insert(name.clone());
            if let Some(value) = &decl.rehearsal {
                if !self.rehearsal.iter().any(|(n, _)| *n == name) {
                    self.rehearsal.push((name.clone(), value.clone()));
                }
            }
            if [RUN, STEPS, RESULT].contains(&name.as_str()) {
                self.error(Diagnostic::at(
                    &decl.name.span,
                    format!("`{name}` is reserved and cannot be a variable name"),
                ));
                continue;
            }
            let from_include = passed.as_ref().and_then(|p| {
                p.vars
                    .iter()
                    .find(|(k, _)| k.name == name)
                    .map(|(_, v)| (p, v))
            });
            let from_cli = self
                .options
                .vars
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone());
            let from_env = self
                .secret_env
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone());
            let value = if let Some((p, node)) = from_include {
                let ctx = &self.scopes[p.parent].vars.clone();
                self.value(node, ctx, &p.file.file)
            } else if let Some(v) = from_cli {
                self.cli_used.insert(name.clone());
                Some(Json::String(v))
            } else if let Some(v) = from_env {
                Some(Json::String(v))
            } else if let Some(v) = inherited.get(&name) {
                Some(v.clone())
            } else if let Some(default) = &decl.default {
                self.value(default, &vars, &pb.file)
            } else if decl.required {
                if self.options.require_values {
                    let mut d = Diagnostic::at(
                        &decl.name.span,
                        format!("variable `{name}` is required but has no value"),
                    )
                    .help(format!("pass it with `--var {name}=VALUE`"));
                    if let Some(desc) = &decl.description {
                        d = d.help(format!("pass it with `--var {name}=VALUE` ({desc})"));
                    }
                    self.error(d);
                }
                Some(Json::String(format!("<{name}>")))
            } else {
                Some(Json::Null)
            };
            let Some(value) = value else { continue };
            // A required variable without a value (in `check`) holds a placeholder.
            let placeholder = value == Json::String(format!("<{name}>"));
            if !decl.choices.is_empty() && !placeholder {
                let text = match &value {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                // One bad `--var` reaches every playbook that declares the
                // variable: said once, where it is first declared.
                let said = format!("{name}\u{0}{text}\u{0}{}", decl.choices.join("\u{0}"));
                if !decl.choices.contains(&text) && self.bad_choices.insert(said) {
                    // An error message is output too: a secret stays `***` in it.
                    let secret = decl.secret || from_env_is_secret(&self.secret_env, &name);
                    let text = if secret { "***".to_owned() } else { text };
                    let d = Diagnostic::at(
                        &decl.name.span,
                        format!(
                            "variable `{name}` is `{text}`, which is not one of: {}",
                            decl.choices.join(", ")
                        ),
                    )
                    .suggest(&text, decl.choices.iter().map(String::as_str));
                    self.error(d);
                }
            }
            if decl.secret || from_env_is_secret(&self.secret_env, &name) {
                self.secret_names.insert(name.clone());
                if let Json::String(s) = &value {
                    self.secrets.push(s.clone());
                }
            }
            vars.insert(name, value);
        }
        self.scopes.push(Scope { vars });
        self.scopes.len() - 1
    }

    /// Renders a variable's value (a template over the variables before it) now, at plan time.
    fn value(
        &mut self,
        node: &Node,
        ctx: &Map<String, Json>,
        file: &std::sync::Arc<crate::diagnostic::SourceFile>,
    ) -> Option<Json> {
        let span = Span::new(file, node.pos.line, node.pos.column);
        let (tvalue, reads) = match self.templates.compile(node) {
            Ok(t) => t,
            Err(err) => {
                self.template_error(&span, &err);
                return None;
            }
        };
        let mut ok = true;
        for read in &reads {
            let span = Span::new(file, read.pos.line, read.pos.column);
            for path in &read.vars {
                let root = path.split('.').next().unwrap_or(path);
                if !ctx.contains_key(root) {
                    let d = Diagnostic::at(&span.pointing_at(root), format!("undefined variable `{root}`"))
                    .suggest(root, ctx.keys().map(String::as_str))
                    .help(format!("a variable's value may use only variables declared before it; declare `{root}` in `vars` above this one"));
                    self.error(d);
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let context = crate::template::value(ctx);
        match self.templates.render(&tvalue, &context) {
            Ok(v) => Some(v),
            Err(err) => {
                self.error(Diagnostic::at(&span, crate::template::render_error(&err)));
                None
            }
        }
    }

    /// The position of a string inside a tree; synthetic nodes have none and use the tree's.
    fn leaf_span(&self, tree: &Span, pos: crate::node::Pos) -> Span {
        if pos.line == 0 {
            tree.clone()
        } else {
            Span::new(&tree.file, pos.line, pos.column)
        }
    }

    fn template_error(&mut self, span: &Span, err: &CompileError) {
        let mut span = span.clone();
        if let Some(name) = &err.name {
            span = span.pointing_at(name);
        } else if let Some(line) = err.line {
            span.line += line.saturating_sub(1);
        }
        self.error(Diagnostic::at(
            &span,
            format!("invalid template: {}", err.message),
        ));
    }

    /// `deadline:`: rendered against the top playbook's variables now, so a
    /// deadline that is not a duration is an error before anything runs.
    fn deadline(
        &mut self,
        node: &Node,
        scope: usize,
        file: &std::sync::Arc<crate::diagnostic::SourceFile>,
    ) -> Option<std::time::Duration> {
        let vars = self.scopes[scope].vars.clone();
        let span = Span::new(file, node.pos.line, node.pos.column);
        match self.value(node, &vars, file)? {
            Json::Null => None,
            Json::String(s) if s.trim().is_empty() => None,
            Json::String(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) => Some(d),
                Err(err) => {
                    self.error(
                        Diagnostic::at(&span, format!("`deadline` is `{s}`, not a duration: {err}"))
                            .help("it must render to a duration such as `15m` or `1h 30m`, or to nothing for no deadline"),
                    );
                    None
                }
            },
            other => {
                self.error(
                    Diagnostic::at(&span, format!("`deadline` is {other}, not a duration"))
                        .help("it must render to a duration such as `15m` or `1h 30m`, or to nothing for no deadline"),
                );
                None
            }
        }
    }

    /// A template file (an e-mail's, the report's) compiled, with the
    /// variable paths it reads; its problem said at `at`, the playbook key
    /// that names it, with the file's own line.
    fn template_file(&mut self, path: &Path, at: &Span) -> Option<BTreeSet<String>> {
        match self.templates.compile_file(path) {
            Ok(used) => Some(used),
            Err(err) => {
                let line = err.line.map(|l| format!(":{l}")).unwrap_or_default();
                let d = Diagnostic::at(
                    at,
                    format!("template {}{line}: {}", path.display(), err.message),
                );
                // A file that could not be read, rather than a mistake in it.
                let d = if err.line.is_none() && err.name.is_none() {
                    d.help("template paths are relative to the playbook's directory")
                } else {
                    d
                };
                self.error(d);
                None
            }
        }
    }

    /// `report:`: a template that reads only the run summary.
    fn report_template(&mut self, report: &Located<String>) -> PathBuf {
        let base = report.span.path().parent().unwrap_or_else(|| Path::new(""));
        let path = base.join(&report.value);
        if let Some(used) = self.template_file(&path, &report.span) {
            let (run, other): (BTreeSet<String>, BTreeSet<String>) = used
                .into_iter()
                .partition(|p| p.split('.').next() == Some(RUN));
            for name in other {
                self.error(
                    Diagnostic::at(
                        &report.span,
                        format!("the report template {} reads `{name}`", path.display()),
                    )
                    .help("a report reads only `run`, the run summary: `run.vars.NAME` for a variable, `run.facts.NAME` for a fact"),
                );
            }
            let ctx = Ctx {
                scope: 0,
                ids: &[],
                extra: &[],
            };
            self.check_names(&run, &report.span, false, &ctx);
        }
        path
    }

    /// A playbook's `steps` and `always`, with ids prefixed by the including step's.
    fn playbook_steps(
        &mut self,
        pb: &Playbook,
        scope: usize,
        prefix: &str,
    ) -> (Vec<PlanStep>, Vec<PlanStep>) {
        let ids = local_ids(pb);
        let mut seen: HashMap<String, Span> = HashMap::new();
        self.check_unique(&pb.steps, &mut seen);
        self.check_unique(&pb.always, &mut seen);
        self.declare_facts(pb, scope, &ids);
        let mut plan = |steps: &[Step]| -> Vec<PlanStep> {
            steps
                .iter()
                .filter_map(|s| self.step(s, scope, prefix, pb, &ids))
                .collect()
        };
        (plan(&pb.steps), plan(&pb.always))
    }

    /// Each id once in a playbook; a second one is said where it is, with
    /// where the first one is.
    fn check_unique(&mut self, steps: &[Step], seen: &mut HashMap<String, Span>) {
        for s in steps {
            match seen.get(&s.id.value) {
                Some(first) => {
                    let first = format!("line {}, column {}", first.line, first.column);
                    self.error(
                        Diagnostic::at(
                            &s.id.span,
                            format!(
                                "duplicate step id `{}` (the first is at {first})",
                                s.id.value
                            ),
                        )
                        .help("step ids must be unique within a playbook, fallbacks included"),
                    );
                }
                None => {
                    seen.insert(s.id.value.clone(), s.id.span.clone());
                }
            }
            self.check_unique(&s.fallback, seen);
        }
    }

    fn step(
        &mut self,
        step: &Step,
        scope: usize,
        prefix: &str,
        pb: &Playbook,
        ids: &[String],
    ) -> Option<PlanStep> {
        let id = format!("{prefix}{}", step.id.value);
        let ctx = Ctx {
            scope,
            ids,
            extra: &[],
        };
        let when = step
            .when
            .as_ref()
            .and_then(|w| self.expression(w, &ctx).then(|| w.value.clone()));
        let require = self.checks(&step.require, &ctx);
        let verify = self.checks(&step.verify, &ctx);
        let skip_if = self.checks(&step.skip_if, &ctx);
        let confirm = step.confirm.as_ref().and_then(|c| {
            let node = Node {
                pos: crate::node::Pos {
                    line: c.span.line,
                    column: c.span.column,
                },
                value: Value::Str(c.value.clone()),
            };
            self.tvalue(&node, &c.span, &ctx)
        });
        let fallback = step
            .fallback
            .iter()
            .filter_map(|f| self.step(f, scope, prefix, pb, ids))
            .collect::<Vec<_>>();
        let body = match &step.body {
            StepBody::Action { action, with } => self
                .action(action, with.as_ref(), &step.span, &ctx, false)
                .map(|(args, mutates)| Body::Action {
                    action: action.value.clone(),
                    args,
                    mutates,
                }),
            StepBody::Include { playbook, vars } => self.include(playbook, vars, scope, &id, pb),
        };
        Some(PlanStep {
            name: step.name.clone().unwrap_or_else(|| step.id.value.clone()),
            id,
            local_id: step.id.value.clone(),
            span: step.span.clone(),
            scope,
            body: body?,
            when,
            require,
            verify,
            skip_if,
            fallback,
            retries: step.retries,
            retry_delay: step.retry_delay,
            timeout: step.timeout,
            deadline: step.deadline,
            confirm,
        })
    }

    fn include(
        &mut self,
        target: &Located<String>,
        vars: &[(Key, Node)],
        scope: usize,
        id: &str,
        pb: &Playbook,
    ) -> Option<Body> {
        let base = pb.file.path.parent().unwrap_or_else(|| Path::new(""));
        let path = base.join(&target.value);
        let canon = canonical(&path);
        if let Some(start) = self.stack.iter().position(|p| *p == canon) {
            let chain: Vec<String> = self.stack[start..]
                .iter()
                .chain(std::iter::once(&canon))
                .map(|p| file_name(p))
                .collect();
            self.error(
                Diagnostic::at(
                    &target.span,
                    format!("include cycle: {}", chain.join(" → ")),
                )
                .help("a playbook cannot include itself, directly or through others"),
            );
            return None;
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            let names: Vec<String> = self.stack.iter().map(|p| file_name(p)).collect();
            let chain = if names.len() > 6 {
                format!(
                    "{} → … → {}",
                    names[..3].join(" → "),
                    names[names.len() - 3..].join(" → ")
                )
            } else {
                names.join(" → ")
            };
            self.error(
                Diagnostic::at(
                    &target.span,
                    format!(
                        "includes nested {MAX_INCLUDE_DEPTH} deep: {chain} → {}",
                        target.value
                    ),
                )
                .help(format!(
                    "playbooks may include others at most {MAX_INCLUDE_DEPTH} levels deep"
                )),
            );
            return None;
        }
        if !path.is_file() {
            // The playbooks beside where it was looked for, for "did you mean".
            let dir = path.parent().unwrap_or_else(|| Path::new("."));
            let beside: Vec<String> = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| playbook::is_playbook_name(&e.path()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
            let wanted = file_name(&path);
            let d = Diagnostic::at(
                &target.span,
                format!("included playbook {} does not exist", path.display()),
            )
            .suggest_or(
                &wanted,
                beside.iter().map(String::as_str),
                "include paths are relative to the including playbook's directory",
            );
            self.error(d);
            return None;
        }
        let child =
            self.included
                .entry(canon.clone())
                .or_insert_with(|| match playbook::load(&path) {
                    Ok((c, problems)) => {
                        self.diagnostics.extend(problems);
                        Some(std::rc::Rc::new(c))
                    }
                    Err(d) => {
                        self.diagnostics.extend(d);
                        None
                    }
                });
        let child = std::rc::Rc::clone(child.as_ref()?);
        self.stack.push(canon);
        let inherited = self.scopes[scope].vars.clone();
        let child_scope = self.scope(
            &child,
            &inherited,
            Some(Passed {
                vars,
                parent: scope,
                file: pb,
            }),
        );
        let prefix = format!("{id}.");
        let (steps, always) = self.playbook_steps(&child, child_scope, &prefix);
        self.stack.pop();
        Some(Body::Include {
            file: path,
            scope: child_scope,
            steps,
            always,
        })
    }

    /// The program a step runs, where the variables alone name it: a path
    /// that does not exist is an error now rather than a fallback at 3 a.m.;
    /// a name not on PATH is a warning, as the host that runs the playbook
    /// may have it where this one does not. The action looks it up, as it
    /// will when it runs.
    fn program(
        &mut self,
        action: &str,
        args: &TValue,
        reads: &[crate::template::Reads],
        written: &Node,
        with_span: &Span,
        ctx: &Ctx<'_>,
    ) {
        let vars = &self.scopes[ctx.scope].vars;
        // Known only when the step runs: a program named by an earlier step's output.
        let known_now = reads.iter().flat_map(|r| &r.vars).all(|path| {
            let root = path.split('.').next().unwrap_or(path);
            vars.contains_key(root)
        });
        if !known_now {
            return;
        }
        let Ok(rendered) = self.templates.render(args, &crate::template::value(vars)) else {
            return;
        };
        let Some(command) = Call::new(action, rendered)
            .ok()
            .and_then(|call| call.action().command())
        else {
            return;
        };
        let program = &command.argv[0];
        // Found only on the way to a message: finding a word in the text
        // walks its lines from the start, for every step.
        let leaf = self.leaf_span(with_span, written.pos);
        let at = || leaf.pointing_at(program);
        match command.program {
            action::Lookup::Found(_) => {}
            action::Lookup::NoFile(path) => self.error(
                Diagnostic::at(&at(), format!("program `{program}` does not exist: no {}", path.display()))
                    .help("a relative path is taken from the directory runbook runs in (or the step's `cwd`); run from the install's directory, or give the right path"),
            ),
            action::Lookup::NotExecutable(path) => self.error(
                Diagnostic::at(&at(), format!("program `{program}` is not executable: {}", path.display()))
                    .help(format!("make it executable (chmod +x {}), or run it through its interpreter, e.g. [sh, {program}]", path.display())),
            ),
            action::Lookup::NotOnPath => self.warnings.push(
                Diagnostic::at(&at(), format!("program `{program}` is not on PATH here"))
                    .help("the run fails at this step unless the machine that runs it has the program; install it, or give its full path")
                    .as_warning(),
            ),
        }
    }

    /// A secret rendered into a program's command line is readable by any
    /// local user (`/proc/PID/cmdline`): said where it is, with the way out.
    fn secrets_in_command(
        &mut self,
        command: &Node,
        reads: &[crate::template::Reads],
        with_span: &Span,
    ) {
        // The strings of `command`, by where they stand; `reads` are those of all `with`.
        fn strings(node: &Node, out: &mut Vec<crate::node::Pos>) {
            match &node.value {
                Value::Str(_) => out.push(node.pos),
                Value::Seq(items) => items.iter().for_each(|n| strings(n, out)),
                Value::Map(entries) => entries.iter().for_each(|(_, n)| strings(n, out)),
                _ => {}
            }
        }
        let mut inside = Vec::new();
        strings(command, &mut inside);
        for read in reads.iter().filter(|r| inside.contains(&r.pos)) {
            let secret = read.vars.iter().find_map(|path| {
                let root = path.split('.').next().unwrap_or(path);
                self.secret_names.contains(root).then(|| root.to_owned())
            });
            if let Some(name) = secret {
                let span = self.leaf_span(with_span, read.pos);
                self.warnings.push(
                    Diagnostic::at(
                        &span,
                        format!("the secret `{name}` is put in the command line, which any local user can read while it runs"),
                    )
                    .help(format!("give it to the program through `env:` (env: {{{}: \"{{{{ {name} }}}}\"}}) or `stdin:`", name.to_uppercase()))
                    .as_warning(),
                );
            }
        }
    }

    /// Checks an action's name and arguments; returns its compiled arguments and whether it mutates.
    fn action(
        &mut self,
        action: &Located<String>,
        with: Option<&Node>,
        step_span: &Span,
        ctx: &Ctx<'_>,
        check: bool,
    ) -> Option<(TValue, bool)> {
        if !action::NAMES.contains(&action.value.as_str()) {
            let d = Diagnostic::at(&action.span, format!("unknown action `{}`", action.value))
                .suggest_or(
                    &action.value,
                    action::NAMES.iter().copied(),
                    format!("the actions are: {}", action::NAMES.join(", ")),
                );
            self.error(d);
            return None;
        }
        let with_span = with.map_or_else(
            || step_span.clone(),
            |w| Span::new(&step_span.file, w.pos.line, w.pos.column),
        );
        let empty = Node {
            pos: crate::node::Pos::default(),
            value: Value::Null,
        };
        let node = with.unwrap_or(&empty);
        let compiled = self.compiled(node, &with_span, ctx);
        let call = match probe(&action.value, node) {
            Ok(call) => call,
            Err(err) => {
                let (bad, key) = node.find(&err.path);
                let pos = if err.message.starts_with("unknown field") {
                    key.map_or(bad.pos, |k| k.pos)
                } else {
                    bad.pos
                };
                let span = if with.is_some() {
                    Span::new(&step_span.file, pos.line, pos.column)
                } else {
                    step_span.clone()
                };
                self.error(
                    Diagnostic::at(
                        &span,
                        format!("invalid arguments for `{}`: {}", action.value, err.message),
                    )
                    .help("docs/actions.md lists every action's arguments"),
                );
                return None;
            }
        };
        let Some((call, whole)) = call else {
            // Known only at run time; assume the worst.
            return Some((compiled?.0, true)).filter(|_| !check);
        };
        let a = call.action();
        if let (Some(why), true) = (a.invalid(), whole) {
            self.error(
                Diagnostic::at(
                    &with_span,
                    format!("invalid arguments for `{}`: {why}", action.value),
                )
                .help("docs/actions.md lists every action's arguments"),
            );
            return None;
        }
        if let (Some((args, reads)), Value::Map(entries)) = (&compiled, &node.value) {
            if let Some((_, command)) = entries.iter().find(|(k, _)| k.name == "command") {
                self.secrets_in_command(command, reads, &with_span);
                self.program(&action.value, args, reads, command, &with_span, ctx);
            }
        }
        let base = step_span.path().parent().unwrap_or_else(|| Path::new(""));
        for file in a.template_files() {
            let path = base.join(file);
            if let Some(used) = self.template_file(&path, &with_span) {
                self.check_names(&used, &with_span, false, ctx);
            }
        }
        for expr in a.expressions() {
            let located = Located {
                value: expr.to_owned(),
                span: with_span.clone(),
            };
            self.expression(&located, ctx);
        }
        let mutates = a.mutates();
        if check && mutates {
            self.error(
                Diagnostic::at(&action.span, format!("`{}` can change things, so it cannot be a check", action.value))
                    .help("checks run only read-only actions (sqlite.query, assert, shell with read_only: true)"),
            );
            return None;
        }
        Some((compiled?.0, mutates))
    }

    fn checks(&mut self, checks: &[Check], ctx: &Ctx<'_>) -> Vec<PlanCheck> {
        checks.iter().filter_map(|c| self.check(c, ctx)).collect()
    }

    fn check(&mut self, check: &Check, ctx: &Ctx<'_>) -> Option<PlanCheck> {
        match &check.kind {
            CheckKind::That(that) => {
                let ok = self.expression(that, ctx);
                ok.then(|| PlanCheck {
                    name: check.name.clone().unwrap_or_else(|| that.value.clone()),
                    kind: plan::CheckKind::That(that.value.clone()),
                })
            }
            CheckKind::Action {
                action,
                with,
                expect,
            } => {
                let (args, _) = self.action(action, with.as_ref(), &check.span, ctx, true)?;
                let expect_ok = expect.as_ref().is_none_or(|e| {
                    let with_result = Ctx {
                        scope: ctx.scope,
                        ids: ctx.ids,
                        extra: &[RESULT],
                    };
                    self.expression(e, &with_result)
                });
                expect_ok.then(|| PlanCheck {
                    name: check.name.clone().unwrap_or_else(|| match expect {
                        Some(e) => format!("{}: {}", action.value, e.value),
                        None => action.value.clone(),
                    }),
                    kind: plan::CheckKind::Action {
                        action: action.value.clone(),
                        args,
                        expect: expect.as_ref().map(|e| e.value.clone()),
                    },
                })
            }
        }
    }

    /// A playbook's `facts:`, checked like any expression over its steps;
    /// a name an outer playbook declared already keeps the outer one.
    fn declare_facts(&mut self, pb: &Playbook, scope: usize, ids: &[String]) {
        let ctx = Ctx {
            scope,
            ids,
            extra: &[],
        };
        for (name, expr) in &pb.facts {
            if !self.expression(expr, &ctx) {
                continue;
            }
            if self.facts.iter().any(|f| f.name == name.value) {
                continue;
            }
            self.facts.push(plan::Fact {
                name: name.value.clone(),
                expression: expr.value.clone(),
                scope,
            });
        }
    }

    fn expression(&mut self, expr: &Located<String>, ctx: &Ctx<'_>) -> bool {
        match self.templates.expression_variables(&expr.value) {
            Ok(used) => self.check_names(&used, &expr.span, true, ctx),
            Err(err) => {
                self.template_error(&expr.span, &err);
                false
            }
        }
    }

    fn tvalue(&mut self, node: &Node, span: &Span, ctx: &Ctx<'_>) -> Option<TValue> {
        self.compiled(node, span, ctx).map(|(t, _)| t)
    }

    /// The same, with what each of its strings reads.
    fn compiled(
        &mut self,
        node: &Node,
        span: &Span,
        ctx: &Ctx<'_>,
    ) -> Option<(TValue, Vec<crate::template::Reads>)> {
        match self.templates.compile(node) {
            Ok((t, reads)) => {
                let mut ok = true;
                for read in &reads {
                    let at = self.leaf_span(span, read.pos);
                    ok &= self.check_names(&read.vars, &at, true, ctx);
                }
                ok.then_some((t, reads))
            }
            Err(err) => {
                let at = err
                    .pos
                    .map_or_else(|| span.clone(), |p| self.leaf_span(span, p));
                self.template_error(&at, &err);
                None
            }
        }
    }

    /// Every name a template reads must be a variable of its scope, `run`, or an existing step.
    /// `in_text`: whether the span is the template's own text, so that the
    /// caret can go under the name; a template file's names are in the file,
    /// and the span is the playbook key that names it.
    fn check_names(
        &mut self,
        used: &BTreeSet<String>,
        span: &Span,
        in_text: bool,
        ctx: &Ctx<'_>,
    ) -> bool {
        let at = |name: &str| {
            if in_text {
                span.pointing_at(name)
            } else {
                span.clone()
            }
        };
        let mut ok = true;
        let vars = &self.scopes[ctx.scope].vars;
        let mut problems = Vec::new();
        for path in used {
            let mut parts = path.split('.');
            let root = parts.next().unwrap_or(path);
            if root == STEPS {
                if let Some(step) = parts.next() {
                    if !ctx.ids.iter().any(|id| id == step) {
                        problems.push(
                            Diagnostic::at(&at(step), format!("no step `{step}` in this playbook"))
                                .suggest(step, ctx.ids.iter().map(String::as_str)),
                        );
                    }
                }
            } else if root == RUN {
                let field = parts.next();
                if let Some(field) = field.filter(|f| !crate::summary::FIELDS.contains(f)) {
                    problems.push(
                        Diagnostic::at(&at(field), format!("`run` has no field `{field}`"))
                            .suggest(field, crate::summary::FIELDS.iter().copied()),
                    );
                    continue;
                }
                // `run.facts.NAME`: a fact this playbook, or one including it, declares.
                if let (Some("facts"), Some(fact)) = (field, parts.next()) {
                    if !self.facts.iter().any(|f| f.name == fact) {
                        let known: Vec<&str> = self.facts.iter().map(|f| f.name.as_str()).collect();
                        let d = Diagnostic::at(&at(fact), format!("no fact `{fact}` is declared"))
                            .suggest_or(fact, known.iter().copied(), format!(
                                "declare it under `facts:` in this playbook (a default) or in the one that includes it: `{fact}: EXPRESSION`"
                            ));
                        problems.push(d);
                    }
                }
            } else if !vars.contains_key(root) && !ctx.extra.contains(&root) {
                let candidates: Vec<&str> = vars
                    .keys()
                    .map(String::as_str)
                    .chain([RUN, STEPS])
                    .chain(ctx.extra.iter().copied())
                    .collect();
                let d = Diagnostic::at(&at(root), format!("undefined variable `{root}`"))
                    .suggest_or(
                        root,
                        candidates,
                        format!(
                            "declare `{root}` under `vars`, or pass it with --var {root}=VALUE"
                        ),
                    );
                problems.push(d);
            }
        }
        for d in problems {
            ok = false;
            self.error(d);
        }
        ok
    }

    fn check_cli_vars(&mut self) {
        for (name, _) in &self.options.vars {
            if !self.cli_used.contains(name) && !self.declared.contains(name) {
                let mut d = Diagnostic::bare(format!(
                    "--var {name}: no playbook here declares a variable `{name}`"
                ));
                d = match did_you_mean(name, self.declared.iter().map(String::as_str)) {
                    Some(best) => d.help(format!("did you mean `{best}`?")),
                    None => d.help(format!(
                        "the variables are: {}",
                        self.declared.iter().cloned().collect::<Vec<_>>().join(", ")
                    )),
                };
                self.diagnostics.push(d);
            }
        }
    }
}

fn from_env_is_secret(env: &[(String, String)], name: &str) -> bool {
    env.iter().any(|(k, _)| k == name)
}

/// Where a template is checked: its scope, the step ids it may name, and extra locals.
struct Ctx<'a> {
    scope: usize,
    ids: &'a [String],
    extra: &'a [&'a str],
}

/// Every step id written in one playbook file, fallbacks included.
fn local_ids(pb: &Playbook) -> Vec<String> {
    fn walk(steps: &[Step], out: &mut Vec<String>) {
        for s in steps {
            out.push(s.id.value.clone());
            walk(&s.fallback, out);
        }
    }
    let mut out = Vec::new();
    walk(&pb.steps, &mut out);
    walk(&pb.always, &mut out);
    out.extend(pb.unparsed_ids.iter().cloned());
    out
}

/// Checks an action's arguments on their unrendered form. A template
/// standing where a number or a list belongs can only be checked at run
/// time: such an argument is left out and the rest checked (so that, say,
/// an e-mail's template file is still found and compiled). `Ok(None)`:
/// nothing could be checked before the run.
fn probe(action: &str, node: &Node) -> Result<Option<(Call, bool)>, action::ArgumentError> {
    let mut json = node.to_json();
    for round in 0..32 {
        let err = match Call::new(action, json.clone()) {
            // Whether every argument is in it (none left for run time).
            Ok(call) => return Ok(Some((call, round == 0))),
            Err(err) => err,
        };
        let (bad, _) = node.find(&err.path);
        if !matches!(&bad.value, Value::Str(s) if s.contains("{{")) {
            return Err(err);
        }
        let Some(crate::node::PathSegment::Key(key)) = err.path.first() else {
            return Ok(None);
        };
        let removed = err.path.len() == 1
            && json
                .as_object_mut()
                .is_some_and(|m| m.remove(key).is_some());
        if !removed {
            return Ok(None);
        }
    }
    Ok(None)
}

/// SHA-256 over the plan's sources and resolved variables: two plans with
/// the same fingerprint were made from the same text and values.
fn plan_fingerprint(
    steps: &[PlanStep],
    always: &[PlanStep],
    top: &Playbook,
    templates: &Templates,
    scopes: &[Scope],
    secrets: &crate::secret::Secrets,
) -> String {
    use sha2::{Digest, Sha256};
    // No secret value goes into it, in a source or a variable: a hash of
    // known text and a secret gives the secret away to a few guesses. A
    // secret variable counts by its name and whether it has a value.
    let masked = |text: &str| secrets.redact_text(text);
    fn files(steps: &[PlanStep], out: &mut std::collections::BTreeMap<String, String>) {
        for s in steps {
            out.entry(s.span.file.path.display().to_string())
                .or_insert_with(|| s.span.file.text.clone());
            if let Body::Include { steps, always, .. } = &s.body {
                files(steps, out);
                files(always, out);
            }
            files(&s.fallback, out);
        }
    }
    let mut sources = std::collections::BTreeMap::new();
    sources.insert(top.file.path.display().to_string(), top.file.text.clone());
    files(steps, &mut sources);
    files(always, &mut sources);
    let mut h = Sha256::new();
    for (path, text) in sources
        .iter()
        .chain(templates.file_sources().iter().map(|(p, t)| (p, t)))
    {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(masked(text).as_bytes());
        h.update([0]);
    }
    for scope in scopes {
        let mut vars = Json::Object(scope.vars.clone());
        secrets.redact(&mut vars);
        h.update(serde_json::to_vec(&vars).unwrap_or_default());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
