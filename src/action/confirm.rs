//! `confirm`: a manual checklist item. The operator confirms on a terminal;
//! `--yes` confirms in advance; with neither, the step fails at once rather
//! than wait for an answer that cannot come. A "no" stops the run.

use std::io::{BufRead, IsTerminal, Write};

use serde::Deserialize;

use super::{Action, Context, Failure, Outputs};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    /// The question or instruction shown to the operator.
    message: String,
}

impl Action for Confirm {
    fn invalidates_reads(&self) -> bool {
        false
    }

    fn mutates(&self) -> bool {
        // A dry run must not stop to ask; it reports the question instead.
        true
    }

    fn describe(&self) -> String {
        format!("ask the operator: {}", self.message)
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        ask(ctx.step, &self.message, ctx.yes)?;
        let mut out = Outputs::new();
        out.insert("confirmed".into(), true.into());
        Ok(out)
    }
}

/// Puts a yes/no question to the operator, naming the step (or command)
/// that asks it.
pub fn ask(asker: &str, question: &str, yes: bool) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    // Started by a fleet controller: its operator answers.
    if crate::control::relaying() {
        return match crate::control::ask_controller(asker, question) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::Declined(format!(
                "declined by the operator: {question}"
            ))),
            Err(why) => Err(Failure::Failed(why)),
        };
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Failed(format!(
            "needs confirmation, but there is no terminal to ask on: {question} (pass --yes to confirm in advance)"
        )));
    }
    // The spinner stays off the screen until the answer is in: a question
    // drawn over by "step still running" is one nobody answers.
    let answer = crate::progress::suspended(|| {
        let mut stderr = std::io::stderr();
        // A failed prompt write is not a reason to skip the question: we still read the answer.
        let _ = write!(
            stderr,
            "{} {}: {question} [y/N] ",
            console::style("?").yellow().bold(),
            console::style(asker).bold()
        );
        let _ = stderr.flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map(|_| answer)
    })
    .map_err(|err| Failure::failed(format!("cannot read the answer: {err}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::Declined(format!(
            "declined by the operator: {question}"
        ))),
    }
}
