"""The measurement pipeline: chunks of raw EMG and trigger events in, trials out.

Every source (live LSL, a recording replayed from disk, the virtual subject)
feeds the same :class:`Pipeline`. Each trial is measured from the raw samples
kept in a ring buffer once its response window is complete, so results do not
depend on how the data were chunked, late markers are still measured, and the
stimulus artifact cannot ring into the response through a running filter.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from mepkit.markers import StimInfo, parse_marker
from mepkit.dsp.features import FEATURES, REASON_NAMES
from mepkit.params import LIVE_TRIAL_COLUMN_KINDS, TRIAL_COLUMNS, Params
from mepkit.sources.recording import channel_index

__all__ = ["Pipeline", "Trial", "trial_columns"]

logger = logging.getLogger("mepkit.pipeline")

#: A trial started while its window fills processes at most this many rows per chunk (or
#: twice the chunk, if more) until its window is complete: the ~100 ms of background it
#: finds when its marker arrives is spread over the next chunks instead of delaying the
#: chunk that brought the marker (and any other trial completing in it).
CATCH_UP_ROWS = 256


@dataclass
class Trial:
    """One stimulus and its measured responses, one value per EMG channel."""

    index: int
    stim_time_s: float
    stim: StimInfo
    channels: tuple[str, ...]
    amplitude_uv: np.ndarray
    latency_ms: np.ndarray
    area_uv_ms: np.ndarray
    background_rms_uv: np.ndarray
    peak_time_ms: np.ndarray
    detected: np.ndarray
    reject_reason: tuple[str, ...]
    #: Per channel: the onset methods disagree, or the response has no clean crossing.
    onset_ambiguous: np.ndarray | None = None
    #: Timestamp (EMG clock) of the last sample the measurement needed.
    last_sample_s: float = math.nan
    #: Time (EMG clock) at which the measurement became available (live sources).
    available_s: float = math.nan

    @property
    def rejected(self) -> np.ndarray:
        return np.array([bool(r) for r in self.reject_reason])

    def rows(self, file: str = "") -> list[dict[str, Any]]:
        """One dict per channel: the trial-table columns and the live timing columns."""
        cols = trial_columns([self], file, live=True)
        cols = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in cols.items()}
        return [dict(zip(cols, values)) for values in zip(*cols.values())]


def trial_columns(trials: Sequence[Trial], file: str = "", *, live: bool = False
                  ) -> dict[str, Any]:
    """The trial table of ``trials`` as columns (one row per trial and channel).

    The only row builder: tables, records and live sessions all take their rows from it.
    The columns are ``TRIAL_COLUMNS``, and with ``live`` also ``LIVE_TRIAL_COLUMN_KINDS``:
    text columns as lists, number and flag columns as NumPy arrays.
    """
    names = (*TRIAL_COLUMNS, *LIVE_TRIAL_COLUMN_KINDS) if live else TRIAL_COLUMNS
    cols: dict[str, Any] = {c: [] for c in names}
    per_trial = [k for k in ("stim_time_s", "last_sample_s", "available_s") if k in cols]
    n_ch = []
    for t in trials:
        n = len(t.channels)
        n_ch.append(n)
        s = t.stim
        for key, value in (("file", file), ("trial", t.index), ("label", s.label),
                           ("intensity_pct_mso", s.intensity_pct_mso), ("x_mm", s.x_mm),
                           ("y_mm", s.y_mm), ("z_mm", s.z_mm), ("site", s.site),
                           ("hemisphere", s.hemisphere),
                           ("condition", s.condition)):
            cols[key].extend([value] * n)
        for key in per_trial:
            cols[key].append(getattr(t, key))
        cols["channel"].extend(t.channels)
        for key in FEATURES:
            cols[key].append(getattr(t, key))
        cols["onset_ambiguous"].append(t.onset_ambiguous if t.onset_ambiguous is not None
                                       else np.zeros(n, bool))
        cols["detected"].append(t.detected)
        cols["reject_reason"].extend(t.reject_reason)
    reps = np.asarray(n_ch, dtype=np.int64)
    for key in per_trial:
        cols[key] = np.repeat(np.asarray(cols[key], dtype=np.float64), reps)
    for keys, dtype in ((FEATURES, np.float64), (("onset_ambiguous", "detected"), bool)):
        for key in keys:
            cols[key] = (np.concatenate(cols[key]).astype(dtype, copy=False) if cols[key]
                         else np.zeros(0, dtype))
    cols["rejected"] = np.array([bool(r) for r in cols["reject_reason"]], dtype=bool)
    return cols


@dataclass(order=True)
class _Pending:
    time_s: float
    index: int
    stim: StimInfo = field(compare=False)
    # a trial measured as its samples arrive (once its stimulus sample is here):
    # absolute sample index of its epoch's row 0, and the kernel state
    abs0: int = field(default=0, compare=False)
    t0_ms: float = field(default=0.0, compare=False)
    stim_in_gap: bool = field(default=False, compare=False)
    state: Any = field(default=None, compare=False)
    design: Any = field(default=None, compare=False)  # the Design of its mains decision


class Pipeline:
    """Measure MEPs from a stream of raw EMG chunks and trigger events.

    Parameters
    ----------
    params : Params, optional
        Measurement parameters (defaults documented in ``docs/methods.md``).
    sfreq_hz : float
        Nominal sampling rate of the EMG stream.
    channel_labels : sequence of str
        Labels of every channel of the incoming chunks.
    scale_to_uv : float or sequence of float, optional
        Factor per channel that turns incoming values into µV (default 1).
    trigger_channel : str or int, optional
        A TTL channel in the stream, by label or index: rising edges are pulses, and it is
        not measured.
    artifact_triggers : bool
        Detect pulses from the stimulus artifact on the EMG channels.
    marker_filter : str, optional
        Regular expression: only markers it matches (``re.search``) are pulses.
    buffer_s : float
        Raw history kept; a marker may arrive this late (minus the epoch length).
    monitor : bool
        Keep a continuous background monitor (``monitor_band_hz`` band-pass and mains
        notches of quality ``notch_q``): `update_monitor` filters the samples pushed since
        its last call and sets ``monitor_rms_uv``, the RMS of the output over the last
        0.2 s per channel (live sessions call it at quiet moments and show it).
    first_index : int
        Index of the first trial (a recording measured in parts continues the count).
    fit_clock : bool
        Time the samples on the stream's fitted clock (`mepkit.sources.clock.ClockModel`:
        raw LSL stamps in, as amplifier apps and liblsl make them). False: the timestamps
        pushed are the samples' times already (a replay of fitted times, ideal stamps).
    stream_name : str
        The stream's name, for the clock model's warnings.

    Notes
    -----
    With ``params.line_freq_hz == "auto"`` the mains frequency is decided from the data
    (:class:`mepkit.dsp.mains.MainsDetector`): 1 s blocks counted from the stream's first
    sample, judged before any trial that follows them starts; each trial uses the
    decision in force at its stimulus sample (before the first decision, the samples of
    the stream up to its stimulus). ``line_freq_hz`` is the decision in force and
    ``mains_decisions`` every decision with its sample index.

    With a fitted clock, samples whose time is still provisional (the first moments of a
    stream, late stamps not yet known to be a stall or a loss) are buffered but not used
    by any trial (nor by the mains detector) until their time is final; ``clock`` holds
    the model, its mapping rows, gaps and resets.
    """

    def __init__(
        self,
        params: Params | None = None,
        *,
        sfreq_hz: float,
        channel_labels: Sequence[str],
        scale_to_uv: float | Sequence[float] | None = None,
        trigger_channel: str | int | None = None,
        artifact_triggers: bool = False,
        marker_filter: str | None = None,
        buffer_s: float = 4.0,
        monitor: bool = False,
        first_index: int = 0,
        fit_clock: bool = True,
        stream_name: str = "",
    ) -> None:
        self.params = params if params is not None else Params()
        self.sfreq_hz = float(sfreq_hz)
        if not (math.isfinite(self.sfreq_hz) and self.sfreq_hz > 0):
            raise ValueError(f"sfreq_hz must be a positive number (a regular stream), got {sfreq_hz!r}")
        labels = [str(c) for c in channel_labels]
        n_all = len(labels)
        if n_all == 0:
            raise ValueError("the stream has no channels")
        self._trig_idx = channel_index(labels, trigger_channel)
        self._emg_idx = np.array([i for i in range(n_all) if i != self._trig_idx], dtype=np.int64)
        if self._emg_idx.size == 0:
            raise ValueError("no EMG channel left besides the trigger channel")
        self.channels = tuple(labels[i] for i in self._emg_idx)
        self.n_stream_channels = n_all
        scale = np.ones(n_all) if scale_to_uv is None else np.broadcast_to(
            np.asarray(scale_to_uv, dtype=np.float64), (n_all,)).copy()
        self._scale = scale[self._emg_idx]
        self._unit_scale_is_one = bool(np.all(self._scale == 1.0))
        self.artifact_triggers = bool(artifact_triggers)
        self._marker_re = re.compile(marker_filter) if marker_filter else None

        self.dt_ms = 1000.0 / self.sfreq_hz
        p = self.params
        self._pre_n = int(math.ceil(p.pre_ms / self.dt_ms)) + 1
        # samples from the stimulus sample through the last one the windows use: the
        # stimulus falls within one period before its sample, so the window end is at most
        # floor(post_ms / dt) samples after it
        self._post_n = int(math.floor(p.post_ms / self.dt_ms + 1e-9)) + 1
        self._gap_s = (self.dt_ms + p.gap_tolerance_ms) / 1000.0
        need = self._pre_n + self._post_n
        self._length = need
        self.capacity = max(int(math.ceil(buffer_s * self.sfreq_hz)), 4 * need)
        n_ch = len(self.channels)
        self._buf = np.zeros((2 * self.capacity, n_ch))
        self._ts = np.zeros(2 * self.capacity)
        self._pos = 0
        self.n_samples = 0
        self.last_time_s = -math.inf
        # odd while the ring is being written: `recent_samples` (another thread) retries
        self._ring_seq = 0
        self._pending: list[_Pending] = []
        self._overflow: list[Trial] = []
        self._next_index = int(first_index)
        self.n_ignored_markers = 0
        self.n_late_triggers = 0
        self.n_gaps = 0
        self.n_clock_resets = 0
        self.clock = None
        if fit_clock:
            from mepkit.sources.clock import ClockModel

            self.clock = ClockModel(self.sfreq_hz, tolerance_s=p.gap_tolerance_ms / 1000.0,
                                    name=stream_name)
        #: Samples (since the last reset) whose time is final; trials use only these.
        self._n_ready = 0
        #: Stream index of this timeline's first sample (the clock counts from the start).
        self._abs0 = 0
        self._fitted = np.zeros(0)
        #: Triggers found on samples whose time is not final yet: (sample, stim, shift_s).
        self._sample_triggers: list[tuple[int, StimInfo, float]] = []
        refractory = int(round(p.refractory_ms / self.dt_ms))
        self._refractory = float(refractory)
        self._ttl_state = np.array([-1.0, 0.0])
        self._art_state = np.array([0.0])
        self._art_prev = np.full(n_ch, np.nan)
        self._edges = np.empty(64, dtype=np.int64)
        self.monitor_rms_uv = np.full(n_ch, np.nan)
        self._monitor = None
        if monitor:
            from mepkit.dsp.filters import StreamingFilter, design_monitor_filter

            self._monitor = StreamingFilter(design_monitor_filter(self.sfreq_hz, p), n_ch)
            self._monitor.process(np.zeros((1, n_ch)))  # load its kernel now
            self._monitor.reset()
        self._monitor_done = 0
        self._monitor_n = max(1, int(round(0.2 * self.sfreq_hz)))
        self._monitor_tail = np.zeros((0, n_ch))
        from mepkit.dsp import _features, _triggers
        from mepkit.dsp.features import Design

        self._k = _triggers
        self._kf = _features
        self._mains = None
        #: One feature Design per mains frequency a trial may use.
        self._designs: dict[float | None, Design] = {}
        if p.line_freq_hz == "auto":
            from mepkit.dsp.mains import CANDIDATES_HZ, MainsDetector

            self._mains = MainsDetector(self.sfreq_hz)
            for line in (*CANDIDATES_HZ, None):
                self._designs[line] = Design(p.replace(line_freq_hz=line), self.sfreq_hz, need)
            self._design = self._designs[None]
        else:
            self._design = Design(p, self.sfreq_hz, need)
            self._designs[p.line_freq_hz] = self._design
        self._state_pool: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._chunk_n = 0  # samples in the chunk being pushed
        self._warm_up()

    def _warm_up(self) -> None:
        """Load (or compile) every kernel now, so the first pulse is not measured late."""
        from mepkit.dsp.features import measure_rows

        n_ch = len(self.channels)
        empty = np.zeros((0, n_ch))
        self._k.ring_write(np.zeros((2, n_ch)), np.zeros(2), 0, 1, empty, np.zeros(0))
        self._k.ttl_rising_edges(np.zeros(0), 0.5, 1.0, np.array([-1.0, 0.0]), self._edges)
        self._k.artifact_onsets(empty, 1.0, 1.0, np.zeros(1), np.zeros(n_ch), self._edges)
        self._k.has_gap(np.zeros(2), 1.0)
        length = self._length
        d = self._design
        measure_rows(np.zeros((length, n_ch)), np.zeros(1, dtype=np.int64), length,
                     self.sfreq_hz, d.params, tmin_ms=-self._pre_n * self.dt_ms, design=d)
        # the kernels of a trial measured as its samples arrive
        w, st, xs = self._take_state()
        self._kf.trial_init(-self._pre_n * self.dt_ms, 0, length, d.prm, w, st)
        self._kf.trial_advance(self._buf, 0, length, w, st, xs, d.prm[0], d.basis, d.dkey,
                               d.lower, d.xtx, d.lp_sos, d.lp_zi, CATCH_UP_ROWS)
        self._kf.trial_advance(self._buf, 0, length, w, st, xs, d.prm[0], d.basis, d.dkey,
                               d.lower, d.xtx, d.lp_sos, d.lp_zi, -1)
        out = self._outputs()
        self._kf.trial_finish(0, 0.0, False, w, st, xs, d.prm, *out)
        self._state_pool.append((w, st, xs))
        if self.clock is not None:  # the clock kernel, on a throw-away model
            from mepkit.sources.clock import ClockModel

            c = ClockModel(self.sfreq_hz)
            c.update(np.arange(4.0) / self.sfreq_hz, np.empty(4))
            c.finish()

    # ------------------------------------------------------------------ mains
    @property
    def line_freq_hz(self) -> float | None:
        """The mains frequency in force now (``None``: none removed, or not decided yet)."""
        if self._mains is None:
            return self.params.line_freq_hz
        return self._mains.line_freq_hz

    @property
    def mains_decisions(self) -> list:
        """Every mains decision (:class:`mepkit.dsp.mains.MainsDecision`: the sample index
        of this stream from which it applies, the frequency or None); empty when
        ``line_freq_hz`` is set in the parameters."""
        return [] if self._mains is None else list(self._mains.decisions)

    @property
    def n_mains_decisions(self) -> int:
        """How many mains decisions were made (cheap: no copy)."""
        return 0 if self._mains is None else len(self._mains.decisions)

    def _update_mains(self) -> None:
        """Judge every mains block the samples so far complete. Called before a trial
        starts (so it finds the decision in force at its stimulus) and after each chunk's
        trials are measured; nothing to do (one comparison) between blocks."""
        if self._mains is None:
            return
        while self._mains.next_block_end <= self._n_ready:
            end = self._mains.next_block_end
            data, _, held = self._view()
            base = self._n_ready - held
            rows = data[max(0, end - self._mains.block_n - base):end - base]
            d = self._mains.add_block(rows)
            if d is not None:
                from mepkit.dsp.mains import describe

                logger.info("%s at sample %d", describe(d.line_freq_hz, "detected"),
                            d.sample_index)

    def _design_at(self, s_abs: int, data: np.ndarray, base: int):
        """The feature Design for a trial whose stimulus is stream sample ``s_abs``."""
        if self._mains is None:
            return self._design
        d = self._mains.decision_at(s_abs)
        if d is not None:
            return self._designs[d.line_freq_hz]
        # no decision yet: the stream's samples before the stimulus (up to one block)
        from mepkit.dsp.mains import CANDIDATES_HZ, RATIO_OFF, line_ratios

        a = max(s_abs - self._mains.block_n, 0, base)
        if s_abs - a < self._mains.min_segment_n:
            return self._designs[None]
        r = line_ratios(data[a - base:s_abs - base], self.sfreq_hz)
        best = 0 if r[0] >= r[1] else 1
        line = CANDIDATES_HZ[best] if r[best] >= RATIO_OFF else None
        return self._designs[line]

    # ------------------------------------------------------------------ triggers
    def add_trigger(self, time_s: float, marker: Any = None) -> int:
        """Register a pulse at ``time_s`` (EMG clock). Returns the trial index.

        ``marker`` is a marker string, a dict of metadata, or a :class:`StimInfo`.
        """
        if isinstance(marker, StimInfo):
            stim = marker
        elif isinstance(marker, dict):
            import json

            stim = parse_marker(json.dumps(marker))
        else:
            stim = parse_marker(marker)
        for problem in stim.problems:
            logger.warning("marker at %.4f s: %s", time_s, problem)
        index = self._next_index
        self._next_index += 1
        self._pending.append(_Pending(float(time_s), index, stim))
        self._pending.sort()
        return index

    def add_markers(self, times_s: Iterable[float], values: Iterable[Any]) -> list[int]:
        """Register markers; those the ``marker_filter`` rejects are ignored."""
        out = []
        for t, v in zip(times_s, values):
            text = v[0] if isinstance(v, (list, tuple)) and len(v) else v
            if self._marker_re is not None and not self._marker_re.search(str(text)):
                self.n_ignored_markers += 1
                continue
            out.append(self.add_trigger(t, text))
        return out

    # ------------------------------------------------------------------ data
    def push(self, samples: np.ndarray, timestamps: np.ndarray) -> list[Trial]:
        """Append a chunk (n_samples, n_channels) with its timestamps; return completed trials.

        The timestamps are the raw stamps as received (with ``fit_clock``, the default) or
        the samples' times (without)."""
        x = np.asarray(samples)
        ts = np.ascontiguousarray(timestamps, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_stream_channels:
            raise ValueError(
                f"chunk must have shape (n, {self.n_stream_channels}), got {np.shape(samples)}")
        if ts.shape != (x.shape[0],):
            raise ValueError(f"timestamps must have shape ({x.shape[0]},), got {ts.shape}")
        n = x.shape[0]
        self._chunk_n = n
        if n == 0:
            return self._complete()
        if self.clock is None:
            return self._push_times(x, ts)
        if self._fitted.shape[0] < n:
            self._fitted = np.empty(max(n, 2 * self._fitted.shape[0], 256))
        fitted = self._fitted[:n]
        out: list[Trial] = []
        pos = 0
        while pos < n:
            m = self.clock.update(ts[pos:], fitted[pos:])
            if m:
                out += self._write(x[pos:pos + m], fitted[pos:pos + m])
            pos += m
            if pos < n:  # the clock starts a new timeline at the next sample
                out += self._clock_reset()
        return out

    def _push_times(self, x: np.ndarray, ts: np.ndarray) -> list[Trial]:
        """Samples whose timestamps are their times: a step back is a clock reset."""
        n = x.shape[0]
        tol = self.params.gap_tolerance_ms / 1000.0
        if ts[0] < self.last_time_s - tol:
            return self._clock_reset() + self._push_times(x, ts)
        if n > 1:
            back = np.flatnonzero(ts[1:] < ts[:-1] - tol)
            if back.size:
                cut = int(back[0]) + 1
                return self._push_times(x[:cut], ts[:cut]) + self._push_times(x[cut:], ts[cut:])
        return self._write(x, ts)

    def _write(self, x: np.ndarray, ts: np.ndarray) -> list[Trial]:
        """Append samples with their times (final up to the clock's settled sample)."""
        n = x.shape[0]
        first = self.n_samples
        if self._trig_idx is not None:
            self._detect_ttl(np.ascontiguousarray(x[:, self._trig_idx], dtype=np.float64), first)
            emg = x[:, self._emg_idx]
        else:
            emg = x
        if emg.dtype == np.float64:
            emg = np.ascontiguousarray(emg)
        else:  # a signalling NaN (damaged float32 data) raises no warning: it stays NaN
            with np.errstate(invalid="ignore"):
                emg = np.ascontiguousarray(emg, dtype=np.float64)
        if not self._unit_scale_is_one:
            emg = emg * self._scale
        if self.artifact_triggers:
            self._detect_artifacts(emg, first)
        if self.clock is not None and self.clock.fix_from >= 0:
            self._refit_ring(self.clock.fix_from - self._abs0, first)
        # write in pieces no longer than the ring so nothing is overwritten unread
        start = 0
        while start < n:
            stop = min(n, start + self.capacity // 2)
            self._ring_seq += 1
            try:
                self._pos = self._k.ring_write(self._buf, self._ts, self._pos, self.capacity,
                                               emg[start:stop], ts[start:stop])
                self.n_samples += stop - start
            finally:
                self._ring_seq += 1
            self._set_ready()
            start = stop
            if start < n:
                trials = self._complete()
                self._update_mains()
                if trials:
                    self._overflow.extend(trials)
        out = self._overflow + self._complete() if self._overflow else self._complete()
        self._overflow = []
        # after the trials this chunk completes (a trial about to start judges the blocks
        # it needs first, in _complete): a block's work does not delay their results
        self._update_mains()
        return out

    def _set_ready(self) -> None:
        """Samples whose time is final: up to the clock's settled one (all without a clock)."""
        if self.clock is None:
            ready = self.n_samples
        else:
            ready = min(self.n_samples, max(self._n_ready, self.clock.settled - self._abs0))
        self._n_ready = ready
        if ready:
            self.last_time_s = float(self._ts[self._ring_row(ready - 1)])
            if self._sample_triggers:
                self._take_sample_triggers()

    def _ring_row(self, j: int) -> int:
        """Position in the ring of sample ``j`` (counted since the last reset)."""
        return (self._pos - (self.n_samples - j)) % self.capacity

    def _refit_ring(self, a: int, b: int) -> None:
        """The clock changed the times of samples ``a .. b - 1``: rewrite them in the ring."""
        a = max(a, self.n_samples - self.capacity, 0)
        if a >= b:
            return
        times = self.clock.times(self._abs0 + a, self._abs0 + b)
        rows = (self._pos - (self.n_samples - np.arange(a, b))) % self.capacity
        self._ring_seq += 1
        try:
            self._ts[rows] = times
            self._ts[rows + self.capacity] = times
        finally:
            self._ring_seq += 1

    def _take_sample_triggers(self) -> None:
        """Triggers found on samples whose time has become final are registered now."""
        keep = []
        for j, stim, shift in self._sample_triggers:
            if j < self._n_ready:
                if self.n_samples - j <= self.capacity:
                    self.add_trigger(float(self._ts[self._ring_row(j)]) + shift, stim)
            else:
                keep.append((j, stim, shift))
        self._sample_triggers = keep

    def finish(self) -> list[Trial]:
        """End of data: trials still waiting are returned as invalid (window incomplete)."""
        out: list[Trial] = []
        if self.clock is not None and self.n_samples:
            self.clock.finish()
            if self.clock.fix_from >= 0:
                self._refit_ring(self.clock.fix_from - self._abs0, self.n_samples)
            self._set_ready()
            out = self._complete()
        return out + self._finish_pending()

    def _finish_pending(self) -> list[Trial]:
        out = []
        for pend in self._pending:
            logger.warning("trial %d at %.4f s: the recording ends before its response window "
                           "is complete; marked invalid", pend.index, pend.time_s)
            out.append(self._invalid_trial(pend))
            self._release(pend)
        self._pending = []
        return out

    def _clock_reset(self) -> list[Trial]:
        if self.clock is None:
            logger.warning("EMG clock jumped back from %.4f s; restarting the buffer on the new "
                           "clock", self.last_time_s)
        out = self._finish_pending()
        self._ring_seq += 1  # odd: the ring restarts (`recent_samples` waits)
        self.n_samples = 0
        self._n_ready = 0
        self._pos = 0
        self._sample_triggers = []
        if self.clock is not None:
            self._abs0 = self.clock.n_samples
        self.last_time_s = -math.inf
        self._ring_seq += 1
        self.n_clock_resets += 1
        if self._mains is not None:  # a new timeline: its blocks count from its first sample
            from mepkit.dsp.mains import MainsDetector

            self._mains = MainsDetector(self.sfreq_hz)
        return out

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def recent_samples(self, duration_s: float, channel: int | str = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
        """A copy of the newest ``duration_s`` of one channel (µV) and their timestamps.

        Safe to call from another thread while `push` runs in the acquisition thread: the
        ring carries a sequence number that is odd while it is written, and a copy taken
        across a write is taken again. It costs `push` two integer increments.

        Parameters
        ----------
        duration_s : float
            How much history; at most the ring's length (``buffer_s``).
        channel : int or str
            Index among `channels` or its label.

        Returns
        -------
        samples_uv : ndarray, shape (n,)
        timestamps_s : ndarray, shape (n,)
            Fewer than ``duration_s`` worth when less has arrived; empty before any data.
        """
        c = self.channel_index(channel)
        want = max(0, int(math.ceil(float(duration_s) * self.sfreq_hz)))
        while True:
            seq = self._ring_seq
            if seq & 1:  # a write is under way in the other thread (kernel without the GIL)
                time.sleep(0)
                continue
            k = min(want, self.n_samples, self.capacity)
            hi = self._pos + self.capacity
            x = self._buf[hi - k:hi, c].copy()
            t = self._ts[hi - k:hi].copy()
            if self._ring_seq == seq:
                return x, t

    def channel_index(self, channel: int | str) -> int:
        """Index in `channels` of a channel label (or a valid index); ValueError otherwise."""
        if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
            if 0 <= int(channel) < len(self.channels):
                return int(channel)
            raise ValueError(f"channel index {channel} out of range 0..{len(self.channels) - 1}")
        if channel in self.channels:
            return self.channels.index(channel)
        raise ValueError(f"channel {channel!r} is not measured; the channels are "
                         f"{list(self.channels)}")

    @property
    def next_index(self) -> int:
        """Index the next trial will get."""
        return self._next_index

    def copy_epoch(self, time_s: float, channels: np.ndarray, pre_ms: float, post_ms: float
                   ) -> tuple[float, np.ndarray] | None:
        """A copy of the raw samples (µV) around ``time_s`` still in the ring buffer.

        For displays (the live view): no filtering, a few microseconds. ``channels`` are
        indices into `channels`. Returns ``(t0_ms, samples[n, len(channels)])`` with
        ``t0_ms`` the first sample's time relative to ``time_s``, or None when the
        stimulus or the pre-roll is not (or no longer) in the buffer. The epoch ends
        early when its last samples have not arrived yet.
        """
        data, ts, held = self._view()
        if held == 0:
            return None
        s0 = int(np.searchsorted(ts, time_s, side="left"))
        lo = s0 - int(math.ceil(pre_ms / self.dt_ms))
        hi = min(held, s0 + int(math.floor(post_ms / self.dt_ms)) + 1)
        if lo < 0 or s0 >= held:
            return None
        return (float(ts[lo]) - time_s) * 1000.0, data[lo:hi, channels]

    # ------------------------------------------------------------------ internals
    def _detect_ttl(self, trig: np.ndarray, first: int) -> None:
        n = self._k.ttl_rising_edges(trig, self.params.ttl_threshold, self._refractory,
                                     self._ttl_state, self._edges)
        if n == self._edges.shape[0]:  # pathological: very many edges in one chunk
            logger.warning("more than %d TTL edges in one chunk; extra edges ignored", n)
        for i in self._edges[:n]:
            self._sample_triggers.append((first + int(i), StimInfo(label="TTL"), 0.0))

    def _detect_artifacts(self, emg: np.ndarray, first: int) -> None:
        n = self._k.artifact_onsets(emg, self.params.artifact_step_uv, self._refractory,
                                    self._art_state, self._art_prev, self._edges)
        half = 0.5 / self.sfreq_hz
        for i in self._edges[:n]:
            self._sample_triggers.append((first + int(i), StimInfo(label="artifact"), -half))

    def update_monitor(self) -> np.ndarray:
        """Run the background monitor over the samples pushed since the last call (at most
        one buffer); returns ``monitor_rms_uv``. Off the push path: a live session calls it
        a few times a second, when no trial waits, so it never delays a result."""
        if self._monitor is None:
            return self.monitor_rms_uv
        if self._n_ready < self._monitor_done:  # a clock reset restarted the buffer
            self._monitor_done = 0
        new = min(self._n_ready - self._monitor_done, self.capacity)
        if new > 0:
            data, _, held = self._view()
            y = self._monitor.process(data[held - new:])
            self._monitor_tail = np.concatenate([self._monitor_tail, y])[-self._monitor_n:]
            self.monitor_rms_uv = np.sqrt(np.mean(self._monitor_tail ** 2, axis=0))
            self._monitor_done = self._n_ready
        return self.monitor_rms_uv

    def _view(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The ring's samples whose time is final (oldest first) and how many."""
        tail = self.n_samples - self._n_ready
        held = max(0, min(self._n_ready, self.capacity - tail))
        hi = self._pos + self.capacity - tail
        lo = hi - held
        return self._buf[lo:hi], self._ts[lo:hi], held

    def _invalid_trial(self, pend: _Pending, reason: str = "invalid") -> Trial:
        """A trial that is not measured: no numbers, ``reason`` on every channel."""
        n_ch = len(self.channels)
        nan = np.full(n_ch, np.nan)
        return Trial(pend.index, pend.time_s, pend.stim, self.channels, nan.copy(), nan.copy(),
                     nan.copy(), nan.copy(), nan.copy(), np.zeros(n_ch, dtype=bool),
                     (reason,) * n_ch, onset_ambiguous=np.zeros(n_ch, dtype=bool))

    def _complete(self) -> list[Trial]:
        """Measure what the samples so far allow.

        A trial whose whole window is already here (a late marker, a large chunk) is
        measured at once, with the others that are; a trial whose stimulus sample is here
        but not yet its whole window is started and advanced over the samples that
        arrived, so when its last sample comes little work is left (its results are the
        same bit for bit)."""
        if not self._pending or self._n_ready == 0:
            return []
        data, ts, held = self._view()
        if held <= 0:
            return []
        base = self._n_ready - held  # index of the view's first row (since the last reset)
        ready: list[tuple[_Pending, int]] = []
        done: list[_Pending] = []
        late: list[_Pending] = []
        keep: list[_Pending] = []
        for n_seen, pend in enumerate(self._pending):
            if pend.state is None:
                if pend.time_s > self.last_time_s:
                    # sorted: the stimulus sample of this and every later trigger is to come
                    keep.extend(self._pending[n_seen:])
                    break
                s0 = int(np.searchsorted(ts, pend.time_s, side="left"))
                gone = s0 == 0 and base > 0 and pend.time_s < ts[0]
                if not gone:
                    self._update_mains()  # every block before its stimulus is judged
                if gone or not self._begin(pend, s0, ts, base, data):
                    self.n_late_triggers += 1
                    logger.warning("trial %d at %.4f s: marker arrived after its background left "
                                   "the %.1f s buffer; rejected (late)", pend.index, pend.time_s,
                                   self.capacity / self.sfreq_hz)
                    late.append(pend)
                    continue
                if pend.abs0 - base + pend.state[0][self._kf.W_NEED] <= held:
                    # its whole window is here: measured at once with the others that are
                    ready.append((pend, s0))
                    continue
            if self._advance(pend):
                done.append(pend)
            else:
                keep.append(pend)
        self._pending = keep
        out = [self._invalid_trial(p, "late") for p in late]
        if ready:
            out.extend(self._measure(ready, data, ts))
        for pend in done:
            out.append(self._finish_started(pend, ts, base))
        out.sort(key=lambda t: (t.stim_time_s, t.index))
        return out

    # ---------------------------------------------- trials measured as samples arrive
    def _take_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._state_pool:
            return self._state_pool.pop()
        n_ch = len(self.channels)
        return (np.zeros(self._kf.N_W, dtype=np.int64),
                np.zeros((self._design.state_rows, n_ch)), np.zeros((self._length, n_ch)))

    def _release(self, pend: _Pending) -> None:
        if pend.state is not None:
            self._state_pool.append(pend.state)
            pend.state = None

    def _outputs(self) -> tuple[np.ndarray, ...]:
        """Output arrays of one trial for `trial_finish` (five features, detected, reject,
        onset_ambiguous)."""
        n_ch = len(self.channels)
        f = np.empty((5, 1, n_ch))
        return (f[0], f[1], f[2], f[3], f[4], np.zeros((1, n_ch), dtype=np.bool_),
                np.zeros((1, n_ch), dtype=np.int64), np.zeros((1, n_ch), dtype=np.bool_))

    def _begin(self, pend: _Pending, s0: int, ts: np.ndarray, base: int,
               data: np.ndarray) -> bool:
        """Start measuring a trial whose stimulus sample (view row ``s0``) has arrived.

        False (and nothing started) when rows the measurement needs have already left the
        buffer: a late trial is never measured on a partial background. Rows before the
        first sample of the stream never existed: such a trial is measured on what there is.
        """
        a = s0 - self._pre_n
        t_s0 = float(ts[s0])
        pend.abs0 = base + a
        pend.t0_ms = (t_s0 - pend.time_s) * 1000.0 - self._pre_n * self.dt_ms
        pend.stim_in_gap = t_s0 - pend.time_s > self._gap_s
        pend.state = self._take_state()
        pend.design = self._design_at(base + s0, data, base)
        w, st, _ = pend.state
        absent = max(0, -pend.abs0)  # rows before the stream's first sample
        self._kf.trial_init(pend.t0_ms, absent, self._length, pend.design.prm, w, st)
        if pend.abs0 + w[self._kf.W_LO] < base:
            self._release(pend)
            return False
        return True

    def _advance(self, pend: _Pending) -> bool:
        """Process the trial's rows that arrived; True when every row it needs is here."""
        avail = self._n_ready - pend.abs0
        d = pend.design
        w, st, xs = pend.state
        complete = avail >= w[self._kf.W_NEED]
        row0 = self._pos + self.capacity - self.n_samples + pend.abs0
        self._kf.trial_advance(self._buf, row0, min(avail, self._length), w, st, xs,
                               d.prm[0], d.basis, d.dkey, d.lower, d.xtx, d.lp_sos, d.lp_zi,
                               -1 if complete else max(CATCH_UP_ROWS, 2 * self._chunk_n))
        return complete

    def _finish_started(self, pend: _Pending, ts: np.ndarray, base: int) -> Trial:
        a = pend.abs0 - base
        seg = ts[max(a, 0):a + pend.state[0][self._kf.W_NEED]]
        gapped = self._epoch_gap(pend, seg, pend.stim_in_gap)
        out = self._outputs()
        w, st, xs = pend.state
        self._kf.trial_finish(0, pend.t0_ms, gapped, w, st, xs, pend.design.prm, *out)
        self._release(pend)
        return self._trial(pend, out, 0, float(seg[-1]))

    def _epoch_gap(self, pend: _Pending, seg: np.ndarray, stim_in_gap: bool) -> bool:
        """A timestamp gap (or step back) inside the epoch, or no sample near the stimulus."""
        gapped = bool(stim_in_gap or self._k.has_gap(seg, self._gap_s))
        if gapped:
            self.n_gaps += 1
            logger.warning("trial %d at %.4f s: timestamp gap in its epoch; rejected (gap)",
                           pend.index, pend.time_s)
        return gapped

    def _trial(self, pend: _Pending, out: tuple[np.ndarray, ...], k: int,
               last_sample_s: float) -> Trial:
        amp, lat, area, bg, peak, det, rej, amb = out
        names = REASON_NAMES
        return Trial(pend.index, pend.time_s, pend.stim, self.channels, amp[k], lat[k],
                     area[k], bg[k], peak[k], det[k],
                     tuple([names[c] for c in rej[k].tolist()]), onset_ambiguous=amb[k],
                     last_sample_s=last_sample_s)

    def _measure(self, ready, data, ts) -> list[Trial]:
        """Measure trials whose whole window is in the buffer, together (one call per
        feature Design: per mains decision)."""
        from mepkit.dsp.features import FEATURES, measure_rows

        n_tr = len(ready)
        start = np.empty(n_tr, dtype=np.int64)
        t0 = np.empty(n_tr)
        first = np.zeros(n_tr, dtype=np.int64)
        gap = np.zeros(n_tr, dtype=bool)
        last_ts = np.empty(n_tr)
        designs = []
        for k, (pend, s0) in enumerate(ready):
            a = s0 - self._pre_n  # the epoch is rows a .. a+length of the ring view
            start[k] = a
            first[k] = max(0, -a)
            seg = ts[max(a, 0):a + pend.state[0][self._kf.W_NEED]]
            t0[k] = pend.t0_ms
            gap[k] = self._epoch_gap(pend, seg, pend.stim_in_gap)
            last_ts[k] = seg[-1]
            designs.append(pend.design)
            self._release(pend)
        trials: list[Trial | None] = [None] * n_tr
        for d in {id(d): d for d in designs}.values():
            sel = np.array([k for k in range(n_tr) if designs[k] is d], dtype=np.int64)
            res = measure_rows(data, start[sel], self._length, self.sfreq_hz, d.params,
                               tmin_ms=t0[sel], first=first[sel], gap=gap[sel], design=d)
            out = tuple(res[k] for k in FEATURES) + (res["detected"], res["reject_code"],
                                                     res["onset_ambiguous"])
            for j, k in enumerate(sel.tolist()):
                trials[k] = self._trial(ready[k][0], out, j, float(last_ts[k]))
        return trials  # type: ignore[return-value]
