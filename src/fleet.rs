//! A playbook run on many hosts. Every host is checked first (reachable,
//! host key known, binary in place, install not held, the playbook's dry
//! run there); then the first host runs alone (the canary), then the others
//! in waves (`serial`). One failure budget covers the whole fleet
//! (`max_failed`), spent as each host finishes, by unreachable hosts as
//! well as failed ones; once it is overspent, no new wave starts and the
//! hosts still running stop at their next step boundary. Each host's run
//! is its own, with its own journal there (authoritative) mirrored here
//! under `hosts/<host>/`; a fleet run started again in the same run
//! directory (`runbook resume`) leaves the hosts that succeeded alone and
//! resumes the others' own journals.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::control::{Message, Mode, Order, Question, Said};
use crate::event::{Event, RunStatus};
use crate::inventory::Host;
use crate::shipment::Binary;
use crate::ssh::{Transport, Unreachable};

/// A number of hosts, or a share of the fleet (`"25%"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Count(usize),
    Percent(u32),
}

impl Size {
    /// A wave's size: a share rounds up, and a wave has at least one host.
    fn wave(self, total: usize) -> usize {
        match self {
            Size::Count(n) => n,
            Size::Percent(p) => (total * p as usize).div_ceil(100),
        }
        .max(1)
    }

    /// The failures allowed: a share rounds down (`10%` of 5 hosts is 0).
    fn allowed(self, total: usize) -> usize {
        match self {
            Size::Count(n) => n,
            Size::Percent(p) => total * p as usize / 100,
        }
    }

    pub fn parse(text: &str) -> Result<Size, String> {
        let bad = || format!("`{text}` is neither a number of hosts nor a percentage like \"25%\"");
        match text.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if p <= 100 => Ok(Size::Percent(p)),
                _ => Err(bad()),
            },
            None => text
                .trim()
                .parse::<usize>()
                .map(Size::Count)
                .map_err(|_| bad()),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Count(n) => write!(f, "{n}"),
            Size::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Everything a fleet run needs, resolved.
pub struct Fleet {
    pub hosts: Vec<Host>,
    pub serial: Vec<Size>,
    pub max_failed: Size,
    /// A pause after the canary, for its effects to show.
    pub soak: Option<Duration>,
    /// Ask the operator before going on from the canary.
    pub confirm_canary: bool,
    pub ssh: crate::ssh::Settings,
    pub binary: Option<PathBuf>,
    /// The playbook's bundle and the variables every host gets.
    pub files: std::collections::BTreeMap<String, String>,
    pub playbook: String,
    pub vars: Vec<(String, String)>,
    pub yes: bool,
    /// Where each host's journal is mirrored (`<run dir>/hosts`).
    pub mirror: PathBuf,
    /// The secrets the hosts' playbook takes, redacted again from what is
    /// mirrored here.
    pub secrets: crate::secret::Secrets,
    /// Those secrets by name and value, sent to each host over its control
    /// channel (never on its command line).
    pub sent_secrets: Vec<(String, String)>,
}

/// How a host's part ended.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    Succeeded,
    /// Succeeded in an earlier attempt of this fleet run: not run again.
    SucceededBefore,
    Failed,
    /// Could not be reached, or the link was lost mid-run.
    Unreachable,
    /// Reached, but not fit to run (binary, lock, dry run).
    PreflightFailed,
    /// Stopped at a step boundary (Ctrl-C, or the budget spent elsewhere).
    Interrupted,
    /// Never started: the budget was spent or the fleet was stopped first.
    NotStarted,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Succeeded => "succeeded",
            HostStatus::SucceededBefore => "succeeded before",
            HostStatus::Failed => "failed",
            HostStatus::Unreachable => "unreachable",
            HostStatus::PreflightFailed => "preflight failed",
            HostStatus::Interrupted => "interrupted",
            HostStatus::NotStarted => "not started",
        }
    }
}

/// One host's line in the fleet's report.
#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub status: HostStatus,
    /// The wave it ran in (1 is the canary).
    pub wave: Option<usize>,
    pub duration_ms: u64,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    /// What the dry run there said it would do, step by step.
    pub predicted: Vec<String>,
    /// The facts its run established (which option rolled back, rows carried).
    pub facts: Map<String, Json>,
    /// Its run directory on the host, whose journal is authoritative.
    pub run_dir: Option<String>,
}

