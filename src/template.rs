//! Templates in playbooks: every string value is a minijinja template over
//! the variables, the `run` record and earlier steps' outputs. A string that
//! is exactly one `{{ expression }}` keeps the expression's native value (a
//! list stays a list, a number a number); any other string renders to text.
//! Templates are compiled once, during analysis, and rendered by name.

use std::collections::BTreeSet;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value as Json;

use crate::node::{Node, Pos, Value};

/// A value tree whose strings are compiled templates.
#[derive(Clone, Debug)]
pub enum TValue {
    Const(Json),
    /// A text template, registered in the environment under this name.
    Text(String),
    /// A single expression, whose native value is kept.
    Expr(String),
    Seq(Vec<TValue>),
    Map(Vec<(String, TValue)>),
}

/// Why a template could not be compiled.
pub struct CompileError {
    pub message: String,
    /// Line inside the template (1-based), when minijinja knows it.
    pub line: Option<usize>,
    /// Where the template stands in the playbook, when it is part of a tree.
    pub pos: Option<Pos>,
    /// The unknown name the error is about, for a caret under it.
    pub name: Option<String>,
}

/// The variable paths one string of a tree reads, and where it stands.
pub struct Reads {
    pub pos: Pos,
    pub vars: BTreeSet<String>,
}

/// How many instructions one rendering may take.
const FUEL: u64 = 5_000_000;

