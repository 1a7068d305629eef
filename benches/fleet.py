#!/usr/bin/env python3
"""A fleet on HOSTS (default 20) loopback hosts, each a real sshd with its
own home and a small SQLite database, against Ansible on the same hosts:

- the same 5-step playbook (the sqlite3 CLI reading the database five
  times), runbook's `fleet` action (preflight with a dry run on every host,
  then every host at once) against `ansible-playbook` with forks = HOSTS,
  pipelining on, no fact gathering and ControlPersist, run alternately;
- runbook's per-host overhead on its own: connect, ship the binary (into
  an empty cache), start: a fleet of one host running a playbook of one
  `true` step, cold, against `ssh HOST true` over a new connection.

Ansible-core is installed into a scratch virtualenv; it is not a
dependency of runbook. Needs root (sshd), a release build, python3, the
sqlite3 CLI, ssh and sshd.

usage: benches/fleet.py        RUNS=N (default 5), HOSTS=N (default 20)
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from measure import RUNS, compare_pairs  # noqa: E402
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "runbook")
HOSTS = int(os.environ.get("HOSTS", "20"))

STEPS = [
    "SELECT count(*) FROM images",
    "SELECT count(*) FROM docs",
    "SELECT count(*) FROM media WHERE deleted_at IS NULL",
    "SELECT count(*) FROM migration_records",
    "PRAGMA quick_check",
]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)


def start_hosts(work, n):
    """n sshd on loopback, each with its own home, database and cache."""
    os.makedirs("/run/sshd", exist_ok=True)
    ssh = os.path.join(work, "ssh")
    os.makedirs(ssh)
    keygen(os.path.join(ssh, "id"))
    shutil.copy(os.path.join(ssh, "id.pub"), os.path.join(ssh, "authorized_keys"))
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    hosts, procs, config, known = [], [], [], []
    for i in range(n):
        name = f"h{i:02}"
        home = os.path.join(work, "hosts", name)
        os.makedirs(os.path.join(home, "db"))
        subprocess.run(["sqlite3", os.path.join(home, "db", "main.db"),
                        "CREATE TABLE images(id INTEGER PRIMARY KEY, deleted_at); CREATE TABLE docs(id INTEGER PRIMARY KEY, deleted_at);"
                        "CREATE TABLE media(id INTEGER PRIMARY KEY, deleted_at); CREATE TABLE migration_records(id INTEGER PRIMARY KEY);"
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000) INSERT INTO media(deleted_at) SELECT NULL FROM n;"],
                       check=True)
        key = os.path.join(ssh, f"{name}.key")
        keygen(key)
        port = free_port()
        conf = os.path.join(ssh, f"{name}.sshd_config")
        write(conf, f"ListenAddress 127.0.0.1:{port}\nHostKey {key}\nAuthorizedKeysFile {ssh}/authorized_keys\n"
                    f"PermitRootLogin yes\nStrictModes no\nUsePAM no\nPidFile none\nPasswordAuthentication no\n"
                    f"KbdInteractiveAuthentication no\nSetEnv HOME={home}\nLogLevel ERROR\nMaxStartups 100\n")
        procs.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", conf, "-E", os.path.join(ssh, f"{name}.log")]))
        config.append(f"Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {ssh}/id\n"
                      f"  IdentitiesOnly yes\n  UserKnownHostsFile {ssh}/known_hosts\n  GlobalKnownHostsFile /dev/null\n")
        with open(key + ".pub") as f:
            known.append(f"[127.0.0.1]:{port} " + " ".join(f.read().split()[:2]) + "\n")
        hosts.append((name, home, port))
    write(os.path.join(ssh, "config"), "".join(config))
    write(os.path.join(ssh, "known_hosts"), "".join(known))
    for _, _, port in hosts:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
    return hosts, procs, os.path.join(ssh, "config")


def runbook_side(work, hosts, config):
    inv = os.path.join(work, "inventory.yaml")
    write(inv, f"ssh_config: {config}\nhosts:\n" + "".join(f"  - name: {n}\n    vars: {{db: {h}/db/main.db}}\n" for n, h, _ in hosts))
    steps = "".join(f"  - id: s{i}\n    name: Step {i}\n    action: shell\n    with: {{command: [sqlite3, \"{{{{ db }}}}\", \"{sql}\"]}}\n"
                    for i, sql in enumerate(STEPS))
    write(os.path.join(work, "five.yaml"), f"name: five\nvars:\n  db: x\nsteps:\n{steps}")
    write(os.path.join(work, "fleet.yaml"),
          f"name: fleet\nsteps:\n  - id: fleet\n    name: Every host\n    action: fleet\n    with:\n"
          f"      inventory: {inv}\n      hosts: all\n      playbook: five.yaml\n      serial: [\"100%\"]\n")
    return [BIN, "run", "fleet.yaml", "--runs", os.path.join(work, "runs")]


def ansible_side(work, hosts, config):
    venv = os.path.join(work, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "ansible-core"], check=True)
    python = shutil.which("python3")
    inv = os.path.join(work, "ansible-inventory.ini")
    write(inv, "[fleet]\n" + "".join(f"{n} db={h}/db/main.db\n" for n, h, _ in hosts)
          + f"[fleet:vars]\nansible_python_interpreter={python}\n")
    write(os.path.join(work, "ansible.cfg"),
          f"[defaults]\nforks = {len(hosts)}\ngathering = explicit\nhost_key_checking = True\n"
          f"[ssh_connection]\npipelining = True\n"
          f"ssh_args = -F {config} -o ControlMaster=auto -o ControlPersist=60s\n")
    tasks = "".join(f"    - name: step {i}\n      command: sqlite3 {{{{ db }}}} \"{sql}\"\n" for i, sql in enumerate(STEPS))
    write(os.path.join(work, "five.ansible.yaml"), f"- hosts: fleet\n  gather_facts: false\n  tasks:\n{tasks}")
    return [os.path.join(venv, "bin", "ansible-playbook"), "-i", inv, "five.ansible.yaml"]


def per_host(work, hosts, config):
    """One host, cold: an empty cache, a new connection; against ssh alone."""
    name, home, _ = hosts[0]
    inv = os.path.join(work, "one.yaml")
    write(inv, f"ssh_config: {config}\nhosts:\n  - {name}\n")
    write(os.path.join(work, "true.yaml"), "name: one\nsteps:\n  - id: t\n    name: True\n    action: shell\n    with: {command: [\"true\"]}\n")
    write(os.path.join(work, "one-fleet.yaml"),
          f"name: one_fleet\nsteps:\n  - id: fleet\n    name: One host\n    action: fleet\n    with:\n"
          f"      inventory: {inv}\n      hosts: all\n      playbook: true.yaml\n")
    cache = os.path.join(home, ".cache")

    def cold():
        shutil.rmtree(cache, ignore_errors=True)
    ours = ([BIN, "run", "one-fleet.yaml", "--runs", os.path.join(work, "runs")], work, cold)
    warm = ([BIN, "run", "one-fleet.yaml", "--runs", os.path.join(work, "runs")], work)
    ssh = (["ssh", "-F", config, "-o", "BatchMode=yes", name, "true"], work)
    return ours, warm, ssh


def main():
    for tool in ["ssh", "/usr/sbin/sshd", "sqlite3"]:
        if not shutil.which(tool):
            sys.exit(f"needs {tool}")
    if not os.path.exists(BIN):
        sys.exit("needs a release build: cargo build --release")
    work = tempfile.mkdtemp(prefix="fleet-bench-")
    procs = []
    try:
        hosts, procs, config = start_hosts(work, HOSTS)
        ours = runbook_side(work, hosts, config)
        theirs = ansible_side(work, hosts, config)
        # Both ship or warm up once first: the binary is in each host's
        # cache, and Ansible's control masters are up, as in steady use.
        subprocess.run(ours, cwd=work, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(theirs, cwd=work, check=True, stdout=subprocess.DEVNULL)
        t, (b,), (ratio,), rss = compare_pairs((ours, work), [(theirs, work)])
        print(f"{HOSTS} hosts, 5 steps: runbook {t:.2f} s, ansible-playbook {b:.2f} s: "
              f"runbook takes {ratio:.3f}x Ansible's time ({1 / ratio:.1f}x faster); peak RSS {rss:.0f} MiB")
        cold, warm, ssh = per_host(work, hosts, config)
        t, (s,), (r,), _ = compare_pairs(cold, [ssh])
        print(f"one host, cold (connect, ship, dry run, run): {t:.3f} s = {r:.1f}x `ssh host true` ({s:.3f} s)")
        t, (s,), (r,), _ = compare_pairs(warm, [ssh])
        print(f"one host, binary in place (connect, dry run, run): {t:.3f} s = {r:.1f}x `ssh host true` ({s:.3f} s)")
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