impl HostReport {
    fn new(host: &str, status: HostStatus) -> HostReport {
        HostReport {
            host: host.to_owned(),
            status,
            wave: None,
            duration_ms: 0,
            failed_step: None,
            error: None,
            predicted: Vec::new(),
            facts: Map::new(),
            run_dir: None,
        }
    }
}

/// A wave as it happened.
#[derive(Clone, Debug, Serialize)]
pub struct Wave {
    pub wave: usize,
    pub hosts: Vec<String>,
    pub started: String,
    pub finished: String,
}

/// The budget's arithmetic.
#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    /// `max_failed` as written, and the hosts it allows.
    pub max_failed: String,
    pub allowed: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub preflight_failed: usize,
    pub breached: bool,
}

impl Budget {
    pub fn spent(&self) -> usize {
        self.failed + self.unreachable + self.preflight_failed
    }
}

/// The fleet run's one report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub hosts: Vec<HostReport>,
    pub waves: Vec<Wave>,
    pub budget: Budget,
    /// Stopped by the operator (Ctrl-C) before every host was done.
    pub interrupted: bool,
    /// Why the fleet went no further than the canary, when it did not.
    pub stopped: Option<String>,
}

/// What the fleet tells its views as it goes; `--json` prints each with
/// the host it is about.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum News {
    /// The preflight of one host is over.
    HostChecked {
        host: String,
        ok: bool,
        status: HostStatus,
        detail: Option<String>,
        predicted: Vec<String>,
    },
    WaveStarted {
        wave: usize,
        hosts: Vec<String>,
    },
    /// An event of a host's own run.
    Host {
        host: String,
        run: Event,
    },
    HostFinished {
        host: String,
        status: HostStatus,
        duration_ms: u64,
        failed_step: Option<String>,
        error: Option<String>,
    },
    /// The budget is overspent: no new host starts.
    BudgetSpent {
        spent: usize,
        allowed: usize,
    },
    FleetFinished {
        #[serde(flatten)]
        report: Report,
    },
}

impl News {
    /// As `--json` prints it: a host's own event is that event with its
    /// host added; the fleet's own news are events of their own kinds.
    pub fn to_json(&self) -> Json {
        let (host, value) = match self {
            News::Host { host, run } => (Some(host), serde_json::to_value(run)),
            other => (None, serde_json::to_value(other)),
        };
        let mut value = value.unwrap_or(Json::Null);
        if let (Some(host), Json::Object(map)) = (host, &mut value) {
            map.insert("host".into(), Json::String(host.clone()));
        }
        value
    }
}

/// A host's preflight: fit to run (its binary's path there, whether to run
/// or resume, its dry run's path), or why not.
type Checked = Result<(String, Mode, Vec<String>), Box<HostReport>>;

/// The control channels of a wave's running hosts, and whether they have
/// been told to stop: a host that registers after the stop is told at once.
#[derive(Default)]
struct Channels {
    stopping: bool,
    hosts: HashMap<String, ChildStdin>,
}

type Controls = Arc<Mutex<Channels>>;

