//! `assert`: fails the step unless an expression holds. The expression is
//! evaluated when the step runs, in the step's scope.

use serde::Deserialize;

use super::{Action, Context, Failure, Outputs};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assert {
    /// The expression that must be true, e.g. `steps.count.rows[0].n > 0`.
    that: String,
    /// What to say when it is false.
    #[serde(default)]
    message: Option<String>,
    /// When it holds, end the step as a warning (⚠) saying this: for a
    /// fallback that lets the run go on without what the step promised.
    #[serde(default)]
    warning: Option<String>,
}

impl Action for Assert {
    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("assert that {}", self.that)
    }

    fn expressions(&self) -> Vec<&str> {
        vec![self.that.as_str()]
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let value = (ctx.eval)(&self.that).map_err(Failure::Failed)?;
        if truthy(&value) {
            let mut out = Outputs::new();
            out.insert("value".into(), value);
            if let Some(w) = &self.warning {
                out.insert(super::WARNING.into(), w.clone().into());
            }
            Ok(out)
        } else {
            Err(Failure::Failed(match &self.message {
                Some(m) => m.clone(),
                None => format!("assertion failed: {} (was {value})", self.that),
            }))
        }
    }
}

/// Jinja's notion of truth, on a JSON value.
pub fn truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}