#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    /// Functions like `range`, which templates may use without declaring.
    globals: BTreeSet<String>,
    /// Template files (e-mail bodies), by canonical path → template name.
    files: std::collections::HashMap<std::path::PathBuf, String>,
    count: usize,
    /// What each expression read, by its text: a playbook writes `db` or
    /// `steps.x.ok` many times, and each is compiled and walked once.
    expressions: std::cell::RefCell<std::collections::HashMap<String, BTreeSet<String>>>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A template that loops without end (a default of two nested
        // `range(100000)` loops) stops with an error instead of hanging
        // `check` and the run; a real report of thousands of steps uses a
        // small part of this.
        env.set_fuel(Some(FUEL));
        env.set_debug(true);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build();
        if let Ok(syntax) = syntax {
            env.set_syntax(syntax);
        }
        // Playbooks produce commands, SQL parameters, e-mails and Markdown: never HTML.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.add_filter("words", words);
        // For Markdown reports (templates/report.md), and any template.
        env.add_filter("cell", |s: String| s.replace('|', "\\|").replace('\n', " "));
        env.add_filter("quote", |s: String| {
            s.lines()
                .map(|l| format!("> {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        });
        env.add_filter("seconds", |ms: u64| format!("{:.1}s", ms as f64 / 1000.0));
        env.add_filter("clock", |at: String| {
            at.split_once('T')
                .map_or(at.as_str(), |(_, t)| t.trim_end_matches('Z'))
                .to_owned()
        });
        env.add_filter("json", json);
        // Python's string and dict methods (`s.startswith(…)`, `d.items()`),
        // which playbook authors reach for first.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        let globals = env.globals().map(|(name, _)| name.to_owned()).collect();
        Templates {
            env,
            globals,
            files: std::collections::HashMap::new(),
            count: 0,
            expressions: std::cell::RefCell::default(),
        }
    }

    /// Compiles a value tree; returns the compiled tree and, for each
    /// string in it, where it stands and the variable paths it reads.
    pub fn compile(&mut self, node: &Node) -> Result<(TValue, Vec<Reads>), CompileError> {
        let mut reads = Vec::new();
        let value = self.compile_node(node, &mut reads)?;
        Ok((value, reads))
    }

    fn compile_node(
        &mut self,
        node: &Node,
        reads: &mut Vec<Reads>,
    ) -> Result<TValue, CompileError> {
        Ok(match &node.value {
            Value::Str(s) => {
                let mut vars = BTreeSet::new();
                let t = self.compile_str(s, &mut vars).map_err(|mut e| {
                    e.pos = Some(node.pos);
                    e
                })?;
                reads.push(Reads {
                    pos: node.pos,
                    vars,
                });
                t
            }
            Value::Seq(items) => TValue::Seq(
                items
                    .iter()
                    .map(|n| self.compile_node(n, reads))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(entries) => TValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.name.clone(), self.compile_node(v, reads)?)))
                    .collect::<Result<_, CompileError>>()?,
            ),
            _ => TValue::Const(node.to_json()),
        })
    }

    fn compile_str(
        &mut self,
        s: &str,
        vars: &mut BTreeSet<String>,
    ) -> Result<TValue, CompileError> {
        if !s.contains("{{") && !s.contains("{%") && !s.contains("{#") {
            return Ok(TValue::Const(Json::String(s.to_owned())));
        }
        if let Some(expr) = single_expression(s) {
            vars.extend(self.expression_variables(expr)?);
            return Ok(TValue::Expr(expr.to_owned()));
        }
        self.count += 1;
        let name = format!("t{}", self.count);
        self.env
            .add_template_owned(name.clone(), s.to_owned())
            .map_err(compile_error)?;
        self.known_filters_and_tests(s, false)?;
        let template = self.env.get_template(&name).map_err(compile_error)?;
        vars.extend(self.without_globals(template.undeclared_variables(true)));
        vars.extend(subscripted_steps(s));
        Ok(TValue::Text(name))
    }

    /// Compiles a template file once; returns the variable paths it reads.
    pub fn compile_file(
        &mut self,
        path: &std::path::Path,
    ) -> Result<BTreeSet<String>, CompileError> {
        let unreadable = |e: std::io::Error| CompileError {
            message: format!("cannot read it: {e}"),
            line: None,
            pos: None,
            name: None,
        };
        let key = std::fs::canonicalize(path).map_err(unreadable)?;
        if !self.files.contains_key(&key) {
            let source = std::fs::read_to_string(&key).map_err(unreadable)?;
            let name = key.display().to_string();
            self.known_filters_and_tests(&source, false)?;
            self.env
                .add_template_owned(name.clone(), source)
                .map_err(compile_error)?;
            self.files.insert(key.clone(), name);
        }
        let template = self
            .env
            .get_template(&self.files[&key])
            .map_err(compile_error)?;
        Ok(self.without_globals(template.undeclared_variables(true)))
    }

    /// Compiles a template given as text under a name of its own (a
    /// built-in one); returns the variable paths it reads.
    pub fn compile_named(
        &mut self,
        name: &str,
        source: &str,
    ) -> Result<BTreeSet<String>, CompileError> {
        self.known_filters_and_tests(source, false)?;
        self.env
            .add_template_owned(name.to_owned(), source.to_owned())
            .map_err(compile_error)?;
        let template = self.env.get_template(name).map_err(compile_error)?;
        Ok(self.without_globals(template.undeclared_variables(true)))
    }

    /// Every filter (`| name`), test (`is name`) and function (`name()`) a
    /// template or an expression uses must exist: minijinja finds an unknown one only when
    /// it runs, which for a branch of a fallback is at 3 a.m.
    fn known_filters_and_tests(&self, source: &str, expression: bool) -> Result<(), CompileError> {
        for (kind, name, line) in filters_and_tests(source, expression) {
            let globals: Vec<&str> = self.globals.iter().map(String::as_str).collect();
            let (what, known) = match kind {
                Use::Function => ("function", globals.as_slice()),
                Use::Filter => ("filter", KNOWN_FILTERS),
                Use::Test => ("test", KNOWN_TESTS),
            };
            if known.contains(&name.as_str()) || self.registered(kind, &name) {
                continue;
            }
            let hint = crate::diagnostic::did_you_mean(&name, known.iter().copied())
                .map(|best| format!(" (did you mean `{best}`?)"))
                .unwrap_or_default();
            return Err(CompileError {
                message: format!("unknown {what} `{name}`{hint}"),
                line: Some(line),
                pos: None,
                name: Some(name),
            });
        }
        Ok(())
    }

    /// Whether minijinja has a filter or test by this name that the lists
    /// for "did you mean" leave out: asked by rendering a use of it.
    fn registered(&self, kind: Use, name: &str) -> bool {
        let (probe, unknown) = match kind {
            Use::Function => return self.globals.contains(name),
            Use::Filter => (
                format!("{{{{ none | {name} }}}}"),
                minijinja::ErrorKind::UnknownFilter,
            ),
            Use::Test => (
                format!("{{{{ none is {name} }}}}"),
                minijinja::ErrorKind::UnknownTest,
            ),
        };
        !matches!(self.env.render_str(&probe, ()), Err(e) if e.kind() == unknown)
    }

    /// Renders a template compiled by [`Templates::compile_named`].
    pub fn render_named(
        &self,
        name: &str,
        ctx: &minijinja::Value,
    ) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }

    /// The template files compiled, with their text, in path order.
    pub fn file_sources(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .files
            .values()
            .filter_map(|name| {
                let t = self.env.get_template(name).ok()?;
                Some((name.clone(), t.source().to_owned()))
            })
            .collect();
        out.sort();
        out
    }

    /// The template files compiled, by their real paths, with their text.
    pub fn files(&self) -> Vec<(std::path::PathBuf, String)> {
        self.files
            .iter()
            .filter_map(|(path, name)| {
                let t = self.env.get_template(name).ok()?;
                Some((path.clone(), t.source().to_owned()))
            })
            .collect()
    }

    /// The text of a template file as it was compiled (and checked).
    pub fn file_source(&self, path: &std::path::Path) -> Option<String> {
        let name = self.files.get(&std::fs::canonicalize(path).ok()?)?;
        Some(self.env.get_template(name).ok()?.source().to_owned())
    }

    /// Renders a template file compiled by [`Templates::compile_file`].
    pub fn render_file(
        &self,
        path: &std::path::Path,
        ctx: &minijinja::Value,
    ) -> Result<String, minijinja::Error> {
        let name = std::fs::canonicalize(path)
            .ok()
            .and_then(|k| self.files.get(&k))
            .ok_or_else(|| {
                minijinja::Error::new(
                    minijinja::ErrorKind::TemplateNotFound,
                    format!("{} was not checked before the run", path.display()),
                )
            })?;
        self.env.get_template(name)?.render(ctx)
    }

    /// Checks that an expression compiles; returns the variable paths it reads.
    pub fn expression_variables(&self, expr: &str) -> Result<BTreeSet<String>, CompileError> {
        if let Some(vars) = self.expressions.borrow().get(expr) {
            return Ok(vars.clone());
        }
        let compiled = self.env.compile_expression(expr).map_err(compile_error)?;
        self.known_filters_and_tests(expr, true)?;
        let mut vars = self.without_globals(compiled.undeclared_variables(true));
        vars.extend(subscripted_steps(expr));
        self.expressions
            .borrow_mut()
            .insert(expr.to_owned(), vars.clone());
        Ok(vars)
    }

    fn without_globals(&self, names: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        names
            .into_iter()
            .filter(|n| {
                let root = n.split('.').next().unwrap_or(n);
                !self.globals.contains(root)
            })
            .collect()
    }

    /// Renders a compiled tree against a context.
    pub fn render(&self, value: &TValue, ctx: &minijinja::Value) -> Result<Json, minijinja::Error> {
        Ok(match value {
            TValue::Const(v) => v.clone(),
            TValue::Text(name) => Json::String(self.env.get_template(name)?.render(ctx)?),
            TValue::Expr(expr) => self.eval(expr, ctx)?,
            TValue::Seq(items) => Json::Array(
                items
                    .iter()
                    .map(|v| self.render(v, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            TValue::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.render(v, ctx)?)))
                    .collect::<Result<_, minijinja::Error>>()?,
            ),
        })
    }

    /// Evaluates an expression to its native value.
    pub fn eval(&self, expr: &str, ctx: &minijinja::Value) -> Result<Json, minijinja::Error> {
        let value = self.env.compile_expression(expr)?.eval(ctx)?;
        serde_json::to_value(&value).map_err(|err| {
            minijinja::Error::new(minijinja::ErrorKind::BadSerialization, err.to_string())
        })
    }

    /// Evaluates an expression for its truth, as Jinja's `if` would.
    pub fn test(&self, expr: &str, ctx: &minijinja::Value) -> Result<bool, minijinja::Error> {
        Ok(self.env.compile_expression(expr)?.eval(ctx)?.is_true())
    }
}

