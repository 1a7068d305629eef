//! Who has a database file open: the processes holding it, found through
//! /proc by device and inode, and what this process could not look at
//! (other users' processes, for anyone but a fully capable root), so that
//! "no other process uses it" is said only as far as it was seen.

use std::collections::BTreeMap;
use std::path::Path;

/// Who has a database open, as far as this process may look.
#[derive(Debug, Default)]
pub struct Holders {
    /// Other processes seen holding the file: `pid (command)` for each.
    pub seen: Vec<String>,
    /// Processes whose open files this process may not look at (another
    /// user's, or one that made itself undumpable), counted by user.
    /// Nothing proves that they do not hold it.
    unseen: BTreeMap<u32, usize>,
    /// Why no process of another user could be looked at.
    hidden: Option<Hidden>,
}

#[derive(Debug)]
enum Hidden {
    /// `/proc` is mounted with this `hidepid=` option.
    Hidepid(String),
    /// `/proc` cannot be read at all.
    NoProc,
}

impl Holders {
    /// What the look could not cover, and how to let it cover everything;
    /// `None` when every process was looked at.
    pub fn blind_spot(&self) -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let fix = if matches!(self.hidden, Some(Hidden::NoProc)) {
            "mount /proc so that every process can be seen"
        } else if me == 0 {
            "runbook runs as root without CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH (a container \
             leaves the first out by default); give it both so that every process can be seen"
        } else {
            "run it as root (sudo) so that every process can be seen"
        };
        let what = match &self.hidden {
            Some(Hidden::Hidepid(option)) => format!(
                "/proc is mounted with {option}: other users' processes may not be looked at"
            ),
            Some(Hidden::NoProc) => "/proc cannot be read (is it mounted here?)".to_owned(),
            None if self.unseen.is_empty() => return None,
            None => {
                let n: usize = self.unseen.values().sum();
                let users: Vec<String> = self.unseen.keys().map(|&uid| user_name(uid)).collect();
                format!(
                    "the open files of {n} process{} of {} may not be looked at by user {}",
                    if n == 1 { "" } else { "es" },
                    users.join(", "),
                    user_name(me)
                )
            }
        };
        Some(format!("{what}; {fix}"))
    }
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

/// What this process may look at in /proc. Its capabilities and the /proc
/// mount do not change while it runs, and a wait for a database to be let
/// go asks every 50 ms: they are read once.
struct Sight {
    every_process: bool,
    /// The `hidepid=` option of /proc, when it hides other users' processes.
    hidepid: Option<String>,
}

impl Sight {
    fn here() -> &'static Sight {
        static SIGHT: std::sync::OnceLock<Sight> = std::sync::OnceLock::new();
        SIGHT.get_or_init(|| Sight {
            every_process: sees_every_process(),
            hidepid: std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|info| hidepid(&info)),
        })
    }
}

/// Whether this process may look at the open files of every process of
/// its PID namespace: CAP_SYS_PTRACE to read another user's descriptors,
/// and CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE to list them, as root has
/// outside a container and no other user has. What such a process is
/// still refused lies past a user namespace's edge or a security policy,
/// which no user of this machine could look past either, as the processes
/// outside a container are not even listed in it.
pub fn sees_every_process() -> bool {
    const DAC_OVERRIDE: u32 = 1;
    const DAC_READ_SEARCH: u32 = 2;
    const SYS_PTRACE: u32 = 19;
    let Some(caps) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
    else {
        return false;
    };
    let has = |cap: u32| caps & (1 << cap) != 0;
    has(SYS_PTRACE) && (has(DAC_READ_SEARCH) || has(DAC_OVERRIDE))
}

/// Whether a process whose files may not be looked at could hold any: not
/// one that has exited (a zombie holds nothing), nor a kernel thread.
/// `/proc/PID/stat` is readable by everyone.
fn may_hold_files(proc_dir: &Path) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false; // gone
    };
    // pid (comm) state ppid pgrp session tty tpgid flags …; comm may hold
    // spaces and parentheses, so fields are counted after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return true;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let dead = matches!(fields.first(), Some(&("Z" | "X" | "x")));
    let kernel = fields
        .get(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0);
    !dead && !kernel
}

