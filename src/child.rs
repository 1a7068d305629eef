//! A program run to its end with its output captured, on the calling
//! thread: one `poll` loop reads its standard output and error and writes
//! its standard input, and a deadline kills its whole process group. A
//! reader thread per pipe, as a general-purpose runner starts, cost a
//! shell step 0.28 ms here (docs/PERFORMANCE.md).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug)]
pub enum Error {
    /// It could not be started.
    Start(io::Error),
    /// Its pipes or its end could not be read.
    Wait(io::Error),
    /// The deadline passed; its process group was killed.
    TimedOut,
}

/// Runs `cmd` in a process group of its own (so that a timeout kills what
/// it started too), with `stdin` written to it, or none.
pub fn run(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<Finished, Error> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut child = cmd.spawn().map_err(Error::Start)?;
    let finished =
        capture(&mut child, stdin.unwrap_or_default(), deadline).and_then(|(stdout, stderr)| {
            Ok(Finished {
                status: wait(&mut child, deadline)?,
                stdout,
                stderr,
            })
        });
    finished.map_err(|e| stop(&mut child, e))
}

/// Kills the group of a child given up on, and reaps it.
fn stop(child: &mut Child, why: Error) -> Error {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) takes plain integers; a negative pid names the
        // process group made for this child, and nothing else.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.wait();
    why
}

/// Reads both output pipes to their end while writing `input`.
fn capture(
    child: &mut Child,
    input: &[u8],
    deadline: Option<Instant>,
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    // As files, so that both outputs go in one array.
    let file = |fd: std::os::fd::OwnedFd| std::fs::File::from(fd);
    let mut outs = [
        child.stdout.take().map(|p| file(p.into())),
        child.stderr.take().map(|p| file(p.into())),
    ];
    let mut inp = child.stdin.take().map(|p| file(p.into()));
    let mut written = 0;
    let mut got = [Vec::new(), Vec::new()];
    for fd in outs
        .iter()
        .flatten()
        .map(AsRawFd::as_raw_fd)
        .chain(inp.iter().map(AsRawFd::as_raw_fd))
    {
        nonblocking(fd).map_err(Error::Wait)?;
    }
    loop {
        if inp.is_some() && written == input.len() {
            inp = None; // closed: the program sees the end of its input
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        for out in outs.iter().flatten() {
            fds.push(libc::pollfd {
                fd: out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(i) = &inp {
            fds.push(libc::pollfd {
                fd: i.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        if fds.is_empty() {
            return Ok((std::mem::take(&mut got[0]), std::mem::take(&mut got[1])));
        }
        let wait_ms = match deadline {
            None => -1,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => {
                    i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX)
                }
                _ => return Err(Error::TimedOut),
            },
        };
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::Wait(e));
        }
        for (slot, buf) in outs.iter_mut().zip(got.iter_mut()) {
            let Some(pipe) = slot else { continue };
            let ready = fds
                .iter()
                .any(|p| p.fd == pipe.as_raw_fd() && p.revents != 0);
            if ready && drain(pipe, buf).map_err(Error::Wait)? {
                *slot = None;
            }
        }
        if let Some(i) = &mut inp {
            let ready = fds.iter().any(|p| p.fd == i.as_raw_fd() && p.revents != 0);
            if ready {
                match i.write(&input[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // It closed its input (or ended) without reading it all.
                    Err(_) => written = input.len(),
                }
            }
        }
    }
}

/// Reads what a pipe holds now; true at its end. `read_to_end` reads
/// into the buffer's spare room (nothing zeroed first) and keeps what it
/// read when the pipe has no more for now (`WouldBlock`).
fn drain(pipe: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    match pipe.read_to_end(buf) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Its end, once its pipes are closed: at once for nearly every program;
/// one that closed them and went on is looked at again, more rarely, until
/// the deadline.
fn wait(child: &mut Child, deadline: Option<Instant>) -> Result<ExitStatus, Error> {
    let Some(deadline) = deadline else {
        return child.wait().map_err(Error::Wait);
    };
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().map_err(Error::Wait)? {
            return Ok(status);
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(Error::TimedOut);
        };
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn nonblocking(fd: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns, with integer flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    /// More input and output than a pipe holds (64 KiB), both at once: the
    /// loop must keep writing while it reads, or both sides wait forever.
    #[test]
    fn a_mebibyte_through_cat_with_stderr_alongside() {
        let input: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let out = run(
            sh("cat; echo done >&2; exit 3"),
            Some(&input),
            Some(Duration::from_secs(30)),
        )
        .unwrap();
        assert_eq!(out.stdout, input);
        assert_eq!(out.stderr, b"done\n");
        assert_eq!(out.status.code(), Some(3));
    }

    /// A program that never reads its input, and one that ends before
    /// reading it all, are not errors.
    #[test]
    fn input_left_unread_is_no_error() {
        let input = vec![b'x'; 1 << 20];
        let out = run(sh("echo hi"), Some(&input), None).unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert!(out.status.success());
    }

    /// A program that closes its outputs and goes on is still held to the
    /// deadline, and killed with what it started.
    #[test]
    fn the_deadline_holds_after_the_outputs_close() {
        let started = Instant::now();
        let err = run(
            sh("exec >/dev/null 2>&1; sleep 30"),
            None,
            Some(Duration::from_millis(300)),
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::TimedOut), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_program_that_cannot_start_says_so() {
        let err = run(Command::new("/nonexistent/program"), None, None)
            .err()
            .unwrap();
        assert!(matches!(err, Error::Start(e) if e.kind() == io::ErrorKind::NotFound));
    }
}
