//! A YAML document as a tree of positioned values. Playbooks are read into
//! this tree first so that every key and value keeps its line and column,
//! and so that the analyzer can report all problems in a file at once
//! instead of stopping at serde's first.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, SourceFile, Span};

/// Line and column inside the file the tree was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: usize::try_from(loc.line()).unwrap_or(usize::MAX),
            column: usize::try_from(loc.column()).unwrap_or(usize::MAX),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// How the user would name this kind of value in an error message.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// Converts to JSON, the form action arguments are deserialized from.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(x) => serde_json::Value::from(*x),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The node reached by following a serde path like `argv[2]` or `params.name`;
    /// used to point an argument error at the exact value.
    pub fn find(&self, segments: &[PathSegment]) -> (&Node, Option<&Key>) {
        let mut node = self;
        let mut key = None;
        for seg in segments {
            match (seg, &node.value) {
                (PathSegment::Index(i), Value::Seq(items)) if *i < items.len() => {
                    node = &items[*i];
                    key = None;
                }
                (PathSegment::Key(name), Value::Map(entries)) => {
                    match entries.iter().find(|(k, _)| &k.name == name) {
                        Some((k, v)) => {
                            node = v;
                            key = Some(k);
                        }
                        None => break,
                    }
                }
                _ => break,
            }
        }
        (node, key)
    }
}

pub enum PathSegment {
    Index(usize),
    Key(String),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            pos: Pos::of(&spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((
                Key {
                    pos: Pos::of(&key.referenced),
                    name: key.value,
                },
                value,
            ));
        }
        Ok(Value::Map(entries))
    }
}

/// Parses one YAML document. A syntax error becomes a diagnostic at its
/// position, in plain words where the parser's own are a developer's.
pub fn parse(file: &Arc<SourceFile>) -> Result<Node, Diagnostic> {
    serde_saphyr::from_str::<Node>(&file.text).map_err(|err| {
        let mut pos = err.location().map(|loc| Pos::of(&loc));
        let mut inner = &err;
        while let serde_saphyr::Error::AliasError { error, .. }
        | serde_saphyr::Error::WithSnippet { error, .. } = inner
        {
            inner = error;
        }
        let (message, help) = if let serde_saphyr::Error::Budget { breach, .. } = inner {
            budget_message(breach)
        } else {
            let message = first_line(&err.without_snippet().to_string());
            let tab = pos.and_then(|p| {
                let line = file.text.lines().nth(p.line.checked_sub(1)?)?;
                let indent = crate::diagnostic::indentation(line);
                line[..indent].find('\t').map(|at| at + 1)
            });
            match (tab, pos.as_mut()) {
                (Some(column), Some(p)) if message.contains("tab") => {
                    p.column = column;
                    (
                        "a tab in the indentation: YAML indents with spaces only".to_owned(),
                        "replace the tab with spaces (most editors can convert indentation to spaces)"
                            .to_owned(),
                    )
                }
                _ => (
                    message,
                    "fix the YAML syntax at this position; `runbook check` re-checks the file"
                        .to_owned(),
                ),
            }
        };
        match pos {
            Some(pos) => Diagnostic::at(&Span::new(file, pos.line, pos.column), message),
            None => Diagnostic::bare(format!("{}: {message}", file.path.display())),
        }
        .help(help)
    })
}

/// A file the YAML reader refused to expand: said as what it is, not as
/// the reader's counters.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> (String, String) {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Nodes { .. } | B::Events { .. } | B::Aliases { .. } | B::AliasAnchorRatio { .. } | B::MergeKeys { .. } => (
            "the file's aliases (`*name`) expand it to more values than any playbook has: it is refused as an alias bomb".to_owned(),
            "write the repeated parts out, or use fewer aliases of aliases".to_owned(),
        ),
        B::Depth { depth } => (
            format!("the file nests {depth} levels deep, more than any playbook does"),
            "flatten the nesting; a playbook's steps need a few levels at most".to_owned(),
        ),
        _ => (
            "the file is larger than any playbook is, and is refused".to_owned(),
            "split it into playbooks that include one another".to_owned(),
        ),
    }
}

/// serde-saphyr's message may carry its own position suffix; ours is printed separately.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    match line.find(" at line ") {
        Some(i) => line[..i].to_owned(),
        None => line.to_owned(),
    }
}
