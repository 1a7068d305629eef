//! `fleet`: runs a playbook on hosts of an inventory over ssh, canary
//! first, then in waves, within one failure budget ([`crate::fleet`]). The
//! step is one part of a playbook that runs here, so an alert before it and
//! the outcome e-mail after it are sent once, by the controller, while the
//! rollback itself runs on every host. Its outputs are the fleet's report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Action, Context, Failure, Outputs, Text};
use crate::fleet::{HostStatus, Report, Size};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// The inventory file, relative to the working directory (as `root` is).
    inventory: PathBuf,
    /// Host and group names (`all` for every host), in order, as a list or
    /// as text (`"staging, production"`): the first host is the canary.
    hosts: Names,
    /// The playbook each host runs, relative to this playbook's directory;
    /// it is shipped with its includes and templates.
    playbook: PathBuf,
    /// Variables for every host's run; a host's own (inventory) win.
    #[serde(default)]
    vars: BTreeMap<String, Text>,
    /// Wave sizes (numbers of hosts or shares like "25%"), the last
    /// repeating; the first wave is the canary [default: 1, then "100%"].
    #[serde(default)]
    serial: Vec<Text>,
    /// Hosts that may fail (or be unreachable) before the fleet stops: a
    /// number or a share like "10%" [default: 0].
    #[serde(default)]
    max_failed: Option<Text>,
    /// A pause after the canary, before the next wave (e.g. 2m).
    #[serde(default, deserialize_with = "super::duration_opt::deserialize")]
    #[schemars(with = "Option<String>")]
    soak: Option<Duration>,
    /// Ask the operator before going on from the canary to the others.
    #[serde(default)]
    confirm_canary: bool,
    /// Accept the host key of a host never seen (a changed key is refused all the same).
    #[serde(default)]
    accept_new_host_keys: bool,
}

