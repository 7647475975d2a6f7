"""Shared pieces of the benchmark reports: the machine they ran on, figures and aligned text
tables."""
from __future__ import annotations

from importlib import metadata


def cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def aligned_table(head: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    """Lines of a right-aligned text table: the header, a rule, then one line per row."""
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
             for row in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def figure(value: float | None, pattern: str) -> str:
    """``pattern`` of ``value`` (e.g. ``"{:.3f}"``), or "n/a" for a figure a run did not
    produce (no tick flown, no episode ended)."""
    return "n/a" if value is None else pattern.format(value)
