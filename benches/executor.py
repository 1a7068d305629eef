#!/usr/bin/env python3
"""Benchmarks of the engine, each against a baseline measured in the same run:

- per-step overhead: 1,000 shell steps running `true`, against a shell loop
  running `true` 1,000 times, with and without the journal's fsync (the
  latter through Debian's eatmydata, if installed); 1,000 assert steps (no
  process at all); `check` and a run of 5,000 steps against 1,000;
- `runbook check` and `runbook run --dry-run` of emergency_rollback, against
  the start-up of the sqlite3 CLI;
- rollback-option-1 on a small go-fast-cdn install, against the same work
  written as an Ansible playbook driving the sqlite3 CLI (ansible-core is
  installed into a scratch virtualenv; it is not a dependency of runbook);
- on a large install (SIZE_MB, default 1024): rollback-option-1 against
  cp + sync of the database, and verify.yaml against the sqlite3 CLI running
  the same integrity check and EXCEPT comparisons.

usage: benches/executor.py   (needs a release build, python3, the sqlite3 CLI)
       RUNS=N (default 5), SIZE_MB=N, BENCH_INSTALL=DIR (reuse a make_install.py install)
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from measure import RUNS, compare  # noqa: E402
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "runbook")
# A subset of the groups: steps, startup, ansible, except, large (default: all).
ONLY = set(filter(None, os.environ.get("ONLY", "steps,startup,ansible,except,large").split(",")))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


ANSIBLE_OPTION_1 = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    db: "{{ root }}/db_data/main.db"
  tasks:
    - name: media table present
      command: sqlite3 "{{ db }}" "SELECT count(*) FROM sqlite_master WHERE name = 'media'"
      register: media
      changed_when: false
    - name: roll back in one transaction
      when: media.stdout == "1"
      command:
        argv:
          - sqlite3
          - "{{ db }}"
          - |
            BEGIN IMMEDIATE;
            INSERT INTO images (created_at, updated_at, deleted_at, file_name, checksum)
              SELECT m.created_at, m.updated_at, m.deleted_at, m.file_name, m.checksum
              FROM (SELECT file_name, checksum FROM media WHERE type = 'image'
                    EXCEPT SELECT file_name, checksum FROM images WHERE deleted_at IS NULL) AS new
              JOIN media m ON m.file_name IS new.file_name AND m.checksum IS new.checksum WHERE m.type = 'image' ORDER BY m.id;
            INSERT INTO docs (created_at, updated_at, deleted_at, file_name, checksum)
              SELECT m.created_at, m.updated_at, m.deleted_at, m.file_name, m.checksum
              FROM (SELECT file_name, checksum FROM media WHERE type = 'document'
                    EXCEPT SELECT file_name, checksum FROM docs WHERE deleted_at IS NULL) AS new
              JOIN media m ON m.file_name IS new.file_name AND m.checksum IS new.checksum WHERE m.type = 'document' ORDER BY m.id;
            DROP TABLE media;
            DELETE FROM migration_records WHERE name = 'media_unification_2024';
            COMMIT;
    - name: check the result
      command: sqlite3 "{{ db }}" "PRAGMA integrity_check; SELECT count(*) FROM sqlite_master WHERE name = 'media';"
      register: after
      changed_when: false
      failed_when: after.stdout_lines != ["ok", "0"]
"""

VERIFY_SQL = """PRAGMA integrity_check;
ATTACH '{backup}' AS old;
SELECT
  (SELECT count(*) FROM (SELECT file_name, checksum FROM old.images EXCEPT SELECT file_name, checksum FROM images)),
  (SELECT count(*) FROM (SELECT file_name, checksum FROM old.docs EXCEPT SELECT file_name, checksum FROM docs)),
  (SELECT count(*) FROM (SELECT file_name, checksum FROM images EXCEPT SELECT file_name, checksum FROM old.images)),
  (SELECT count(*) FROM (SELECT file_name, checksum FROM docs EXCEPT SELECT file_name, checksum FROM old.docs));
"""


def ansible(work):
    venv = os.path.join(work, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "ansible-core"], check=True)
    return os.path.join(venv, "bin", "ansible-playbook")


def shell_steps(n):
    return "steps:\n" + "".join(f"  - id: s{i}\n    action: shell\n    with: {{command: [\"true\"]}}\n" for i in range(n))