/// Other processes that have the file (or its `-wal`/`-journal`) open,
/// read from /proc, and those that could not be looked at. Open files are
/// compared by device and inode, not by name: a process may hold the
/// database through another name for it (a hard link, a bind mount, a
/// container's view of a volume) or under a name since removed, and is
/// using it all the same.
pub fn of(path: &Path) -> Holders {
    use std::os::unix::fs::MetadataExt;
    // SQLite keeps the `-wal` and `-journal` beside the file a symlink names.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let ids: Vec<(u64, u64)> = ["", "-wal", "-journal"]
        .iter()
        .filter_map(|side| std::fs::metadata(crate::database::sidecar(&real, side)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let mut found = Holders::default();
    if ids.is_empty() {
        return found;
    }
    let sight = Sight::here();
    let blind = !sight.every_process;
    if blind {
        found.hidden = sight.hidepid.clone().map(Hidden::Hidepid);
    }
    let mut unseen = |p: &std::fs::DirEntry| {
        if !blind || !may_hold_files(&p.path()) {
            return;
        }
        if let Ok(m) = p.metadata() {
            *found.unseen.entry(m.uid()).or_default() += 1;
        }
    };
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        found.hidden = Some(Hidden::NoProc);
        return found;
    };
    for p in procs.filter_map(Result::ok) {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let fds = match std::fs::read_dir(p.path().join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                unseen(&p);
                continue;
            }
            // Gone since the listing, or no descriptors at all.
            Err(_) => continue,
        };
        // metadata follows the fd's link to the open file itself, which
        // works for a file whose every name is gone. Whether a process's
        // descriptors may be looked at is decided for the whole process:
        // once its links cannot even be read, the rest are not asked (a
        // supervisor holding hundreds of them cost a stat each). A file
        // that refuses only its own stat (a FUSE mount of another user)
        // leaves the link readable, and the process is looked at further.
        let mut open = false;
        for fd in fds.filter_map(Result::ok) {
            match std::fs::metadata(fd.path()) {
                Ok(m) if ids.contains(&(m.dev(), m.ino())) => {
                    open = true;
                    break;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::PermissionDenied
                        && std::fs::read_link(fd.path()).is_err() =>
                {
                    unseen(&p);
                    break;
                }
                _ => {}
            }
        }
        if open {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.seen.push(format!("{pid} ({})", comm.trim()));
        }
    }
    found
}

/// The `hidepid=` option of the `/proc` mount, from `/proc/self/mountinfo`
/// text, when it hides other users' processes. Of mounts stacked on
/// `/proc`, the last is the one in effect.
fn hidepid(mountinfo: &str) -> Option<String> {
    let line = mountinfo
        .lines()
        .rev()
        .find(|line| line.split(' ').nth(4) == Some("/proc"))?;
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS] - FSTYPE SOURCE SUPER
    let (_, fs) = line.split_once(" - ")?;
    let mut fs = fs.split(' ');
    if fs.next() != Some("proc") {
        return None;
    }
    fs.nth(1)?
        .split(',')
        .find(|o| {
            o.strip_prefix("hidepid=")
                .is_some_and(|v| !matches!(v, "0" | "off"))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::{hidepid, may_hold_files};
    use std::path::Path;

    /// What the look may not cover is only counted against it where it
    /// could hide a holder: not a process that has exited, nor a kernel
    /// thread, whose descriptors a non-root user is refused all the same.
    #[test]
    fn exited_processes_and_kernel_threads_hold_no_files() {
        assert!(may_hold_files(
            &Path::new("/proc").join(std::process::id().to_string())
        ));
        // kthreadd is PID 2 wherever the kernel's threads are in view.
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert!(!may_hold_files(Path::new("/proc/2")));
        }
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dir = Path::new("/proc").join(child.id().to_string());
        // Not waited for: once it has exited it stays a zombie until reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while may_hold_files(&dir) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!may_hold_files(&dir), "a zombie counted as holding files");
        child.wait().unwrap();
        assert!(
            !may_hold_files(&dir),
            "a process gone counted as holding files"
        );
    }

    /// Lines as the kernel writes them (proc_show_options): the option is
    /// a number on older kernels, a word since 5.8; `gid=` may follow.
    #[test]
    fn hidepid_is_read_from_the_proc_mount_only_when_it_hides() {
        let plain = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        assert_eq!(hidepid(plain), None);
        let off = "22 27 0:21 / /proc rw,relatime shared:12 - proc proc rw,hidepid=0\n";
        assert_eq!(hidepid(off), None);
        let hidden = "30 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                      22 27 0:21 / /proc rw,nosuid shared:12 - proc proc rw,gid=4,hidepid=invisible\n";
        assert_eq!(hidepid(hidden).as_deref(), Some("hidepid=invisible"));
        let old = "22 27 0:21 / /proc rw - proc proc rw,hidepid=2\n";
        assert_eq!(hidepid(old).as_deref(), Some("hidepid=2"));
        // Of two mounts stacked on /proc, the last one is in effect.
        let stacked = format!("{old}23 22 0:60 / /proc rw - proc proc rw\n");
        assert_eq!(hidepid(&stacked), None);
        let stacked = format!("{plain}{old}");
        assert_eq!(hidepid(&stacked).as_deref(), Some("hidepid=2"));
        // Another proc mount (a container's, a chroot's) is not this one.
        let elsewhere = "40 27 0:50 / /srv/jail/proc rw - proc proc rw,hidepid=2\n";
        assert_eq!(hidepid(elsewhere), None);
    }
}
