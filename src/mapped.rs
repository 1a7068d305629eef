//! A file mapped into memory to be hashed, and what a page of it that
//! cannot be read does to the process.
//!
//! Hashing reads every byte of files of gigabytes. Read through a buffer,
//! the kernel copies each byte once more than the hash needs: measured on
//! a 1.3 GB file, that copy cost more CPU than BLAKE3 itself, and a backup
//! took 1.6× `cp + sync` instead of 1.1× (docs/PERFORMANCE.md). Mapped,
//! the hash reads the page cache itself.
//!
//! The price of a mapping: a page that cannot be read — the file was
//! truncated by another process, or the disk returned an error — is not an
//! error code but a SIGBUS. The handler installed here turns one that hits
//! a mapping of this module into a clear message naming the file and an
//! exit, as a kill would end the process: every caller hashes before it
//! replaces anything, and a kill at any moment is what the restore and the
//! journal are built to survive. A SIGBUS anywhere else goes to the handler
//! that was there before.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// How many mappings can be live at once; beyond that, callers read
/// through a buffer instead.
const SLOTS: usize = 8;

/// A slot's `start` while it is being filled.
const CLAIMED: usize = usize::MAX;

/// Where one live mapping is, and the file it maps, for the handler: plain
/// atomics, the only things a signal handler may read.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    path: AtomicPtr<u8>,
    path_len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    path: AtomicPtr::new(std::ptr::null_mut()),
    path_len: AtomicUsize::new(0),
};

static LIVE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// `len` bytes of a file from an offset, mapped read-only. Hashing maps one
/// window at a time and unmaps it once hashed, so that the process holds
/// no more of the file than the window (its resident size stays that of a
/// buffer, however large the file).
pub struct Mapped<'a> {
    addr: *mut libc::c_void,
    /// Mapped length, from the page boundary at or before the offset.
    mapped: usize,
    /// Where the bytes asked for start in the mapping.
    skip: usize,
    len: usize,
    slot: usize,
    /// The path the handler names, alive while the slot points at it.
    _path: std::marker::PhantomData<&'a Path>,
}

impl<'a> Mapped<'a> {
    /// Maps `len` (more than 0) bytes of `file` from `offset` (the file
    /// named `path` in the message a SIGBUS gives). `None` where it cannot
    /// be mapped, or every slot is taken: the caller then reads through a
    /// buffer.
    pub fn of(file: &File, offset: u64, len: usize, path: &'a Path) -> Option<Mapped<'a>> {
        install_handler();
        let name = path.as_os_str().as_encoded_bytes();
        let page = page_size()?;
        let start = offset - offset % page;
        let skip = usize::try_from(offset - start).ok()?;
        let mapped = len.checked_add(skip)?;
        let at = libc::off_t::try_from(start).ok()?;
        let slot = LIVE.iter().position(|s| {
            s.start
                .compare_exchange(0, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        // SAFETY: a fresh read-only shared mapping of an open descriptor;
        // the kernel checks the length and the descriptor.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                at,
            )
        };
        let s = &LIVE[slot];
        if addr == libc::MAP_FAILED {
            s.start.store(0, Ordering::Release);
            return None;
        }
        // SAFETY: the range just mapped. Read ahead: it is read once, in order.
        unsafe { libc::madvise(addr, mapped, libc::MADV_SEQUENTIAL) };
        s.path.store(name.as_ptr().cast_mut(), Ordering::Relaxed);
        s.path_len.store(name.len(), Ordering::Relaxed);
        s.end.store(addr as usize + mapped, Ordering::Relaxed);
        s.start.store(addr as usize, Ordering::Release);
        Some(Mapped {
            addr,
            mapped,
            skip,
            len,
            slot,
            _path: std::marker::PhantomData,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `skip + len` bytes mapped at `addr` until drop; read-only.
        unsafe { std::slice::from_raw_parts(self.addr.cast::<u8>().add(self.skip), self.len) }
    }
}

impl Drop for Mapped<'_> {
    fn drop(&mut self) {
        let slot = &LIVE[self.slot];
        slot.start.store(CLAIMED, Ordering::Release);
        // SAFETY: the mapping made in `of`, unmapped once.
        unsafe { libc::munmap(self.addr, self.mapped) };
        slot.start.store(0, Ordering::Release);
    }
}

fn page_size() -> Option<u64> {
    static PAGE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok())
}

/// The SIGBUS disposition before ours (the standard library's, which
/// reports a stack overflow), given back for a fault that is not ours.
struct Previous(libc::sigaction);

// SAFETY: written once, before the handler that reads it is installed.
unsafe impl Sync for Previous {}
unsafe impl Send for Previous {}

static PREVIOUS: std::sync::OnceLock<Previous> = std::sync::OnceLock::new();

fn install_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a handler that only reads atomics, writes to stderr and
        // exits, or puts the previous disposition back, all
        // async-signal-safe.
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous);
            let _ = PREVIOUS.set(Previous(previous));
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &LIVE {
        let start = s.start.load(Ordering::Acquire);
        if start == 0 || start == CLAIMED || addr < start || addr >= s.end.load(Ordering::Relaxed) {
            continue;
        }
        let path = s.path.load(Ordering::Relaxed);
        let path_len = s.path_len.load(Ordering::Relaxed);
        let say = |bytes: &[u8]| {
            // SAFETY: writing a live buffer to stderr.
            unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        };
        say(b"runbook: reading ");
        // SAFETY: the path the slot's owner keeps alive while it is registered.
        say(unsafe { std::slice::from_raw_parts(path, path_len) });
        say(
            b" failed while it was hashed: the file was truncated by another process, \
or the disk could not read it. Stopped at once, before replacing anything; \
a run stopped here resumes like one that was killed (runbook resume).\n",
        );
        // SAFETY: ends the process without running anything more.
        unsafe { libc::_exit(1) };
    }
    // Not a page of ours: the disposition before ours takes the fault when
    // the access is retried.
    // SAFETY: setting a signal's disposition is async-signal-safe.
    unsafe {
        match PREVIOUS.get() {
            Some(Previous(previous)) => {
                libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut())
            }
            None => {
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
                0
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Run in a child process by the test below: maps a file, truncates it
    /// as another process might, and reads the page that is gone.
    #[test]
    fn child_reading_a_truncated_mapping() {
        let Some(path) = std::env::var_os("RUNBOOK_TEST_TRUNCATED_MAPPING") else {
            return;
        };
        let path = std::path::PathBuf::from(path);
        let file = File::open(&path).expect("open");
        let mapped = Mapped::of(&file, 4096, 1 << 15, &path).expect("mapped");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .expect("truncate");
        let sum: u64 = mapped.bytes().iter().map(|b| u64::from(*b)).sum();
        println!("read {sum} from a truncated file");
    }

    #[test]
    fn a_page_that_cannot_be_read_names_the_file_and_stops_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("backup.db");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&vec![7u8; 1 << 16]))
            .expect("write");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "mapped::tests::child_reading_a_truncated_mapping",
                "--nocapture",
            ])
            .env("RUNBOOK_TEST_TRUNCATED_MAPPING", &path)
            .output()
            .expect("run the child");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "stdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "runbook: reading {} failed while it was hashed",
                path.display()
            )),
            "{stderr}"
        );
        assert!(!stdout.contains("from a truncated file"), "{stdout}");
    }
}
