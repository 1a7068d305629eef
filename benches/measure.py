"""Timing helpers shared by the benchmark scripts: each measured command and
its baseline run alternately, with pending write-back flushed before every
run, so that neither pays for the other's writes."""
import os
import statistics
import subprocess
import sys
import time

RUNS = int(os.environ.get("RUNS", "5"))
# Memory to touch before every run, in GiB (see warm_memory).
WARM_GIB = float(os.environ.get("WARM_GIB", "3"))


def warm_memory():
    """Touches WARM_GIB of memory and frees it again, right before a run.
    A VM whose host takes back free guest memory (virtio-balloon free page
    reporting, as on the machine of docs/PERFORMANCE.md) makes the first
    touch of a page a fault in the host: new page-cache pages then cost
    3 µs each, and a copy of 1.3 GB into the page cache took 4 s instead of
    0.5 s, for cp as for runbook, depending on how long memory had been
    free. Touched just before, the pages a run takes are ready, for each
    side alike. Done in a child, whose memory is not the measured one's."""
    if WARM_GIB:
        subprocess.run([sys.executable, "-c", WARM, str(int(WARM_GIB * (1 << 30)))], check=True)


WARM = """
import mmap, sys
n = int(sys.argv[1])
m = mmap.mmap(-1, n)
for i in range(0, n, mmap.PAGESIZE):
    m[i] = 1
"""


def once(argv, cwd, setup=None):
    if setup:
        setup()
    os.sync()
    warm_memory()
    before = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - before
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(argv)}")
    return elapsed, usage.ru_maxrss / 1024


def compare(ours, baseline):
    t, (b,), rss = compare_many(ours, [baseline])
    return t, b, rss


def compare_many(ours, baselines):
    """Like compare, against several baselines, each run after every run of ours."""
    t, bases, _, rss = compare_pairs(ours, baselines)
    return t, bases, rss


def compare_pairs(ours, baselines):
    """compare_many, with the median of the ratios run by run as well: each
    run of ours over the baseline run right after it, so that a disk whose
    speed drifts during the benchmark weighs on both sides of each ratio."""
    ours_t, base_t, rss = [], [[] for _ in baselines], 0
    for _ in range(RUNS):
        t, r = once(*ours)
        ours_t.append(t)
        rss = max(rss, r)
        for times, baseline in zip(base_t, baselines):
            times.append(once(*baseline)[0])
    ratios = [statistics.median(o / b for o, b in zip(ours_t, times)) for times in base_t]
    return statistics.median(ours_t), [statistics.median(b) for b in base_t], ratios, rss
