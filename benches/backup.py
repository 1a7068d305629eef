#!/usr/bin/env python3
"""Benchmarks runbook's backup create, verify and restore on a migrated
go-fast-cdn database against the same work done by standard tools, in the
same run on the same file: cp + fsync for create and restore, the sqlite3
CLI's integrity_check + b3sum for verify. Prints a Markdown table of
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
from measure import RUNS, compare_pairs  # noqa: E402
BIN = os.path.join(HERE, "..", "target", "release", "runbook")


def main():
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release --locked")
    if not shutil.which("sqlite3") or not shutil.which("b3sum"):
        sys.exit("the sqlite3 CLI and b3sum are needed for the baselines: apt-get install sqlite3 b3sum")
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
        legacy_manifest = legacy + ".json"

        def unverified():
            reset_live()
            if os.path.exists(legacy_manifest):
                os.remove(legacy_manifest)

        def verified():
            reset_live()
            if not os.path.exists(legacy_manifest):
                subprocess.run([BIN, "backup", "verify", "--backup", legacy], check=True, stdout=subprocess.DEVNULL)

        # What a backup and a restore must do besides copying, each done
        # alone by a standard tool: the checksum for the manifest (b3sum, the
        # same BLAKE3), and for a backup never verified, an integrity check.
        rows = []
        t, (b, floor), (r, rf), rss = compare_pairs(
            ([BIN, "backup", "create", "--db", db, "--dir", scratch], work, clean_scratch),
            [(["sh", "-c", cp_sync, "_", db, copy], work, clean_scratch), (["b3sum", db], work)],
        )
        rows.append(("backup create", "cp + sync of the database", t, b, r, rss))
        rows.append(("backup create", "BLAKE3 of the database alone (b3sum)", t, floor, rf, rss))

        restore = [BIN, "backup", "restore", "--db", db, "--backup", legacy, "--dir", scratch, "--force"]
        # The same work by standard tools, side by side: the copy, the
        # backup's checksum, and the state before described (the live
        # file's checksum and row counts, as its pre-restore manifest has).
        counts = ";".join(f"SELECT count(*) FROM {t}; SELECT count(*) FROM {t} WHERE deleted_at IS NULL" for t in ("images", "docs", "media"))
        same_work = (
            f'(cp "$1" "$2" && sync "$2") & b3sum --num-threads 1 "$1" >/dev/null & '
            f'b3sum --num-threads 1 "$3" >/dev/null & sqlite3 "$3" "{counts}" >/dev/null & wait'
        )
        t, (b, same), (r, rs), rss = compare_pairs(
            (restore, work, verified),
            [(["sh", "-c", cp_sync, "_", legacy, copy], work, clean_scratch),
             (["sh", "-c", same_work, "_", legacy, copy, db], work, reset_live)],
        )
        rows.append(("backup restore, verified backup (checksum in the copy pass + state kept by exchange)", "cp + sync of the backup", t, b, r, rss))
        rows.append(("backup restore, verified backup", "the same work by standard tools, side by side: cp + sync and b3sum of the backup, b3sum and row counts of the live file", t, same, rs, rss))

        t, (b,), (r,), rss = compare_pairs(
            (restore, work, unverified),
            [(["sh", "-c", 'sqlite3 -readonly "$1" "PRAGMA integrity_check" >/dev/null && cp "$1" "$2" && sync "$2"', "_", legacy, copy], work, clean_scratch)],
        )
        rows.append(("backup restore, never-verified backup (integrity_check + copy + exchange)", "sqlite3 integrity_check of the backup, then cp + sync", t, b, r, rss))

        t, (b,), (r,), rss = compare_pairs(
            ([BIN, "backup", "verify", "--backup", legacy], work),
            [(["sh", "-c", 'sqlite3 "$1" "PRAGMA integrity_check" && b3sum "$1"', "_", legacy], work)],
        )
        rows.append(("backup verify (and record it)", "sqlite3 integrity_check + b3sum", t, b, r, rss))

        print(f"Database: {size / 1024 / 1024:.0f} MiB migrated go-fast-cdn install; median of {RUNS} alternating runs, warm page cache, write-back flushed before each.\n")
        print("| operation | runbook | baseline | baseline time | ratio (median of run-by-run ratios) | runbook peak RSS |")
        print("|---|---|---|---|---|---|")
        for name, base_name, t, bt, r, rss in rows:
            print(f"| {name} | {t:.2f} s | {base_name} | {bt:.2f} s | {r:.2f}× | {rss:.0f} MiB |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
