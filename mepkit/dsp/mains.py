"""Mains frequency from the data: 50 Hz, 60 Hz or none (``Params.line_freq_hz = "auto"``).

The narrow-band power at 50/60 Hz and their harmonics is compared with the bands next to
them, in a Hann-windowed spectrum of the EMG channels (``docs/methods.md``, "Mains
detection"). Mains interference is a steady sinusoid: in one second of data it stands
tens of dB above its neighbours even when it is small, while broadband EMG, contractions,
MEPs, artifacts and ECG spread their power over the neighbouring bands as well.

* :func:`line_ratios` -- the line-to-neighbour power ratio of each candidate, one segment;
* :func:`detect_line_freq` -- a whole recording: one vote per block, the majority decides;
* :func:`detect_line_freq_epochs` -- exported epochs: their pre-stimulus samples, by a
  fit of each candidate's sinusoids (too short for a spectrum);
* :class:`MainsDetector` -- a stream: fixed blocks counted from its first sample, a
  decision rule with hysteresis, and the decision in force at any sample index.

Plain NumPy: one FFT of at most ``MAX_CHANNELS`` channels per second of data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CANDIDATES_HZ", "MainsDecision", "MainsDetector", "line_ratios", "vote",
           "family_reductions",
           "detect_line_freq", "detect_line_freq_epochs", "describe"]

logger = logging.getLogger("mepkit.mains")

#: Mains frequencies considered.
CANDIDATES_HZ = (50.0, 60.0)
#: Harmonics (including the fundamental) whose power is summed.
N_HARMONICS = 3
#: Length of one detection block (s), counted from the stream's first sample.
BLOCK_S = 1.0
#: Shortest segment judged before the first full block (s).
MIN_SEGMENT_S = 0.25
#: Channels used (the first ones): mains reaches every lead of an amplifier alike.
MAX_CHANNELS = 8
#: Samples are averaged in groups down to at least this rate before the spectrum.
DECIMATE_HZ = 2500.0
#: Neighbouring bins on each side of a line (in bins of the segment's spectrum).
NEIGHBOUR_BINS = (3, 4, 5, 6)
#: A block votes for a frequency when its ratio is at least RATIO_ON, for none when both
#: ratios are below RATIO_OFF; in between it abstains.
RATIO_ON = 8.0
RATIO_OFF = 3.0
#: Exported epochs: a candidate wins when it alone explains this many times the variance
#: the other alone does (one 50 ms epoch of noise reaches 8 about once in 20).
EPOCH_RATIO_ON = 20.0
#: Votes in a row that change a decision once one exists.
CONFIRM_BLOCKS = 3


@dataclass(frozen=True)
class MainsDecision:
    """A mains decision and the first sample index (of its stream) it applies to."""

    sample_index: int
    line_freq_hz: float | None
    ratio_50: float
    ratio_60: float

    def to_dict(self) -> dict:
        return {"sample_index": int(self.sample_index), "line_freq_hz": self.line_freq_hz,
                "ratio_50": float(self.ratio_50), "ratio_60": float(self.ratio_60)}


def describe(line_freq_hz: float | None, how: str) -> str:
    """The one-line summary printed by the command line, e.g. ``mains: 60 Hz (detected)``."""
    what = "none" if line_freq_hz is None else f"{line_freq_hz:g} Hz"
    return f"mains: {what} ({how})"


def line_ratios(x: np.ndarray, sfreq_hz: float) -> tuple[float, float]:
    """Power at each candidate's lines over the power next to them, one segment.

    Parameters
    ----------
    x : array, shape (n_samples, n_channels)
        EMG (any unit); non-finite channels are left out.
    sfreq_hz : float
        Sampling rate.

    Returns
    -------
    (float, float)
        Ratio for 50 Hz and for 60 Hz: per channel, the power of the strongest of the
        three bins at each line (fundamental and harmonics below 0.45 x the rate,
        summed) over the mean power of the bins NEIGHBOUR_BINS away on both sides
        (summed); the median over the channels (a contracting muscle's broadband EMG
        on some channels does not hide the mains on the others). About 1-2 without
        mains; tens to thousands with it. NaN when the segment is too short or has no
        finite channel.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    # means of k samples (a rate of at least DECIMATE_HZ): lines up to 180 Hz lose < 1 %,
    # broadband EMG above folds onto the lines and their neighbours alike
    k = max(1, int(sfreq_hz // DECIMATE_HZ))
    n = x.shape[0] // k
    if n < 16:
        return (math.nan, math.nan)
    c = min(x.shape[1], MAX_CHANNELS)
    xc = np.ascontiguousarray(x[:n * k]) if k > 1 else x[:n, :c]
    with np.errstate(invalid="ignore"):  # a signalling NaN (damaged data) stays NaN
        y = (xc.reshape(n, k, -1)[:, :, :c].sum(axis=1) / k if k > 1 else xc
             ).T.astype(np.float64)
    y = y[np.all(np.isfinite(y), axis=1)]  # (ch, n): FFT rows
    sfreq_hz = sfreq_hz / k
    if y.shape[0] == 0:
        return (math.nan, math.nan)
    t = np.arange(n) - 0.5 * (n - 1)
    y -= y.mean(axis=1, keepdims=True)
    y -= np.outer((y @ t) / (t @ t), t)  # a drift would leak into the low bins
    y *= np.hanning(n)
    power = (np.abs(np.fft.rfft(y, axis=1)) ** 2).T  # (bins, ch)
    bin_hz = sfreq_hz / n
    out = []
    for base in CANDIDATES_HZ:
        line = np.zeros(y.shape[0])
        side = np.zeros(y.shape[0])
        for h in range(1, N_HARMONICS + 1):
            f = h * base
            k = int(round(f / bin_hz))
            if (f >= 0.45 * sfreq_hz or k - NEIGHBOUR_BINS[-1] < 1
                    or k + NEIGHBOUR_BINS[-1] >= power.shape[0]):
                continue
            line += power[k - 1:k + 2].max(axis=0)
            nb = [k - d for d in NEIGHBOUR_BINS] + [k + d for d in NEIGHBOUR_BINS]
            side += power[nb].mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(side > 0, line / side, np.where(line > 0, np.inf, np.nan))
        out.append(float(np.nanmedian(ratio)) if np.any(ratio == ratio) else math.nan)
    return (out[0], out[1])


def vote(ratios: tuple[float, float]) -> float | None | str:
    """One segment's vote: 50.0, 60.0, None (no mains) or ``"abstain"``."""
    r50, r60 = ratios
    if not (r50 == r50 and r60 == r60):
        return "abstain"
    best = 0 if r50 >= r60 else 1
    if max(r50, r60) >= RATIO_ON:
        return CANDIDATES_HZ[best]
    if max(r50, r60) < RATIO_OFF:
        return None
    return "abstain"


def _blocks(n: int, block_n: int, max_blocks: int) -> list[int]:
    starts = list(range(0, n - block_n + 1, block_n))
    if len(starts) > max_blocks:
        pick = np.linspace(0, len(starts) - 1, max_blocks).round().astype(int)
        starts = [starts[i] for i in np.unique(pick)]
    return starts


@dataclass(frozen=True)
class MainsEstimate:
    """The mains decision for a whole recording and the block votes behind it."""

    line_freq_hz: float | None
    votes: dict
    n_blocks: int


def detect_line_freq(x: np.ndarray, sfreq_hz: float, *, max_blocks: int = 120) -> MainsEstimate:
    """Mains of a whole recording: one vote per BLOCK_S block (at most ``max_blocks``
    spread over it), the most frequent non-abstaining vote decides (ties: none).

    Parameters
    ----------
    x : array, shape (n_samples, n_channels)
        EMG channels of the recording (the trigger channel left out).
    sfreq_hz : float
        Sampling rate.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    block_n = max(16, int(round(BLOCK_S * sfreq_hz)))
    starts = _blocks(x.shape[0], block_n, max_blocks)
    if not starts and x.shape[0] >= MIN_SEGMENT_S * sfreq_hz:
        starts, block_n = [0], x.shape[0]
    votes: dict = {50.0: 0, 60.0: 0, None: 0}
    for a in starts:
        v = vote(line_ratios(x[a:a + block_n], sfreq_hz))
        if v != "abstain":
            votes[v] += 1
    best = max(votes, key=lambda k: (votes[k], k is None))
    if votes[best] == 0:
        best = None
    return MainsEstimate(best, votes, len(starts))


def family_reductions(x: np.ndarray, sfreq_hz: float) -> tuple[float, float]:
    """Variance only each candidate's sinusoids explain (fundamental and harmonics below
    0.45 x the rate) in a short segment: (50 Hz, 60 Hz).

    Both families are fitted together by least squares at their exact frequencies, with
    an offset and a slope; each candidate's share is what the fit loses without it. Over
    a short segment (50 ms) the two families overlap, so a 50 Hz sinusoid is partly
    explained by the 60 Hz terms alone; fitted together, it is not. Summed over the
    finite channels of ``x`` (n_samples, n_channels).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    x = x[:, np.all(np.isfinite(x), axis=0)]
    n = x.shape[0]
    if x.shape[1] == 0 or n < 8 * (1 + 2 * N_HARMONICS):
        return (math.nan, math.nan)
    t_s = np.arange(n) / sfreq_hz
    base = np.stack([np.ones(n), t_s - t_s.mean()], axis=1)
    fam = []
    for f0 in CANDIDATES_HZ:
        cols = []
        for h in range(1, N_HARMONICS + 1):
            if h * f0 < 0.45 * sfreq_hz:
                w = 2 * np.pi * h * f0 * t_s
                cols += [np.cos(w), np.sin(w)]
        fam.append(np.stack(cols, axis=1))
    sse_all = _sse(np.hstack([base, fam[0], fam[1]]), x)
    return (_sse(np.hstack([base, fam[1]]), x) - sse_all,
            _sse(np.hstack([base, fam[0]]), x) - sse_all)


def _sse(design: np.ndarray, x: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    r = x - design @ coef
    return float(np.sum(r * r))


def detect_line_freq_epochs(epochs: np.ndarray, sfreq_hz: float, tmin_ms, *,
                            stop_ms: float = -2.0) -> float | None:
    """Mains of exported epochs, from the samples of each before ``stop_ms`` (clear of the
    stimulus artifact).

    Exports often keep only 50-200 ms before the stimulus, too little for a spectrum, so
    each candidate's sinusoids are fitted (:func:`family_reductions`) and the two
    candidates compared with each other: broadband EMG feeds both alike, mains only one.
    A candidate wins when it alone explains at least EPOCH_RATIO_ON times the variance the
    other alone does.

    Parameters
    ----------
    epochs : array, shape (n_trials, n_channels, n_samples)
    sfreq_hz : float
    tmin_ms : float or array, shape (n_trials,)
        Time of sample 0 relative to the stimulus (ms).
    """
    n_tr, _, n_s = epochs.shape
    t0 = np.broadcast_to(np.asarray(tmin_ms, dtype=np.float64), (n_tr,))
    red = np.zeros(2)
    for k in range(n_tr):
        n_pre = min(n_s, int(math.floor((stop_ms - t0[k]) * sfreq_hz / 1000.0)))
        if n_pre * 1000.0 / sfreq_hz < 1.5 * 1000.0 / min(CANDIDATES_HZ):
            continue
        r = family_reductions(epochs[k, :MAX_CHANNELS, :n_pre].T, sfreq_hz)
        if r[0] == r[0]:
            red += r
    best = 0 if red[0] >= red[1] else 1
    if red[best] > 0 and red[best] >= EPOCH_RATIO_ON * max(red[1 - best], 0.0):
        return CANDIDATES_HZ[best]
    return None


class MainsDetector:
    """Mains decisions on a stream, from fixed blocks counted from its first sample.

    The Pipeline feeds each complete block (:meth:`add_block`); a decision made at the
    end of block ``k`` applies from sample ``(k + 1) * block_n`` on. The first vote for a
    frequency or for none decides; afterwards CONFIRM_BLOCKS votes in a row for something
    else change the decision. Blocks depend only on the samples, never on how they were
    chunked, so a stream measured live and replayed gives the same decisions.

    Parameters
    ----------
    sfreq_hz : float
        Sampling rate.
    """

    def __init__(self, sfreq_hz: float) -> None:
        self.sfreq_hz = float(sfreq_hz)
        self.block_n = max(16, int(round(BLOCK_S * self.sfreq_hz)))
        self.min_segment_n = int(math.ceil(MIN_SEGMENT_S * self.sfreq_hz))
        self.n_blocks = 0
        self.decisions: list[MainsDecision] = []
        self._run_value: object = "abstain"
        self._run_length = 0

    @property
    def next_block_end(self) -> int:
        """Sample index one past the next block to feed."""
        return (self.n_blocks + 1) * self.block_n

    @property
    def line_freq_hz(self) -> float | None:
        """The decision in force now (None before the first one)."""
        return self.decisions[-1].line_freq_hz if self.decisions else None

    def add_block(self, x: np.ndarray) -> MainsDecision | None:
        """Judge the next block (``block_n`` rows of the EMG channels); returns a new
        decision when this block makes one."""
        ratios = line_ratios(x, self.sfreq_hz)
        v = vote(ratios)
        self.n_blocks += 1
        end = self.n_blocks * self.block_n
        if v == "abstain":
            return None
        if v == self._run_value:
            self._run_length += 1
        else:
            self._run_value, self._run_length = v, 1
        if self.decisions and self.decisions[-1].line_freq_hz == v:
            return None
        if not self.decisions or self._run_length >= CONFIRM_BLOCKS:
            d = MainsDecision(end, v, ratios[0], ratios[1])  # type: ignore[arg-type]
            self.decisions.append(d)
            return d
        return None

    def decision_at(self, sample_index: int) -> MainsDecision | None:
        """The decision in force at ``sample_index`` (None before the first)."""
        out = None
        for d in self.decisions:
            if d.sample_index <= sample_index:
                out = d
            else:
                break
        return out
