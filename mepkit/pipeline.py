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
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from mepkit.markers import StimInfo, parse_marker
from mepkit.dsp.features import REASON_NAMES
from mepkit.params import Params

__all__ = ["Pipeline", "Trial"]

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
    #: Timestamp (EMG clock) of the last sample the measurement needed.
    last_sample_s: float = math.nan
    #: Time (EMG clock) at which the measurement became available (live sources).
    available_s: float = math.nan

    @property
    def rejected(self) -> np.ndarray:
        return np.array([bool(r) for r in self.reject_reason])

    def rows(self, file: str = "") -> list[dict[str, Any]]:
        """One dict per channel with the trial-table columns."""
        s = self.stim
        out = []
        for c, name in enumerate(self.channels):
            out.append({
                "file": file, "trial": self.index, "channel": name,
                "stim_time_s": self.stim_time_s, "label": s.label,
                "intensity_pct_mso": s.intensity_pct_mso, "x_mm": s.x_mm, "y_mm": s.y_mm,
                "site": s.site, "hemisphere": s.hemisphere, "condition": s.condition,
                "amplitude_uv": float(self.amplitude_uv[c]),
                "latency_ms": float(self.latency_ms[c]),
                "area_uv_ms": float(self.area_uv_ms[c]),
                "background_rms_uv": float(self.background_rms_uv[c]),
                "peak_time_ms": float(self.peak_time_ms[c]),
                "detected": bool(self.detected[c]),
                "rejected": bool(self.reject_reason[c]),
                "reject_reason": self.reject_reason[c],
                "last_sample_s": self.last_sample_s,
                "available_s": self.available_s,
            })
        return out


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
        A TTL channel in the stream: rising edges are pulses, and it is not measured.
    artifact_triggers : bool
        Detect pulses from the stimulus artifact on the EMG channels.
    marker_filter : str, optional
        Regular expression: only markers it matches (``re.search``) are pulses.
    buffer_s : float
        Raw history kept; a marker may arrive this late (minus the epoch length).
    monitor : bool
        Run the continuous display/background filter and keep ``monitor_rms_uv``.
    fit_clock : bool
        Time the samples on the stream's fitted clock (`mepkit.sources.clock.ClockModel`:
        raw LSL stamps in, as amplifier apps and liblsl make them). False: the timestamps
        pushed are the samples' times already (a replay of fitted times, ideal stamps).
    stream_name : str
        The stream's name, for the clock model's warnings.

    Notes
    -----
    With a fitted clock, samples whose time is still provisional (the first moments of a
    stream, late stamps not yet known to be a stall or a loss) are buffered but not used
    by any trial until their time is final; ``clock`` holds the model, its mapping rows,
    gaps and resets.
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
        self._trig_idx: int | None = None
        if trigger_channel is not None:
            if isinstance(trigger_channel, (int, np.integer)):
                if not 0 <= int(trigger_channel) < n_all:
                    raise ValueError(f"trigger channel index {trigger_channel} out of range 0..{n_all - 1}")
                self._trig_idx = int(trigger_channel)
            elif trigger_channel in labels:
                self._trig_idx = labels.index(trigger_channel)
            else:
                raise ValueError(
                    f"trigger channel {trigger_channel!r} not found; channels are {labels}")
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
        self._pending: list[_Pending] = []
        self._overflow: list[Trial] = []
        self._next_index = 0
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
        from mepkit.dsp import _features, _triggers
        from mepkit.dsp.features import Design

        self._k = _triggers
        self._kf = _features
        self._design = Design(p, self.sfreq_hz, need)
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
                     self.sfreq_hz, self.params, t0_ms=-self._pre_n * self.dt_ms, design=d)
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
        emg = np.ascontiguousarray(emg, dtype=np.float64)
        if not self._unit_scale_is_one:
            emg = emg * self._scale
        if self.artifact_triggers:
            self._detect_artifacts(emg, first)
        if self._monitor is not None:
            self._update_monitor(emg)
        if self.clock is not None and self.clock.fix_from >= 0:
            self._refit_ring(self.clock.fix_from - self._abs0, first)
        # write in pieces no longer than the ring so nothing is overwritten unread
        start = 0
        while start < n:
            stop = min(n, start + self.capacity // 2)
            self._pos = self._k.ring_write(self._buf, self._ts, self._pos, self.capacity,
                                           emg[start:stop], ts[start:stop])
            self.n_samples += stop - start
            self._set_ready()
            start = stop
            if start < n:
                trials = self._complete()
                if trials:
                    self._overflow.extend(trials)
        out = self._overflow + self._complete() if self._overflow else self._complete()
        self._overflow = []
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
        self._ts[rows] = times
        self._ts[rows + self.capacity] = times

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
        self.n_samples = 0
        self._n_ready = 0
        self._pos = 0
        self._sample_triggers = []
        if self.clock is not None:
            self._abs0 = self.clock.n_samples
        self.last_time_s = -math.inf
        self.n_clock_resets += 1
        return out

    @property
    def n_pending(self) -> int:
        return len(self._pending)

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

    def _update_monitor(self, emg: np.ndarray) -> None:
        y = self._monitor.process(emg)
        tail = y[-min(len(y), max(1, int(0.2 * self.sfreq_hz))):]
        ms = np.mean(tail * tail, axis=0)
        prev = self.monitor_rms_uv
        alpha = min(1.0, len(y) / (0.2 * self.sfreq_hz))
        self.monitor_rms_uv = np.sqrt(ms) if np.all(np.isnan(prev)) else np.sqrt(
            (1 - alpha) * prev * prev + alpha * ms)

    def _view(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The ring's samples whose time is final (oldest first) and how many."""
        tail = self.n_samples - self._n_ready
        held = max(0, min(self._n_ready, self.capacity - tail))
        hi = self._pos + self.capacity - tail
        lo = hi - held
        return self._buf[lo:hi], self._ts[lo:hi], held

    def _invalid_trial(self, pend: _Pending) -> Trial:
        n_ch = len(self.channels)
        nan = np.full(n_ch, np.nan)
        return Trial(pend.index, pend.time_s, pend.stim, self.channels, nan.copy(), nan.copy(),
                     nan.copy(), nan.copy(), nan.copy(), np.zeros(n_ch, dtype=bool),
                     ("invalid",) * n_ch)

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
        invalid: list[_Pending] = []
        keep: list[_Pending] = []
        for n_seen, pend in enumerate(self._pending):
            if pend.state is None:
                if pend.time_s > self.last_time_s:
                    # sorted: the stimulus sample of this and every later trigger is to come
                    keep.extend(self._pending[n_seen:])
                    break
                s0 = int(np.searchsorted(ts, pend.time_s, side="left"))
                if s0 == 0 and base > 0 and pend.time_s < ts[0]:
                    self.n_late_triggers += 1
                    logger.warning("trial %d at %.4f s: marker arrived after its data left the "
                                   "%.1f s buffer; marked invalid", pend.index, pend.time_s,
                                   self.capacity / self.sfreq_hz)
                    invalid.append(pend)
                    continue
                self._begin(pend, s0, ts, base)
                if pend.abs0 - base + pend.state[0][self._kf.W_NEED] <= held:
                    # its whole window is here: measured at once with the others that are
                    ready.append((pend, s0))
                    continue
            if self._advance(pend):
                done.append(pend)
            else:
                keep.append(pend)
        self._pending = keep
        out = [self._invalid_trial(p) for p in invalid]
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
        """Output arrays of one trial for `trial_finish` (five features, detected, reject)."""
        n_ch = len(self.channels)
        f = np.empty((5, 1, n_ch))
        return (f[0], f[1], f[2], f[3], f[4], np.zeros((1, n_ch), dtype=np.bool_),
                np.zeros((1, n_ch), dtype=np.int64))

    def _begin(self, pend: _Pending, s0: int, ts: np.ndarray, base: int) -> None:
        """Start measuring a trial whose stimulus sample (view row ``s0``) has arrived."""
        a = s0 - self._pre_n
        t_s0 = float(ts[s0])
        pend.abs0 = base + a
        pend.t0_ms = (t_s0 - pend.time_s) * 1000.0 - self._pre_n * self.dt_ms
        pend.stim_in_gap = t_s0 - pend.time_s > self._gap_s
        pend.state = self._take_state()
        w, st, _ = pend.state
        self._kf.trial_init(pend.t0_ms, max(0, -a), self._length, self._design.prm, w, st)

    def _advance(self, pend: _Pending) -> bool:
        """Process the trial's rows that arrived; True when every row it needs is here."""
        avail = self._n_ready - pend.abs0
        d = self._design
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
        self._kf.trial_finish(0, pend.t0_ms, gapped, w, st, xs, self._design.prm, *out)
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
        amp, lat, area, bg, peak, det, rej = out
        names = REASON_NAMES
        return Trial(pend.index, pend.time_s, pend.stim, self.channels, amp[k], lat[k],
                     area[k], bg[k], peak[k], det[k],
                     tuple([names[c] for c in rej[k].tolist()]), last_sample_s=last_sample_s)

    def _measure(self, ready, data, ts) -> list[Trial]:
        """Measure trials whose whole window is in the buffer, together."""
        from mepkit.dsp.features import FEATURES, measure_rows

        n_tr = len(ready)
        start = np.empty(n_tr, dtype=np.int64)
        t0 = np.empty(n_tr)
        first = np.zeros(n_tr, dtype=np.int64)
        gap = np.zeros(n_tr, dtype=bool)
        last_ts = np.empty(n_tr)
        for k, (pend, s0) in enumerate(ready):
            a = s0 - self._pre_n  # the epoch is rows a .. a+length of the ring view
            start[k] = a
            first[k] = max(0, -a)
            seg = ts[max(a, 0):a + pend.state[0][self._kf.W_NEED]]
            t0[k] = pend.t0_ms
            gap[k] = self._epoch_gap(pend, seg, pend.stim_in_gap)
            last_ts[k] = seg[-1]
            self._release(pend)
        res = measure_rows(data, start, self._length, self.sfreq_hz, self.params, t0_ms=t0,
                           first=first, gap=gap, design=self._design)
        out = tuple(res[k] for k in FEATURES) + (res["detected"], res["reject_code"])
        return [self._trial(pend, out, k, float(last_ts[k])) for k, (pend, _) in enumerate(ready)]
