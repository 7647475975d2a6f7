"""Does the machine itself stall? Fixed CPU work on every CPU at once, timed per iteration.

    PYTHONPATH=. python benchmarks/cpu_stall_probe.py [--seconds 12] [--priority 50] [--json]

One process per CPU, pinned to it (``taskset``) and, with ``--priority``, under SCHED_FIFO
(``chrt -f``, so no other process of this machine can preempt it), runs the same pure-Python
loop (~1 ms, cache-resident: no memory traffic, no system call, no allocation) every 5 ms and
records its wall time and its thread CPU time (``CLOCK_THREAD_CPUTIME_ID``), with the thread's
involuntary context switches and page faults around it. On a machine of its own the CPU time
of the loop is the same every time; an iteration whose CPU time is several times the median
ran on a CPU that was slowed or taken away below the guest kernel (the hypervisor), where the
kernel still charges the time to the thread and counts neither steal nor preemption. The
report gives, per CPU, the median and worst iteration, the share of iterations over 3x the
median, and the moments of those; the same moments on every CPU mean a machine-wide stall.

Found 2026-12-02 on the 2-vCPU Firecracker VM of bench graph (Intel Xeon): windows of 60-100 ms
every ~1.5 s, on both vCPUs at the same 10 ms, in which the loop takes 5-12x its CPU time,
with no context switch, no fault and (nearly) no steal; the robot hosts' and the bridge's
20-40 ms ticks fall in them (``SWARM_RL_TICK_TRACE``: their CPU time grows the same way).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

LOOP = 15_000


def _probe(seconds: float, out: str) -> None:
    rows = []
    end = time.time() + seconds
    while time.time() < end:
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        w0, c0 = time.time_ns(), time.thread_time_ns()
        s = 0
        for i in range(LOOP):
            s += i * i
        c1, w1 = time.thread_time_ns(), time.time_ns()
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
        rows.append((w0, w1 - w0, c1 - c0, r1.ru_nivcsw - r0.ru_nivcsw,
                     r1.ru_minflt - r0.ru_minflt + r1.ru_majflt - r0.ru_majflt))
        time.sleep(0.005)
    np.save(out, np.array(rows, dtype=np.int64))


def _steal() -> int:
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def run(seconds: float, priority: int) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="stall_probe_") as tmp:
        procs, outs = [], []
        steal0 = _steal()
        for cpu in cpus:
            out = os.path.join(tmp, f"cpu{cpu}.npy")
            cmd = [sys.executable, __file__, "--child", out, "--seconds", str(seconds)]
            if shutil.which("taskset"):
                cmd = ["taskset", "-c", str(cpu)] + cmd
            if priority:
                cmd = ["chrt", "-f", str(priority)] + cmd
            procs.append(subprocess.Popen(cmd))
            outs.append(out)
        for p in procs:
            p.wait()
        steal = _steal() - steal0
        data = [np.load(o) for o in outs]
    t0 = min(int(d[0, 0]) for d in data)
    report = {"seconds": seconds, "priority": priority, "steal_jiffies": steal,
              "load_average": [round(v, 2) for v in os.getloadavg()], "cpus": []}
    for cpu, d in zip(cpus, data):
        cpu_us = d[:, 2] / 1e3
        med = float(np.median(cpu_us))
        slow = cpu_us > 3 * med
        report["cpus"].append({
            "cpu": cpu, "iterations": len(d), "cpu_us_median": round(med, 1),
            "cpu_us_p99": round(float(np.percentile(cpu_us, 99)), 1),
            "cpu_us_max": round(float(cpu_us.max()), 1),
            "share_over_3x_median": round(float(slow.mean()), 4),
            "slow_with_context_switch_or_fault": int(((d[:, 3] + d[:, 4])[slow] > 0).sum()),
            "slow_at_s": np.round((d[slow, 0] - t0) / 1e9, 2).tolist()})
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--priority", type=int, default=50, help="SCHED_FIFO priority; 0: off")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _probe(args.seconds, args.child)
        return
    report = run(args.seconds, args.priority)
    for c in report["cpus"]:
        print(f"cpu{c['cpu']}: loop CPU time median {c['cpu_us_median']:.0f} us, p99 "
              f"{c['cpu_us_p99']:.0f}, max {c['cpu_us_max']:.0f}; "
              f"{c['share_over_3x_median']:.1%} of iterations over 3x the median "
              f"({c['slow_with_context_switch_or_fault']} of them with a context switch or "
              f"fault); at s = {c['slow_at_s'][:24]}")
    print(f"steal: {report['steal_jiffies']} jiffies; load average {report['load_average']}")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
