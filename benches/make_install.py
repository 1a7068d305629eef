#!/usr/bin/env python3
"""Builds a migrated go-fast-cdn install of about SIZE_MB megabytes for the
benchmarks: the app's schema, images and docs, a legacy pre-migration backup,
then the forward migration (media holds a copy of every live row).

usage: make_install.py ROOT SIZE_MB
"""
import os
import shutil
import sqlite3
import sys

SCHEMA = """
CREATE TABLE images (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,
                     deleted_at datetime, file_name text, checksum blob);
CREATE INDEX idx_images_deleted_at ON images(deleted_at);
CREATE TABLE docs (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,
                   deleted_at datetime, file_name text, checksum blob);
CREATE INDEX idx_docs_deleted_at ON docs(deleted_at);
CREATE TABLE configs (key text, value text, PRIMARY KEY (key));
"""
MIGRATION = """
CREATE TABLE media (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,
                    deleted_at datetime, file_name text, checksum blob,
                    type varchar(20) NOT NULL DEFAULT "document", width integer DEFAULT null, height integer DEFAULT null);
CREATE UNIQUE INDEX idx_media_file_name ON media(file_name);
CREATE INDEX idx_media_deleted_at ON media(deleted_at);
CREATE TABLE migration_records (id integer PRIMARY KEY AUTOINCREMENT, name text NOT NULL, completed numeric NOT NULL DEFAULT false,
                                created_at datetime, updated_at datetime, deleted_at datetime);
CREATE UNIQUE INDEX idx_migration_records_name ON migration_records(name);
INSERT INTO media (created_at, updated_at, deleted_at, file_name, checksum, type)
  SELECT created_at, updated_at, deleted_at, file_name, checksum, 'image' FROM images WHERE deleted_at IS NULL;
INSERT INTO media (created_at, updated_at, deleted_at, file_name, checksum, type)
  SELECT created_at, updated_at, deleted_at, file_name, checksum, 'document' FROM docs WHERE deleted_at IS NULL;
INSERT INTO migration_records (name, completed, created_at, updated_at)
  VALUES ('media_unification_2024', 1, datetime('now'), datetime('now'));
"""
BATCH = 200_000


def fill(conn, table, ext, start, n):
    # Every tenth row soft-deleted; a 32-byte checksum like the app's sha256.
    conn.execute(
        f"""WITH RECURSIVE s(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM s WHERE i < ?2)
            INSERT INTO {table} (created_at, updated_at, deleted_at, file_name, checksum)
            SELECT '2024-01-01 09:00:00', '2024-01-01 09:00:00',
                   CASE WHEN i % 10 = 9 THEN '2024-03-01 10:00:00' END,
                   printf('{table}/%08d-%s.{ext}', i, hex(randomblob(6))), randomblob(32) FROM s""",
        (start, start + n - 1),
    )


def main():
    root, size_mb = sys.argv[1], int(sys.argv[2])
    os.makedirs(os.path.join(root, "db_data"), exist_ok=True)
    os.makedirs(os.path.join(root, "backups"), exist_ok=True)
    db = os.path.join(root, "db_data", "main.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(SCHEMA)
    # The migration adds a copy of 90% of the rows: stop at a little over half the target.
    target = size_mb * 1024 * 1024 * 0.53
    done = 0
    while os.path.getsize(db) < target:
        conn.execute("BEGIN")
        fill(conn, "images", "png", done, BATCH)
        fill(conn, "docs", "pdf", done, BATCH // 2)
        conn.execute("COMMIT")
        done += BATCH
    conn.close()
    shutil.copy(db, os.path.join(root, "backups", "db_backup_20240501-120000.db"))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    conn.executescript(MIGRATION)
    conn.close()
    print(f"{db}: {os.path.getsize(db) / 1024 / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
