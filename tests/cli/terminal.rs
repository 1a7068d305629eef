//! What a person at a real terminal sees: tmux runs runbook in a pty and
//! the test reads the screen, as an operator would, at moments of its
//! choosing. Needs `tmux` (`.ci/run` installs it); without it the test says
//! it was skipped, loudly.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::Test;

/// A tmux server of the test's own, on its own socket, killed on drop.
pub struct Screen {
    socket: String,
}

impl Screen {
    /// Starts `command` in a 120x30 terminal; `None` without tmux.
    pub fn start(dir: &Path, command: &str) -> Option<Screen> {
        Command::new("tmux").arg("-V").output().ok()?;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("runbook-test-{}-{n}", std::process::id());
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "120", "-y", "30"])
            .arg(format!(
                "cd '{}' && {command}; echo EXIT=$?; sleep 60",
                dir.display()
            ))
            .env_remove("NO_COLOR")
            .env_remove("RUNBOOK_RUNS")
            .status()
            .unwrap();
        assert!(status.success(), "tmux could not start");
        Some(Screen { socket })
    }

    /// What the screen shows now.
    pub fn text(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[track_caller]
    pub fn wait_for(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "`{needle}` never appeared; the screen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn keys(&self, keys: &[&str]) {
        Command::new("tmux")
            .args(["-L", &self.socket, "send-keys"])
            .args(keys)
            .status()
            .unwrap();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn the_question_stays_on_screen_until_answered_and_y_goes_on() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: stop-app\n    action: shell\n    with: {command: [sleep, '0.3']}\n  - id: assess\n    action: confirm\n    with: {message: Have you called the development lead?}\n  - id: after\n    action: shell\n    with: {command: [touch, answered]}\n",
    );
    let command = format!("{} run pb.yaml", env!("CARGO_BIN_EXE_runbook"));
    let Some(screen) = Screen::start(t.path(), &command) else {
        crate::support::skipped(
            "tmux is not installed, so no terminal test ran (apt-get install tmux)",
        );
        return;
    };
    let question = "? assess: Have you called the development lead? [y/N]";
    screen.wait_for(question);
    for second in 1..=3 {
        std::thread::sleep(Duration::from_secs(1));
        let text = screen.text();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        assert!(
            last.starts_with(question),
            "{second} s after the question, the screen's last line is `{last}`:\n{text}"
        );
        assert!(!t.path().join("answered").exists());
    }
    screen.keys(&["y", "Enter"]);
    let text = screen.wait_for("EXIT=");
    assert!(text.contains("EXIT=0"), "{text}");
    assert!(text.contains("✓ assess"), "{text}");
    assert!(t.path().join("answered").exists(), "the run did not go on");
}

/// TAB after `runbook report` offers `latest` and the runs on disk, as
/// bash shows them to a person who sourced `runbook completions bash`.
#[test]
fn tab_completes_run_names_and_latest_in_bash() {
    let t = Test::new()
        .file(".runbook/runs/20261201T020304Z-ab/journal.jsonl", "")
        .file(".runbook/runs/20261202T050607Z-cd/journal.jsonl", "")
        .file(".runbook/runs/not-a-run/notes.txt", "");
    let bin = Path::new(env!("CARGO_BIN_EXE_runbook")).parent().unwrap();
    let command = format!("PATH='{}':$PATH bash --norc --noprofile", bin.display());
    let Some(screen) = Screen::start(t.path(), &command) else {
        crate::support::skipped(
            "tmux is not installed, so no terminal test ran (apt-get install tmux)",
        );
        return;
    };
    screen.keys(&[
        "source <(runbook completions bash) && echo SOURCED",
        "Enter",
    ]);
    screen.wait_for("\nSOURCED");
    screen.keys(&["runbook report ", "Tab", "Tab"]);
    let text = screen.wait_for("20261202T050607Z-cd");
    assert!(text.contains("latest"), "{text}");
    assert!(text.contains("20261201T020304Z-ab"), "{text}");
    assert!(!text.contains("not-a-run"), "{text}");
    // One match left: TAB writes it out.
    screen.keys(&["C-u", "runbook resume 20261201", "Tab"]);
    screen.wait_for("runbook resume 20261201T020304Z-ab");
}