fn compile_error(err: minijinja::Error) -> CompileError {
    CompileError {
        message: render_error(&err),
        line: err.line(),
        pos: None,
        name: None,
    }
}

/// Data as templates see it.
pub fn value(data: &impl serde::Serialize) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(data))
}

/// minijinja's message, with its detail, on one line.
pub fn render_error(err: &minijinja::Error) -> String {
    if err.kind() == minijinja::ErrorKind::OutOfFuel {
        return format!(
            "the template did not finish within {FUEL} steps of work: a loop that does not end, or one far too large"
        );
    }
    let mut message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    message
}

/// `steps['option-1']` names a step as surely as `steps.count` does, but
/// minijinja reports only the attribute form; ids with a dash need the
/// subscript, so it is read here: `steps.option-1` for each.
fn subscripted_steps(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("steps[") {
        // `x.steps[…]` is an attribute of something else (an included
        // playbook's record), not the `steps` variable.
        let attribute = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric());
        rest = &rest[i + "steps[".len()..];
        if attribute {
            continue;
        }
        let trimmed = rest.trim_start();
        let Some(quote) = trimmed.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            continue;
        };
        let body = &trimmed[1..];
        if let Some(end) = body.find(quote) {
            out.push(format!("steps.{}", &body[..end]));
        }
    }
    out
}

