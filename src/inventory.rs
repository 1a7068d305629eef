//! The inventory: which hosts a fleet run may reach, by the names `ssh`
//! knows them by, in groups, each with its own variables (`root`, the
//! install's directory there). What a host name means (address, port,
//! user, jump host) is the ssh configuration's business, not this file's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// An ssh configuration to use instead of the user's (`ssh -F`), relative to the inventory.
    #[serde(default)]
    ssh_config: Option<PathBuf>,
    /// A runbook built for the hosts, when theirs is another architecture.
    #[serde(default)]
    binary: Option<PathBuf>,
    /// Variables for every host.
    #[serde(default)]
    vars: BTreeMap<String, Json>,
    hosts: Vec<RawHost>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHost {
    Name(String),
    Full(FullHost),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullHost {
    name: String,
    #[serde(default)]
    vars: BTreeMap<String, Json>,
}

/// A host as the fleet runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// Its name for ssh (`ssh NAME`), and in every report.
    pub name: String,
    /// The inventory's variables for every host, then its own.
    pub vars: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Inventory {
    pub file: PathBuf,
    pub ssh_config: Option<PathBuf>,
    pub binary: Option<PathBuf>,
    hosts: Vec<Host>,
    groups: BTreeMap<String, Vec<String>>,
}

impl Inventory {
    pub fn load(file: &Path) -> Result<Inventory, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|err| format!("{}: cannot read the inventory: {err}", file.display()))?;
        let raw: Raw =
            serde_saphyr::from_str(&text).map_err(|err| format!("{}: {err}", file.display()))?;
        let base = file.parent().unwrap_or(Path::new(""));
        let common = text_vars(&raw.vars);
        let mut hosts: Vec<Host> = Vec::new();
        for entry in raw.hosts {
            let (name, own) = match entry {
                RawHost::Name(name) => (name, Vec::new()),
                RawHost::Full(full) => (full.name, text_vars(&full.vars)),
            };
            if !is_host_name(&name) {
                return Err(format!(
                    "{}: `{name}` is not a host name: letters, digits and `.`, `-`, `_`, `@`, `:`, not starting with `-` or `.`",
                    file.display()
                ));
            }
            // Two names that make one directory would share one mirror.
            let dir = crate::fleet::file_name(&name);
            if let Some(other) = hosts
                .iter()
                .find(|h| crate::fleet::file_name(&h.name) == dir)
            {
                let why = if other.name == name {
                    String::new()
                } else {
                    format!(
                        " (as `{}`: their records would share a directory)",
                        other.name
                    )
                };
                return Err(format!(
                    "{}: the host `{name}` is listed twice{why}",
                    file.display()
                ));
            }
            let mut vars = common.clone();
            vars.retain(|(k, _)| !own.iter().any(|(o, _)| o == k));
            vars.extend(own);
            hosts.push(Host { name, vars });
        }
        for (group, members) in &raw.groups {
            if hosts.iter().any(|h| &h.name == group) {
                return Err(format!(
                    "{}: `{group}` is both a host and a group",
                    file.display()
                ));
            }
            for member in members {
                if !hosts.iter().any(|h| &h.name == member) {
                    return Err(format!(
                        "{}: the group `{group}` names `{member}`, which is not under `hosts`{}",
                        file.display(),
                        hint(member, hosts.iter().map(|h| h.name.as_str()))
                    ));
                }
            }
        }
        Ok(Inventory {
            file: file.to_path_buf(),
            ssh_config: raw.ssh_config.map(|p| base.join(p)),
            binary: raw.binary.map(|p| base.join(p)),
            hosts,
            groups: raw.groups,
        })
    }

    /// The hosts that `names` (host and group names, `all`) select, each
    /// once, in the order named: the first is the canary.
    pub fn select(&self, names: &[String]) -> Result<Vec<Host>, String> {
        let mut out: Vec<Host> = Vec::new();
        let mut add = |host: &Host| {
            if !out.iter().any(|h| h.name == host.name) {
                out.push(host.clone());
            }
        };
        for name in names {
            if let Some(host) = self.hosts.iter().find(|h| &h.name == name) {
                add(host);
            } else if let Some(members) = self.groups.get(name) {
                for m in members {
                    if let Some(host) = self.hosts.iter().find(|h| &h.name == m) {
                        add(host);
                    }
                }
            } else if name == "all" {
                self.hosts.iter().for_each(&mut add);
            } else {
                let known = self
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .chain(self.groups.keys().map(String::as_str));
                return Err(format!(
                    "{}: no host or group is named `{name}`{}",
                    self.file.display(),
                    hint(name, known)
                ));
            }
        }
        Ok(out)
    }
}

/// A name ssh takes as a destination, and a directory can be named after.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | ':'))
}

fn hint<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    crate::diagnostic::did_you_mean(name, known)
        .map_or_else(String::new, |b| format!(" (did you mean `{b}`?)"))
}

/// Variables as `--var` gives them: text, numbers and booleans as written.
fn text_vars(vars: &BTreeMap<String, Json>) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| {
            let text = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Inventory, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("inventory.yaml");
        std::fs::write(&file, text).expect("write");
        Inventory::load(&file)
    }

    #[test]
    fn a_name_that_is_not_a_host_or_would_share_a_directory_is_refused() {
        let err = load("hosts: [\"..\"]\n").err().unwrap_or_default();
        assert!(err.contains("`..` is not a host name"), "{err}");
        let err = load("hosts: [\"a/b\"]\n").err().unwrap_or_default();
        assert!(err.contains("is not a host name"), "{err}");
        let err = load("hosts: [\"ops@db\", \"ops_db\"]\n")
            .err()
            .unwrap_or_default();
        assert!(err.contains("would share a directory"), "{err}");
    }

    #[test]
    fn groups_select_in_the_order_named_each_host_once_with_its_own_vars_winning() {
        let inv = load(
            "vars: {root: /srv/app, mode: fast}\nhosts:\n  - staging\n  - name: eu\n    vars: {root: /opt/app}\n  - us\ngroups:\n  production: [us, eu]\n",
        )
        .expect("valid");
        let names = |sel: &[&str]| -> Vec<String> {
            let sel: Vec<String> = sel.iter().map(|s| (*s).to_owned()).collect();
            inv.select(&sel)
                .expect("selects")
                .into_iter()
                .map(|h| h.name)
                .collect()
        };
        assert_eq!(names(&["staging", "production"]), ["staging", "us", "eu"]);
        assert_eq!(names(&["production", "all"]), ["us", "eu", "staging"]);
        let eu = inv.select(&["eu".to_owned()]).expect("selects").remove(0);
        assert!(eu
            .vars
            .contains(&("root".to_owned(), "/opt/app".to_owned())));
        assert!(eu.vars.contains(&("mode".to_owned(), "fast".to_owned())));
        let err = inv
            .select(&["prodution".to_owned()])
            .err()
            .unwrap_or_default();
        assert!(err.contains("did you mean `production`?"), "{err}");
    }
}