def steps(work, rows):
    """Per-step overhead: 1,000 steps that run a process, and 1,000 that do not."""
    shell = shell_steps(1000)
    asserts = "steps:\n" + "".join(f"  - id: s{i}\n    action: assert\n    with: {{that: \"true\"}}\n" for i in range(1000))
    write(os.path.join(work, "shell1000.yaml"), shell)
    write(os.path.join(work, "assert1000.yaml"), asserts)
    loop = ["sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"]
    t, b, rss = compare(([BIN, "run", "shell1000.yaml", "--runs", "runs"], work), (loop, work))
    rows.append(("1,000 shell steps (`true`)", f"{t:.2f} s ({t:.2f} ms a step)", "sh loop running `true` 1,000 times", b, t / b, rss))
    t, b, rss = compare(([BIN, "run", "assert1000.yaml", "--runs", "runs"], work), (loop, work))
    rows.append(("1,000 assert steps", f"{t:.2f} s ({t:.2f} ms a step)", "sh loop running `true` 1,000 times", b, t / b, rss))
    # What the journal's fdatasync at each step's end costs: the same run
    # with fsync made a no-op by Debian's eatmydata (a measurement only).
    if shutil.which("eatmydata"):
        t, b, rss = compare((["eatmydata", BIN, "run", "shell1000.yaml", "--runs", "runs"], work), (loop, work))
        rows.append(("1,000 shell steps, journal not forced (`eatmydata`)", f"{t:.2f} s ({t:.2f} ms a step)", "sh loop running `true` 1,000 times", b, t / b, rss))
    else:
        print("no eatmydata (apt-get install eatmydata): the run without the journal's fsync is not measured")
    # A check's cost grows with the playbook's steps, not with their square.
    write(os.path.join(work, "shell5000.yaml"), shell_steps(5000))
    t, b, rss = compare(([BIN, "check", "shell5000.yaml"], work), ([BIN, "check", "shell1000.yaml"], work))
    rows.append(("`check` of 5,000 shell steps", f"{t * 1000:.1f} ms", "`check` of 1,000 (linear: 5×)", b, t / b, rss))
    # And a run's: no step may cost more for the steps before it.
    t, b, rss = compare(([BIN, "run", "shell5000.yaml", "--runs", "runs"], work), ([BIN, "run", "shell1000.yaml", "--runs", "runs"], work))
    rows.append(("5,000 shell steps", f"{t:.2f} s", "1,000 shell steps (linear: 5×)", b, t / b, rss))


def small_install(work):
    small = os.path.join(work, "small")
    if not os.path.exists(small):
        subprocess.run([BIN, "demo", "--build-only", small], check=True, stdout=subprocess.DEVNULL)
        shutil.copytree(os.path.join(small, "app"), os.path.join(work, "small-pristine"))
    return small


def startup(work, rows):
    small = small_install(work)
    sqlite_start = (["sqlite3", ":memory:", "SELECT 1"], small)
    emergency = ["playbooks/emergency_rollback.yaml", "--var", "root=app", "--var", "reason=bench", "--var", "probe=off"]
    t, b, rss = compare(([BIN, "check", "playbooks/emergency_rollback.yaml"], small), sqlite_start)
    rows.append(("`check` emergency_rollback (43 steps, 6 files)", f"{t * 1000:.1f} ms", "sqlite3 CLI start-up", b, t / b, rss))
    t, b, rss = compare(([BIN, "run", *emergency, "--dry-run"], small), sqlite_start)
    rows.append(("`run --dry-run` emergency_rollback", f"{t * 1000:.1f} ms", "sqlite3 CLI start-up", b, t / b, rss))


def against_ansible(work, rows):
    small = small_install(work)
    pristine = os.path.join(work, "small-pristine")

    def reset_small():
        shutil.rmtree(os.path.join(small, "app"))
        shutil.copytree(pristine, os.path.join(small, "app"))

    playbook = os.path.join(work, "option-1.ansible.yaml")
    write(playbook, ANSIBLE_OPTION_1)
    ansible_playbook = ansible(work)
    python = os.path.join(os.path.dirname(ansible_playbook), "python")
    ours = ([BIN, "run", "playbooks/rollback-option-1.yaml", "--var", "root=app", "--runs", "runs"], small, reset_small)
    theirs = (
        [ansible_playbook, "-i", "localhost,", playbook, "-e", f"root={os.path.join(small, 'app')}", "-e", f"ansible_python_interpreter={python}"],
        small,
        reset_small,
    )
    t, b, rss = compare(ours, theirs)
    rows.append(("rollback-option-1, small install (400 rows)", f"{t * 1000:.0f} ms", "Ansible + sqlite3 CLI, same SQL", b, t / b, rss))


# images ∪ docs (live rows) against media, both ways.
LIVE = (
    "SELECT file_name, checksum FROM images WHERE deleted_at IS NULL"
    " UNION ALL SELECT file_name, checksum FROM docs WHERE deleted_at IS NULL"
)
MEDIA = "SELECT file_name, checksum FROM media"
TWO_WAY_EXCEPT = (
    f"SELECT (SELECT count(*) FROM ({LIVE} EXCEPT {MEDIA})) AS missing,"
    f" (SELECT count(*) FROM ({MEDIA} EXCEPT SELECT * FROM ({LIVE}))) AS extra"
)