/// The inner expression of a string that is exactly `{{ expr }}`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    Some(inner.trim())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Filter,
    Test,
    Function,
}

/// Words of Jinja's own that may stand before a parenthesis.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "if",
    "else",
    "elif",
    "is",
    "for",
    "macro",
    "call",
    "set",
    "with",
    "filter",
    "recursive",
    "import",
    "from",
    "as",
    "include",
    "extends",
    "block",
    "return",
    "caller",
    "super",
    "loop",
    "self",
];

/// For "did you mean": minijinja's filters and runbook's own.
const KNOWN_FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "zip",
    "words",
    "cell",
    "quote",
    "seconds",
    "clock",
    "json",
];

/// For "did you mean": minijinja's tests.
const KNOWN_TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// The filters (`x | name`), tests (`x is [not] name`) and functions
/// (`name(…)`) a template uses,
/// with the line each is on: read from its code (`{{ … }}`, `{% … %}`, or
/// all of it for an expression), outside string literals and comments.
fn filters_and_tests(source: &str, expression: bool) -> Vec<(Use, String, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let macros: Vec<String> = source
        .split("macro")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut in_code = expression;
    let mut quote: Option<char> = None;
    let ident_at = |i: usize| -> (String, usize) {
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        let start = j;
        while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        (chars[start..j].iter().collect(), j)
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
        }
        if !expression && quote.is_none() {
            match (in_code, c, next) {
                (false, '{', Some('{' | '%')) => {
                    in_code = true;
                    i += 2;
                    continue;
                }
                (false, '{', Some('#')) => {
                    // A comment: to its end.
                    while i + 1 < chars.len() && !(chars[i] == '#' && chars[i + 1] == '}') {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    i += 2;
                    continue;
                }
                (true, '}' | '%', Some('}')) => {
                    in_code = false;
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        if !in_code {
            i += 1;
            continue;
        }
        match quote {
            Some(q) if c == '\\' => {
                let _ = q;
                i += 2;
                continue;
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '|' => {
                let (name, end) = ident_at(i + 1);
                if !name.is_empty() {
                    out.push((Use::Filter, name, line));
                }
                i = end.max(i + 1);
                continue;
            }
            None if c.is_alphabetic() || c == '_' => {
                let (word, end) = ident_at(i);
                let before = i.checked_sub(1).map(|b| chars[b]);
                if word == "is"
                    && before.is_none_or(|b| !(b.is_alphanumeric() || b == '_' || b == '.'))
                {
                    let (mut name, mut after) = ident_at(end);
                    if name == "not" {
                        (name, after) = ident_at(after);
                    }
                    if !name.is_empty() {
                        out.push((Use::Test, name, line));
                    }
                    i = after;
                    continue;
                }
                // A call: `name(…)`, not a method (`x.name(…)`), a keyword,
                // or a macro defined in this template.
                let called = chars[end..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
                if called
                    && before != Some('.')
                    && !KEYWORDS.contains(&word.as_str())
                    && !macros.contains(&word)
                {
                    out.push((Use::Function, word, line));
                }
                i = end;
                continue;
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// JSON, compact or indented by `indent` spaces; unlike `tojson`, not
/// escaped for HTML, which no template here produces.
fn json(value: minijinja::Value, indent: Option<usize>) -> Result<String, minijinja::Error> {
    let failed = |e: serde_json::Error| {
        minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
    };
    let Some(indent) = indent else {
        return serde_json::to_string(&value).map_err(failed);
    };
    let pad = vec![b' '; indent];
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(&pad);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(&value, &mut ser).map_err(failed)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `{{ reload_command | words }}`: splits a command line into arguments the way
/// a POSIX shell would, without running a shell, so a variable can hold a
/// whole command and still reach the child process as argv.
fn words(value: String) -> Result<Vec<String>, minijinja::Error> {
    shell_words::split(&value).map_err(|err| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("cannot split `{value}` into words: {err}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> Node {
        Node {
            pos: Pos::default(),
            value: Value::Str(s.to_owned()),
        }
    }

    fn render(src: &str, ctx: serde_json::Value) -> Json {
        let mut t = Templates::new();
        let (tv, _) = t.compile(&node(src)).ok().expect("compiles");
        t.render(&tv, &value(&ctx)).expect("renders")
    }

    #[test]
    fn a_single_expression_keeps_its_type() {
        assert_eq!(
            render("{{ n + 1 }}", serde_json::json!({"n": 2})),
            serde_json::json!(3)
        );
        assert_eq!(
            render("{{- xs -}}", serde_json::json!({"xs": [1, 2]})),
            serde_json::json!([1, 2])
        );
        assert_eq!(
            render("n={{ n }}", serde_json::json!({"n": 2})),
            serde_json::json!("n=2")
        );
        assert_eq!(
            render("{{ a }}{{ b }}", serde_json::json!({"a": 1, "b": 2})),
            serde_json::json!("12")
        );
    }

    #[test]
    fn text_without_template_syntax_is_constant() {
        assert_eq!(
            render("plain {text}", serde_json::json!({})),
            serde_json::json!("plain {text}")
        );
    }

    #[test]
    fn undefined_values_are_errors_not_empty_strings() {
        let mut t = Templates::new();
        let (tv, _) = t.compile(&node("x={{ missing }}")).ok().expect("compiles");
        let ctx = value(&serde_json::json!({}));
        assert!(t.render(&tv, &ctx).is_err());
    }

    #[test]
    fn compile_reports_the_variables_read_without_globals() {
        let mut t = Templates::new();
        let (_, reads) = t
            .compile(&node(
                "{% for i in range(3) %}{{ steps.count.rows[i] }}{{ db }}{% endfor %}",
            ))
            .ok()
            .expect("compiles");
        let vars: Vec<&String> = reads.iter().flat_map(|r| &r.vars).collect();
        assert!(
            vars.iter().any(|v| v.starts_with("steps.count")),
            "{vars:?}"
        );
        assert!(vars.iter().any(|v| *v == "db"), "{vars:?}");
        assert!(!vars.iter().any(|v| v.starts_with("range")), "{vars:?}");
    }

    #[test]
    fn every_filter_and_test_listed_for_did_you_mean_is_registered() {
        let t = Templates::new();
        let missing: Vec<&str> = KNOWN_FILTERS
            .iter()
            .filter(|n| !t.registered(Use::Filter, n))
            .chain(KNOWN_TESTS.iter().filter(|n| !t.registered(Use::Test, n)))
            .copied()
            .collect();
        assert!(missing.is_empty(), "listed but not registered: {missing:?}");
        assert!(!t.registered(Use::Filter, "lowerr"));
        assert!(!t.registered(Use::Test, "definedd"));
        assert!(t.registered(Use::Function, "range"));
        assert!(!t.registered(Use::Function, "nowz"));
    }

    #[test]
    fn filters_and_tests_are_read_from_code_only() {
        let found = |src: &str, expr: bool| -> Vec<String> {
            filters_and_tests(src, expr)
                .into_iter()
                .map(|(k, n, l)| format!("{}:{n}:{l}", if k == Use::Filter { "f" } else { "t" }))
                .collect()
        };
        assert_eq!(
            found("a | b {{ 'x|y' ~ \"p|q\" | upper }}{# | nope #}\n{% if this is not none and x is odd %}{% endif %}", false),
            vec!["f:upper:1", "t:none:2", "t:odd:2"]
        );
        assert_eq!(
            found("steps.a.is_ok or (v|int) is divisibleby(3)", true),
            vec!["f:int:1", "t:divisibleby:1"]
        );
    }

    #[test]
    fn words_splits_like_a_shell_without_running_one() {
        assert_eq!(
            words("systemctl stop 'go fast' \"$(x)\"".into()).ok(),
            Some(vec![
                "systemctl".into(),
                "stop".into(),
                "go fast".into(),
                "$(x)".into()
            ])
        );
        assert!(words("unclosed 'quote".into()).is_err());
    }
}
