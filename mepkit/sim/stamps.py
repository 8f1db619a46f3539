"""Time stamps as real amplifier apps produce them over LSL (for tests and benchmarks).

An amplifier takes sample ``j`` at ``t0 + j / (sfreq_hz * (1 + drift_ppm * 1e-6))`` on the
computer's clock (its own clock runs ``drift_ppm`` fast). The app pushes the samples it
received in chunks, without time stamps, as soon as a chunk is complete plus a small
delay; liblsl stamps the chunk's last sample with the clock at the push and back-fills
the others at the nominal rate. When the app stalls, the chunks due meanwhile go out
together when it resumes, each stamped at about that moment. Samples lost before the app
(``losses``) are never pushed: the app's chunks simply go on with the next ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PushedStamps", "stamp_on_push"]


@dataclass
class PushedStamps:
    """Stamps of the samples received, their true times and amplifier indices."""

    #: Raw stamps as an inlet (or LabRecorder) receives them.
    stamps: np.ndarray
    #: When each received sample was really taken (computer clock).
    true_s: np.ndarray
    #: The amplifier's index of each received sample (gaps where samples were lost).
    index: np.ndarray
    #: Push time and size of every chunk.
    push_s: np.ndarray
    chunk_n: np.ndarray

    def true_time(self, j) -> np.ndarray:
        """True time of amplifier sample(s) ``j`` (received or not)."""
        return self._t0 + np.asarray(j) / self._rate

    _t0: float = 0.0
    _rate: float = 1.0


def stamp_on_push(n: int, sfreq_hz: float, *, t0: float = 1000.0,
                  chunk_ms: float | tuple[float, float] = 4.0, drift_ppm: float = 0.0,
                  delay_ms: tuple[float, float] = (0.02, 0.15),
                  stall_every_s: float | None = None, stall_ms: tuple[float, float] = (3.0, 15.0),
                  losses: list[tuple[float, float]] = (),
                  stalls: list[tuple[float, float]] = (), seed: int = 0) -> PushedStamps:
    """Stamps of ``n`` amplifier samples pushed by an app without time stamps.

    Parameters
    ----------
    n : int
        Samples the amplifier takes (fewer are received when ``losses`` are given).
    sfreq_hz : float
        Nominal rate; liblsl back-fills at this rate.
    chunk_ms : float or (float, float)
        Samples per push, in ms (a range: drawn uniformly for each push).
    drift_ppm : float
        The amplifier's clock runs this much fast (negative: slow).
    delay_ms : (float, float)
        Delay from a chunk's last sample to its push: the smallest, plus an exponential
        wobble with this mean.
    stall_every_s : float, optional
        Mean time between stalls of the app (Poisson); None: no stalls.
    stall_ms : (float, float)
        Range of stall durations (uniform).
    losses : list of (start_s, duration_s)
        Samples taken in these spans (from ``t0``) are lost before the app.
    stalls : list of (start_s, duration_s)
        Stalls at these times (from ``t0``), besides the random ones.
    seed : int
        Random seed.
    """
    rng = np.random.default_rng(seed)
    fs = float(sfreq_hz)
    rate = fs * (1.0 + drift_ppm * 1e-6)
    j = np.arange(n)
    true_all = t0 + j / rate
    keep = np.ones(n, dtype=bool)
    for start, dur in losses:
        keep &= ~((true_all >= t0 + start) & (true_all < t0 + start + dur))
    idx = j[keep]
    true = true_all[keep]
    m = idx.size
    # chunks over the received samples
    sizes = []
    total = 0
    while total < m:
        c = chunk_ms if np.isscalar(chunk_ms) else rng.uniform(*chunk_ms)
        c = max(1, int(round(float(c) * fs / 1000.0)))
        c = min(c, m - total)
        sizes.append(c)
        total += c
    sizes = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(sizes) - 1
    push = true[ends] + delay_ms[0] / 1000.0 + rng.exponential(delay_ms[1] / 1000.0, sizes.size)
    starts, durs = np.zeros(0), np.zeros(0)
    if stall_every_s:
        span = true[-1] - true[0] + 1.0
        n_st = rng.poisson(span / stall_every_s) + 1
        starts = true[0] + np.sort(rng.uniform(0.0, span, n_st))
        durs = rng.uniform(*stall_ms, n_st) / 1000.0
    if len(stalls):
        starts = np.r_[starts, [t0 + a for a, _ in stalls]]
        durs = np.r_[durs, [d for _, d in stalls]]
    if len(starts):
        for s0, d in zip(starts, durs):
            held = (push >= s0) & (push < s0 + d)
            if held.any():
                push[held] = s0 + d + 2e-6 * np.arange(int(held.sum()))
    push = np.maximum.accumulate(push + 1e-7 * np.arange(push.size) * 0)
    stamps = np.empty(m)
    for c, (e, p) in enumerate(zip(ends, push)):
        a = e - sizes[c] + 1
        stamps[a:e + 1] = p - (e - np.arange(a, e + 1)) / fs
    out = PushedStamps(stamps, true, idx, push, sizes)
    out._t0, out._rate = t0, rate
    return out