impl Fleet {
    /// Runs the fleet to its end, telling `news` as it goes.
    pub fn run(&self, news: &(dyn Fn(News) + Sync)) -> Report {
        let mut budget = Budget {
            max_failed: self.max_failed.to_string(),
            allowed: self.allowed(),
            failed: 0,
            unreachable: 0,
            preflight_failed: 0,
            breached: false,
        };
        let transport = match Transport::new(self.ssh.clone()) {
            Ok(t) => t,
            Err(err) => return self.nobody(budget, &format!("cannot set up ssh: {err}")),
        };
        let binary = match Binary::new(self.binary.as_deref()) {
            Ok(b) => b,
            Err(err) => {
                return self.nobody(
                    budget,
                    &format!("cannot read the runbook binary to ship: {err}"),
                )
            }
        };
        let checked = self.preflight(&transport, &binary, news);
        let mut reports: Vec<HostReport> = Vec::new();
        let mut ready: Vec<(Host, String, Mode)> = Vec::new();
        for (host, result) in self.hosts.iter().zip(checked) {
            match result {
                Ok((path, mode, predicted)) => {
                    let mut waiting = HostReport::new(&host.name, HostStatus::NotStarted);
                    waiting.predicted = predicted;
                    reports.push(waiting);
                    ready.push((host.clone(), path, mode));
                }
                Err(report) => {
                    count(&mut budget, report.status);
                    reports.push(*report);
                }
            }
        }
        let mut waves: Vec<Wave> = Vec::new();
        let mut interrupted = false;
        let mut stopped = None;
        if budget.spent() > budget.allowed {
            budget.breached = true;
            news(News::BudgetSpent {
                spent: budget.spent(),
                allowed: budget.allowed,
            });
        }
        let sizes = self.wave_sizes(ready.len());
        let mut queue = ready.into_iter();
        for (i, size) in sizes.into_iter().enumerate() {
            if budget.breached || crate::interrupt::requested() {
                interrupted |= crate::interrupt::requested();
                break;
            }
            if i == 1 {
                if let Some(why) = self.after_canary(&reports) {
                    interrupted |= crate::interrupt::requested();
                    stopped = Some(why);
                    break;
                }
            }
            let wave: Vec<(Host, String, Mode)> = queue.by_ref().take(size).collect();
            let names: Vec<String> = wave.iter().map(|(h, _, _)| h.name.clone()).collect();
            news(News::WaveStarted {
                wave: i + 1,
                hosts: names.clone(),
            });
            let started = crate::event::now();
            let finished = self.run_wave(&transport, wave, &mut budget, &mut interrupted, news);
            for mut report in finished {
                report.wave = Some(i + 1);
                if let Some(slot) = reports.iter_mut().find(|r| r.host == report.host) {
                    report.predicted = std::mem::take(&mut slot.predicted);
                    *slot = report;
                }
            }
            waves.push(Wave {
                wave: i + 1,
                hosts: names,
                started,
                finished: crate::event::now(),
            });
        }
        let report = Report {
            hosts: reports,
            waves,
            budget,
            interrupted,
            stopped,
        };
        news(News::FleetFinished {
            report: report.clone(),
        });
        report
    }

    /// After the canary: the soak, then the operator's go-ahead if asked
    /// for. Why the fleet goes no further, if it does not.
    fn after_canary(&self, reports: &[HostReport]) -> Option<String> {
        if let Some(soak) = self.soak {
            if !pause(soak) {
                return Some("stopped (Ctrl-C) during the soak after the canary".into());
            }
        }
        if !self.confirm_canary {
            return None;
        }
        let canary = reports
            .iter()
            .find(|r| r.wave == Some(1))
            .map_or_else(String::new, |r| format!("{} {}", r.host, r.status.as_str()));
        let question = format!("the canary is done ({canary}): go on with the other hosts?");
        crate::action::confirm::ask("fleet", &question, self.yes)
            .err()
            .map(|why| format!("not gone on after the canary: {why}"))
    }

