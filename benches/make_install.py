#!/usr/bin/env python3
"""Builds a migrated go-fast-cdn install of about SIZE_MB megabytes for the
benchmarks: the app's schema, images and docs, a legacy pre-migration backup,
then the forward migration (media holds a copy of every live row).

usage: make_install.py ROOT SIZE_MB
"""
import os
import re
import shutil
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def app_ddl(name):
    """The app's DDL (SCHEMA or MIGRATION), read from the one copy that the
    library's demo install and the tests use."""
    source = os.path.join(HERE, "..", "src", "sample_install.rs")
    with open(source) as f:
        found = re.search(rf'pub const {name}: &str = r#"(.*?)"#;', f.read(), re.S)
    if not found:
        sys.exit(f"{source} no longer defines {name} as a raw string")
    return found.group(1)


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
    conn.executescript(app_ddl("SCHEMA"))
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
    conn.executescript(app_ddl("MIGRATION"))
    conn.close()
    print(f"{db}: {os.path.getsize(db) / 1024 / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
