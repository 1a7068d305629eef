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
//! journal are built to survive. A SIGBUS anywhere else keeps its default.

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

/// The first `len` bytes of a file, mapped read-only.
pub struct Mapped {
    addr: *mut libc::c_void,
    len: usize,
    slot: Option<usize>,
    /// The path the handler names; owned here, so alive while registered.
    _path: Box<[u8]>,
}

// SAFETY: the mapping is read-only and owned by this value alone.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `len` bytes of `file` (named `path` in the message a SIGBUS
    /// gives). `None` where it cannot be mapped, or every slot is taken:
    /// the caller then reads through a buffer.
    pub fn of(file: &File, len: u64, path: &Path) -> Option<Mapped> {
        install_handler();
        let len = usize::try_from(len).ok()?;
        let name: Box<[u8]> = path.as_os_str().as_encoded_bytes().into();
        if len == 0 {
            return Some(Mapped {
                addr: std::ptr::null_mut(),
                len: 0,
                slot: None,
                _path: name,
            });
        }
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
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        let s = &LIVE[slot];
        if addr == libc::MAP_FAILED {
            s.start.store(0, Ordering::Release);
            return None;
        }
        // SAFETY: the range just mapped. Read ahead: it is read once, in order.
        unsafe { libc::madvise(addr, len, libc::MADV_SEQUENTIAL) };
        s.path.store(name.as_ptr().cast_mut(), Ordering::Relaxed);
        s.path_len.store(name.len(), Ordering::Relaxed);
        s.end.store(addr as usize + len, Ordering::Relaxed);
        s.start.store(addr as usize, Ordering::Release);
        Some(Mapped {
            addr,
            len,
            slot: Some(slot),
            _path: name,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `len` bytes mapped at `addr` until drop; read-only.
        unsafe { std::slice::from_raw_parts(self.addr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            LIVE[slot].start.store(CLAIMED, Ordering::Release);
            // SAFETY: the mapping made in `of`, unmapped once.
            unsafe { libc::munmap(self.addr, self.len) };
            LIVE[slot].start.store(0, Ordering::Release);
        }
    }
}

fn install_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a handler that only reads atomics, writes to stderr and
        // exits, all async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
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
        say(b" failed while it was hashed: the file was truncated by another process, \
or the disk could not read it. Stopped at once, before replacing anything; \
a run stopped here resumes like one that was killed (runbook resume).\n");
        // SAFETY: ends the process without running anything more.
        unsafe { libc::_exit(1) };
    }
    // Not a page of ours: the default action, when the access is retried.
    // SAFETY: resetting a signal's disposition is async-signal-safe.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
}