def big_install(work):
    """The large install, read-only here: BENCH_INSTALL as it is, or a new one."""
    reuse = os.environ.get("BENCH_INSTALL")
    if reuse:
        return reuse
    app = os.path.join(work, "big-ro", "app")
    if not os.path.exists(app):
        subprocess.run([sys.executable, os.path.join(HERE, "make_install.py"), app, os.environ.get("SIZE_MB", "1024")], check=True)
    return app


def except_query(work, rows):
    """images ∪ docs against media, content-equal, both ways: one sqlite.compare
    step against the sqlite3 CLI running the two EXCEPTs."""
    app = big_install(work)
    db = os.path.join(app, "db_data", "main.db")
    playbook = os.path.join(work, "media-complete.yaml")
    write(
        playbook,
        f"steps:\n  - id: q\n    action: sqlite.compare\n    with:\n      db: {db}\n"
        f"      left: \"{LIVE}\"\n      right: \"{MEDIA}\"\n",
    )
    t, b, rss = compare(
        ([BIN, "run", playbook, "--runs", os.path.join(work, "runs")], work),
        (["sqlite3", db, TWO_WAY_EXCEPT], work),
    )
    size = os.path.getsize(db) / 1024 / 1024
    rows.append((f"images ∪ docs against media, both ways (sqlite.compare), {size:.0f} MiB", f"{t:.2f} s", "sqlite3 CLI, the two EXCEPTs", b, t / b, rss))


def large(work, rows):
    size_mb = os.environ.get("SIZE_MB", "1024")
    big = os.path.join(work, "big")
    reuse = os.environ.get("BENCH_INSTALL")
    if reuse:
        shutil.copytree(reuse, os.path.join(big, "app"))
    else:
        subprocess.run([sys.executable, os.path.join(HERE, "make_install.py"), os.path.join(big, "app"), size_mb], check=True)
    db = os.path.join(big, "app", "db_data", "main.db")
    live = os.path.join(work, "big-live.db")
    shutil.copy(db, live)
    copy = os.path.join(work, "copy.db")

    def reset_big():
        shutil.copy(live, db)
        for f in os.listdir(os.path.join(big, "app", "backups")):
            if f.startswith("runbook-"):
                os.remove(os.path.join(big, "app", "backups", f))

    def rm_copy():
        if os.path.exists(copy):
            os.remove(copy)

    os.makedirs(os.path.join(big, "playbooks"), exist_ok=True)
    for p in ["rollback-option-1.yaml", "verify.yaml"]:
        shutil.copy(os.path.join(ROOT, "playbooks", p), os.path.join(big, "playbooks", p))
    cp_sync = ["sh", "-c", 'cp "$1" "$2" && sync "$2"', "_", db, copy]
    t, b, rss = compare(
        ([BIN, "run", "playbooks/rollback-option-1.yaml", "--var", "root=app", "--runs", "runs"], big, reset_big),
        (cp_sync, big, rm_copy),
    )
    size = os.path.getsize(live) / 1024 / 1024
    rows.append((f"rollback-option-1, {size:.0f} MiB database", f"{t:.2f} s", "cp + sync of the database", b, t / b, rss))

    # verify on the rolled-back database, against the pre-migration backup.
    subprocess.run([BIN, "run", "playbooks/rollback-option-1.yaml", "--var", "root=app", "--runs", "runs"], cwd=big, check=True, stdout=subprocess.DEVNULL)
    backup = os.path.join(big, "app", "backups", "db_backup_20240501-120000.db")
    t, b, rss = compare(
        ([BIN, "run", "playbooks/verify.yaml", "--var", "root=app", "--runs", "runs"], big),
        (["sqlite3", db, VERIFY_SQL.format(backup=backup)], big),
    )
    rows.append(("verify.yaml (integrity + row-by-row comparison)", f"{t:.2f} s", "sqlite3 CLI: same integrity check and EXCEPT queries", b, t / b, rss))


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release --locked")
    if not shutil.which("sqlite3"):
        sys.exit("the sqlite3 CLI is needed for the baselines: apt-get install sqlite3")
    work = tempfile.mkdtemp(prefix="runbook-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    rows = []
    try:
        for name, group in [("steps", steps), ("startup", startup), ("ansible", against_ansible), ("except", except_query), ("large", large)]:
            if name in ONLY:
                group(work, rows)
        print(f"median of {RUNS} alternating runs; write-back flushed before each run\n")
        print("| what | runbook | baseline | baseline time | ratio | runbook peak RSS |")
        print("|---|---|---|---|---|---|")
        for name, ours_text, base_name, base_t, ratio, rss in rows:
            base_text = f"{base_t * 1000:.1f} ms" if base_t < 1 else f"{base_t:.2f} s"
            print(f"| {name} | {ours_text} | {base_name} | {base_text} | {ratio:.2f}× | {rss:.0f} MiB |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
