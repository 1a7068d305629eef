//! `runbook demo`: builds a sample go-fast-cdn install (see
//! [`crate::sample_install`]) with the shipped playbooks and templates
//! beside it, and runs the emergency rollback on it with `--yes` and no-op
//! stop/start commands, so a newcomer sees the whole job in one command.

use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::exit::Exit;

/// The shipped playbooks and templates, built into the binary so the demo
/// works wherever it is installed.
const FILES: &[(&str, &str)] = &[
    (
        "playbooks/emergency_rollback.yaml",
        include_str!("../../playbooks/emergency_rollback.yaml"),
    ),
    (
        "playbooks/rollback-option-1.yaml",
        include_str!("../../playbooks/rollback-option-1.yaml"),
    ),
    (
        "playbooks/rollback-option-2.yaml",
        include_str!("../../playbooks/rollback-option-2.yaml"),
    ),
    (
        "playbooks/rollback-option-3.yaml",
        include_str!("../../playbooks/rollback-option-3.yaml"),
    ),
    (
        "playbooks/verify.yaml",
        include_str!("../../playbooks/verify.yaml"),
    ),
    (
        "playbooks/notify.yaml",
        include_str!("../../playbooks/notify.yaml"),
    ),
    (
        "templates/rollback-initiated.txt",
        include_str!("../../templates/rollback-initiated.txt"),
    ),
    (
        "templates/rollback-outcome.txt",
        include_str!("../../templates/rollback-outcome.txt"),
    ),
    (
        "templates/rollback-notice.txt",
        include_str!("../../templates/rollback-notice.txt"),
    ),
    ("templates/report.md", crate::report::BUILT_IN),
];

pub fn demo(dir: Option<&Path>, build_only: bool, keep: bool) -> Exit {
    match prepare(dir) {
        Ok((dir, temporary)) if build_only => {
            // Built to practise on: kept.
            let dir = temporary.map_or(dir, tempfile::TempDir::keep);
            say!("demo: built; try: cd {} && runbook run playbooks/emergency_rollback.yaml --var root=app --var reason=practice --dry-run", dir.display());
            Exit::Success
        }
        Ok((built, temporary)) => {
            let exit = run(&built);
            // A directory of its own making goes when the demo succeeded,
            // unless kept; after a failure or an interruption it holds the
            // report and the run to resume, so it stays.
            match temporary {
                Some(temporary) if keep => drop(temporary.keep()),
                Some(temporary) if exit == Exit::Success => match temporary.close() {
                    Ok(()) => say!(
                        "demo: removed {} and the report and outbox in it; `runbook demo --keep` keeps them",
                        built.display()
                    ),
                    Err(err) => eprintln!("warning: cannot remove {}: {err}", built.display()),
                },
                Some(temporary) => {
                    let _ = temporary.keep();
                    say!("demo: kept {}: the run did not succeed", built.display());
                }
                None => {}
            }
            exit
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            Exit::Failed
        }
    }
}

/// The install, built in `dir` or in a temporary directory (returned too,
/// removed when dropped: a build that fails leaves nothing behind).
fn prepare(dir: Option<&Path>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    use anyhow::Context as _;
    let (dir, temporary) = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.to_path_buf(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("runbook-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    // The playbooks name their schema (`../docs/playbook.schema.json`) for
    // editors: it is where they say.
    let schema = dir.join("docs/playbook.schema.json");
    std::fs::create_dir_all(dir.join("docs")).context("creating docs/")?;
    std::fs::write(&schema, crate::schema::rendered())
        .with_context(|| format!("writing {}", schema.display()))?;
    let db = crate::sample_install::build(&dir.join("app"))?;
    say!(
        "demo: a migrated go-fast-cdn install in {}",
        dir.join("app").display()
    );
    say!(
        "demo: database {} (400 images and docs, 4 uploads made after the migration, one a video)",
        db.display()
    );
    Ok((dir, temporary))
}

fn run(dir: &Path) -> Exit {
    let var = |k: &str, v: String| (k.to_owned(), v);
    let args = RunArgs {
        playbook: dir.join("playbooks/emergency_rollback.yaml"),
        vars: vec![
            var("root", dir.join("app").display().to_string()),
            var(
                "reason",
                "demo: images served with the wrong content type after the migration".into(),
            ),
            // No app runs here: nothing to stop or start, nothing to probe.
            var("stop_command", "true".into()),
            var("start_command", "true".into()),
            var("probe", "off".into()),
            var(
                "notify_to",
                "dev-lead@example.com, devops@example.com".into(),
            ),
            var("notify_wide_to", "all-devs@example.com".into()),
            var("mail_from", "runbook@example.com".into()),
        ],
        dry_run: false,
        rehearse: false,
        expect_plan: None,
        save_review: false,
        fail: Vec::new(),
        yes: true,
        json: false,
        verbose: false,
        wait: None,
        runs: dir.join(".runbook/runs"),
        remote: crate::cli::RemoteArgs::default(),
    };
    super::run::run_playbook(&args)
}
