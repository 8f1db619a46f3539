"""The clock model against pyxdf's dejittering, on stamps made on push.

Synthetic streams as amplifier apps and liblsl make them (`mepkit.sim.stamps`: chunks
pushed without stamps, stamped at the push and back-filled; stalls; clock drift; a real
loss). For each: how far each sample's time is from its true time (the moment the
amplifier took it) with the raw stamps, with pyxdf's dejittering (a least-squares line per
stretch between breaks of more than 1 s or 500 samples: pyxdf ``_jitter_removal``), and
with mepkit's clock fitted offline (`fit_clock`) and live (`ClockModel`, chunk by chunk);
the gaps each finds; and what the live update costs per chunk.

Usage::

    python benchmarks/clocks.py            # 5 streams of 5 minutes at 5 kHz
    python benchmarks/clocks.py --minutes 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

SCENARIOS = {
    "4 ms chunks": dict(chunk_ms=4.0),
    "1 ms, stalls, +100 ppm": dict(chunk_ms=1.0, stall_every_s=1.0, drift_ppm=100.0),
    "50 ms, stalls, -100 ppm": dict(chunk_ms=50.0, stall_every_s=1.0, drift_ppm=-100.0),
    "1-50 ms, stalls, 60 ppm": dict(chunk_ms=(1.0, 50.0), stall_every_s=0.5, drift_ppm=60.0),
    "... + 50 ms lost": dict(chunk_ms=(1.0, 50.0), stall_every_s=0.5, drift_ppm=60.0,
                             losses=[(100.0, 0.05)]),
}


def pyxdf_dejitter(ts: np.ndarray, fs: float) -> np.ndarray:
    """pyxdf's `_jitter_removal`: segments at breaks > max(1 s, 500 samples), one
    least-squares line of time on index per segment."""
    d = np.diff(ts)
    br = np.flatnonzero(np.abs(d) > max(1.0, 500.0 / fs))
    starts = np.r_[0, br + 1]
    stops = np.r_[br + 1, len(ts)]
    out = np.empty_like(ts)
    for a, b in zip(starts, stops):
        idx = np.arange(a, b)
        X = np.column_stack([np.ones(b - a), idx])
        coef = np.linalg.lstsq(X, ts[a:b], rcond=None)[0]
        out[a:b] = X @ coef
    return out


def stats(err: np.ndarray) -> list[str]:
    a = np.abs(err) * 1e3
    return [f"{np.median(a):.3f}", f"{np.percentile(a, 99):.3f}", f"{a.max():.3f}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--srate", type=float, default=5000.0)
    a = ap.parse_args(argv)
    from mepkit.sim.stamps import stamp_on_push
    from mepkit.sources.clock import ClockModel, fit_clock

    sys.path.insert(0, str(HERE))
    from _util import print_table

    fs = a.srate
    n = int(a.minutes * 60 * fs)
    rows = []
    for name, kw in SCENARIOS.items():
        kw = dict(kw)
        if "losses" in kw:
            kw["losses"] = [(min(t, a.minutes * 30), d) for t, d in kw["losses"]]
        p = stamp_on_push(n, fs, seed=1, **kw)
        truth = p.true_s
        t0 = time.perf_counter()
        fit = fit_clock(p.stamps, fs)
        t_off = time.perf_counter() - t0
        m = ClockModel(fs)
        out = np.empty(len(p.stamps))
        pos = 0
        t0 = time.perf_counter()
        for c in p.chunk_n:
            m.update(p.stamps[pos:pos + c], out[pos:pos + c])
            pos += c
        per_chunk = (time.perf_counter() - t0) / len(p.chunk_n)
        m.finish()
        live = m.times(0, len(p.stamps))
        skip = int(fs)  # the live clock's first second (warm-up and convergence)
        loss = [(g.index, g.n_missing) for g in fit.gaps]
        for label, t, extra in (
                ("raw stamps", p.stamps, "-"),
                ("pyxdf dejitter", pyxdf_dejitter(p.stamps, fs), "-"),
                ("mepkit offline", fit.times(), f"{t_off:.2f} s total"),
                ("mepkit live", live, f"{per_chunk * 1e6:.1f} us/chunk")):
            e = (t - truth)[skip:] if label == "mepkit live" else t - truth
            gaps = {"mepkit offline": str(loss or "none"),
                    "mepkit live": str([(g.index, g.n_missing) for g in m.gaps] or "none")}
            rows.append([name, label, *stats(e), gaps.get(label, "-"), extra])
    print(f"\n|fitted - true| per sample (ms), {a.minutes:g} min at {fs:g} Hz; mepkit live "
          f"after its first second\n")
    print_table(["stream", "times from", "median", "p99", "max", "gaps (index, samples)",
                 "cost"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
