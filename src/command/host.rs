//! `runbook host`: the end of a fleet run on a host. A controller starts it
//! over ssh and gives it everything on stdin ([`crate::control`]), never in
//! argv: it unpacks the playbook bundle into the cache, takes the secrets,
//! and runs (or dry-runs, or resumes) the playbook as `--json` would, its
//! events on stdout. It is not meant to be typed; the fleet guide
//! explains it.

use std::io::BufRead;
use std::path::{Component, Path, PathBuf};

use crate::cli::{RunArgs, RunRef};
use crate::control::{self, Message, Mode, Order};
use crate::exit::Exit;
use crate::{analyzer, lock};

/// How long a resume on a host waits for a run still finishing there (the
/// `always` steps of a run whose controller went away) to let go.
const RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

pub fn host() -> Exit {
    let mut input = std::io::BufReader::new(std::io::stdin());
    let mut first = String::new();
    let order: Order = match input.read_line(&mut first) {
        Ok(n) if n > 0 => match serde_json::from_str(&first) {
            Ok(order) => order,
            Err(err) => {
                eprintln!("error: the controller's order is not understood: {err}\n  help: the controller and this host run different versions of runbook");
                return Exit::Invalid;
            }
        },
        _ => {
            eprintln!("error: no order on stdin: `runbook host` is started by a fleet controller over ssh");
            return Exit::Invalid;
        }
    };
    let (Some(cache), Some(runs)) = (control::cache_dir(), control::runs_dir()) else {
        eprintln!("error: neither HOME nor XDG_CACHE_HOME/XDG_STATE_HOME is an absolute path here");
        return Exit::Failed;
    };
    let bundle = match unpack(&order, &cache.join("playbooks")) {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!(
                "error: cannot unpack the playbook under {}: {err:#}",
                cache.display()
            );
            return Exit::Failed;
        }
    };
    crate::secret::give(order.secrets.clone());
    if order.can_ask {
        control::relay_questions();
    }
    // Installed before the controller can say anything, so a stop is never lost.
    let _ = crate::interrupt::flag();
    std::thread::spawn(move || listen(input));
    let playbook = bundle.join(&order.playbook);
    match &order.mode {
        Mode::Resume(dir) => crate::command::resume::resume(
            &RunRef {
                run: dir.display().to_string(),
                runs,
            },
            false,
            order.yes,
            true,
            false,
            Some(RESUME_WAIT),
            crate::cli::RemoteArgs::default(),
        ),
        mode => {
            let dry_run = *mode == Mode::DryRun;
            if dry_run {
                if let Err(exit) = fit_to_run(&playbook, &order) {
                    return exit;
                }
            }
            crate::command::run::run_playbook(&RunArgs {
                playbook,
                vars: order.vars.clone(),
                dry_run,
                rehearse: false,
                fail: Vec::new(),
                save_review: false,
                expect_plan: None,
                yes: order.yes,
                json: true,
                verbose: false,
                wait: None,
                runs,
                remote: crate::cli::RemoteArgs::default(),
            })
        }
    }
}

/// The controller's later messages; its silence (EOF) is a stop too.
fn listen(mut input: impl BufRead) {
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => match serde_json::from_str::<Message>(&line) {
                Ok(Message::Stop) => crate::interrupt::request(),
                Ok(Message::Answer { id, yes }) => control::answer(id, yes),
                Err(_) => {}
            },
        }
    }
    crate::interrupt::request();
    control::no_more_answers();
}

/// A preflight is refused where the run would be when its turn came:
/// another run holds the install, or a step asks the operator and nobody
/// can answer.
fn fit_to_run(playbook: &Path, order: &Order) -> Result<(), Exit> {
    let options = analyzer::Options {
        vars: order.vars.clone(),
        require_values: true,
    };
    // An invalid playbook is said by the dry run itself.
    let Ok(plan) = analyzer::analyze(playbook, &options) else {
        return Ok(());
    };
    let asking: Vec<&str> = plan.questions().iter().map(|s| s.id.as_str()).collect();
    if !order.yes && !order.can_ask && !asking.is_empty() {
        eprintln!(
            "error: steps {} ask the operator, but the controller has no terminal to ask on and no --yes",
            asking.join(", ")
        );
        return Err(Exit::Invalid);
    }
    for target in plan.changes() {
        if let Some(holder) = lock::holder_of(&target) {
            eprintln!(
                "error: a run holds {} ({})",
                target.display(),
                holder.brief()
            );
            return Err(Exit::Locked);
        }
    }
    Ok(())
}

/// Writes the bundle under `dir`, named by its content, once: a bundle
/// already there is the same files. Paths must stay inside the bundle.
fn unpack(order: &Order, dir: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let mut hasher = blake3::Hasher::new();
    for (path, text) in &order.files {
        if !inside(Path::new(path)) {
            anyhow::bail!("`{path}` is not a relative path inside the bundle");
        }
        hasher.update(&(path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    if !order.files.contains_key(&order.playbook) {
        anyhow::bail!("the playbook `{}` is not in the bundle", order.playbook);
    }
    let name = hasher.finalize().to_hex()[..32].to_owned();
    let target = dir.join(&name);
    if target.is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a directory in {}", dir.display()))?;
    for (path, text) in &order.files {
        let file = temp.path().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    let temp = temp.keep();
    match std::fs::rename(&temp, &target) {
        Ok(()) => Ok(target),
        // Another run unpacked the same bundle first: theirs is ours.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(&temp);
            Ok(target)
        }
        Err(err) => Err(err).with_context(|| format!("renaming into {}", target.display())),
    }
}

fn inside(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}
