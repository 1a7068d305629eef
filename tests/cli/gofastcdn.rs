//! A go-fast-cdn install in a temp directory, in whatever state a test needs:
//! the app's exact schema, images and docs (some soft-deleted), legacy
//! backups made the app's way (a plain copy), the forward migration, and
//! uploads made after it.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

/// The app's schema and forward migration: the library's, written once.
pub use runbook::sample_install::{MIGRATION, SCHEMA};

pub const MARKER: &str = "media_unification_2024";

pub struct Install {
    pub root: PathBuf,
}

fn checksum(name: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(name.as_bytes()).to_vec()
}

impl Install {
    /// A fresh install with `images` and `docs` rows; every fifth is soft-deleted.
    pub fn new(root: &Path, images: usize, docs: usize) -> Install {
        std::fs::create_dir_all(root.join("db_data")).unwrap();
        std::fs::create_dir_all(root.join("backups")).unwrap();
        std::fs::create_dir_all(root.join("uploads/images")).unwrap();
        std::fs::create_dir_all(root.join("uploads/docs")).unwrap();
        let install = Install {
            root: root.to_path_buf(),
        };
        let conn = install.conn();
        conn.execute_batch(SCHEMA).unwrap();
        for (table, n, ext) in [("images", images, "png"), ("docs", docs, "pdf")] {
            for i in 0..n {
                let name = format!("{table}-{i}.{ext}");
                let deleted = (i % 5 == 4).then_some("2024-03-01 10:00:00");
                conn.execute(
                    &format!("INSERT INTO {table} (created_at, updated_at, deleted_at, file_name, checksum) VALUES (?1, ?1, ?2, ?3, ?4)"),
                    params!["2024-01-01 09:00:00", deleted, name, checksum(&name)],
                )
                .unwrap();
            }
        }
        conn.execute("INSERT INTO configs VALUES ('site_name', 'demo')", [])
            .unwrap();
        install
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("db_data/main.db")
    }

    pub fn conn(&self) -> Connection {
        Connection::open(self.db()).unwrap()
    }

    /// A backup the app's way: a plain copy named `db_backup_YYYYMMDD-HHMMSS.db`.
    pub fn legacy_backup(&self, stamp: &str) -> PathBuf {
        let path = self.root.join(format!("backups/db_backup_{stamp}.db"));
        std::fs::copy(self.db(), &path).unwrap();
        path
    }

    /// The app's forward migration: copy live images and docs into media, write the marker.
    pub fn migrate(&self) -> Result<(), rusqlite::Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATION)?;
        tx.commit()
    }

    /// An upload made after the migration: it exists only in media.
    pub fn upload(&self, name: &str, kind: &str) {
        self.conn()
            .execute(
                "INSERT INTO media (created_at, updated_at, file_name, checksum, type) VALUES ('2024-06-01 12:00:00', '2024-06-01 12:00:00', ?1, ?2, ?3)",
                params![name, checksum(name), kind],
            )
            .unwrap();
    }

    pub fn count(&self, table: &str) -> i64 {
        self.conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    pub fn has_table(&self, table: &str) -> bool {
        self.conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                [table],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            == 1
    }

    /// Every row of a table, in id order, as text: to compare whole contents.
    pub fn dump(&self, table: &str) -> Vec<String> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT quote(file_name), quote(checksum), quote(created_at), quote(deleted_at) FROM {table} ORDER BY id"))
            .unwrap();
        stmt.query_map([], |r| {
            Ok(format!(
                "{}|{}|{}|{}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// The database file's bytes, with its sidecar files, to prove nothing changed.
    pub fn bytes(&self) -> Vec<(String, Vec<u8>)> {
        ["", "-wal", "-journal"]
            .iter()
            .filter_map(|s| {
                let mut p = self.db().into_os_string();
                p.push(s);
                std::fs::read(&p).ok().map(|b| ((*s).to_owned(), b))
            })
            .collect()
    }
}
