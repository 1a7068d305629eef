//! What a fleet run ships to a host: the runbook binary, kept on the host
//! under its SHA-256 in the user's cache (uploaded to a temporary name,
//! checked, tried, then renamed; reused while its checksum holds), and the
//! playbook bundle (the playbook, its includes and its templates, as they
//! were analyzed here), which travels in the order on the control channel.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::ssh::Transport;

/// The binary a host runs.
#[derive(Clone, Debug)]
pub struct Binary {
    pub path: PathBuf,
    pub sha256: String,
    /// This very program: it runs only where `uname -sm` is this machine's.
    native: bool,
    /// Its size, for what a dry run says it would ship.
    size: u64,
}

/// Where the binary is, or will be, on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Present(String),
    Absent(String),
}

/// Why a host cannot run the binary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{host} is `{theirs}`, and this runbook is built for `{ours}`: name a runbook built for it with --remote-binary PATH, or `binary:` in the inventory")]
    Architecture {
        host: String,
        theirs: String,
        ours: String,
    },
    #[error("{host}: {why}")]
    Failed { host: String, why: String },
}

impl Binary {
    /// This program, or the one given for hosts of another architecture.
    pub fn new(given: Option<&Path>) -> std::io::Result<Binary> {
        let (path, native) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => (std::env::current_exe()?, true),
        };
        // SHA-256, as `sha256sum` checks it on any host.
        // Silently: a bar for the few megabytes of a binary would only flash.
        let (sum, size) = crate::progress::silently(true, || {
            crate::checksum::of_file(&path, crate::checksum::Algorithm::Sha256)
        })?;
        let sha256 = sum.hex;
        Ok(Binary {
            path,
            sha256,
            native,
            size,
        })
    }

    /// Whether the binary is on the host, whole, and suits it: read only.
    pub fn probe(&self, transport: &Transport, host: &str) -> Result<Presence, Error> {
        let failed = |why: String| Error::Failed {
            host: host.to_owned(),
            why,
        };
        let probe = transport
            .command(
                host,
                &Transport::line(&["sh", "-c", PROBE, "probe", &self.sha256]),
            )
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot start ssh: {e}")))?;
        let text = String::from_utf8_lossy(&probe.stdout);
        let mut lines = text.lines();
        let (Some(uname), Some(state)) = (lines.next(), lines.next()) else {
            return Err(failed(format!(
                "the probe of its system failed: {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            )));
        };
        if self.native && !same_system(uname) {
            return Err(Error::Architecture {
                host: host.to_owned(),
                theirs: uname.to_owned(),
                ours: format!("{} {}", uname_os(), std::env::consts::ARCH),
            });
        }
        let (state, path) = state.split_once(' ').unwrap_or((state, ""));
        Ok(if state == "present" {
            Presence::Present(path.to_owned())
        } else {
            Presence::Absent(path.to_owned())
        })
    }

    /// Its size, for what a dry run says it would ship.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Puts the binary on the host unless it is there already, and returns
    /// its path there.
    pub fn install(&self, transport: &Transport, host: &str) -> Result<String, Error> {
        let failed = |why: String| Error::Failed {
            host: host.to_owned(),
            why,
        };
        let path = match self.probe(transport, host)? {
            Presence::Present(path) => return Ok(path),
            Presence::Absent(path) => path,
        };
        let mut child = transport
            .command(
                host,
                &Transport::line(&["sh", "-c", UPLOAD, "upload", &self.sha256]),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot start ssh: {e}")))?;
        let sent = match (child.stdin.take(), std::fs::File::open(&self.path)) {
            (Some(mut stdin), Ok(mut file)) => {
                std::io::copy(&mut file, &mut stdin).and_then(|_| stdin.flush())
            }
            (_, Err(e)) => Err(e),
            (None, _) => Err(std::io::Error::other("no stdin")),
        };
        let out = child
            .wait_with_output()
            .map_err(|e| failed(format!("ssh: {e}")))?;
        if !out.status.success() || sent.is_err() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(failed(format!("the upload of runbook failed: {why}")));
        }
        Ok(path.to_owned())
    }
}

/// This system's name as `uname -s` says it.
fn uname_os() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "freebsd" => "FreeBSD",
        other => other,
    }
}

/// `uname -sm` there against what this program was built for.
fn same_system(uname: &str) -> bool {
    let mut words = uname.split_whitespace();
    let os = words.next().unwrap_or("");
    let arch = words.next().unwrap_or("");
    let arch_matches = arch == std::env::consts::ARCH
        || (arch == "arm64" && std::env::consts::ARCH == "aarch64")
        || (arch == "amd64" && std::env::consts::ARCH == "x86_64");
    os == uname_os() && arch_matches
}

/// Prints `uname -sm`, then `present PATH` if the binary named by its
/// checksum ($1) is there, whole and runnable, else `absent PATH`.
const PROBE: &str = r#"d="${XDG_CACHE_HOME:-$HOME/.cache}/runbook/bin/$1"; b="$d/runbook"
uname -sm
if [ -x "$b" ] && [ "$(sha256sum "$b" 2>/dev/null | cut -d' ' -f1)" = "$1" ]; then
  echo "present $b"
else
  echo "absent $b"
fi"#;

/// Takes the binary on stdin to a temporary name beside its place, checks
/// its checksum ($1), runs it once (a directory mounted noexec is refused
/// here, not at the run), then renames it into place.
const UPLOAD: &str = r#"set -e
d="${XDG_CACHE_HOME:-$HOME/.cache}/runbook/bin/$1"; b="$d/runbook"
mkdir -p "$d"
t="$d/.upload.$$"
trap 'rm -f "$t"' EXIT
cat > "$t"
s="$(sha256sum "$t" | cut -d' ' -f1)"
if [ "$s" != "$1" ]; then echo "the copy's checksum is $s, not $1: the transfer was damaged" >&2; exit 3; fi
chmod 755 "$t"
if ! "$t" --version >/dev/null 2>&1; then
  echo "$d cannot run programs (mounted noexec?): set XDG_CACHE_HOME there to a directory that can" >&2; exit 4
fi
mv -f "$t" "$b""#;

/// The playbook, its includes and templates, by their paths relative to
/// the deepest directory holding them all, and the playbook's own path.
pub fn bundle(plan: &crate::plan::Plan) -> std::io::Result<(BTreeMap<String, String>, String)> {
    let sources = plan.sources()?;
    let top = std::fs::canonicalize(&plan.file)?;
    let mut base = top.parent().map(Path::to_path_buf).unwrap_or_default();
    for (path, _) in &sources {
        while !path.starts_with(&base) {
            if !base.pop() {
                break;
            }
        }
    }
    let relative = |p: &Path| p.strip_prefix(&base).unwrap_or(p).display().to_string();
    let files = sources
        .iter()
        .map(|(path, text)| (relative(path), text.clone()))
        .collect();
    Ok((files, relative(&top)))
}
