#!/usr/bin/env python3
"""Benchmarks runbook's backup create, verify and restore on a migrated
go-fast-cdn database against the same work done by standard tools, in the
same run on the same file: cp + fsync for create and restore, the sqlite3
CLI's integrity_check + sha256sum for verify. Prints a Markdown table of
median seconds, ratios and peak RSS.

usage: benches/backup.py [SIZE_MB]   (default 1024; needs a release build)
       RUNS=N (default 5) runs of each; BENCH_INSTALL=DIR reuses an install
       made by make_install.py instead of building a new one.
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from measure import RUNS, compare, compare_many  # noqa: E402
BIN = os.path.join(HERE, "..", "target", "release", "runbook")


def main():
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release --locked")
    if not shutil.which("sqlite3"):
        sys.exit("the sqlite3 CLI is needed for the verify baseline: apt-get install sqlite3")
    work = tempfile.mkdtemp(prefix="runbook-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    try:
        reuse = os.environ.get("BENCH_INSTALL")
        if reuse:
            shutil.copytree(reuse, os.path.join(work, "app"))
        else:
            subprocess.run([sys.executable, os.path.join(HERE, "make_install.py"), os.path.join(work, "app"), str(size_mb)], check=True)
        db = os.path.join(work, "app", "db_data", "main.db")
        legacy = os.path.join(work, "app", "backups", "db_backup_20240501-120000.db")
        scratch = os.path.join(work, "scratch")
        os.makedirs(scratch)
        size = os.path.getsize(db)
        # Warm the page cache for both files, as every run after the first sees them.
        for f in (db, legacy):
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass

        def clean_scratch():
            for f in os.listdir(scratch):
                os.remove(os.path.join(scratch, f))

        live_copy = os.path.join(work, "live-copy.db")
        shutil.copy(db, live_copy)

        def reset_live():
            clean_scratch()
            shutil.copy(live_copy, db)

        copy = os.path.join(scratch, "copy.db")
        cp_sync = 'cp "$1" "$2" && sync "$2"'
        # What a backup and a restore must do besides copying (issue-level
        # requirements: a SHA-256 in the manifest; an integrity check of the
        # backup before trusting it), each done alone by a standard tool:
        # the floor below which neither can go on this machine.
        sha256 = (["openssl", "dgst", "-sha256"] if shutil.which("openssl")
                  else [sys.executable, "-c", "import hashlib,sys; print(hashlib.file_digest(open(sys.argv[1], 'rb'), 'sha256').hexdigest())"])
        integrity = ["sqlite3", "-readonly", legacy, "PRAGMA integrity_check"]
        rows = []
        t, (b, floor), rss = compare_many(
            ([BIN, "backup", "create", "--db", db, "--dir", scratch], work, clean_scratch),
            [(["sh", "-c", cp_sync, "_", db, copy], work, clean_scratch), (sha256 + [db], work)],
        )
        rows.append(("backup create", "cp + sync of the database", t, b, rss))
        rows.append(("backup create", "SHA-256 of the database alone (OpenSSL)", t, floor, rss))

        t, (b, floor), rss = compare_many(
            ([BIN, "backup", "restore", "--db", db, "--backup", legacy, "--dir", scratch, "--force"], work, reset_live),
            [(["sh", "-c", cp_sync, "_", legacy, copy], work, clean_scratch), (integrity, work)],
        )
        rows.append(("backup restore (verify + pre-restore backup + swap)", "cp + sync of the backup", t, b, rss))
        rows.append(("backup restore (verify + pre-restore backup + swap)", "sqlite3 integrity_check of the backup alone", t, floor, rss))

        t, b, rss = compare(
            ([BIN, "backup", "verify", "--backup", legacy], work),
            (["sh", "-c", 'sqlite3 "$1" "PRAGMA integrity_check" && sha256sum "$1"', "_", legacy], work),
        )
        rows.append(("backup verify", "sqlite3 integrity_check + sha256sum", t, b, rss))

        print(f"Database: {size / 1024 / 1024:.0f} MiB migrated go-fast-cdn install; median of {RUNS} alternating runs, warm page cache, write-back flushed before each.\n")
        print("| operation | runbook | baseline | baseline time | ratio | runbook peak RSS |")
        print("|---|---|---|---|---|---|")
        for name, base_name, t, bt, rss in rows:
            print(f"| {name} | {t:.2f} s | {base_name} | {bt:.2f} s | {t / bt:.2f}× | {rss:.0f} MiB |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