    /// What a dry run can learn of each host without changing anything
    /// there: whether it is reached (its host key checked strictly, never
    /// recorded) and whether runbook is in place or would be shipped. Ok
    /// is what is fine; Err what would fail its preflight.
    pub fn survey(&self) -> Vec<(String, Result<String, String>)> {
        let accept_new = self.ssh.accept_new_host_keys;
        let strict = crate::ssh::Settings {
            accept_new_host_keys: false,
            ..self.ssh.clone()
        };
        let (transport, binary) =
            match (Transport::new(strict), Binary::new(self.binary.as_deref())) {
                (Ok(t), Ok(b)) => (t, b),
                (Err(e), _) | (_, Err(e)) => {
                    let why = format!("cannot survey the hosts: {e}");
                    return self
                        .hosts
                        .iter()
                        .map(|h| (h.name.clone(), Err(why.clone())))
                        .collect();
                }
            };
        let one = |host: &Host| -> Result<String, String> {
            match transport.connect(&host.name) {
                Ok(()) => {}
                Err(Unreachable::UnknownHostKey { .. }) if accept_new => {
                    return Ok("its host key is not known yet: the run would accept it".into())
                }
                Err(u) => return Err(u.to_string()),
            }
            match binary.probe(&transport, &host.name) {
                Ok(crate::shipment::Presence::Present(_)) => Ok("reached; runbook in place".into()),
                Ok(crate::shipment::Presence::Absent(_)) => Ok(format!(
                    "reached; runbook would be shipped ({} MiB)",
                    binary.size().div_ceil(1 << 20)
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .hosts
                .iter()
                .map(|h| scope.spawn(move || one(h)))
                .collect();
            handles
                .into_iter()
                .zip(&self.hosts)
                .map(|(handle, host)| {
                    let result = handle
                        .join()
                        .unwrap_or_else(|_| Err("the survey's thread panicked".into()));
                    (host.name.clone(), result)
                })
                .collect()
        })
    }

    /// The failures the budget allows this fleet.
    pub fn allowed(&self) -> usize {
        self.max_failed.allowed(self.hosts.len())
    }

    /// A report where no host could even be tried.
    fn nobody(&self, mut budget: Budget, why: &str) -> Report {
        let hosts: Vec<HostReport> = self
            .hosts
            .iter()
            .map(|h| {
                let mut r = HostReport::new(&h.name, HostStatus::PreflightFailed);
                r.error = Some(why.to_owned());
                r
            })
            .collect();
        budget.preflight_failed = hosts.len();
        budget.breached = budget.spent() > budget.allowed;
        Report {
            hosts,
            waves: Vec::new(),
            budget,
            interrupted: false,
            stopped: None,
        }
    }

    /// The canary, then `serial`'s sizes, the last repeating.
    fn wave_sizes(&self, hosts: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = hosts;
        let mut i = 0;
        while left > 0 {
            let size = self
                .serial
                .get(i)
                .or(self.serial.last())
                .map_or(left, |s| s.wave(self.hosts.len()))
                .min(left);
            sizes.push(size);
            left -= size;
            i += 1;
        }
        sizes
    }

    /// Checks every host at once: connects, ships the binary, and dry-runs
    /// the playbook there. A host that succeeded in an earlier attempt is
    /// only reported. Ok is the binary's path there and what to do.
    fn preflight(
        &self,
        transport: &Transport,
        binary: &Binary,
        news: &(dyn Fn(News) + Sync),
    ) -> Vec<Checked> {
        let hosts = &self.hosts;
        std::thread::scope(|scope| {
            let handles: Vec<_> = hosts
                .iter()
                .map(|host| scope.spawn(move || self.check(transport, binary, host)))
                .collect();
            handles
                .into_iter()
                .zip(hosts)
                .map(|(h, host)| {
                    let result = h.join().unwrap_or_else(|_| {
                        let mut r = HostReport::new(&host.name, HostStatus::PreflightFailed);
                        r.error = Some("the preflight's thread panicked".into());
                        Err(Box::new(r))
                    });
                    let (ok, status, detail, predicted) = match &result {
                        // No dry run there: say what it will do instead.
                        Ok((_, Mode::Resume(dir), _)) => (
                            true,
                            HostStatus::NotStarted,
                            Some(format!("resumes its run in {}", dir.display())),
                            Vec::new(),
                        ),
                        Ok((_, _, predicted)) => {
                            (true, HostStatus::NotStarted, None, predicted.clone())
                        }
                        Err(r) => (false, r.status, r.error.clone(), r.predicted.clone()),
                    };
                    news(News::HostChecked {
                        host: host.name.clone(),
                        ok,
                        status,
                        detail,
                        predicted,
                    });
                    result
                })
                .collect()
        })
    }

    fn check(&self, transport: &Transport, binary: &Binary, host: &Host) -> Checked {
        let fail = |status: HostStatus, why: String| {
            let mut r = HostReport::new(&host.name, status);
            r.error = Some(why);
            Box::new(r)
        };
        let earlier = earlier_attempt(&self.mirror_of(&host.name))
            .map_err(|why| fail(HostStatus::PreflightFailed, why))?;
        let mode = match earlier {
            Earlier::Succeeded => {
                return Err(Box::new(HostReport::new(
                    &host.name,
                    HostStatus::SucceededBefore,
                )))
            }
            Earlier::Unfinished(dir) => Mode::Resume(dir),
            Earlier::None => Mode::Run,
        };
        transport
            .connect(&host.name)
            .map_err(|u: Unreachable| fail(HostStatus::Unreachable, u.to_string()))?;
        let path = binary
            .install(transport, &host.name)
            .map_err(|e| fail(HostStatus::PreflightFailed, e.to_string()))?;
        // A run to resume is checked by its own resume there (its lock is
        // waited for, its recorded playbook reused), not by a dry run of
        // this bundle from its first step.
        if let Mode::Resume(_) = &mode {
            return Ok((path, mode, Vec::new()));
        }
        let dry = self.start(transport, host, &path, Mode::DryRun, None);
        let mut predicted = Vec::new();
        let mut finished: Option<(RunStatus, Option<String>, Option<String>)> = None;
        let outcome = dry.and_then(|running| {
            running.follow(|event| match event {
                Event::StepFinished {
                    step,
                    status,
                    detail,
                    ..
                } if !step.contains('.') => predicted.push(match detail {
                    Some(d) => format!("{step}: {} ({d})", status.as_str()),
                    None => format!("{step}: {}", status.as_str()),
                }),
                Event::RunFinished {
                    status,
                    failed_step,
                    error,
                    ..
                } => finished = Some((*status, failed_step.clone(), error.clone())),
                _ => {}
            })
        });
        let (code, stderr) = match outcome {
            Ok(done) => done,
            Err((status, why)) => {
                let status = if status == HostStatus::Failed {
                    HostStatus::PreflightFailed
                } else {
                    status
                };
                return Err(fail(status, why));
            }
        };
        let report = |status, why| {
            let mut r = fail(status, why);
            r.predicted = predicted.clone();
            r
        };
        match (code, finished) {
            (Some(0), Some((RunStatus::Succeeded, _, _))) => Ok((path, mode, predicted)),
            // Fit to run, but the dry run there cannot promise the outcome:
            // said with the path, not hidden behind the ✓.
            (Some(5), Some((RunStatus::Unpredictable, step, _))) => {
                let mut predicted = predicted;
                predicted.push(format!(
                    "its dry run cannot tell whether the run will succeed{}",
                    step.map(|s| format!(" (from {s} on)")).unwrap_or_default()
                ));
                Ok((path, mode, predicted))
            }
            (Some(255), _) => Err(report(HostStatus::Unreachable, last_line(&stderr))),
            (Some(4), _) => Err(report(
                HostStatus::PreflightFailed,
                format!("the install is held by another run: {}", last_line(&stderr)),
            )),
            (_, Some((status, step, error))) => Err(report(
                HostStatus::PreflightFailed,
                format!(
                    "its dry run {}{}{}",
                    status.as_str(),
                    step.map(|s| format!(" at {s}")).unwrap_or_default(),
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                ),
            )),
            (_, None) => Err(report(
                HostStatus::PreflightFailed,
                format!("its dry run did not start: {}", last_line(&stderr)),
            )),
        }
    }

    /// Runs one wave's hosts side by side; returns when all are done.
    fn run_wave(
        &self,
        transport: &Transport,
        wave: Vec<(Host, String, Mode)>,
        budget: &mut Budget,
        interrupted: &mut bool,
        news: &(dyn Fn(News) + Sync),
    ) -> Vec<HostReport> {
        let controls: Controls = Arc::default();
        let (done, finished) = mpsc::channel::<HostReport>();
        let mut reports = Vec::new();
        std::thread::scope(|scope| {
            let count_hosts = wave.len();
            for (host, path, mode) in wave {
                let done = done.clone();
                let controls = Arc::clone(&controls);
                scope.spawn(move || {
                    let report = self.run_host(transport, &host, &path, mode, &controls, news);
                    let _ = done.send(report);
                });
            }
            drop(done);
            while reports.len() < count_hosts {
                let mut told = Vec::new();
                match finished.recv_timeout(Duration::from_millis(100)) {
                    Ok(mut report) => {
                        // Stopped though nobody here asked it to: a failure.
                        if report.status == HostStatus::Interrupted && !stopping(&controls) {
                            report.status = HostStatus::Failed;
                            report.error = Some(format!(
                                "interrupted on the host, not by this controller: {}",
                                report.error.as_deref().unwrap_or("no reason given")
                            ));
                        }
                        count(budget, report.status);
                        told.push(News::HostFinished {
                            host: report.host.clone(),
                            status: report.status,
                            duration_ms: report.duration_ms,
                            failed_step: report.failed_step.clone(),
                            error: report.error.clone(),
                        });
                        reports.push(report);
                        if !budget.breached && budget.spent() > budget.allowed {
                            budget.breached = true;
                            told.push(News::BudgetSpent {
                                spent: budget.spent(),
                                allowed: budget.allowed,
                            });
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if crate::interrupt::requested() {
                    *interrupted = true;
                }
                // The hosts first, the views after: a view waiting on the
                // terminal (a question being answered) must not hold up a stop.
                if !stopping(&controls) && (budget.breached || *interrupted) {
                    stop_all(&controls);
                }
                for n in told {
                    news(n);
                }
            }
        });
        reports
    }

    /// One host's run (or resume), from start to end, mirrored.
    fn run_host(
        &self,
        transport: &Transport,
        host: &Host,
        path: &str,
        mode: Mode,
        controls: &Controls,
        news: &(dyn Fn(News) + Sync),
    ) -> HostReport {
        let started = Instant::now();
        let mut report = HostReport::new(&host.name, HostStatus::Failed);
        let mirror_dir = self.mirror_of(&host.name);
        let mirror = std::fs::create_dir_all(&mirror_dir).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(mirror_dir.join(crate::journal::FILE_NAME))
        });
        let mut mirror = match mirror {
            Ok(f) => Some(f),
            Err(err) => {
                report.error = Some(format!(
                    "cannot mirror its journal in {}: {err}",
                    mirror_dir.display()
                ));
                return report;
            }
        };
        let running = self.start(transport, host, path, mode, Some(controls));
        let mut finished: Option<Event> = None;
        let outcome = running.and_then(|running| {
            running.follow_lines(|line, event| {
                if event.is_none() {
                    if let Ok(Said::Question(q)) = serde_json::from_str::<Said>(line) {
                        let yes = ask_operator(&host.name, &q, self.yes);
                        tell(controls, &host.name, &Message::Answer { id: q.id, yes });
                        return;
                    }
                }
                // Only events, each whole and redacted again: the mirror is a
                // journal a later resume reads.
                if let (Some(file), Some(event)) = (mirror.as_mut(), &event) {
                    let copy = serde_json::to_string(&event.redacted(&self.secrets));
                    // The mirror is a copy for reading: its loss is said at the end.
                    if copy
                        .and_then(|c| writeln!(file, "{c}").map_err(serde_json::Error::io))
                        .is_err()
                    {
                        mirror = None;
                    }
                }
                if let Some(event) = event {
                    if let Event::RunStarted { run_dir, .. } = &event {
                        report.run_dir.clone_from(run_dir);
                    }
                    if matches!(event, Event::RunFinished { .. }) {
                        finished = Some(event.clone());
                    }
                    news(News::Host {
                        host: host.name.clone(),
                        run: event,
                    });
                }
            })
        });
        if let Ok(mut c) = controls.lock() {
            c.hosts.remove(&host.name);
        }
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (code, stderr) = match outcome {
            Ok(done) => done,
            Err((status, why)) => {
                report.status = status;
                report.error = Some(why);
                return report;
            }
        };
        match finished {
            Some(Event::RunFinished {
                status,
                failed_step,
                error,
                facts,
                ..
            }) => {
                report.status = match status {
                    RunStatus::Succeeded => HostStatus::Succeeded,
                    RunStatus::Interrupted => HostStatus::Interrupted,
                    _ => HostStatus::Failed,
                };
                report.failed_step = failed_step;
                report.error = error;
                report.facts = facts;
            }
            _ if code == Some(255) || code.is_none() => {
                report.status = HostStatus::Unreachable;
                report.error = Some(format!("the link was lost mid-run: {}", last_line(&stderr)));
            }
            _ => {
                report.error = Some(last_line(&stderr));
            }
        }
        if mirror.is_none() && report.error.is_none() {
            report.error = Some(format!(
                "its mirrored journal in {} is incomplete",
                mirror_dir.display()
            ));
        }
        report
    }

    /// Starts `runbook host` there and sends it its order.
    fn start(
        &self,
        transport: &Transport,
        host: &Host,
        path: &str,
        mode: Mode,
        controls: Option<&Controls>,
    ) -> Result<Running, (HostStatus, String)> {
        let mut vars = self.vars.clone();
        for (k, v) in &host.vars {
            vars.retain(|(o, _)| o != k);
            vars.push((k.clone(), v.clone()));
        }
        let order = Order {
            files: self.files.clone(),
            playbook: self.playbook.clone(),
            vars,
            secrets: self.sent_secrets.clone(),
            yes: self.yes,
            can_ask: std::io::stdin().is_terminal(),
            mode,
        };
        let failed = |why: String| (HostStatus::Failed, why);
        let line = serde_json::to_string(&order).map_err(|e| failed(e.to_string()))?;
        let mut child = transport
            .command(&host.name, &Transport::line(&[path, "host"]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot start ssh: {e}")))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| failed("ssh has no stdin".into()))?;
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            // Whoever closed the channel says why: ssh (the link, 255) or
            // runbook there (an order it refused).
            drop(stdin);
            let out = child
                .wait_with_output()
                .map_err(|e| failed(format!("ssh: {e}")))?;
            let why = format!(
                "the order could not be sent ({e}): {}",
                last_line(&String::from_utf8_lossy(&out.stderr))
            );
            let status = if out.status.code() == Some(255) {
                HostStatus::Unreachable
            } else {
                HostStatus::Failed
            };
            return Err((status, why));
        }
        // Kept open for the run's length: its end asks the host to stop.
        let kept = match controls {
            Some(c) => {
                if let Ok(mut c) = c.lock() {
                    let mut stdin = stdin;
                    if c.stopping {
                        say_to(&mut stdin, &Message::Stop);
                    }
                    c.hosts.insert(host.name.clone(), stdin);
                }
                None
            }
            None => Some(stdin),
        };
        Ok(Running { child, stdin: kept })
    }

    fn mirror_of(&self, host: &str) -> PathBuf {
        self.mirror.join(file_name(host))
    }
}

/// A host's `runbook host` under way.
struct Running {
    child: std::process::Child,
    /// The control channel, when no one else holds it to say stop.
    stdin: Option<ChildStdin>,
}

impl Running {
    /// Reads its events to the end; returns its exit code and stderr.
    fn follow(
        self,
        mut each: impl FnMut(&Event),
    ) -> Result<(Option<i32>, String), (HostStatus, String)> {
        self.follow_lines(|_, event| {
            if let Some(e) = event {
                each(&e);
            }
        })
    }

    fn follow_lines(
        mut self,
        mut each: impl FnMut(&str, Option<Event>),
    ) -> Result<(Option<i32>, String), (HostStatus, String)> {
        let stderr = self.child.stderr.take();
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut s) = stderr {
                let _ = std::io::Read::read_to_string(&mut s, &mut text);
            }
            text
        });
        if let Some(stdout) = self.child.stdout.take() {
            let mut reader = BufReader::new(stdout);
            let mut bytes = Vec::new();
            // Read to the end whatever comes: a host whose output could not
            // be read would otherwise block writing it.
            while reader.read_until(b'\n', &mut bytes).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&bytes).trim_end().to_owned();
                bytes.clear();
                if line.trim().is_empty() {
                    continue;
                }
                let event = serde_json::from_str::<Event>(&line).ok();
                each(&line, event);
            }
        }
        drop(self.stdin.take());
        // ssh that cannot be waited for has lost the host.
        let status = self
            .child
            .wait()
            .map_err(|e| (HostStatus::Unreachable, format!("ssh: {e}")))?;
        let stderr = errors.join().unwrap_or_default();
        Ok((status.code(), stderr))
    }
}

