"""Run ``swarm-rl virtual-crazyflie`` in a child process, as tests and scripts need it.

The child is the real command line (``python -m swarm_rl.cli virtual-crazyflie``), so killing
it is a real link loss for cflib. :meth:`VirtualCrazyflieProcess.start` returns once the child
prints ``ready``; :meth:`stop` sends SIGINT and returns the summary the child prints as JSON;
:meth:`kill` ends it with SIGKILL (mid-flight, no summary).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class VirtualCrazyflieProcess:
    def __init__(self, drones: int = 4, base_port: int = 0, extra_args: tuple[str, ...] = (),
                 startup_timeout_s: float = 60.0) -> None:
        self.args = [sys.executable, "-m", "swarm_rl.cli", "virtual-crazyflie",
                     "--drones", str(drones), "--base-port", str(base_port), "--json",
                     *extra_args]
        self.startup_timeout_s = startup_timeout_s
        self.uris: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._errors: list[str] = []
        self._readers: list[threading.Thread] = []

    def start(self) -> "VirtualCrazyflieProcess":
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ,
               "PYTHONPATH": str(REPO_ROOT) + (os.pathsep + path if path else "")}
        self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self._lines.append(line.rstrip("\n"))
                if line.startswith("cf") and " udp://" in line:
                    self.uris.append(line.split()[1])
                if line.strip() == "ready":
                    ready.set()
            ready.set()

        def drain_stderr() -> None:  # a full pipe would block the child's logging
            for line in self.proc.stderr:
                self._errors = (self._errors + [line])[-200:]

        self._readers = [threading.Thread(target=f, daemon=True) for f in (read, drain_stderr)]
        for thread in self._readers:
            thread.start()
        if not ready.wait(self.startup_timeout_s) or self.proc.poll() is not None:
            exited = self.proc.poll() is not None
            self.kill()
            if exited:
                for thread in self._readers:
                    thread.join(5.0)
            err = "".join(self._errors)
            raise RuntimeError(f"virtual-crazyflie did not start: {err[-2000:]}")
        return self

    @property
    def ports(self) -> list[int]:
        return [int(u.rsplit(":", 1)[1]) for u in self.uris]

    def stop(self, timeout_s: float = 30.0) -> dict:
        """SIGINT, wait, and return the JSON summary (the last JSON line on stdout)."""
        if self.proc is None:
            return {}
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for thread in self._readers:  # they end at the pipes' EOF, after the last line
            thread.join(5.0)
        self.proc = None
        summary = [line for line in self._lines if line.startswith("{")]
        if not summary:
            raise ValueError("virtual-crazyflie printed no summary; its last output: "
                             + " | ".join(self._lines[-3:] + self._errors[-3:]))
        return json.loads(summary[-1])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5.0)
        self.proc = None

    def __enter__(self) -> "VirtualCrazyflieProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
