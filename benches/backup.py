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
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "..", "target", "release", "runbook")
RUNS = int(os.environ.get("RUNS", "5"))


def once(argv, cwd, setup=None):
    """Wall time and peak RSS (MiB) of one run. Pending writes from earlier
    runs are flushed first, so no run pays for another's write-back."""
    if setup:
        setup()
    os.sync()
    before = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - before
    if status != 0:
        sys.exit(f"failed: {' '.join(argv)}")
    return elapsed, usage.ru_maxrss / 1024


def compare(ours, baseline):
    """Runs the two alternately RUNS times each; medians and our peak RSS."""
    ours_t, base_t, rss = [], [], 0
    for _ in range(RUNS):
        t, r = once(*ours)
        ours_t.append(t)
        rss = max(rss, r)
        base_t.append(once(*baseline)[0])
    return (statistics.median(ours_t), rss), (statistics.median(base_t), 0)


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
        rows = []
        create, cp = compare(
            ([BIN, "backup", "create", "--db", db, "--dir", scratch], work, clean_scratch),
            (["sh", "-c", cp_sync, "_", db, copy], work, clean_scratch),
        )
        rows.append(("backup create", "cp + sync of the database", create, cp))

        restore, cp_legacy = compare(
            ([BIN, "backup", "restore", "--db", db, "--backup", legacy, "--dir", scratch, "--force"], work, reset_live),
            (["sh", "-c", cp_sync, "_", legacy, copy], work, clean_scratch),
        )
        rows.append(("backup restore (verify + pre-restore backup + swap)", "cp + sync of the backup", restore, cp_legacy))

        verify, check = compare(
            ([BIN, "backup", "verify", "--backup", legacy], work),
            (["sh", "-c", 'sqlite3 "$1" "PRAGMA integrity_check" && sha256sum "$1"', "_", legacy], work),
        )
        rows.append(("backup verify", "sqlite3 integrity_check + sha256sum", verify, check))

        print(f"Database: {size / 1024 / 1024:.0f} MiB migrated go-fast-cdn install; median of {RUNS} alternating runs, warm page cache, write-back flushed before each.\n")
        print("| operation | runbook | baseline | baseline time | ratio | runbook peak RSS |")
        print("|---|---|---|---|---|---|")
        for name, base_name, (t, rss), (bt, _) in rows:
            print(f"| {name} | {t:.2f} s | {base_name} | {bt:.2f} s | {t / bt:.2f}× | {rss:.0f} MiB |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
