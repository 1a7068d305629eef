//! Secret values given through the environment (`RUNBOOK_SECRET_<NAME>`,
//! the variable `<name>`). As runbook starts, they are taken into its
//! keeping and every `RUNBOOK_*` variable is taken out of its environment,
//! before any thread or child process exists, so no program a step starts
//! (a shell command, sendmail) inherits a secret or runbook's own settings:
//! a step that needs a secret gives it explicitly, through `env:` or
//! `stdin:`.

use std::sync::OnceLock;

use serde_json::Value as Json;

/// Prefix of environment variables that hold secret variables.
pub const ENV_PREFIX: &str = "RUNBOOK_SECRET_";

static TAKEN: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Secrets a fleet controller sent over the control channel (never argv,
/// never a file on the host): the same as `RUNBOOK_SECRET_*` given here.
static GIVEN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Takes secret variables sent by a controller, as if given through the
/// environment: a later value of the same name replaces an earlier one.
pub fn give(secrets: Vec<(String, String)>) {
    if let Ok(mut given) = GIVEN.lock() {
        given.extend(secrets);
    }
}

/// Keeps the `RUNBOOK_SECRET_*` values and removes every `RUNBOOK_*`
/// variable from the process environment. Called once, after the command
/// line (`RUNBOOK_RUNS`) and fault injection have read theirs, while the
/// process has one thread.
pub fn take_environment() {
    let _ = TAKEN.set(in_environment());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RUNBOOK_") {
            std::env::remove_var(&key);
        }
    }
}

/// One secret given through the environment, by its lower-cased name
/// (`smtp_password` for `RUNBOOK_SECRET_SMTP_PASSWORD`): read from what
/// was taken at start, as the environment no longer holds it.
pub fn get(name: &str) -> Option<String> {
    from_environment()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value)
}

/// The secret variables given through the environment, by lower-cased name.
pub fn from_environment() -> Vec<(String, String)> {
    let mut all = TAKEN.get().cloned().unwrap_or_else(in_environment);
    if let Ok(given) = GIVEN.lock() {
        for (name, value) in given.iter() {
            all.retain(|(n, _)| n != name);
            all.push((name.clone(), value.clone()));
        }
    }
    all
}

fn in_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(k, v)| {
            k.strip_prefix(ENV_PREFIX)
                .filter(|name| !name.is_empty())
                .map(|name| (name.to_ascii_lowercase(), v))
        })
        .collect()
}

/// Secret values, with every form a message may give them in (JSON-escaped,
/// shell-quoted, as Rust's `{:?}` writes it, with its runs of white space
/// folded), longest first: made once for a plan, and used for every string
/// that is written, said or recorded.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    values: Vec<String>,
    forms: Vec<String>,
}

impl Secrets {
    pub fn new(mut values: Vec<String>) -> Secrets {
        values.retain(|s| !s.is_empty());
        let mut forms: Vec<String> = values.iter().flat_map(|s| forms_of(s)).collect();
        // Longest first, so a form is not half-replaced by a shorter one.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Secrets { values, forms }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every string in `v` redacted.
    pub fn redact(&self, v: &mut Json) {
        match v {
            Json::String(s) => *s = self.redact_text(s),
            Json::Array(items) => items.iter_mut().for_each(|i| self.redact(i)),
            Json::Object(map) => map.values_mut().for_each(|i| self.redact(i)),
            _ => {}
        }
    }

    /// `text` with every secret value in it replaced by `***`, in each of
    /// its forms, and the start of one cut short where text was shortened
    /// to fit (`…`).
    pub fn redact_text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), "***");
            }
        }
        if out.contains('…') {
            out = redact_cut(&out, &self.forms);
        }
        out
    }
}

/// How a secret may appear in text runbook writes.
fn forms_of(secret: &str) -> Vec<String> {
    let inner = |quoted: String| {
        quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .map(str::to_owned)
            .unwrap_or(quoted)
    };
    let mut forms = vec![
        secret.to_owned(),
        inner(serde_json::to_string(secret).unwrap_or_default()),
        inner(format!("{secret:?}")),
        shell_words::quote(secret).into_owned(),
        secret.split_whitespace().collect::<Vec<_>>().join(" "),
    ];
    forms.retain(|f| !f.trim().is_empty());
    forms
}

/// A secret cut short: the start of one of its forms right before a `…`
/// (at least four characters of it, or all of a shorter one).
fn redact_cut(text: &str, forms: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('…') {
        let mut before = rest[..at].to_owned();
        for form in forms {
            let starts: Vec<usize> = form.char_indices().map(|(i, _)| i).skip(1).collect();
            let min = form.chars().count().min(4);
            // The longest start of the form that `before` ends with.
            if let Some(&end) = starts
                .iter()
                .rev()
                .find(|&&end| form[..end].chars().count() >= min && before.ends_with(&form[..end]))
            {
                before.truncate(before.len() - end);
                before.push_str("***");
                break;
            }
        }
        out.push_str(&before);
        out.push('…');
        rest = &rest[at + '…'.len_utf8()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_redacted_in_every_form_and_where_it_was_cut() {
        let secret = "pa\"ss  wo\\rd9".to_owned();
        let secrets = Secrets::new(vec![secret.clone()]);
        let json = serde_json::to_string(&secret).unwrap();
        for text in [
            format!("value {secret} here"),
            format!("with [{json}]"),
            format!("run `echo {}`", shell_words::quote(&secret)),
            format!("{secret:?}"),
            "pa\"ss wo\\rd9".to_owned(),
        ] {
            let out = secrets.redact_text(&text);
            assert!(out.contains("***"), "{text} → {out}");
            assert!(
                !out.contains("ss  wo") && !out.contains("pa\"ss"),
                "{text} → {out}"
            );
        }
        // Cut to fit after its first characters.
        let out = secrets.redact_text("result: {\"t\":\"pa\\\"ss…");
        assert_eq!(out, "result: {\"t\":\"***…");
        assert_eq!(secrets.redact_text("nothing…here"), "nothing…here");
    }
}
