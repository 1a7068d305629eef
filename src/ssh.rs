//! The transport to remote hosts: the system's OpenSSH client, so that the
//! user's `~/.ssh/config` (Host, Match, Include, ProxyJump), agent,
//! certificates and known_hosts work exactly as they do at their prompt.
//! runbook parses none of it. Each host gets one control master, in a
//! short private directory (a socket path holds 107 bytes, and ssh adds a
//! temporary suffix while it makes one); every later command rides on it.
//! Nothing ever prompts: `BatchMode`, and strict host-key checking unless
//! the operator accepts new keys (never changed ones).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// How long an orphaned master (its controller killed) outlives its last
/// use; a controller that ends normally closes its masters at once.
const PERSIST: Duration = Duration::from_secs(120);

/// The longest control directory that leaves room for `%C` (40 hex) and
/// ssh's temporary suffix in a socket path.
const CONTROL_DIR_MAX: usize = 46;

/// How the operator wants hosts reached.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// An ssh configuration file given instead of the user's (`ssh -F`).
    pub config: Option<PathBuf>,
    /// Accept the key of a host never seen (`StrictHostKeyChecking=accept-new`);
    /// a changed key is refused all the same.
    pub accept_new_host_keys: bool,
}

/// Why a host could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unreachable {
    #[error("{host}: its host key is not in known_hosts; runbook never accepts one unseen: check it and add it (ssh-keyscan, or one `ssh {host}` by hand), or pass accept_new_host_keys")]
    UnknownHostKey { host: String },
    #[error("{host}: its host key has CHANGED since it was recorded in known_hosts (a reinstalled host, or someone in between); refused: check it with its administrator before removing the old key")]
    ChangedHostKey { host: String },
    #[error("{host}: authentication refused ({why}); runbook never asks for a password: load the key into your agent or name it in your ssh config")]
    Refused { host: String, why: String },
    #[error("{host}: {why}")]
    Network { host: String, why: String },
}

/// A set of control masters, closed when dropped.
pub struct Transport {
    settings: Settings,
    control: tempfile::TempDir,
    open: Mutex<Vec<String>>,
}

impl Transport {
    pub fn new(settings: Settings) -> std::io::Result<Transport> {
        let base = Path::new("/tmp");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let control = tempfile::Builder::new().prefix("rb-").tempdir_in(&base)?;
        if control.path().as_os_str().len() > CONTROL_DIR_MAX {
            return Err(std::io::Error::other(format!(
                "the directory for ssh control sockets, {}, is too long for a socket path",
                control.path().display()
            )));
        }
        Ok(Transport {
            settings,
            control,
            open: Mutex::new(Vec::new()),
        })
    }

    /// `ssh` with the options every use shares.
    fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(config) = &self.settings.config {
            cmd.arg("-F").arg(config);
        }
        let strict = if self.settings.accept_new_host_keys {
            "accept-new"
        } else {
            "yes"
        };
        cmd.args(["-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("StrictHostKeyChecking={strict}"))
            .arg("-o")
            .arg(format!("ControlPath={}/%C", self.control.path().display()))
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]);
        cmd
    }

    /// Opens the host's control master: the one authentication, where an
    /// unknown or changed host key is refused.
    pub fn connect(&self, host: &str) -> Result<(), Unreachable> {
        let out = self
            .ssh()
            .args(["-o", "ControlMaster=yes"])
            .arg("-o")
            .arg(format!("ControlPersist={}", PERSIST.as_secs()))
            .args(["-N", "-f", "--", host])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|err| Unreachable::Network {
                host: host.to_owned(),
                why: format!("cannot start ssh: {err}"),
            })?;
        if out.status.success() {
            if let Ok(mut open) = self.open.lock() {
                open.push(host.to_owned());
            }
            return Ok(());
        }
        Err(classify(host, &String::from_utf8_lossy(&out.stderr)))
    }

    /// A command run on the host over its master: `remote` is a shell line,
    /// run by the login user's shell there. The child is in a process group
    /// of its own, so Ctrl-C on the controller's terminal reaches runbook,
    /// which tells the hosts to stop, and does not cut their links.
    pub fn command(&self, host: &str, remote: &str) -> Command {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = self.ssh();
        // `auto`: should the master have gone (idle past its persistence
        // while earlier waves ran), the command opens the next one, with
        // the same checks, rather than a connection of its own.
        cmd.args(["-o", "ControlMaster=auto"])
            .arg("-o")
            .arg(format!("ControlPersist={}", PERSIST.as_secs()))
            .args(["-T", "--", host, remote]);
        cmd.process_group(0);
        cmd
    }

    /// The words of a command line, quoted for the remote shell.
    pub fn line<S: AsRef<str>>(words: &[S]) -> String {
        words
            .iter()
            .map(|w| shell_words::quote(w.as_ref()).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        let hosts = self.open.lock().map(|h| h.clone()).unwrap_or_default();
        for host in hosts {
            let _ = self
                .ssh()
                .args(["-O", "exit", "--", &host])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// What ssh's own message says went wrong, in the words an operator needs.
pub fn classify(host: &str, stderr: &str) -> Unreachable {
    let host = host.to_owned();
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("has changed and you have requested strict checking")
    {
        return Unreachable::ChangedHostKey { host };
    }
    if stderr.contains("Host key verification failed") {
        return Unreachable::UnknownHostKey { host };
    }
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("ssh failed without saying why")
        .to_owned();
    if stderr.contains("Permission denied") || stderr.contains("Too many authentication failures") {
        return Unreachable::Refused { host, why: last };
    }
    Unreachable::Network { host, why: last }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_messages_become_reasons_an_operator_can_act_on() {
        let changed = "@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n";
        assert!(matches!(
            classify("a", changed),
            Unreachable::ChangedHostKey { .. }
        ));
        let unknown = "No ED25519 host key is known for [127.0.0.1]:2 and you have requested strict checking.\nHost key verification failed.\n";
        assert!(matches!(
            classify("a", unknown),
            Unreachable::UnknownHostKey { .. }
        ));
        let refused = "ssh: connect to host 127.0.0.1 port 22299: Connection refused\n";
        let err = classify("web-1", refused);
        assert_eq!(
            err.to_string(),
            "web-1: ssh: connect to host 127.0.0.1 port 22299: Connection refused"
        );
    }
}