/// Tells every running host, and every one that starts from now on, to
/// stop at its next step boundary.
fn stop_all(controls: &Controls) {
    if let Ok(mut c) = controls.lock() {
        c.stopping = true;
        for stdin in c.hosts.values_mut() {
            say_to(stdin, &Message::Stop);
        }
    }
}

/// Whether this controller has told its hosts to stop.
fn stopping(controls: &Controls) -> bool {
    controls.lock().unwrap_or_else(|e| e.into_inner()).stopping
}

/// Says something to one host.
fn tell(controls: &Controls, host: &str, message: &Message) {
    if let Some(stdin) = controls
        .lock()
        .ok()
        .as_mut()
        .and_then(|c| c.hosts.get_mut(host))
    {
        say_to(stdin, message);
    }
}

/// A host that cannot be told is one whose link is gone: its end says so.
fn say_to(stdin: &mut ChildStdin, message: &Message) {
    let line = serde_json::to_string(message).unwrap_or_default();
    let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
}

/// Puts a host's question to the operator, one question at a time however
/// many hosts ask: the answer is yes or no (no terminal is a no).
fn ask_operator(host: &str, q: &Question, yes: bool) -> bool {
    static ASKING: Mutex<()> = Mutex::new(());
    let _turn = ASKING.lock();
    let asker = format!("{host} {}", q.asker);
    crate::action::confirm::ask(&asker, &q.question, yes).is_ok()
}

