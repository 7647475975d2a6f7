"""Per-tick timestamps of a node, for finding where a slow tick's time went (off by default).

With ``SWARM_RL_TICK_TRACE=DIR`` in the environment, the robot host and the sim bridge record
one row per tick: wall-clock marks (ns, ``time.time_ns``, the clock of DDS source timestamps)
at the stages the node names, the main thread's CPU time (``CLOCK_THREAD_CPUTIME_ID``), the
kernel's scheduler statistics of the main thread (``/proc/self/schedstat``: time on a CPU
and time runnable but waiting for one) and the machine's steal time (``/proc/stat``, jiffies),
read at the first and the last mark. On exit the rows go to ``DIR/<node>_<pid>.npz``. Each
row costs about 15 us; without the variable nothing is recorded.
"""
import os
import time
from pathlib import Path

import numpy as np

ENV = "SWARM_RL_TICK_TRACE"


def _read_schedstat(fd: int) -> tuple[int, int]:
    run_ns, wait_ns, _ = os.pread(fd, 128, 0).split()
    return int(run_ns), int(wait_ns)


def _read_steal(fd: int) -> int:
    line = os.pread(fd, 256, 0).split(b"\n", 1)[0].split()
    return int(line[8])


class TickTrace:
    """Rows of named wall-clock marks plus CPU, scheduler and steal counters (see module)."""

    def __init__(self, node: str, stages: tuple[str, ...], directory: str) -> None:
        self.node = node
        self.stages = stages
        self.path = Path(directory) / f"{node}_{os.getpid()}.npz"
        self.rows: list[tuple[int, ...]] = []
        self._marks: list[int] = []
        self._extra: list[int] = []
        self._start: tuple[int, ...] = ()
        self._sched = os.open("/proc/self/schedstat", os.O_RDONLY)
        self._stat = os.open("/proc/stat", os.O_RDONLY)

    @classmethod
    def from_env(cls, node: str, stages: tuple[str, ...]) -> "TickTrace | None":
        directory = os.environ.get(ENV, "")
        return cls(node, stages, directory) if directory else None

    def begin(self, *extra: int) -> None:
        """The first mark of a tick; ``extra``: integers stored with the row (e.g. the
        source timestamp of the sample that started it)."""
        run, wait = _read_schedstat(self._sched)
        self._start = (time.thread_time_ns(), run, wait, _read_steal(self._stat))
        self._extra = list(extra)
        self._marks = [time.time_ns()]

    def mark(self) -> None:
        self._marks.append(time.time_ns())

    @property
    def marked(self) -> int:
        """Marks of the tick so far, the first included."""
        return len(self._marks)

    def end(self, *after: int) -> None:
        """The last mark; the row is complete (``after``: integers stored at its end)."""
        self._marks.append(time.time_ns())
        run, wait = _read_schedstat(self._sched)
        end = (time.thread_time_ns(), run, wait, _read_steal(self._stat))
        deltas = [b - a for a, b in zip(self._start, end)]
        self.rows.append((*self._extra, *self._marks, *deltas, *after))

    def save(self, **arrays: np.ndarray) -> None:
        """Write the rows (and ``arrays``) to the node's file."""
        if not self.rows:
            return
        width = max(len(r) for r in self.rows)
        arr = np.array([r for r in self.rows if len(r) == width], dtype=np.int64)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(self.path, rows=arr, stages=np.array(self.stages),
                 counters=np.array(["cpu_ns", "run_ns", "runqueue_wait_ns", "steal_jiffies"]),
                 **arrays)
