//! What a person, or a program, sees of a fleet while it runs. Without a
//! terminal: whole lines, each prefixed by its host, never cut by another
//! host's. On a terminal: one line a host, showing the step it is on, kept
//! current above the run's own bar, and each host's ending printed for good
//! once the fleet is done. With `--json`: the hosts' events, each with its
//! host.

use std::io::{self, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::event::Event;
use crate::fleet::{HostStatus, News};

use crate::reporter::WIDTH;

/// Without a terminal: each piece of news as whole lines.
pub fn listen_lines() {
    crate::progress::listen_fleet(Box::new(|news| write_lines(&lines(news))));
}

/// Whole lines on standard output, none cut by another writer's.
fn write_lines(lines: &[String]) {
    let mut out = io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

/// On a terminal: a line a host, in the same area as the run's bar.
pub fn listen_board(multi: MultiProgress, spinner: ProgressBar) {
    let board = Mutex::new(Board {
        multi,
        spinner,
        hosts: Vec::new(),
    });
    crate::progress::listen_fleet(Box::new(move |news| {
        if let Ok(mut board) = board.lock() {
            board.show(news);
        }
    }));
}

struct Board {
    multi: MultiProgress,
    spinner: ProgressBar,
    /// Each host's line, and how it ended once it has.
    hosts: Vec<(String, ProgressBar, Option<String>)>,
}

impl Board {
    fn print(&self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        self.multi.suspend(|| write_lines(lines));
    }

    fn bar(&self, host: &str) -> Option<&ProgressBar> {
        self.hosts
            .iter()
            .find(|(h, _, _)| h == host)
            .map(|(_, b, _)| b)
    }

    fn show(&mut self, news: &News) {
        match news {
            News::HostChecked { host, ok: true, .. } => {
                self.print(&lines(news));
                let bar = self
                    .multi
                    .insert_before(&self.spinner, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {msg} {spinner}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("{host} │ waiting for its wave"));
                self.hosts.push((host.clone(), bar, None));
            }
            News::Host {
                host,
                run: Event::StepStarted { step, name, .. },
            } if !step.contains('.') => {
                if let Some(bar) = self.bar(host) {
                    bar.set_message(format!("{host} │ {name}"));
                    bar.enable_steady_tick(Duration::from_millis(100));
                }
            }
            News::Host { .. } => {}
            News::HostFinished { host, .. } => {
                let ending = lines(news).into_iter().next();
                if let Some((_, bar, end)) = self.hosts.iter_mut().find(|(h, _, _)| h == host) {
                    bar.disable_steady_tick();
                    if let Some(line) = &ending {
                        bar.set_style(
                            ProgressStyle::with_template("{msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_message(line.clone());
                    }
                    *end = ending;
                }
            }
            News::FleetFinished { .. } => {
                let endings: Vec<String> = self
                    .hosts
                    .iter()
                    .filter_map(|(_, _, e)| e.clone())
                    .collect();
                for (_, bar, _) in self.hosts.drain(..) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.print(&endings);
            }
            _ => self.print(&lines(news)),
        }
    }
}

/// `--json`: a fleet's news as events on stdout, each with its host.
pub fn listen_json() {
    crate::progress::listen_fleet(Box::new(|news| {
        let line = news.to_json().to_string();
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }));
}

/// What a person reads of a fleet's news: one or more whole lines.
fn lines(news: &News) -> Vec<String> {
    match news {
        // A host that resumes its run had no dry run there: it was reached
        // and its binary is in place, which is all this says.
        News::HostChecked {
            host,
            ok: true,
            detail: Some(resumes),
            ..
        } => vec![format!("  {host} │ reached {}, {resumes}", style("✓").green())],
        News::HostChecked {
            host,
            ok: true,
            predicted,
            ..
        } => {
            let mut lines = vec![format!("  {host} │ preflight {}", style("✓").green())];
            lines.extend(predicted.iter().map(|p| format!("  {host} │   {}", console::truncate_str(p, WIDTH, "…"))));
            lines
        }
        News::HostChecked {
            host,
            status,
            detail,
            ..
        } => vec![format!(
            "  {host} │ {} {}: {}",
            host_mark(*status),
            status.as_str(),
            detail.as_deref().unwrap_or("")
        )],
        News::WaveStarted { wave, hosts } => {
            let what = match wave {
                1 => "wave 1, the canary".to_owned(),
                n => format!("wave {n}"),
            };
            vec![format!("{}: {}", style(what).bold(), hosts.join(", "))]
        }
        News::Host {
            host,
            run: Event::StepFinished {
                step, name, status, ..
            },
        } if !step.contains('.') => vec![format!("  {host} │ {} {name}", crate::reporter::mark(*status))],
        News::Host { .. } => Vec::new(),
        News::HostFinished {
            host,
            status,
            duration_ms,
            failed_step,
            error,
        } => {
            let why = match (failed_step, error) {
                (Some(s), Some(e)) => format!(" at {s}: {e}"),
                (None, Some(e)) => format!(": {e}"),
                (Some(s), None) => format!(" at {s}"),
                (None, None) => String::new(),
            };
            vec![format!(
                "  {host} │ {} {}{why} {}",
                host_mark(*status),
                status.as_str(),
                style(format!("({:.1}s)", *duration_ms as f64 / 1000.0)).dim()
            )]
        }
        News::BudgetSpent { spent, allowed } => vec![format!(
            "{} the failure budget is overspent: {spent} failed or unreachable, {allowed} allowed; no new host starts, running ones stop at their next step",
            style("✗").red()
        )],
        News::FleetFinished { .. } => Vec::new(),
    }
}

/// A host's ending's glyph, in its colour.
fn host_mark(status: HostStatus) -> console::StyledObject<&'static str> {
    match status {
        HostStatus::Succeeded | HostStatus::SucceededBefore => style("✓").green(),
        HostStatus::Interrupted | HostStatus::NotStarted => style("-").dim(),
        _ => style("✗").red(),
    }
}
