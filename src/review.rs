//! What a dry run saw, kept for `--expect-plan`: the path it predicted —
//! each step, what it would do with its arguments resolved — and the
//! readings of its read-only steps. A run held to the review compares
//! both: a changed path or argument refuses the run; changed readings (an
//! upload since the review) are said, line by line, and do not.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::event::Status;
use crate::summary::Summary;

/// Where reviews are kept: beside the runs directory, by fingerprint.
pub fn dir(runs: &Path) -> PathBuf {
    runs.parent()
        .unwrap_or_else(|| Path::new(""))
        .join("reviews")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Review {
    pub fingerprint: String,
    pub file: String,
    pub at: String,
    pub steps: Vec<Seen>,
}

/// One step as the dry run saw it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Seen {
    pub id: String,
    pub status: Status,
    /// None for an include, whose outputs are its steps' records.
    #[serde(default)]
    pub action: Option<String>,
    pub detail: Option<String>,
    /// What a read-only step read; nothing for a step only described.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub outputs: Map<String, Json>,
}

/// The most reading changes said; the rest are counted.
const MAX_READINGS: usize = 20;

impl Review {
    /// A dry run's review, from its summary (none if it has no fingerprint).
    pub fn of(summary: &Summary) -> Option<Review> {
        Some(Review {
            fingerprint: summary.fingerprint.clone()?,
            file: summary.file.clone(),
            at: summary.started_at.clone(),
            steps: summary
                .steps
                .iter()
                .map(|s| Seen {
                    id: s.id.clone(),
                    status: s.status,
                    action: s.action.clone(),
                    detail: s.detail.clone(),
                    outputs: s.outputs.clone(),
                })
                .collect(),
        })
    }

    pub fn path_in(dir: &Path, fingerprint: &str) -> PathBuf {
        dir.join(format!("{fingerprint}.json"))
    }

    /// Writes it under `dir`, unless a review of the same plan is there
    /// already: that one is what a reviewer approved, and what the readings
    /// are compared with. Returns where it is, and whether it is this one.
    pub fn save(&self, dir: &Path) -> io::Result<(PathBuf, bool)> {
        std::fs::create_dir_all(dir)?;
        let path = Review::path_in(dir, &self.fingerprint);
        if path.exists() {
            return Ok((path, false));
        }
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        // Two reviews of one plan at once: the first one written is kept.
        let kept = crate::report::write_new(&path, &json)?;
        Ok((path, kept))
    }

    /// The review with this fingerprint, if it was made here.
    pub fn load(dir: &Path, fingerprint: &str) -> Option<Review> {
        let text = std::fs::read(Review::path_in(dir, fingerprint)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// What the run would now do differently: a step that would take
    /// another turn (run, fail, be skipped), or change with other arguments.
    pub fn decisions(&self, now: &Review) -> Vec<String> {
        let mut out = Vec::new();
        for step in &now.steps {
            let was = self.steps.iter().find(|s| s.id == step.id);
            match was {
                None => out.push(format!(
                    "{}: not in the review; now {}",
                    step.id,
                    said(step)
                )),
                Some(was) if was.status != step.status => {
                    out.push(format!("{}: {} → {}", step.id, said(was), said(step)));
                }
                Some(was) if step.status == Status::WouldRun && was.detail != step.detail => {
                    out.push(format!("{}: {} → {}", step.id, said(was), said(step)));
                }
                Some(_) => {}
            }
        }
        for was in &self.steps {
            if !now.steps.iter().any(|s| s.id == was.id) {
                out.push(format!("{}: {} → no longer reached", was.id, said(was)));
            }
        }
        out
    }

    /// What the read-only steps read differently: `option-1.before:
    /// counts.orders 364 → 365`.
    pub fn readings(&self, now: &Review) -> Vec<String> {
        let mut out = Vec::new();
        // An include's outputs are its steps' records, compared one by one.
        for step in now.steps.iter().filter(|s| s.action.is_some()) {
            let Some(was) = self.steps.iter().find(|s| s.id == step.id) else {
                continue;
            };
            let mut before = Vec::new();
            let mut after = Vec::new();
            leaves("", &Json::Object(was.outputs.clone()), &mut before);
            leaves("", &Json::Object(step.outputs.clone()), &mut after);
            for (key, old) in &before {
                match after.iter().find(|(k, _)| k == key) {
                    Some((_, new)) if new != old => {
                        out.push(format!("{}: {key} {old} → {new}", step.id));
                    }
                    None => out.push(format!("{}: {key} {old} → (none)", step.id)),
                    _ => {}
                }
            }
            for (key, new) in &after {
                if !before.iter().any(|(k, _)| k == key) {
                    out.push(format!("{}: {key} (none) → {new}", step.id));
                }
            }
        }
        if out.len() > MAX_READINGS {
            let more = out.len() - MAX_READINGS;
            out.truncate(MAX_READINGS);
            out.push(format!("… and {more} more"));
        }
        out
    }
}

/// How a step's turn reads: what it would do, `would fail: …`, `skipped`.
fn said(step: &Seen) -> String {
    match (&step.detail, step.status) {
        (Some(d), Status::WouldRun) => crate::action::ellipsize(d, 120),
        (Some(d), Status::WouldFail) => format!("would fail: {}", crate::action::ellipsize(d, 120)),
        _ => step.status.as_str().to_owned(),
    }
}

/// Every scalar in a value with its path: `counts.orders`, `rows[0].n`.
/// The `status` a record carries is the step's, compared as a decision.
fn leaves(prefix: &str, value: &Json, out: &mut Vec<(String, String)>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                if prefix.is_empty() && k == "status" {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, v, out);
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Json::String(s) => out.push((prefix.to_owned(), crate::action::ellipsize(s, 60))),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, status: Status, detail: Option<&str>, outputs: Json) -> Seen {
        Seen {
            id: id.into(),
            status,
            action: Some("sqlite.query".into()),
            detail: detail.map(Into::into),
            outputs: outputs.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn a_reading_that_changed_is_one_line_and_no_decision() {
        let review = |n: u64| Review {
            fingerprint: "f".into(),
            file: "pb.yaml".into(),
            at: String::new(),
            steps: vec![
                seen(
                    "before",
                    Status::Ok,
                    None,
                    serde_json::json!({"counts": {"orders": n, "users": 2}}),
                ),
                seen(
                    "rollback",
                    Status::WouldRun,
                    Some("would execute on app.db"),
                    Json::Null,
                ),
            ],
        };
        let (was, now) = (review(364), review(365));
        assert!(was.decisions(&now).is_empty());
        assert_eq!(was.readings(&now), vec!["before: counts.orders 364 → 365"]);
    }

    #[test]
    fn another_turn_or_argument_is_a_decision() {
        let was = Review {
            fingerprint: "a".into(),
            file: "pb.yaml".into(),
            at: String::new(),
            steps: vec![seen(
                "rollback",
                Status::WouldRun,
                Some("would delete x"),
                Json::Null,
            )],
        };
        let now = Review {
            fingerprint: "b".into(),
            file: "pb.yaml".into(),
            at: String::new(),
            steps: vec![seen(
                "rollback",
                Status::WouldRun,
                Some("would delete y"),
                Json::Null,
            )],
        };
        assert_eq!(
            was.decisions(&now),
            vec!["rollback: would delete x → would delete y"]
        );
    }
}
