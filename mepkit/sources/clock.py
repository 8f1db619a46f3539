"""The clock of a stream: each sample's true time from its index and a fitted clock.

Why
---
Most amplifier apps push chunks to LSL *without* time stamps. liblsl then stamps the
chunk's last sample with ``lsl_clock()`` at the moment of the push and back-fills the
others at the nominal rate (``stream_outlet_impl.h``, ``push_chunk_multiplexed``: the
first sample gets ``timestamp - (n - 1) / nominal_srate``, the others
``DEDUCED_TIMESTAMP``, which the inlet turns into the previous stamp plus one nominal
period, ``data_receiver.cpp``). So a stamp is late by however long the chunk's last sample
waited before the push: a fraction of a millisecond usually, several milliseconds when
the app stalls (then the held-up chunks go out together, each stamped at about the same
moment, and their back-filled stamps overlap the previous chunk's). The amplifier's own
clock also runs tens of ppm off the computer's. LabRecorder stores the stamps as received.

The model
---------
Sample ``k`` was taken at ``t(k) = T + (k - K) / R`` on the computer's LSL clock, a line
(offset and rate) fitted to the stamps, piecewise: a new piece where samples are really
lost (the clock jumps forward by the loss) or the outlet restarts, and a new *timeline*
where the clock is reset (the stamps jump back). A stamp is never earlier than its
sample (it is taken at or after the push), so the line follows the **lower envelope** of
the stamps, the earliest plausible ones, not their mean: "true time" here is the moment
of acquisition plus the smallest delay the stream ever showed from acquisition to push.
That delay is constant and cannot be seen from the stamps; it is microseconds for an app
that pushes as soon as it has a sample, and a known constant of the amplifier otherwise.

* **Offline** (`fit_clock`, for XDF files and records without a stored mapping), the
  envelope is fitted over the whole piece at once: a continuous piecewise-linear function
  with a knot every `KNOT_S` seconds (the clock may drift slowly), the highest one lying
  below the earliest stamp of every `BLOCK_S` of samples (a linear programme).
* **Live** (`ClockModel`), the same envelope is updated as samples arrive: the line under
  the earliest stamps of the last `WINDOW_BLOCKS` blocks (the lower-hull edge above their
  mean, Moon et al. 1999), refitted every block. The mapping the samples get steers
  toward it with its rate at most `MAX_SLEW` off the fitted rate, so it never runs
  backwards and never steps by more than a small fraction of a sample. A new timeline
  waits `WARMUP_S` for its first fit.

A **gap** is samples missing: stamps that stay later than the fitted clock by more than
the tolerance (``gap_tolerance_ms``, plus half a sample). A stall looks the same at first,
so the samples of such a run of late *push groups* (runs of stamps one nominal period
apart: one push each) wait until it is clear which it is: a stall's backlog goes out at
once, so each later group is less late than the one before and soon one is on time again;
an app falling behind gets ever later; a loss keeps its lateness. The run is a loss once
its lateness held still for `MIN_LOSS_RUN_S` over enough groups (fewer when most groups of
the stream are on time, more when the stream wobbles), or when one group of late stamps is
longer than `MAX_PUSH_S`. A **clock reset** is a group of stamps earlier than the fitted
clock by more than the tolerance (the stamps jumped back): a new timeline starts. Stamps
that cannot be fitted (a rate far from the nominal, nonsense) are reported with a warning
naming the stream, and the samples are then timed at the nominal (or measured) rate from
the last good fit.

The mapping is a table of rows ``(sample_index, time_s, rate_hz, timeline)``: row ``j``
times samples ``sample_index[j] <= k < sample_index[j + 1]`` as
``time_s[j] + (k - sample_index[j]) / rate_hz[j]`` (`clock_times`). Records store it
(``/clock/<stream>``) next to the raw stamps, so a reanalysis times every sample exactly
as the live session did.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ClockModel", "ClockFit", "Gap", "fit_clock", "clock_times", "timeline_ranges",
    "ROW_COLUMNS", "BLOCK_S", "WINDOW_BLOCKS", "WARMUP_S", "MAX_SLEW", "RESET_S",
    "MAX_PUSH_S", "BAD_RATE", "KNOT_S",
]

logger = logging.getLogger("mepkit.clock")

#: Columns of the mapping table (records: ``/clock/<stream>``).
ROW_COLUMNS = ("sample_index", "time_s", "rate_hz", "timeline")
#: The envelope is made of the earliest stamp of every this many seconds of samples.
BLOCK_S = 0.1
#: The live fit uses the last this many envelope points (10 s).
WINDOW_BLOCKS = 100
#: Samples of a new timeline wait this long (of samples) for the first fit.
WARMUP_S = 0.5
#: While the live mapping converges on the fitted line its rate differs from the fitted
#: rate by at most this fraction (0.1 %: a fiftieth of a sample per sample at most).
MAX_SLEW = 1e-3
#: Stamps that jump back this far are a clock reset even during the warm-up; stamps that
#: jump forward this far are an outlet restart (a gap after which the rate is refitted).
RESET_S = 1.0
#: One push of late stamps longer than this is a loss of samples, not a late push.
MAX_PUSH_S = 0.2
#: Samples whose stamps are late wait at most this long for the verdict (stall or loss);
#: then the oldest keep the envelope's time (no loss), so trials are never held longer.
MAX_WAIT_S = 1.0
#: Late stamps are a loss only once their lateness held still this long (of samples): a
#: stall's backlog, however unevenly flushed, or an app falling behind, keep changing it.
MIN_LOSS_RUN_S = 0.3
#: A stream whose stamps advance this far off its nominal rate is reported, and timed at
#: the measured rate.
BAD_RATE = 0.01
#: ... and this far off, its stamps are taken as nonsense.
NONSENSE_RATE = 0.5
#: The live fit's rate stays within this fraction of the (nominal or measured) rate
#: (amplifier clocks are within about 100 ppm).
MAX_RATE_DEV = 1e-3
#: Knot spacing of the offline envelope (the clock's rate may drift between knots).
KNOT_S = 10.0
#: Five resets or losses within ten seconds: the stamps cannot be fitted.
ANOMALIES = (5, 10.0)


@dataclass
class Gap:
    """Samples missing in a stream (times on the fitted clock)."""

    #: Stream index of the first sample after the missing ones.
    index: int
    #: Time of the last sample before and of the first sample after the gap.
    start_s: float
    end_s: float
    #: Samples missing at the fitted rate.
    n_missing: int
    #: True when the stream had gone silent (outlet lost) before this gap closed.
    outage: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def as_dict(self) -> dict:
        return {"index": self.index, "start_s": self.start_s, "end_s": self.end_s,
                "duration_s": self.end_s - self.start_s, "samples_missing": self.n_missing}


@dataclass
class ClockReset:
    """The stamps jumped back: a new timeline starts at ``index``."""

    index: int
    #: How far the stamps fell below the fitted clock (s, negative).
    jump_s: float
    #: The raw stamp of the first sample of the new timeline.
    stamp_s: float


def _kernels():
    from mepkit.sources import _clock

    return _clock


def _params(sfreq_hz: float, tolerance_s: float) -> np.ndarray:
    k = _kernels()
    P = np.zeros(k.N_P)
    P[k.P_FS] = sfreq_hz
    P[k.P_TOL] = tolerance_s
    P[k.P_RESET] = RESET_S
    P[k.P_BLOCK] = max(1, int(round(BLOCK_S * sfreq_hz)))
    P[k.P_WARM] = max(2, int(round(WARMUP_S * sfreq_hz)))
    P[k.P_MAXPUSH] = max(2, int(round(MAX_PUSH_S * sfreq_hz)))
    P[k.P_SLEW] = MAX_SLEW
    P[k.P_WIN] = WINDOW_BLOCKS
    P[k.P_GEPS] = 1e-6
    P[k.P_SLACK] = tolerance_s / 2.0
    P[k.P_BADRATE] = BAD_RATE
    P[k.P_NONSENSE] = NONSENSE_RATE
    P[k.P_MAXDEV] = MAX_RATE_DEV
    P[k.P_QN] = 128.0
    P[k.P_NMIN] = 3.0
    P[k.P_NMAX] = 64.0
    P[k.P_ANOM_N] = ANOMALIES[0]
    P[k.P_ANOM_S] = ANOMALIES[1]
    P[k.P_MINRUN] = max(1, int(round(MIN_LOSS_RUN_S * sfreq_hz)))
    P[k.P_MAXWAIT] = max(2, int(round(MAX_WAIT_S * sfreq_hz)))
    return P


class ClockModel:
    """The online clock model of one stream: raw stamps in, times on the fitted clock out.

    Parameters
    ----------
    sfreq_hz : float
        Nominal sampling rate of the stream.
    tolerance_s : float
        Stamps later than the fitted clock by more than this (persistently) are a gap,
        earlier by more than this a clock reset.
    name : str
        The stream's name, for warnings.

    Notes
    -----
    `update` takes the stamps of the next samples and writes their times; samples before
    `settled` have their final time, later ones (a warm-up, a run of late stamps not yet
    known to be a stall or a loss) a provisional one. When a time already handed out
    changes (end of a warm-up, a loss found), `fix_from` says from which sample on; the
    new times are `times(a, b)`. Indices count every sample of the stream from 0.
    """

    #: Rows and events one call may produce before it returns to be drained.
    ROWS_CAP = 512
    EVENTS_CAP = 64

    def __init__(self, sfreq_hz: float, *, tolerance_s: float = 0.002, name: str = "") -> None:
        k = _kernels()
        self._k = k
        self.sfreq_hz = float(sfreq_hz)
        self.tolerance_s = float(tolerance_s)
        self.name = str(name)
        cap = WINDOW_BLOCKS + int(math.ceil(WARMUP_S / BLOCK_S)) + 4
        caps = (cap, 512, self.ROWS_CAP, self.EVENTS_CAP)
        self.I = np.zeros(k.N_I, dtype=np.int64)
        self.I[[k.CAP_B, k.CAP_G, k.CAP_R, k.CAP_E]] = caps
        self.W = np.zeros(k.layout(*caps))
        # views into W (the kernel gets W and I only)
        a = 0
        self.P = self.W[a:a + k.N_P]
        a += k.N_P
        self.S = self.W[a:a + k.N_S]
        a += k.N_S
        self.bx = self.W[a:a + cap]
        a += cap
        self.by = self.W[a:a + cap]
        a += cap
        self.grp = self.W[a:a + 2 * caps[1]].reshape(caps[1], 2)
        a += 2 * caps[1]
        self._rows = self.W[a:a + k.N_ROW_COLS * caps[2]].reshape(caps[2], k.N_ROW_COLS)
        a += k.N_ROW_COLS * caps[2]
        self._events = self.W[a:a + k.N_EV_COLS * caps[3]].reshape(caps[3], k.N_EV_COLS)
        self.P[:] = _params(self.sfreq_hz, self.tolerance_s)
        self.S[k.Q] = 0.9
        self.S[k.PREV] = np.nan
        self.S[k.BMIN] = np.inf
        self.S[k.ROW_R] = self.sfreq_hz
        self.I[k.SEG] = -1
        self.I[k.RESET] = 1
        self.I[k.FIX] = -1
        self._all_rows = np.zeros((256, 4))
        self._n_all = 0
        self._new_rows: list[np.ndarray] = []
        self.gaps: list[Gap] = []
        self.resets: list[ClockReset] = []
        self.warnings: list[str] = []
        self._new_gaps: list[Gap] = []
        self._new_resets: list[ClockReset] = []
        self._new_warnings: list[str] = []
        self.fix_from = -1
        #: Stream indices from which the stamps were given up on.
        self.free_from: list[int] = []

    # ------------------------------------------------------------------ state
    @property
    def n_samples(self) -> int:
        """Samples taken so far (the stream index of the next one)."""
        return int(self.I[self._k.K])

    @property
    def settled(self) -> int:
        """Samples before this stream index have their final time."""
        return int(self.I[self._k.SETTLED])

    @property
    def reset_pending(self) -> bool:
        """The last `update` stopped before a sample that starts a new timeline."""
        return bool(self.I[self._k.RESET]) and self.n_samples > 0 and self.timeline >= 0

    @property
    def timeline(self) -> int:
        return int(self.I[self._k.SEG])

    @property
    def free(self) -> bool:
        """The stamps could not be fitted: samples are timed at the nominal rate."""
        return int(self.I[self._k.MODE]) == self._k.MODE_FREE

    @property
    def rate_hz(self) -> float:
        """The fitted rate (nominal before the first fit)."""
        k = self._k
        return 1.0 / (1.0 / self.S[k.FREF] + self.S[k.LC]) if self.S[k.FREF] else math.nan

    @property
    def n_gaps(self) -> int:
        return int(self.I[self._k.NGAPS])

    @property
    def n_missing(self) -> int:
        return int(self.I[self._k.NMISS])

    @property
    def n_resets(self) -> int:
        return int(self.I[self._k.NRESETS])

    @property
    def rows(self) -> np.ndarray:
        """Every mapping row so far, ``(n, 4)``: sample index, time (s), rate (Hz), timeline."""
        return self._all_rows[:self._n_all]

    # ------------------------------------------------------------------ work
    def update(self, ts: np.ndarray, out: np.ndarray) -> int:
        """Take the stamps ``ts`` (float64, C-contiguous) of the next samples.

        Writes their times to ``out`` (same shape) and returns how many samples were taken:
        all of them, or fewer when a new timeline starts at the next one
        (`reset_pending`); call again with the rest after handling the reset.
        """
        k = self._k
        self.I[k.FIX] = -1
        k0 = int(self.I[k.K])
        n = k.clock_step(ts, out, self.W, self.I)
        while n < ts.shape[0] and not self.I[k.RESET]:  # output buffers were full
            self._drain()
            n += k.clock_step(ts[n:], out[n:], self.W, self.I)
        if self.I[k.NROWS] or self.I[k.NEV]:
            self._drain()
        fix = int(self.I[k.FIX])
        self.fix_from = fix
        if fix >= 0 and n:
            a = max(fix, k0)
            out[a - k0:n] = self.times(a, k0 + n)
        return n

    def finish(self) -> None:
        """End of the stream: every sample gets its final time (see `fix_from`)."""
        k = self._k
        self.I[k.FIX] = -1
        k.clock_end(self.W, self.I)
        self._drain()
        self.fix_from = int(self.I[k.FIX])

    def times(self, start: int, stop: int) -> np.ndarray:
        """Times of stream samples ``start .. stop - 1`` on the mapping so far."""
        return clock_times(self.rows, start, stop)

    _NO_ROWS = np.zeros((0, 4))

    def take_rows(self) -> np.ndarray:
        """Mapping rows added since the last call, ``(m, 4)``."""
        if not self._new_rows:
            return self._NO_ROWS
        out = np.concatenate(self._new_rows) if len(self._new_rows) > 1 else self._new_rows[0]
        self._new_rows = []
        return out

    def take_gaps(self) -> list[Gap]:
        """Gaps found since the last call."""
        out, self._new_gaps = self._new_gaps, []
        return out

    def take_resets(self) -> list[ClockReset]:
        out, self._new_resets = self._new_resets, []
        return out

    def take_warnings(self) -> list[str]:
        """Warnings about the stream's stamps since the last call (also logged)."""
        out, self._new_warnings = self._new_warnings, []
        return out

    def _drain(self) -> None:
        k = self._k
        nr = int(self.I[k.NROWS])
        if nr:
            new = self._rows[:nr].copy()
            need = self._n_all + nr
            if need > self._all_rows.shape[0]:
                grown = np.zeros((max(need, 2 * self._all_rows.shape[0]), 4))
                grown[:self._n_all] = self._all_rows[:self._n_all]
                self._all_rows = grown
            self._all_rows[self._n_all:need] = new
            self._n_all = need
            self._new_rows.append(new)
            self.I[k.NROWS] = 0
        ne = int(self.I[k.NEV])
        for kind, a, b, c, d in self._events[:ne].tolist():
            self._event(int(kind), int(a), b, c, d)
        self.I[k.NEV] = 0

    def _event(self, kind: int, index: int, b: float, c: float, d: float) -> None:
        k = self._k
        who = f"stream {self.name!r}" if self.name else "the EMG stream"
        if kind == k.EV_GAP:
            g = Gap(index, b, c, int(d))
            self.gaps.append(g)
            self._new_gaps.append(g)
            return
        if kind == k.EV_RESET:
            r = ClockReset(index, b, c)
            self.resets.append(r)
            self._new_resets.append(r)
            if b <= -RESET_S:
                msg = (f"{who}: clock reset: its clock jumped back by {_seconds(-b)} at sample "
                       f"{index} (by its time stamps); a new timeline starts there")
            else:
                msg = (f"{who}: its time stamps fell {-b * 1e3:.1f} ms below its fitted clock at "
                       f"sample {index} (a clock step); a new timeline starts there")
        elif kind == k.EV_BADRATE:
            off = (b / self.sfreq_hz - 1.0) * 100.0
            msg = (f"{who}: its time stamps advance at {b:.2f} Hz, {off:+.2f} % off its nominal "
                   f"{self.sfreq_hz:g} Hz; its samples are timed at the measured rate (is the "
                   f"nominal rate right? measurement windows use the nominal one)")
        elif kind == k.EV_FREE:
            self.free_from.append(index)
            if c == 1.0:
                found = (f"they advance at {b:.4g} Hz against a nominal {self.sfreq_hz:g} Hz"
                         if math.isfinite(b) else "they do not advance")
            else:
                found = (f"they jumped (gaps or resets) {ANOMALIES[0]} times within "
                         f"{ANOMALIES[1]:g} s of samples")
            msg = (f"{who}: its time stamps cannot be fitted ({found}); from sample {index} "
                   f"its samples are timed at the nominal rate from the last fit, and gaps "
                   f"cannot be found in it")
        elif kind == k.EV_JITTER:
            msg = (f"{who}: {100 * (1 - b):.0f} % of its chunks are stamped later than the gap "
                   f"tolerance ({self.tolerance_s * 1e3:g} ms) after the earliest; a loss "
                   f"takes longer to confirm and a loss shorter than this wobble cannot be "
                   f"found (raise gap_tolerance_ms?)")
        else:  # pragma: no cover
            return
        self.warnings.append(msg)
        self._new_warnings.append(msg)
        logger.warning("%s", msg)


