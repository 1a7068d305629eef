//! A sample go-fast-cdn install for `runbook demo`, in the state the
//! rollback plan is for: the app's schema, a few hundred images and docs
//! (some soft-deleted), a legacy pre-migration backup made the app's way,
//! the forward migration applied, and uploads made after it, a video among
//! them. The app's DDL lives here once; the tests build on it too.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

/// The app's schema before the migration, as its ORM creates it.
pub const SCHEMA: &str = r#"
CREATE TABLE images (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,
                     deleted_at datetime, file_name text, checksum blob);
CREATE INDEX idx_images_deleted_at ON images(deleted_at);
CREATE TABLE docs (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,
                   deleted_at datetime, file_name text, checksum blob);
CREATE INDEX idx_docs_deleted_at ON docs(deleted_at);
CREATE TABLE configs (key text, value text, PRIMARY KEY (key));
"#;

/// The app's forward migration: `media` and its record, live rows copied
/// with new ids, then the completion marker.
pub const MIGRATION: &str = r#"
CREATE TABLE media (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,
                    deleted_at datetime, file_name text, checksum blob,
                    type varchar(20) NOT NULL DEFAULT "document", width integer DEFAULT null, height integer DEFAULT null);
CREATE UNIQUE INDEX idx_media_file_name ON media(file_name);
CREATE INDEX idx_media_deleted_at ON media(deleted_at);
CREATE TABLE IF NOT EXISTS migration_records (id integer PRIMARY KEY AUTOINCREMENT, name text NOT NULL, completed numeric NOT NULL DEFAULT false,
                                created_at datetime, updated_at datetime, deleted_at datetime);
CREATE UNIQUE INDEX IF NOT EXISTS idx_migration_records_name ON migration_records(name);
INSERT INTO media (created_at, updated_at, deleted_at, file_name, checksum, type)
  SELECT created_at, updated_at, deleted_at, file_name, checksum, 'image' FROM images WHERE deleted_at IS NULL;
INSERT INTO media (created_at, updated_at, deleted_at, file_name, checksum, type)
  SELECT created_at, updated_at, deleted_at, file_name, checksum, 'document' FROM docs WHERE deleted_at IS NULL;
INSERT INTO migration_records (name, completed, created_at, updated_at)
  VALUES ('media_unification_2024', 1, datetime('now'), datetime('now'));
"#;

/// A stand-in checksum: the app stores the upload's SHA-256.
fn checksum(name: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(name.as_bytes()).to_vec()
}

/// Builds the sample install under `root`; returns the database's path.
pub fn build(root: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    for dir in [
        "db_data",
        "backups",
        "uploads/images",
        "uploads/docs",
        "uploads/media",
    ] {
        std::fs::create_dir_all(root.join(dir))
            .with_context(|| format!("creating {}", root.join(dir).display()))?;
    }
    let db = root.join("db_data/main.db");
    if db.exists() {
        anyhow::bail!(
            "{} exists already; give `runbook demo` an empty directory",
            db.display()
        );
    }
    let mut conn = Connection::open(&db).with_context(|| format!("creating {}", db.display()))?;
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    for (table, n, ext) in [("images", 240, "png"), ("docs", 160, "pdf")] {
        for i in 0..n {
            let name = format!("{table}-{i:04}.{ext}");
            let deleted = (i % 10 == 9).then_some("2024-04-02 08:00:00");
            tx.execute(
                &format!(
                    "INSERT INTO {table} (created_at, updated_at, deleted_at, file_name, checksum) VALUES (?1, ?1, ?2, ?3, ?4)"
                ),
                params!["2024-03-01 09:30:00", deleted, name, checksum(&name)],
            )?;
        }
    }
    tx.execute(
        "INSERT INTO configs (key, value) VALUES ('site_name', 'go-fast-cdn demo')",
        [],
    )?;
    tx.commit()?;
    drop(conn);

    // The app's own backup tool: a plain copy, named by the second.
    let legacy = root.join("backups/db_backup_20240501-120000.db");
    std::fs::copy(&db, &legacy).with_context(|| format!("writing {}", legacy.display()))?;

    let mut conn = Connection::open(&db)?;
    let tx = conn.transaction()?;
    tx.execute_batch(MIGRATION)?;
    for (name, kind) in [
        ("summer-banner.png", "image"),
        ("team-photo.jpg", "image"),
        ("pricing-2024.pdf", "document"),
        ("launch-teaser.mp4", "video"),
    ] {
        tx.execute(
            "INSERT INTO media (created_at, updated_at, file_name, checksum, type) VALUES ('2024-06-03 14:00:00', '2024-06-03 14:00:00', ?1, ?2, ?3)",
            params![name, checksum(name), kind],
        )?;
    }
    tx.commit()?;
    Ok(db)
}
