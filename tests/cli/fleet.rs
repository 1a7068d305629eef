//! Fleets against real OpenSSH servers: every host is an `sshd -D` on a
//! loopback port with its own host key and home, reached through an ssh
//! configuration, known_hosts and key made for the test, and holding its
//! own go-fast-cdn install. The servers are stopped by pid when the test
//! ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{skipped, Output, Test};

const SSHD: &str = "/usr/sbin/sshd";

const ROLLBACK_HOST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/rollback_host.yaml");
const FLEET_ROLLBACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/fleet_rollback.yaml");

/// Hosts on loopback, each an sshd of its own.
pub struct Hosts {
    dir: PathBuf,
    hosts: Vec<Host>,
    /// Network namespaces made for hosts that can vanish, with their links.
    namespaces: Vec<(String, String)>,
}

pub struct Host {
    pub name: String,
    pub port: u16,
    pub home: PathBuf,
    host_key: PathBuf,
    sshd: Option<Child>,
}

impl Host {
    /// The host's go-fast-cdn install.
    pub fn root(&self) -> PathBuf {
        self.home.join("app")
    }

    pub fn db(&self) -> PathBuf {
        self.root().join("db_data/main.db")
    }

    /// Whether the migration is still in place there (its `media` table).
    pub fn migrated(&self) -> bool {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'media'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut child) = host.sshd.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for (ns, link) in &self.namespaces {
            // What still runs there (a session cut off mid-step) goes too.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["link", "del", link]).status();
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts one sshd per name, each host with a migrated install under its
/// home; `None` (said loudly) where OpenSSH's server is not installed.
pub fn hosts(t: &Test, names: &[&str]) -> Option<Hosts> {
    hosts_with(t, names, &[])
}

/// As [`hosts`], with more environment for some hosts' sessions
/// (`("cdn-1", "PATH=…")`), which win over the defaults.
pub fn hosts_with(t: &Test, names: &[&str], env: &[(&str, String)]) -> Option<Hosts> {
    if !Path::new(SSHD).exists() || Command::new("ssh").arg("-V").output().is_err() {
        skipped("fleet tests need OpenSSH (apt-get install openssh-server openssh-client)");
        return None;
    }
    // sshd refuses to start without its privilege separation directory.
    if std::fs::create_dir_all("/run/sshd").is_err() {
        skipped("fleet tests need /run/sshd (run them as root, as CI does)");
        return None;
    }
    let dir = t.path().join("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(dir.join("id")));
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
    let user = run(Command::new("id").arg("-un")).trim().to_owned();
    // Every host of every test shares one cache of shipped binaries, as
    // the binary is the same: the first test ships it, the others reuse it.
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-cache");
    let mut hosts = Hosts {
        dir: dir.clone(),
        hosts: Vec::new(),
        namespaces: Vec::new(),
    };
    for name in names {
        let home = t.path().join("hosts").join(name);
        std::fs::create_dir_all(&home).unwrap();
        let host_key = dir.join(format!("{name}.key"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&host_key));
        let port = free_port();
        let config = dir.join(format!("{name}.sshd_config"));
        let mut vars = vec![
            format!("HOME={}", home.display()),
            format!("XDG_CACHE_HOME={}", cache.display()),
        ];
        for (_, var) in env.iter().filter(|(h, _)| h == name) {
            let key = var.split('=').next().unwrap_or_default();
            vars.retain(|v| !v.starts_with(&format!("{key}=")));
            vars.push(var.clone());
        }
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {key}\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PermitRootLogin yes\nStrictModes no\nUsePAM no\nPidFile none\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nSetEnv {vars}\nLogLevel ERROR\n",
                key = host_key.display(),
                dir = dir.display(),
                vars = vars.join(" "),
            ),
        )
        .unwrap();
        let sshd = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(dir.join(format!("{name}.log")))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // The install each host rolls back: migrated, with uploads since.
        let built = t.run(&["demo", &home.display().to_string(), "--build-only"]);
        assert_eq!(built.code, 0, "{}", built.stderr);
        hosts.hosts.push(Host {
            name: (*name).to_owned(),
            port,
            home,
            host_key,
            sshd: Some(sshd),
        });
    }
    for host in &hosts.hosts {
        let mut up = false;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", host.port)).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(up, "sshd for {} did not start", host.name);
    }
    let mut config = String::new();
    let mut known = String::new();
    for host in &hosts.hosts {
        config.push_str(&format!(
            "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {dir}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile /dev/null\n",
            name = host.name,
            port = host.port,
            dir = dir.display(),
        ));
        let public = std::fs::read_to_string(host.host_key.with_extension("key.pub")).unwrap();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        known.push_str(&format!("[127.0.0.1]:{} {}\n", host.port, key.join(" ")));
    }
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(dir.join("known_hosts"), known).unwrap();
    Some(hosts)
}

impl Hosts {
    /// One more host, in a network namespace of its own joined to this one
    /// by a veth link, so that the test can make it vanish mid-run
    /// ([`Hosts::vanish`]); `None` (said loudly) without `ip`.
    pub fn add_in_namespace(&mut self, t: &Test, name: &str) -> Option<()> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if Command::new("ip").arg("-V").output().is_err() {
            skipped("the vanishing-host test needs `ip` (apt-get install iproute2)");
            return None;
        }
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() % 1000) * 10 + n;
        let ns = format!("rb-test-{id}");
        let (outside, inside) = (format!("rbv{id}a"), format!("rbv{id}b"));
        let subnet = id % 250;
        let ip = |args: &[&str]| run(Command::new("ip").args(args));
        ip(&["netns", "add", &ns]);
        self.namespaces.push((ns.clone(), outside.clone()));
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &ns]);
        ip(&[
            "addr",
            "add",
            &format!("10.213.{subnet}.1/30"),
            "dev",
            &outside,
        ]);
        ip(&["link", "set", &outside, "up"]);
        let address = format!("10.213.{subnet}.2");
        ip(&[
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("{address}/30"),
            "dev",
            &inside,
        ]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let home = t.path().join("hosts").join(name);
        std::fs::create_dir_all(&home).unwrap();
        let built = t.run(&["demo", &home.display().to_string(), "--build-only"]);
        assert_eq!(built.code, 0, "{}", built.stderr);
        let host_key = self.dir.join(format!("{name}.key"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&host_key));
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-cache");
        let config = self.dir.join(format!("{name}.sshd_config"));
        std::fs::write(
            &config,
            format!(
                "ListenAddress {address}:22\nHostKey {key}\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PermitRootLogin yes\nStrictModes no\nUsePAM no\nPidFile none\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nSetEnv HOME={home} XDG_CACHE_HOME={cache}\nLogLevel ERROR\n",
                key = host_key.display(),
                dir = self.dir.display(),
                home = home.display(),
                cache = cache.display(),
            ),
        )
        .unwrap();
        let sshd = Command::new("ip")
            .args(["netns", "exec", &ns, SSHD, "-D", "-f"])
            .arg(&config)
            .arg("-E")
            .arg(self.dir.join(format!("{name}.log")))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut up = false;
        for _ in 0..100 {
            if std::net::TcpStream::connect((address.as_str(), 22)).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(up, "sshd in {ns} did not start");
        let user = run(Command::new("id").arg("-un")).trim().to_owned();
        let mut config = std::fs::read_to_string(self.dir.join("config")).unwrap();
        config.push_str(&format!(
            "Host {name}\n  HostName {address}\n  Port 22\n  User {user}\n  IdentityFile {dir}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile /dev/null\n",
            dir = self.dir.display(),
        ));
        std::fs::write(self.dir.join("config"), config).unwrap();
        let public = std::fs::read_to_string(host_key.with_extension("key.pub")).unwrap();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        let mut known = std::fs::read_to_string(self.dir.join("known_hosts")).unwrap();
        known.push_str(&format!("{address} {}\n", key.join(" ")));
        std::fs::write(self.dir.join("known_hosts"), known).unwrap();
        self.hosts.push(Host {
            name: name.to_owned(),
            port: 22,
            home,
            host_key,
            sshd: Some(sshd),
        });
        Some(())
    }

    /// Cuts the link to a host made by [`Hosts::add_in_namespace`]: its
    /// packets go nowhere, as when a host loses power or its network.
    pub fn vanish(&self) {
        self.set_links("down");
    }

    /// Brings the link back: the host is there again, as it was.
    pub fn reappear(&self) {
        self.set_links("up");
    }

    fn set_links(&self, state: &str) {
        for (_, link) in &self.namespaces {
            run(Command::new("ip").args(["link", "set", link, state]));
        }
    }

    pub fn get(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap()
    }

    /// An inventory of these hosts (plus `extra` lines under `hosts:`),
    /// each host's root its install, with `host_vars` for some.
    pub fn inventory(&self, t: &Test, groups: &str, host_vars: &[(&str, &str)]) -> PathBuf {
        let mut text = format!("ssh_config: {}/config\nhosts:\n", self.dir.display());
        for host in &self.hosts {
            let own: String = host_vars
                .iter()
                .filter(|(h, _)| *h == host.name)
                .map(|(_, v)| format!(", {v}"))
                .collect();
            text.push_str(&format!(
                "  - name: {}\n    vars: {{root: {}{own}}}\n",
                host.name,
                host.root().display()
            ));
        }
        text.push_str(groups);
        let path = t.path().join("inventory.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Adds a host to the ssh configuration that nothing answers for.
    pub fn add_unreachable(&self, name: &str) {
        let mut config = std::fs::read_to_string(self.dir.join("config")).unwrap();
        config.push_str(&format!(
            "Host {name}\n  HostName 127.0.0.1\n  Port {}\n  ConnectTimeout 3\n",
            free_port()
        ));
        std::fs::write(self.dir.join("config"), config).unwrap();
    }

    /// Records another key for `name` in known_hosts, as if it had changed.
    pub fn change_key_of(&self, name: &str) {
        let host = self.get(name);
        let other = self.dir.join("other.key");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&other));
        let public = std::fs::read_to_string(other.with_extension("key.pub")).unwrap();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        let known = std::fs::read_to_string(self.dir.join("known_hosts")).unwrap();
        let prefix = format!("[127.0.0.1]:{} ", host.port);
        let known: String = known
            .lines()
            .map(|l| {
                if l.starts_with(&prefix) {
                    format!("{prefix}{}\n", key.join(" "))
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(self.dir.join("known_hosts"), known).unwrap();
    }
}

const FIVE: [&str; 5] = ["staging", "cdn-1", "cdn-2", "cdn-3", "cdn-4"];
const PRODUCTION: &str = "groups:\n  production: [cdn-1, cdn-2, cdn-3, cdn-4]\n";

/// The shipped fleet rollback with nothing to stop, start or probe.
fn fleet_rollback(t: &Test, inventory: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run".to_owned(),
        FLEET_ROLLBACK.to_owned(),
        "--yes".to_owned(),
    ];
    for var in [
        format!("inventory={}", inventory.display()),
        "reason=uploads lost".to_owned(),
        "stop_command=true".to_owned(),
        "start_command=true".to_owned(),
        "probe=off".to_owned(),
    ] {
        args.push("--var".into());
        args.push(var);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    t.run(&args)
}

/// A fleet of `rollback_host` with the given `serial` and `max_failed`.
fn custom_fleet(t: &Test, inventory: &Path, serial: &str, max_failed: &str) -> Output {
    custom_playbook(t, inventory, serial, max_failed, "");
    t.run(&["run", "custom.yaml"])
}

/// `custom.yaml`: `rollback_host` on every host, with `extra` arguments.
fn custom_playbook(t: &Test, inventory: &Path, serial: &str, max_failed: &str, extra: &str) {
    let playbook = format!(
        "name: custom\nsteps:\n  - id: rollback\n    name: Roll back the fleet\n    action: fleet\n    with:\n      inventory: {}\n      hosts: all\n      playbook: {ROLLBACK_HOST}\n      serial: {serial}\n      max_failed: \"{max_failed}\"\n      vars: {{stop_command: \"true\", start_command: \"true\", probe: \"off\"}}\n{extra}",
        inventory.display()
    );
    std::fs::write(t.path().join("custom.yaml"), playbook).unwrap();
}

/// The fleet step's outputs: its report.
fn report(out: &Output, step: &str) -> serde_json::Value {
    out.finished(step)["outputs"].clone()
}

fn status_of(report: &serde_json::Value, host: &str) -> String {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("{host} not in the report: {report:#}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The mirrored journal of a host's run, as the controller wrote it.
fn mirror(out: &Output, host: &str) -> Vec<serde_json::Value> {
    let path = out.run_dir().join("hosts").join(host).join("journal.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn five_hosts_roll_back_the_canary_first_then_the_others_each_with_its_journal_mirrored() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let inventory = hosts.inventory(&t, PRODUCTION, &[]);
    let out = fleet_rollback(&t, &inventory, &["--var", "notify_to=ops@example.com"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // Told once, from the controller: the alert before, the outcome after.
    let mails = crate::support::outbox(&out);
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails[0]
            .0
            .starts_with("URGENT: Media Migration Rollback Initiated on staging, production"),
        "{}",
        mails[0].0
    );
    let (subject, body, _) = &mails[1];
    assert!(
        subject.starts_with("Media Migration Rollback Completed on the fleet"),
        "{subject}"
    );
    for name in FIVE {
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("- {name}: ")))
            .unwrap_or_else(|| panic!("{name} not in the mail:\n{body}"));
        assert!(
            line.contains("succeeded")
                && line.contains("rolled back by option 1, the built-in rollback"),
            "{line}"
        );
        assert!(
            line.contains("uploads carried back: 2 images, 1 documents"),
            "{line}"
        );
    }
    assert!(
        body.contains(
            "Failure budget: 0 failed, 0 unreachable, 0 failed their preflight; 0 allowed"
        ),
        "{body}"
    );
    let r = report(&out, "rollback");
    let waves: Vec<Vec<String>> = r["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| serde_json::from_value(w["hosts"].clone()).unwrap())
        .collect();
    assert_eq!(
        waves,
        vec![
            vec!["staging".to_owned()],
            FIVE[1..].iter().map(|s| (*s).to_owned()).collect()
        ]
    );
    for name in FIVE {
        assert_eq!(status_of(&r, name), "succeeded");
        assert!(
            !hosts.get(name).migrated(),
            "{name} still has the media table"
        );
        // The report keeps what its preflight predicted beside what happened.
        let entry = r["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap();
        let predicted: Vec<&str> = entry["predicted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(
            predicted
                .iter()
                .any(|p| p.starts_with("option-1: would run")),
            "{predicted:?}"
        );
        assert_eq!(
            entry["facts"]["rolled_back_by"],
            "option 1, the built-in rollback"
        );
        let journal = mirror(&out, name);
        assert_eq!(journal.last().unwrap()["status"], "succeeded", "{name}");
        // The host's own journal is the authority; the mirror is its copy.
        let remote = journal[0]["run_dir"].as_str().unwrap();
        assert!(
            remote.starts_with(&hosts.get(name).home.display().to_string()),
            "{remote}"
        );
        let there = std::fs::read_to_string(Path::new(remote).join("journal.jsonl")).unwrap();
        assert_eq!(there.lines().count(), journal.len(), "{name}");
    }
    // Host lines are whole and name their host; the canary's come first.
    let lines: Vec<&str> = out.stdout.lines().collect();
    let canary_done = lines
        .iter()
        .position(|l| l.starts_with("  staging │ ✓ succeeded"))
        .unwrap();
    let wave_two = lines.iter().position(|l| l.starts_with("wave 2")).unwrap();
    assert!(canary_done < wave_two, "{}", out.stdout);
    for line in &lines {
        if let Some((host, _)) = line.trim_start().split_once(" │ ") {
            assert!(FIVE.contains(&host), "a line with a broken prefix: {line}");
        }
    }
}

#[test]
fn a_failed_canary_stops_the_fleet_before_the_second_wave() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let inventory = hosts.inventory(&t, PRODUCTION, &[("staging", "stop_command: \"false\"")]);
    let out = fleet_rollback(&t, &inventory, &[]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let r = report(&out, "rollback");
    assert_eq!(status_of(&r, "staging"), "failed");
    assert_eq!(r["waves"].as_array().unwrap().len(), 1, "{r:#}");
    for name in &FIVE[1..] {
        assert_eq!(status_of(&r, name), "not_started");
        assert!(hosts.get(name).migrated(), "{name} was touched");
        assert!(!out.run_dir().join("hosts").join(name).exists());
    }
    assert!(
        out.stdout.contains("the failure budget is overspent"),
        "{}",
        out.stdout
    );
    assert_eq!(r["budget"]["failed"], 1);
    assert_eq!(r["budget"]["allowed"], 0);
}

#[test]
fn a_budget_of_one_tolerates_the_first_failed_host_and_stops_at_the_second() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let failing = [
        ("cdn-1", "stop_command: \"false\""),
        ("cdn-2", "stop_command: \"false\""),
    ];
    let inventory = hosts.inventory(&t, "", &failing);
    // One host a wave, so the order of failures is the inventory's.
    let out = custom_fleet(&t, &inventory, "[1]", "1");
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let r = report(&out, "rollback");
    let statuses: Vec<String> = FIVE.iter().map(|h| status_of(&r, h)).collect();
    assert_eq!(
        statuses,
        [
            "succeeded",
            "failed",
            "failed",
            "not_started",
            "not_started"
        ]
    );
    assert!(!hosts.get("staging").migrated());
    assert!(hosts.get("cdn-3").migrated() && hosts.get("cdn-4").migrated());
    assert_eq!(r["budget"]["failed"], 2);
    assert_eq!(r["budget"]["breached"], true);
    let error = out.finished("rollback")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("2 of 1 allowed"), "{error}");
}

#[test]
fn an_unreachable_host_is_reported_before_the_canary_and_spends_the_budget() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    hosts.add_unreachable("gone");
    let inventory = hosts.inventory(&t, "  - gone\n", &[]);
    // `gone` goes under hosts: (the groups text is appended after them).
    let text = std::fs::read_to_string(&inventory).unwrap();
    assert!(text.ends_with("  - gone\n"));
    let out = custom_fleet(&t, &inventory, "[1, \"100%\"]", "1");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let r = report(&out, "rollback");
    assert_eq!(status_of(&r, "gone"), "unreachable");
    assert_eq!(r["budget"]["unreachable"], 1);
    for name in FIVE {
        assert_eq!(status_of(&r, name), "succeeded");
    }
    let lines: Vec<&str> = out.stdout.lines().collect();
    let gone = lines
        .iter()
        .position(|l| l.starts_with("  gone │ ✗ unreachable"))
        .unwrap();
    let canary = lines.iter().position(|l| l.starts_with("wave 1")).unwrap();
    assert!(gone < canary, "{}", out.stdout);
    // Within the budget, but not a ✓: the step is a warning naming the host.
    let step = out.finished("rollback");
    assert_eq!(step["status"], "warning");
    assert!(
        step["detail"]
            .as_str()
            .unwrap()
            .contains("gone (unreachable)"),
        "{step:#}"
    );
}

#[test]
fn a_changed_host_key_is_refused_naming_the_host_and_nothing_runs_anywhere() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    hosts.change_key_of("cdn-2");
    let inventory = hosts.inventory(&t, PRODUCTION, &[]);
    let out = fleet_rollback(&t, &inventory, &[]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let r = report(&out, "rollback");
    assert_eq!(status_of(&r, "cdn-2"), "unreachable");
    assert!(
        out.stdout.contains("cdn-2: its host key has CHANGED"),
        "{}",
        out.stdout
    );
    assert!(r["waves"].as_array().unwrap().is_empty(), "{r:#}");
    for name in FIVE {
        assert!(hosts.get(name).migrated(), "{name} was touched");
    }
}

/// A host playbook that leaves a trace of each step in its root, with a
/// pause (`pause` seconds) between its two steps and an `always` step.
const TRACED: &str = "name: traced
vars:
  root: .
  pause: \"0\"
  token: \"\"
steps:
  - id: first
    name: First
    action: shell
    with: {command: [sh, -c, \"echo first >> {{ root }}/trace\"]}
  - id: wait
    name: Wait
    action: shell
    with: {command: [sleep, \"{{ pause }}\"]}
  - id: last
    name: Last
    action: shell
    with: {command: [sh, -c, \"echo last >> {{ root }}/trace\"]}
always:
  - id: cleanup
    name: Clean up
    action: shell
    with: {command: [sh, -c, \"echo always >> {{ root }}/trace\"]}
";

/// A fleet of the traced playbook on every host: the canary, then the rest.
fn traced_fleet(t: &Test, inventory: &Path) -> Command {
    std::fs::write(t.path().join("traced.yaml"), TRACED).unwrap();
    let playbook = format!(
        "name: traced_fleet\nsteps:\n  - id: fleet\n    name: Every host\n    action: fleet\n    with:\n      inventory: {}\n      hosts: all\n      playbook: traced.yaml\n",
        inventory.display()
    );
    std::fs::write(t.path().join("traced_fleet.yaml"), playbook).unwrap();
    let mut cmd = t.command(&["run", "traced_fleet.yaml"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn trace(host: &Host) -> String {
    std::fs::read_to_string(host.root().join("trace")).unwrap_or_default()
}

/// Waits until every host but the canary has begun its pause.
fn wait_for_wave_two(hosts: &Hosts) {
    for _ in 0..400 {
        if FIVE[1..].iter().all(|h| trace(hosts.get(h)) == "first\n") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the second wave did not start");
}

fn finish(child: std::process::Child, dir: &Path) -> Output {
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        dir: dir.to_path_buf(),
    }
}

const SLOW_WAVE_TWO: [(&str, &str); 4] = [
    ("cdn-1", "pause: \"3\""),
    ("cdn-2", "pause: \"3\""),
    ("cdn-3", "pause: \"3\""),
    ("cdn-4", "pause: \"3\""),
];

#[test]
fn ctrl_c_on_the_controller_stops_every_host_at_a_step_boundary_and_resume_finishes_only_those() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let inventory = hosts.inventory(&t, "", &SLOW_WAVE_TWO);
    let child = traced_fleet(&t, &inventory).spawn().unwrap();
    wait_for_wave_two(&hosts);
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = finish(child, t.path());
    assert_eq!(out.code, 130, "{}\n{}", out.stdout, out.stderr);
    // Each host ended the step under way, skipped `last`, ran `always`.
    assert_eq!(trace(hosts.get("staging")), "first\nlast\nalways\n");
    for h in &FIVE[1..] {
        assert_eq!(trace(hosts.get(h)), "first\nalways\n", "{h}");
        assert_eq!(
            mirror(&out, h).last().unwrap()["status"],
            "interrupted",
            "{h}"
        );
    }
    let r = report(&out, "fleet");
    assert_eq!(r["interrupted"], true);

    let dir = out.run_dir().display().to_string();
    let resumed = t.run(&["resume", &dir]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    // The canary, done, is left alone; the others finish their own runs.
    assert_eq!(trace(hosts.get("staging")), "first\nlast\nalways\n");
    for h in &FIVE[1..] {
        let trace = trace(hosts.get(h));
        assert_eq!(trace.matches("first").count(), 1, "{h}: {trace}");
        assert_eq!(trace.matches("last").count(), 1, "{h}: {trace}");
    }
    let r = resumed.finished("fleet")["outputs"].clone();
    assert_eq!(status_of(&r, "staging"), "succeeded_before");
    for h in &FIVE[1..] {
        assert_eq!(status_of(&r, h), "succeeded");
        // No dry run there before it resumes, so no "preflight ✓" either.
        resumed.stdout_has(&format!("{h} │ reached ✓, resumes its run in "));
        assert!(
            !resumed.stdout.contains(&format!("{h} │ preflight ✓")),
            "{}",
            resumed.stdout
        );
    }
}

#[test]
fn the_controller_killed_mid_wave_leaves_hosts_that_stop_by_themselves_and_resume_finishes_them() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let inventory = hosts.inventory(&t, "", &SLOW_WAVE_TWO);
    let mut child = traced_fleet(&t, &inventory).spawn().unwrap();
    wait_for_wave_two(&hosts);
    child.kill().unwrap();
    let out = finish(child, t.path());
    // With their controller gone, the hosts stop at their next step
    // boundary and run their `always` steps, on their own.
    for h in &FIVE[1..] {
        let host = hosts.get(h);
        let mut stopped = false;
        for _ in 0..400 {
            if trace(host) == "first\nalways\n" {
                stopped = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(stopped, "{h}: {}", trace(host));
    }
    // As if the controller had died just after the canary finished, before
    // the end of its run reached the mirror: the canary must not run again.
    let canary_mirror = out.run_dir().join("hosts/staging/journal.jsonl");
    let text = std::fs::read_to_string(&canary_mirror).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.pop().unwrap().contains("\"run_finished\""));
    std::fs::write(&canary_mirror, lines.join("\n") + "\n").unwrap();
    let dir = out.run_dir().display().to_string();
    let resumed = t.run(&["resume", &dir]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(trace(hosts.get("staging")), "first\nlast\nalways\n");
    let canary = mirror(&resumed, "staging");
    assert_eq!(canary.last().unwrap()["status"], "succeeded");
    let r = resumed.finished("fleet")["outputs"].clone();
    assert_eq!(status_of(&r, "staging"), "succeeded");
    for h in &FIVE[1..] {
        let trace = trace(hosts.get(h));
        assert_eq!(trace.matches("last").count(), 1, "{h}: {trace}");
        // The mirror holds the run killed mid-way and its resume.
        let journal = mirror(&resumed, h);
        assert_eq!(journal.last().unwrap()["status"], "succeeded", "{h}");
    }
}

#[test]
fn a_host_whose_install_a_local_run_holds_fails_preflight_naming_the_holder() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let held = hosts.get("cdn-3");
    // A run on cdn-3 itself, holding its database while it sleeps.
    let local = format!(
        "name: holder\nsteps:\n  - id: hold\n    name: Hold\n    action: shell\n    with: {{command: [sleep, \"20\"]}}\n  - id: touch\n    name: Touch\n    action: sqlite.exec\n    with: {{db: {}, sql: \"PRAGMA user_version = 0\"}}\n",
        held.db().display()
    );
    std::fs::write(t.path().join("holder.yaml"), local).unwrap();
    let mut holder = t.command(&["run", "holder.yaml"]);
    let mut holder = holder.stdout(Stdio::piped()).spawn().unwrap();
    let lock = t.path().join("lock-seen");
    for _ in 0..400 {
        let probe = t.run(&["run", "holder.yaml", "--dry-run"]);
        if probe.stderr.contains("a run holds") {
            std::fs::write(&lock, "").unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(lock.exists(), "the local run never held cdn-3's database");
    let inventory = hosts.inventory(&t, "", &[]);
    let out = custom_fleet(&t, &inventory, "[1, \"100%\"]", "1");
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let r = report(&out, "rollback");
    assert_eq!(status_of(&r, "cdn-3"), "preflight_failed");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("  cdn-3 │ ✗ preflight failed"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.contains("held by another run") && line.contains("step hold"),
        "{line}"
    );
    assert!(held.migrated(), "cdn-3 was rolled back under another run");
    for h in ["staging", "cdn-1", "cdn-2", "cdn-4"] {
        assert_eq!(status_of(&r, h), "succeeded");
    }
}

#[test]
fn a_secret_reaches_each_host_over_the_control_channel_only() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let secret = "s3cr3t-5f2c9e-token";
    let inventory = hosts.inventory(&t, "", &[]);
    std::fs::write(
        t.path().join("secretive.yaml"),
        "name: secretive\nvars:\n  root: .\n  token: {secret: true}\nsteps:\n  - id: use\n    name: Use the token\n    action: shell\n    with:\n      command: [sh, -c, \"printf %s \\\"$TOKEN\\\" | wc -c > {{ root }}/token-length && sleep 2\"]\n      env: {TOKEN: \"{{ token }}\"}\n",
    )
    .unwrap();
    let playbook = format!(
        "name: secret_fleet\nsteps:\n  - id: fleet\n    name: Every host\n    action: fleet\n    with:\n      inventory: {}\n      hosts: all\n      playbook: secretive.yaml\n      serial: [\"100%\"]\n",
        inventory.display()
    );
    std::fs::write(t.path().join("secret_fleet.yaml"), playbook).unwrap();
    let mut cmd = t.command(&["run", "secret_fleet.yaml", "--json"]);
    cmd.env("RUNBOOK_SECRET_TOKEN", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // While every host runs the step, no process anywhere shows it.
    for _ in 0..400 {
        if FIVE
            .iter()
            .all(|h| hosts.get(h).root().join("token-length").exists())
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let ps = run(Command::new("ps").args(["-eo", "args"]));
    assert!(ps.contains(" host"), "no host run was seen running:\n{ps}");
    assert!(!ps.contains(secret), "a process shows the secret:\n{ps}");
    let out = finish(child, t.path());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for h in FIVE {
        let host = hosts.get(h);
        let length = std::fs::read_to_string(host.root().join("token-length")).unwrap();
        assert_eq!(
            length.trim(),
            secret.len().to_string(),
            "{h} did not get the secret"
        );
    }
    // Not in any file: the hosts' homes, the shipped cache, the controller's runs.
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-cache");
    let mut todo = vec![t.path().to_path_buf(), cache.join("runbook/playbooks")];
    let mut files = 0;
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files += 1;
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(secret),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    }
    assert!(files > 50, "only {files} files were read");
    // --json: every host's events carry the host; the fleet's own events say
    // where each host stands.
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    for h in FIVE {
        assert!(events
            .iter()
            .any(|e| e["event"] == "step_finished" && e["host"] == h && e["step"] == "use"));
        assert!(events.iter().any(|e| e["event"] == "host_finished"
            && e["host"] == h
            && e["status"] == "succeeded"));
        let journal = mirror(&out, h);
        assert!(
            journal.iter().any(|e| e["vars"]["token"] == "***"),
            "{h}: {journal:?}"
        );
    }
}

#[test]
fn on_a_terminal_each_host_holds_one_line_with_its_current_step_then_its_ending() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let inventory = hosts.inventory(&t, "", &SLOW_WAVE_TWO);
    let _ = traced_fleet(&t, &inventory);
    let command = format!("{} run traced_fleet.yaml", env!("CARGO_BIN_EXE_runbook"));
    let Some(screen) = crate::terminal::Screen::start(t.path(), &command) else {
        skipped("tmux is not installed, so the fleet's terminal view was not tested (apt-get install tmux)");
        return;
    };
    wait_for_wave_two(&hosts);
    for h in &FIVE[1..] {
        screen.wait_for(&format!("{h} │ Wait"));
    }
    let during = screen.text();
    // Below the preflight's lines, which scroll by: the live area.
    let live: Vec<&str> = during
        .lines()
        .skip_while(|l| !l.starts_with("wave 2"))
        .collect();
    for h in &FIVE[1..] {
        let lines: Vec<&str> = live
            .iter()
            .copied()
            .filter(|l| l.contains(&format!("{h} │")))
            .collect();
        assert_eq!(lines.len(), 1, "{h} has not one line:\n{during}");
        assert!(lines[0].contains(&format!("{h} │ Wait")), "{during}");
    }
    let after = screen.wait_for("EXIT=");
    assert!(after.contains("EXIT=0"), "{after}");
    for h in FIVE {
        let endings = after
            .lines()
            .filter(|l| l.contains(&format!("{h} │ ✓ succeeded")))
            .count();
        assert_eq!(endings, 1, "{h}:\n{after}");
        // The steps scrolled by as the line's state, not as lines of their own.
        assert!(!after.contains(&format!("{h} │ ✓ Wait")), "{after}");
    }
}

/// Five hosts and `edge`, in a network namespace, whose link is cut while
/// it is in its 30 s step; the fleet allows `max_failed`. The hosts, the
/// test (holding its directory) and the fleet's run are returned once the
/// run is over.
fn vanishing_fleet(max_failed: &str) -> Option<(Test, Hosts, Output)> {
    let t = Test::new();
    let mut hosts = hosts(&t, &FIVE)?;
    hosts.add_in_namespace(&t, "edge")?;
    let mut slow: Vec<(&str, &str)> = SLOW_WAVE_TWO.to_vec();
    slow.push(("edge", "pause: \"30\""));
    let inventory = hosts.inventory(&t, "", &slow);
    let playbook = format!(
        "name: traced_fleet\nsteps:\n  - id: fleet\n    name: Every host\n    action: fleet\n    with:\n      inventory: {}\n      hosts: all\n      playbook: traced.yaml\n      max_failed: {max_failed}\n",
        inventory.display()
    );
    let mut cmd = traced_fleet(&t, &inventory);
    std::fs::write(t.path().join("traced_fleet.yaml"), playbook).unwrap();
    let child = cmd.spawn().unwrap();
    let edge = hosts.get("edge");
    for _ in 0..400 {
        if trace(edge) == "first\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(trace(edge), "first\n", "edge never started");
    hosts.vanish();
    let vanished = std::time::Instant::now();
    let out = finish(child, t.path());
    // Noticed by the keep-alives (3 missed, 5 s apart), not by the end of
    // the step, which began just before and lasts 30 s.
    assert!(
        vanished.elapsed() < std::time::Duration::from_secs(26),
        "{:?}",
        vanished.elapsed()
    );
    let r = report(&out, "fleet");
    assert_eq!(status_of(&r, "edge"), "unreachable");
    assert_eq!(r["budget"]["unreachable"], 1);
    for h in FIVE {
        assert_eq!(status_of(&r, h), "succeeded");
    }
    let step = out.finished("fleet");
    assert!(
        step["detail"]
            .as_str()
            .unwrap()
            .contains("edge (unreachable)"),
        "{step:#}"
    );
    Some((t, hosts, out))
}

#[test]
fn a_host_that_vanishes_mid_run_is_found_unreachable_and_spends_the_budget() {
    let Some((_t, _hosts, out)) = vanishing_fleet("1") else {
        return;
    };
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.finished("fleet")["status"], "warning");
}

#[test]
fn a_host_that_vanishes_then_comes_back_is_resumed_from_its_own_journal_not_run_again() {
    let Some((t, hosts, out)) = vanishing_fleet("0") else {
        return;
    };
    // The budget (none) is spent: the run fails, and can be resumed.
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.finished("fleet")["status"], "failed");
    // The link comes back: the controller had lost the host, the host never
    // lost its run. A resume waits for that run to end, takes how it ended
    // from the host's own journal, and runs nothing twice.
    hosts.reappear();
    let resumed = t.run(&["resume", &out.run_dir().display().to_string()]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    let r = resumed.finished("fleet")["outputs"].clone();
    assert_eq!(status_of(&r, "edge"), "succeeded", "{r:#}");
    // Whether its run ended on its own or stopped when the link came back
    // (then its `always` steps run again at the resume), no step ran twice.
    let edge = trace(hosts.get("edge"));
    assert_eq!(edge.matches("first").count(), 1, "{edge}");
    assert_eq!(edge.matches("last").count(), 1, "{edge}");
    assert!(edge.ends_with("always\n"), "{edge}");
    for h in FIVE {
        assert_eq!(status_of(&r, h), "succeeded_before");
    }
}

/// `asking_fleet.yaml`: every host runs `asking.yaml`, which asks the
/// operator before it leaves its trace.
fn asking_fleet(t: &Test, inventory: &Path) {
    std::fs::write(
        t.path().join("asking.yaml"),
        "name: asking\nvars:\n  root: .\nsteps:\n  - id: ask\n    name: Ask\n    action: confirm\n    with: {message: \"Go on with this host?\"}\n  - id: after\n    name: After\n    action: shell\n    with: {command: [sh, -c, \"echo after >> {{ root }}/trace\"]}\n",
    )
    .unwrap();
    std::fs::write(
        t.path().join("asking_fleet.yaml"),
        format!(
            "name: asking_fleet\nsteps:\n  - id: fleet\n    name: Every host\n    action: fleet\n    with:\n      inventory: {}\n      hosts: all\n      playbook: asking.yaml\n",
            inventory.display()
        ),
    )
    .unwrap();
}

#[test]
fn a_question_a_host_asks_is_put_to_the_operator_at_the_controllers_terminal() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE[..2]) else {
        return;
    };
    let inventory = hosts.inventory(&t, "", &[]);
    asking_fleet(&t, &inventory);
    let command = format!("{} run asking_fleet.yaml", env!("CARGO_BIN_EXE_runbook"));
    let Some(screen) = crate::terminal::Screen::start(t.path(), &command) else {
        skipped("tmux is not installed, so a host's question was not put to a terminal (apt-get install tmux)");
        return;
    };
    screen.wait_for("staging ask: Go on with this host? [y/N]");
    screen.keys(&["y", "Enter"]);
    screen.wait_for("cdn-1 ask: Go on with this host? [y/N]");
    assert_eq!(trace(hosts.get("staging")), "after\n");
    screen.keys(&["n", "Enter"]);
    let after = screen.wait_for("EXIT=");
    assert!(after.contains("EXIT=1"), "{after}");
    assert_eq!(
        trace(hosts.get("cdn-1")),
        "",
        "cdn-1 went on though the operator said no"
    );
    assert!(
        after.contains("cdn-1 │ ✗ failed at ask: declined by the operator"),
        "{after}"
    );
}

#[test]
fn a_host_that_would_ask_with_nobody_to_answer_fails_preflight_before_anything_runs() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE[..2]) else {
        return;
    };
    let inventory = hosts.inventory(&t, "", &[]);
    asking_fleet(&t, &inventory);
    let out = t.run(&["run", "asking_fleet.yaml"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    for h in &FIVE[..2] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("  {h} │ ✗ preflight failed")))
            .unwrap_or_else(|| panic!("{}", out.stdout));
        assert!(
            line.contains("steps ask ask the operator, but the controller has no terminal"),
            "{line}"
        );
        assert_eq!(trace(hosts.get(h)), "");
    }
}

#[test]
fn a_host_never_seen_is_refused_unless_new_keys_are_accepted_and_then_its_key_is_kept() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let known = t.path().join("ssh/known_hosts");
    let port = format!("[127.0.0.1]:{} ", hosts.get("cdn-2").port);
    let text = std::fs::read_to_string(&known).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with(&port))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&known, &without).unwrap();
    let inventory = hosts.inventory(&t, "", &[]);
    let refused = custom_fleet(&t, &inventory, "[1, \"100%\"]", "0");
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stdout
            .contains("cdn-2: its host key is not in known_hosts"),
        "{}",
        refused.stdout
    );
    assert!(
        hosts.get("staging").migrated(),
        "a host ran though one was refused with no budget"
    );
    let playbook = std::fs::read_to_string(t.path().join("custom.yaml")).unwrap();
    std::fs::write(
        t.path().join("custom.yaml"),
        playbook.replace(
            "      serial:",
            "      accept_new_host_keys: true\n      serial:",
        ),
    )
    .unwrap();
    let accepted = t.run(&["run", "custom.yaml"]);
    assert_eq!(accepted.code, 0, "{}\n{}", accepted.stdout, accepted.stderr);
    assert!(!hosts.get("cdn-2").migrated());
    let now = std::fs::read_to_string(&known).unwrap();
    assert!(
        now.lines().any(|l| l.starts_with(&port)),
        "the new key was not kept:\n{now}"
    );
    // The same, decided by the operator at the run rather than in the
    // playbook: the key forgotten again, the playbook as it was.
    std::fs::write(&known, &without).unwrap();
    std::fs::write(t.path().join("custom.yaml"), &playbook).unwrap();
    let flagged = t.run(&["run", "custom.yaml", "--accept-new-host-keys"]);
    assert_eq!(flagged.code, 0, "{}\n{}", flagged.stdout, flagged.stderr);
    let now = std::fs::read_to_string(&known).unwrap();
    assert!(now.lines().any(|l| l.starts_with(&port)), "{now}");
}

#[test]
fn a_host_of_another_architecture_or_a_noexec_cache_is_refused_at_preflight() {
    let t = Test::new();
    // cdn-1 says it is another machine; cdn-2's cache cannot run programs.
    let fake = t.path().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("uname"), "#!/bin/sh\necho Linux riscv64\n").unwrap();
    run(Command::new("chmod").arg("755").arg(fake.join("uname")));
    let noexec = t.path().join("noexec-cache");
    std::fs::create_dir_all(&noexec).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=512m", "tmpfs"])
        .arg(&noexec)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        skipped("a noexec cache needs mount (root), as CI runs the tests");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(noexec.clone());
    let env = [
        (
            "cdn-1",
            format!("PATH={}:/usr/local/bin:/usr/bin:/bin", fake.display()),
        ),
        ("cdn-2", format!("XDG_CACHE_HOME={}", noexec.display())),
    ];
    let Some(hosts) = hosts_with(&t, &FIVE, &env) else {
        return;
    };
    let inventory = hosts.inventory(&t, "", &[]);
    let out = custom_fleet(&t, &inventory, "[1, \"100%\"]", "2");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let line = |h: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("  {h} │ ✗ preflight failed")))
            .unwrap_or_else(|| panic!("{h}: {}", out.stdout))
            .to_owned()
    };
    assert!(
        line("cdn-1")
            .contains("cdn-1 is `Linux riscv64`, and this runbook is built for `Linux x86_64`"),
        "{}",
        line("cdn-1")
    );
    assert!(
        line("cdn-2").contains("cannot run programs (mounted noexec?)"),
        "{}",
        line("cdn-2")
    );
    assert!(hosts.get("cdn-1").migrated() && hosts.get("cdn-2").migrated());
    // Nothing half-shipped is left in the cache that refused it.
    let left: Vec<_> = std::fs::read_dir(noexec.join("runbook/bin"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn after_the_canary_the_fleet_soaks_and_asks_and_without_anyone_to_ask_it_never_starts() {
    let t = Test::new();
    let Some(hosts) = hosts(&t, &FIVE) else {
        return;
    };
    let inventory = hosts.inventory(&t, "", &[]);
    let extra = "      soak: 2s\n      confirm_canary: true\n";
    custom_playbook(&t, &inventory, "[1, \"100%\"]", "0", extra);
    let refused = t.run(&["run", "custom.yaml"]);
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("asks the operator to confirm (steps rollback)"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("wave 1"), "{}", refused.stdout);
    for h in FIVE {
        assert!(
            hosts.get(h).migrated(),
            "{h} was touched by the refused run"
        );
    }
    let out = t.run(&["run", "custom.yaml", "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let r = report(&out, "rollback");
    let at = |w: usize, key: &str| {
        let text = r["waves"][w][key].as_str().unwrap().to_owned();
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let soaked = at(1, "started") - at(0, "finished");
    assert!(soaked >= time::Duration::seconds(2), "{soaked}");
    for h in FIVE {
        assert_eq!(status_of(&r, h), "succeeded");
    }
}

#[test]
fn a_runbook_given_for_the_hosts_is_shipped_by_its_own_checksum_and_not_refused_for_their_system() {
    let t = Test::new();
    let fake = t.path().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("uname"), "#!/bin/sh\necho Linux riscv64\n").unwrap();
    run(Command::new("chmod").arg("755").arg(fake.join("uname")));
    // Caches of their own, gone with the test, so that the shipping is seen.
    let cache = t.path().join("own-cache");
    let env = [
        (
            "cdn-1",
            format!("PATH={}:/usr/local/bin:/usr/bin:/bin", fake.display()),
        ),
        ("staging", format!("XDG_CACHE_HOME={}", cache.display())),
        ("cdn-1", format!("XDG_CACHE_HOME={}", cache.display())),
    ];
    let Some(hosts) = hosts_with(&t, &FIVE[..2], &env) else {
        return;
    };
    // "Built for the hosts": here a copy with a few bytes more, so that its
    // checksum is its own and it still runs.
    let given = t.path().join("runbook-for-hosts");
    let mut bytes = std::fs::read(env!("CARGO_BIN_EXE_runbook")).unwrap();
    bytes.extend_from_slice(b"\nbuilt for the hosts\n");
    std::fs::write(&given, &bytes).unwrap();
    run(Command::new("chmod").arg("755").arg(&given));
    let sum = run(Command::new("sha256sum").arg(&given));
    let sum = sum.split_whitespace().next().unwrap().to_owned();
    let inventory = hosts.inventory(&t, "", &[]);
    custom_playbook(&t, &inventory, "[1, \"100%\"]", "0", "");
    let out = t.run(&[
        "run",
        "custom.yaml",
        "--remote-binary",
        &given.display().to_string(),
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for h in &FIVE[..2] {
        assert!(!hosts.get(h).migrated(), "{h}");
    }
    let shipped = std::fs::read(cache.join("runbook/bin").join(&sum).join("runbook")).unwrap();
    assert!(
        shipped == bytes,
        "the cache does not hold the given binary under its checksum"
    );
}

#[test]
fn a_dry_run_reaches_every_host_says_what_would_fail_and_changes_nothing_there() {
    let t = Test::new();
    let cache = t.path().join("own-cache");
    let env: Vec<(&str, String)> = FIVE
        .iter()
        .map(|h| (*h, format!("XDG_CACHE_HOME={}", cache.display())))
        .collect();
    let Some(hosts) = hosts_with(&t, &FIVE, &env) else {
        return;
    };
    hosts.change_key_of("cdn-3");
    let known = std::fs::read(t.path().join("ssh/known_hosts")).unwrap();
    let dbs: Vec<Vec<u8>> = FIVE
        .iter()
        .map(|h| std::fs::read(hosts.get(h).db()).unwrap())
        .collect();
    let inventory = hosts.inventory(&t, PRODUCTION, &[]);
    let out = fleet_rollback(&t, &inventory, &["--dry-run"]);
    // The run would stop before its canary: the dry run says so, and fails.
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let text = out.stdout.replace('\n', " ");
    for h in ["staging", "cdn-1", "cdn-2", "cdn-4"] {
        assert!(
            text.contains(&format!("{h}: reached; runbook would be shipped")),
            "{h}: {}",
            out.stdout
        );
    }
    assert!(
        text.contains("cdn-3: ✗ cdn-3: its host key has CHANGED"),
        "{}",
        out.stdout
    );
    assert!(
        text.contains("1 would fail their preflight, 0 allowed"),
        "{}",
        out.stdout
    );
    // Nothing shipped, no key recorded, no database touched, no run kept.
    assert!(
        !cache.join("runbook").exists(),
        "the dry run shipped something"
    );
    assert_eq!(
        std::fs::read(t.path().join("ssh/known_hosts")).unwrap(),
        known
    );
    for (h, before) in FIVE.iter().zip(dbs) {
        assert!(
            std::fs::read(hosts.get(h).db()).unwrap() == before,
            "{h}'s database changed"
        );
    }
    assert!(!t.path().join(".runbook").exists());
}