fn count(budget: &mut Budget, status: HostStatus) {
    match status {
        HostStatus::Failed => budget.failed += 1,
        HostStatus::Unreachable => budget.unreachable += 1,
        HostStatus::PreflightFailed => budget.preflight_failed += 1,
        _ => {}
    }
}

/// Waits out the soak after the canary; false if the operator stopped it.
fn pause(soak: Duration) -> bool {
    let until = Instant::now() + soak;
    while Instant::now() < until {
        if crate::interrupt::requested() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    !crate::interrupt::requested()
}

/// What an earlier attempt of this fleet run left for a host.
enum Earlier {
    None,
    Succeeded,
    /// Its run directory on the host, to resume.
    Unfinished(PathBuf),
}

fn earlier_attempt(mirror: &Path) -> Result<Earlier, String> {
    let path = mirror.join(crate::journal::FILE_NAME);
    if !path.exists() {
        return Ok(Earlier::None);
    }
    // A copy that cannot be read says nothing of what the host did: never
    // a reason to start the host over.
    let events = crate::journal::read(&path).map_err(|e| {
        format!("its mirrored journal cannot be read ({e:#}); see its own journal on the host")
    })?;
    let succeeded = events.iter().rev().find_map(|e| match e {
        Event::RunFinished { status, .. } => Some(*status == RunStatus::Succeeded),
        Event::RunStarted { .. } => Some(false),
        _ => None,
    });
    if succeeded == Some(true) {
        return Ok(Earlier::Succeeded);
    }
    Ok(events
        .iter()
        .find_map(|e| match e {
            Event::RunStarted {
                run_dir: Some(dir), ..
            } => Some(Earlier::Unfinished(PathBuf::from(dir))),
            _ => None,
        })
        .unwrap_or(Earlier::None))
}

/// A host's name as a directory name.
pub fn file_name(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn last_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize, serial: &[&str]) -> Fleet {
        Fleet {
            hosts: (0..n)
                .map(|i| Host {
                    name: format!("h{i}"),
                    vars: Vec::new(),
                })
                .collect(),
            serial: serial
                .iter()
                .map(|s| Size::parse(s).expect("size"))
                .collect(),
            max_failed: Size::Count(0),
            soak: None,
            confirm_canary: false,
            ssh: crate::ssh::Settings::default(),
            binary: None,
            files: std::collections::BTreeMap::new(),
            playbook: String::new(),
            vars: Vec::new(),
            yes: false,
            mirror: PathBuf::new(),
            secrets: crate::secret::Secrets::default(),
            sent_secrets: Vec::new(),
        }
    }

    #[test]
    fn waves_start_with_the_canary_and_repeat_the_last_size() {
        assert_eq!(
            fleet(12, &["1", "5", "25%"]).wave_sizes(12),
            vec![1, 5, 3, 3]
        );
        assert_eq!(fleet(5, &[]).wave_sizes(5), vec![5]);
        assert_eq!(fleet(5, &["1"]).wave_sizes(5), vec![1, 1, 1, 1, 1]);
        assert_eq!(fleet(20, &["1", "100%"]).wave_sizes(20), vec![1, 19]);
    }

    #[test]
    fn a_share_of_the_fleet_rounds_up_for_waves_and_down_for_failures() {
        assert_eq!(Size::Percent(25).wave(5), 2);
        assert_eq!(Size::Percent(10).allowed(5), 0);
        assert_eq!(Size::Percent(40).allowed(5), 2);
        assert!(Size::parse("101%").is_err());
        assert!(Size::parse("many").is_err());
    }
}