def _seconds(x: float) -> str:
    """A duration for a message: ms precision, or 4 significant digits when it is absurd
    (damaged stamps can jump by 1e300 s)."""
    return f"{x:.3f} s" if abs(x) < 1e7 else f"{x:.4g} s"


def clock_times(rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Times of stream samples ``start .. stop - 1`` from mapping rows ``(n, >= 3)``.

    Row ``j`` times samples from ``rows[j, 0]`` on (a later row with the same index wins);
    samples before the first row use the first row.
    """
    ks = np.arange(start, stop, dtype=np.int64)
    if len(rows) == 0:
        return np.full(ks.shape, np.nan)
    K = rows[:, 0].astype(np.int64)
    j = np.searchsorted(K, ks, side="right") - 1
    np.maximum(j, 0, out=j)
    return rows[j, 1] + (ks - K[j]) / rows[j, 2]


def timeline_ranges(rows: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Sample index ranges ``[a, b)`` of each timeline (between clock resets)."""
    if n == 0:
        return []
    if len(rows) == 0:
        return [(0, n)]
    seg = rows[:, 3]
    starts = [0] + [int(rows[j, 0]) for j in range(1, len(rows)) if seg[j] != seg[j - 1]]
    starts = [a for a in starts if a < n]
    return list(zip(starts, starts[1:] + [n]))


# ---------------------------------------------------------------------------- offline
@dataclass
class ClockFit:
    """The fitted clock of a whole stream (`fit_clock`)."""

    rows: np.ndarray
    n_samples: int
    gaps: list[Gap] = field(default_factory=list)
    resets: list[ClockReset] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Stream indices from which the stamps were given up on (timed at the nominal rate).
    free_from: list[int] = field(default_factory=list)

    def times(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return clock_times(self.rows, start, self.n_samples if stop is None else stop)

    @property
    def timelines(self) -> list[tuple[int, int]]:
        return timeline_ranges(self.rows, self.n_samples)


def _envelope_lp(x: np.ndarray, y: np.ndarray, knots: np.ndarray) -> np.ndarray | None:
    """Values at ``knots`` of the highest continuous piecewise-linear function below every
    point ``(x, y)`` (summed over the points): a linear programme, solved by HiGHS."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    m, nk = len(x), len(knots)
    j = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, nk - 2)
    w1 = (x - knots[j]) / (knots[j + 1] - knots[j])
    w0 = 1.0 - w1
    rows = np.repeat(np.arange(m), 2)
    cols = np.stack([j, j + 1], axis=1).reshape(-1)
    vals = np.stack([w0, w1], axis=1).reshape(-1)
    A = csr_matrix((vals, (rows, cols)), shape=(m, nk))
    c = -np.asarray(A.sum(axis=0)).reshape(-1)
    res = linprog(c, A_ub=A, b_ub=y, bounds=[(None, None)] * nk, method="highs")
    if res.status != 0:
        return None
    return res.x


def _fit_piece(ts: np.ndarray, a: int, b: int, fs: float, block: int, rate_hint: float,
               timeline: float) -> np.ndarray:
    """Rows of the lower envelope of the stamps of samples ``a .. b - 1``."""
    k = np.arange(a, b)
    s = ts[a:b]
    ok = np.isfinite(s)
    if not ok.any():
        return np.array([[a, np.nan, rate_hint, timeline]])
    s0 = s[ok][0]
    x = (k - a).astype(np.float64)
    r = (s - s0) - x / fs
    r[~ok] = np.inf
    nb = (b - a + block - 1) // block
    pad = np.full(nb * block, np.inf)
    pad[:b - a] = r
    blk = pad.reshape(nb, block)
    arg = np.argmin(blk, axis=1)
    by = blk[np.arange(nb), arg]
    bx = np.arange(nb) * block + arg
    good = np.isfinite(by)
    bx, by = bx[good].astype(np.float64), by[good]
    span = b - 1 - a
    if len(bx) >= 2 and bx[-1] - bx[0] >= block:
        knot_n = max(2 * block, int(round(KNOT_S * fs)))
        n_int = max(1, int(round(span / knot_n)))
        knots = np.unique(np.round(np.linspace(0, span, n_int + 1))).astype(np.float64)
        if len(knots) < 2:
            knots = np.array([0.0, float(max(span, 1))])
        v = _envelope_lp(bx, by, knots)
        if v is not None and np.all(np.isfinite(v)):
            K = a + knots[:-1].astype(np.int64)
            dk = np.diff(knots)
            dt = dk / fs + np.diff(v)
            T = s0 + knots[:-1] / fs + v[:-1]
            with np.errstate(divide="ignore", invalid="ignore"):
                R = dk / dt
            if np.all(R > 0) and np.all(np.isfinite(R)):
                return np.column_stack([K, T, R, np.full(len(K), timeline)])
    # too short for a fit: the given rate, under every stamp
    rr = rate_hint if rate_hint > 0 else fs
    T0 = float(np.min((s[ok] - s0) - x[ok] / rr)) + s0
    return np.array([[a, T0, rr, timeline]])


def fit_clock(timestamps: np.ndarray, sfreq_hz: float, *, tolerance_s: float = 0.002,
              name: str = "") -> ClockFit:
    """Fit the clock of a whole stream from its raw stamps (offline).

    The same model finds gaps and resets as live (`ClockModel`); within each piece between
    them the lower envelope of the stamps is then fitted over the whole piece at once
    (continuous, piecewise linear with knots every `KNOT_S` s). Warnings (unusable stamps,
    a rate far from nominal) name the stream and are also logged.
    """
    ts = np.ascontiguousarray(timestamps, dtype=np.float64)
    n = ts.shape[0]
    fs = float(sfreq_hz)
    model = ClockModel(fs, tolerance_s=tolerance_s, name=name)
    if n == 0:
        return ClockFit(np.zeros((0, 4)), 0)
    out = np.empty(n)
    pos = 0
    while pos < n:
        pos += model.update(ts[pos:], out[pos:])
    model.finish()
    online = model.rows
    k = model._k
    block = int(model.P[k.P_BLOCK])
    # pieces: a new timeline, a gap, stamps given up on (until the next of these)
    marks = [(0, "start")]
    for j in range(1, len(online)):
        if online[j, 3] != online[j - 1, 3]:
            marks.append((int(online[j, 0]), "timeline"))
    marks += [(g.index, "gap") for g in model.gaps]
    marks += [(i, "free") for i in model.free_from]
    marks = sorted(m for m in marks if 0 <= m[0] < n)
    starts, kinds = [], []
    for idx, kind in marks:
        if starts and starts[-1] == idx:
            kinds[-1] = kind if kind == "free" else kinds[-1]
            continue
        starts.append(idx)
        kinds.append(kind)
    pieces = list(zip(starts, starts[1:] + [n], kinds))
    out_rows: list[np.ndarray] = []
    K_on = online[:, 0].astype(np.int64) if len(online) else np.zeros(0, dtype=np.int64)
    for a, b, kind in pieces:
        j = max(0, int(np.searchsorted(K_on, a, side="right")) - 1) if len(online) else -1
        timeline = float(online[j, 3]) if j >= 0 else 0.0
        sel = (K_on >= a) & (K_on < b)
        if kind == "free":
            first = online[j].copy()
            first[0] = a
            first[1] = clock_times(online, a, a + 1)[0]
            out_rows.append(np.vstack([first[None, :], online[sel & (K_on > a)]]))
            continue
        # the rate the online model found for this piece: a hint for short pieces
        hint = float(online[sel][-1, 2]) if sel.any() else (float(online[j, 2]) if j >= 0 else fs)
        piece = _fit_piece(ts, a, b, fs, block, hint, timeline)
        if kind == "gap" and out_rows and out_rows[-1][-1, 3] == timeline:
            # the two fits must leave the gap forward (at least a sample) whatever the wobble
            prev = clock_times(out_rows[-1], a - 1, a)[0]
            least = prev + 1.0 / piece[0, 2]
            if piece[0, 1] < least:
                piece[:, 1] += least - piece[0, 1]
        out_rows.append(piece)
    rows = np.vstack(out_rows) if out_rows else np.zeros((0, 4))
    fit = ClockFit(rows, n, resets=list(model.resets), warnings=list(model.warnings),
                   free_from=list(model.free_from))
    for g in model.gaps:
        if 0 < g.index < n:
            t = clock_times(rows, g.index - 1, g.index + 1)
            fit.gaps.append(Gap(g.index, float(t[0]), float(t[1]), g.n_missing))
    return fit