/// Names given as a list, or as one text separated by commas or spaces.
#[derive(Debug, schemars::JsonSchema)]
#[schemars(with = "serde_json::Value")]
struct Names(Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Names, D::Error> {
        let split = |s: &str| -> Vec<String> {
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Names(split(&s))),
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => Ok(s),
                    other => Err(serde::de::Error::custom(format!(
                        "a host or group name is text, not {}",
                        super::json_kind(&other)
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Names),
            other => Err(serde::de::Error::custom(format!(
                "expected host and group names, found {}",
                super::json_kind(&other)
            ))),
        }
    }
}

impl Fleet {
    fn serial(&self) -> Result<Vec<Size>, String> {
        if self.serial.is_empty() {
            return Ok(vec![Size::Count(1), Size::Percent(100)]);
        }
        self.serial
            .iter()
            .map(|s| Size::parse(&s.0).map_err(|e| format!("serial: {e}")))
            .collect()
    }

    fn max_failed(&self) -> Result<Size, String> {
        match &self.max_failed {
            None => Ok(Size::Count(0)),
            Some(t) => Size::parse(&t.0).map_err(|e| format!("max_failed: {e}")),
        }
    }

    /// Everything the fleet needs, from the arguments and the files they name.
    fn fleet(&self, ctx: &Context<'_>, run_dir: &Path) -> Result<crate::fleet::Fleet, String> {
        let inventory = crate::inventory::Inventory::load(&self.inventory)?;
        let hosts = inventory.select(&self.hosts.0)?;
        if hosts.is_empty() {
            return Err(format!(
                "no host is selected by {}",
                self.hosts.0.join(", ")
            ));
        }
        // An absolute path stays as it is: `join` replaces the base with it.
        let playbook = ctx.base.join(&self.playbook);
        let vars: Vec<(String, String)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        // Checked here with the fleet's variables, so that a playbook that
        // cannot run is found before any host is touched.
        let options = crate::analyzer::Options {
            vars: vars.clone(),
            require_values: false,
        };
        let plan = crate::analyzer::analyze(&playbook, &options)
            .map_err(|d| format!("the hosts' playbook is not valid:\n{d}"))?;
        let (files, relative) = crate::shipment::bundle(&plan)
            .map_err(|e| format!("cannot read {}'s files: {e}", playbook.display()))?;
        // The hosts get the secrets their playbook takes, and no others.
        let sent_secrets = crate::secret::from_environment()
            .into_iter()
            .filter(|(name, _)| plan.scopes.iter().any(|s| s.vars.contains_key(name)))
            .collect();
        Ok(crate::fleet::Fleet {
            hosts,
            serial: self.serial()?,
            max_failed: self.max_failed()?,
            soak: self.soak,
            confirm_canary: self.confirm_canary,
            ssh: crate::ssh::Settings {
                config: inventory.ssh_config.clone(),
                accept_new_host_keys: self.accept_new_host_keys || ctx.remote.accept_new_host_keys,
            },
            binary: ctx
                .remote
                .remote_binary
                .clone()
                .or_else(|| inventory.binary.clone()),
            files,
            playbook: relative,
            vars,
            yes: ctx.yes,
            mirror: run_dir.join("hosts"),
            secrets: plan.secrets.clone(),
            sent_secrets,
        })
    }
}

impl Action for Fleet {
    fn mutates(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "run {} on {} from {} (the first host as the canary, then waves; failures allowed: {})",
            self.playbook.display(),
            self.hosts.0.join(", "),
            self.inventory.display(),
            self.max_failed.as_ref().map_or("0", |t| t.0.as_str())
        )
    }

    fn invalid(&self) -> Option<String> {
        // A size still to be rendered is checked when the step runs.
        let templated = |t: &Text| t.0.contains("{{");
        if self.serial.iter().any(templated) || self.max_failed.as_ref().is_some_and(templated) {
            return None;
        }
        self.serial().err().or_else(|| self.max_failed().err())
    }

    /// A dry run reaches every host, changing nothing there: whether it can
    /// be reached and whether runbook would be shipped. Hosts that would
    /// fail their preflight beyond the budget make it a predicted failure.
    fn preview(&self, ctx: &Context<'_>) -> Result<String, Failure> {
        let fleet = self.fleet(ctx, Path::new("")).map_err(Failure::Failed)?;
        let survey = fleet.survey();
        let failing = survey.iter().filter(|(_, r)| r.is_err()).count();
        let hosts: Vec<String> = survey
            .iter()
            .map(|(host, r)| match r {
                Ok(fine) => format!("{host}: {fine}"),
                Err(why) => format!("{host}: ✗ {why}"),
            })
            .collect();
        let text = format!("{} — {}", self.describe(), hosts.join("; "));
        if failing > fleet.allowed() {
            return Err(Failure::Foreseen(format!(
                "{text}; {failing} would fail their preflight, {} allowed: the fleet would stop before its canary",
                fleet.allowed()
            )));
        }
        Ok(text)
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let run_dir = ctx
            .run_dir
            .clone()
            .ok_or_else(|| Failure::failed("a fleet runs only with a run directory"))?;
        let fleet = self.fleet(ctx, &run_dir).map_err(Failure::Failed)?;
        let report = fleet.run(&|news| crate::progress::fleet(&news));
        verdict(&report)
    }
}

/// The step's ending: ok when every host succeeded; a warning naming the
/// hosts that failed within the budget; a failure once it is overspent, or
/// when the operator stopped the fleet.
fn verdict(report: &Report) -> Result<Outputs, Failure> {
    let mut outputs = super::outputs(report);
    let not = |s: HostStatus| !matches!(s, HostStatus::Succeeded | HostStatus::SucceededBefore);
    let short: Vec<String> = report
        .hosts
        .iter()
        .filter(|h| not(h.status))
        .map(|h| format!("{} ({})", h.host, h.status.as_str()))
        .collect();
    let b = &report.budget;
    let arithmetic = format!(
        "{} failed, {} unreachable, {} failed preflight: {} of {} allowed",
        b.failed,
        b.unreachable,
        b.preflight_failed,
        b.spent(),
        b.allowed
    );
    let hosts = short.join(", ");
    let stopped = if report.interrupted {
        Some(format!(
            "the fleet was stopped before every host was done: {hosts}"
        ))
    } else if let Some(why) = &report.stopped {
        Some(format!("{why}; the hosts left: {hosts}"))
    } else if b.breached {
        Some(format!(
            "the failure budget is overspent ({arithmetic}); no new host was started: {hosts}"
        ))
    } else {
        None
    };
    if let Some(why) = stopped {
        return Err(Failure::Reported(why, outputs));
    }
    if !short.is_empty() {
        outputs.insert(
            super::WARNING.into(),
            format!(
                "{} within the failure budget ({arithmetic})",
                short.join(", ")
            )
            .into(),
        );
    }
    Ok(outputs)
}
