"""Small helpers shared by the benchmark scripts."""

from __future__ import annotations

import time
from typing import Callable


def best_time(fn: Callable[[], object], *, repeat: int = 5, min_time_s: float = 0.2) -> float:
    """Best wall time of one call of ``fn`` over ``repeat`` rounds (each looped >= min_time_s)."""
    fn()  # warm-up (JIT compile, caches)
    best = float("inf")
    for _ in range(repeat):
        n = 0
        t0 = time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time_s:
                break
        best = min(best, elapsed / n)
    return best


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).rjust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
