//! `runbook man`: a manual page for runbook and for each of its
//! subcommands, from the command line's own definition, with the exit
//! codes and environment variables the program really uses.

use std::path::Path;

use clap::CommandFactory;
use roff::{bold, roman, Roff};

use crate::cli::Cli;
use crate::exit::Exit;

/// Environment variables runbook reads, and what for.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "RUNBOOK_RUNS",
        "Where run directories are created and looked up (the --runs option).",
    ),
    (
        "RUNBOOK_SECRET_NAME",
        "The value of the secret variable name (lower-cased): kept out of the command line, redacted as *** in every output, and not passed on to the programs steps run.",
    ),
    (
        "NO_COLOR",
        "When set and not empty, the terminal view has no colours.",
    ),
    (
        "PATH",
        "Where shell steps' programs are looked up, by check as well as by the run.",
    ),
];

/// Every page: the command's own, then each subcommand's, depth first.
fn pages() -> Vec<clap::Command> {
    fn walk(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
        out.push(cmd.clone());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, out);
        }
    }
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut out = Vec::new();
    walk(&root, &mut out);
    out
}

/// The codes a command can end with: every one for a run, fewer for the rest.
fn exit_codes(page: &str) -> Vec<Exit> {
    let wanted: &[Exit] = match page {
        // The demo ends as the run it makes ends.
        "runbook" | "runbook-run" | "runbook-demo" => &Exit::EVERY,
        "runbook-resume" => &[
            Exit::Success,
            Exit::Failed,
            Exit::Invalid,
            Exit::Aborted,
            Exit::Locked,
            Exit::Interrupted,
        ],
        "runbook-check" => &[Exit::Success, Exit::Invalid],
        p if p.starts_with("runbook-backup") => &[
            Exit::Success,
            Exit::Failed,
            Exit::Invalid,
            Exit::Aborted,
            Exit::Locked,
        ],
        _ => &[Exit::Success, Exit::Failed, Exit::Invalid],
    };
    wanted.to_vec()
}

fn render(cmd: clap::Command) -> std::io::Result<(String, Vec<u8>)> {
    let man = clap_mangen::Man::new(cmd.clone());
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for code in exit_codes(&name) {
        roff.control("TP", [] as [&str; 0]);
        roff.text([bold(code.code().to_string())]);
        roff.text([roman(code.meaning())]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (var, what) in ENVIRONMENT {
        roff.control("TP", [] as [&str; 0]);
        roff.text([bold(*var)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let parent = name.rsplit_once('-').map(|(p, _)| p.to_owned());
    let mut related: Vec<String> = parent.into_iter().collect();
    if name != "runbook" && related.first().is_some_and(|p| p != "runbook") {
        related.push("runbook".to_owned());
    }
    related.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("{name}-{}", s.get_name())),
    );
    let refs: Vec<String> = related.iter().map(|r| format!("{r}(1)")).collect();
    roff.text([roman(refs.join(", "))]);
    out.extend(roff.render().into_bytes());
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok((name, out))
}

/// Prints the page of `runbook` or of the subcommand named by `words`
/// (`backup create`), or writes every page into `dir`.
pub fn man(words: &[String], dir: Option<&Path>) -> Exit {
    let wanted = std::iter::once("runbook".to_owned())
        .chain(words.iter().cloned())
        .collect::<Vec<_>>()
        .join("-");
    let pages = pages();
    let chosen: Vec<clap::Command> = match dir {
        Some(_) => pages,
        None => {
            let page = pages
                .into_iter()
                .find(|c| c.get_display_name().unwrap_or(c.get_name()) == wanted);
            match page {
                Some(p) => vec![p],
                None => {
                    eprintln!(
                        "error: runbook has no subcommand `{}`; `runbook --help` lists them",
                        words.join(" ")
                    );
                    return Exit::Invalid;
                }
            }
        }
    };
    for cmd in chosen {
        let (name, page) = match render(cmd) {
            Ok(p) => p,
            Err(err) => {
                eprintln!("error: cannot render the man page: {err}");
                return Exit::Failed;
            }
        };
        match dir {
            None => say!(raw: page),
            Some(dir) => {
                let path = dir.join(format!("{name}.1"));
                if let Err(err) =
                    std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, page))
                {
                    eprintln!("error: cannot write {}: {err}", path.display());
                    return Exit::Failed;
                }
                say!("{}", path.display());
            }
        }
    }
    Exit::Success
}
