"""Compiled kernels for the batched simulator (numba).

Each kernel is compiled twice: serial, and multi-threaded over its outer ``prange`` loop. The
threaded one only pays off for large batches; for a handful of drones (one PyBullet world, a
unit test) thread start-up costs milliseconds, so the caller passes the number of independent
items and small batches run serially. Compiled code is cached next to the sources.
"""
from __future__ import annotations

from typing import Any, Callable

import numba

PARALLEL_MIN_ITEMS = 2048


class Kernel:
    """A function compiled serial and parallel; call as ``kernel(items, *args)``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.serial = numba.njit(cache=True)(fn)
        self.parallel = numba.njit(cache=True, parallel=True)(fn)

    def __call__(self, items: int, *args: Any) -> Any:
        fn = self.parallel if items >= PARALLEL_MIN_ITEMS else self.serial
        return fn(*args)


def kernel(fn: Callable[..., Any]) -> Kernel:
    """Decorator: compile ``fn`` (whose outer loop is ``numba.prange``) as a :class:`Kernel`."""
    return Kernel(fn)
