//! The `backup.*` actions: make, list, choose, check, restore and delete
//! backups of an SQLite database. The work is done by [`crate::backup`];
//! these wrap it with arguments, descriptions and outputs.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use super::{confirm, outputs, Action, Context, Failure, Outputs};
use crate::backup;
use crate::database::Counting;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackupCreate")]
pub struct Create {
    db: PathBuf,
    dir: PathBuf,
    /// What its fingerprint counts and reads (docs/actions.md, "Fingerprints").
    #[serde(default)]
    fingerprint: Counting,
    /// A word for the file name and manifest: `emergency`, `pre-restore`…
    #[serde(default)]
    label: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackupList")]
pub struct List {
    dir: PathBuf,
    /// The prefix of the application's own backups (`PREFIX` +
    /// `YYYYMMDD-HHMMSS.db`), listed too.
    #[serde(default)]
    app_backups: Option<String>,
    /// What its fingerprint counts and reads (docs/actions.md, "Fingerprints").
    #[serde(default)]
    fingerprint: Counting,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackupSelect")]
pub struct Select {
    dir: PathBuf,
    /// The prefix of the application's own backups (`PREFIX` +
    /// `YYYYMMDD-HHMMSS.db`), to choose among too.
    #[serde(default)]
    app_backups: Option<String>,
    /// What its fingerprint counts and reads (docs/actions.md, "Fingerprints").
    #[serde(default)]
    fingerprint: Counting,
    /// Pass over backups that have any of these tables.
    #[serde(default)]
    without_tables: Vec<String>,
    /// Pass over backups in which any of these migrations is recorded as done.
    #[serde(default)]
    without_markers: Vec<String>,
    /// Pass over backups that lack any of these tables.
    #[serde(default)]
    with_tables: Vec<String>,
    /// Only backups made with this label (`pre-restore`, `emergency`…).
    #[serde(default)]
    label: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackupVerify")]
pub struct Verify {
    backup: PathBuf,
    /// What its fingerprint counts and reads (docs/actions.md, "Fingerprints").
    #[serde(default)]
    fingerprint: Counting,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackupRestore")]
pub struct Restore {
    db: PathBuf,
    backup: PathBuf,
    /// What its fingerprint counts and reads (docs/actions.md, "Fingerprints").
    #[serde(default)]
    fingerprint: Counting,
    /// Where the pre-restore backup of the current state goes.
    dir: PathBuf,
    /// How long to wait for the database to be free (default 10s).
    #[serde(default, deserialize_with = "super::duration_opt::deserialize")]
    #[schemars(with = "Option<String>")]
    lock_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackupDelete")]
pub struct Delete {
    backup: PathBuf,
    /// Delete without asking.
    #[serde(default)]
    force: bool,
}

impl Action for Create {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.db, &mut self.dir]
    }

    fn mutates(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("back up {} into {}", self.db.display(), self.dir.display())
    }

    fn run(&self, _ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let (path, manifest) = backup::create(
            &self.db,
            &self.dir,
            self.label.as_deref(),
            &self.fingerprint,
        )
        .map_err(Failure::failed)?;
        let mut out = outputs(&manifest);
        out.insert("path".into(), path.display().to_string().into());
        if let Some(sum) = manifest.checksum() {
            out.insert("checksum".into(), sum.to_string().into());
        }
        Ok(out)
    }
}

impl Action for List {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.dir]
    }

    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("list the backups in {}", self.dir.display())
    }

    fn run(&self, _ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let entries = backup::list(&self.dir, &self.fingerprint, self.app_backups.as_deref())
            .map_err(Failure::failed)?;
        let mut out = Outputs::new();
        out.insert("count".into(), entries.len().into());
        out.insert(
            "backups".into(),
            entries.iter().map(backup::Entry::to_json).collect(),
        );
        Ok(out)
    }
}

impl Action for Select {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.dir]
    }

    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "choose the newest verified backup in {}",
            self.dir.display()
        )
    }

    fn run(&self, _ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let criteria = backup::Criteria {
            without_tables: self.without_tables.clone(),
            without_markers: self.without_markers.clone(),
            with_tables: self.with_tables.clone(),
            label: self.label.clone(),
            counting: self.fingerprint.clone(),
            app_prefix: self.app_backups.clone(),
        };
        let selected = backup::select(&self.dir, &criteria).map_err(Failure::failed)?;
        let mut out = outputs(selected.entry.to_json());
        let v = &selected.verified;
        out.insert("checksum".into(), v.checksum.to_string().into());
        out.insert("checked_at".into(), v.checked_at.clone().into());
        out.insert("checked_now".into(), v.checked_now.into());
        let rejected = serde_json::to_value(selected.rejected).unwrap_or(Json::Null);
        out.insert("rejected".into(), rejected);
        Ok(out)
    }
}

impl Action for Verify {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.backup]
    }

    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("verify {}", self.backup.display())
    }

    fn run(&self, _ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let v = backup::verify(&self.backup, &self.fingerprint).map_err(Failure::failed)?;
        let mut out = outputs(&v);
        out.insert("integrity".into(), "ok".into());
        Ok(out)
    }
}

impl Action for Restore {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.db, &mut self.backup, &mut self.dir]
    }

    fn mutates(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        // What the review the week before can still change: a backup whose
        // check is recorded is restored at the speed of a copy.
        let size = std::fs::metadata(&self.backup).map(|m| m.len()).ok();
        let recorded = backup::read_manifest(&self.backup)
            .ok()
            .flatten()
            .zip(size)
            .and_then(|(m, size)| m.trusted_check(size).map(|v| v.at.clone()));
        match recorded {
            Some(at) => format!(
                "restore {} (its integrity_check passed at {at}: only its checksum is compared, as it is copied), keep the state of {} in {}, then put the backup in its place",
                self.backup.display(),
                self.db.display(),
                self.dir.display()
            ),
            None => format!(
                "verify {} (never verified: integrity_check reads it all first; `runbook backup verify --backup {}` now makes the restore a checked copy), keep the state of {} in {}, then put the backup in its place",
                self.backup.display(),
                self.backup.display(),
                self.db.display(),
                self.dir.display()
            ),
        }
    }

    fn run(&self, _ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let timeout = self.lock_timeout.unwrap_or(Duration::from_secs(10));
        let r = backup::restore(
            &self.db,
            &self.backup,
            &self.dir,
            timeout,
            &self.fingerprint,
        )
        .map_err(Failure::failed)?;
        Ok(outputs(&r))
    }
}

impl Action for Delete {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.backup]
    }

    fn mutates(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("delete {} and its manifest", self.backup.display())
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        if !self.force {
            confirm::ask(
                ctx.step,
                &format!("Delete the backup {}?", self.backup.display()),
                ctx.yes,
            )?;
        }
        backup::delete(&self.backup).map_err(Failure::failed)?;
        let mut out = Outputs::new();
        out.insert("deleted".into(), self.backup.display().to_string().into());
        Ok(out)
    }
}
