"""Live sessions: EMG and markers from LSL through the Pipeline into a record.

A `LiveSession` resolves the streams, then one background thread polls both inlets,
feeds the `Pipeline`, hands each measured trial to the caller (iteration with
`LiveSession.trials` and/or the ``on_trial`` callback) and appends raw samples,
markers, trials and events to the HDF5 record. See ``docs/live.md``.

Example
-------
>>> from mepkit.live import LiveSession                                   # doctest: +SKIP
>>> with LiveSession(emg="VirtualEMG", markers="TMSMarkers",
...                  record_path="s01.h5") as session:
...     for trial in session.trials(timeout=10):
...         print(trial.index, trial.amplitude_uv)
"""

from __future__ import annotations

import gc
import logging
import math
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from mepkit.errors import MepkitError
from mepkit.params import LIVE_TRIAL_COLUMN_KINDS, Params

if TYPE_CHECKING:
    from mepkit.pipeline import Trial

__all__ = ["LiveSession", "LiveStatus", "BackgroundLevel"]

logger = logging.getLogger("mepkit.live")

#: Longest wait for EMG data in liblsl when nothing arrived (markers are polled after it).
POLL_INTERVAL_S = 0.001
#: Flush the record at least this often while data arrives (seconds).
MAX_FLUSH_INTERVAL_S = 0.45
#: Flush earlier than that when no trial is waiting for its window, at most this often.
QUIET_FLUSH_INTERVAL_S = 0.2
#: A gap longer than this (seconds) is written as an ``outage`` event even if the
#: stream never went silent long enough to be declared lost.
OUTAGE_MIN_S = 0.5
#: A full garbage collection (all generations) at a quiet moment at most this often.
FULL_GC_INTERVAL_S = 30.0


@dataclass
class LiveStatus:
    """A snapshot of a live session (`LiveSession.status`)."""

    running: bool
    samples: int
    drops: int
    gaps: int
    outages: int
    lag_s: float
    markers: int
    trials: int
    detected: int
    rejected: int
    stream_lost: bool
    error: str | None = None
    #: Coil-position samples received (``positions=``) and trials left without a
    #: position because the position stream lagged or stopped.
    positions: int = 0
    positions_missing: int = 0
    #: Background EMG now, per channel: RMS (µV) of the monitor filter's output
    #: (``Params.monitor_band_hz`` band-pass and mains notches) over the last 0.2 s.
    background_rms_uv: tuple[float, ...] = ()

    def line(self) -> str:
        """A one-line summary for a terminal status line."""
        lag = f"{self.lag_s * 1e3:.1f} ms" if math.isfinite(self.lag_s) else "-"
        state = "LOST (waiting for the stream)" if self.stream_lost else (
            "running" if self.running else "stopped")
        pos = (f" | positions {self.positions} ({self.positions_missing} trials without)"
               if self.positions or self.positions_missing else "")
        bg = [v for v in self.background_rms_uv if math.isfinite(v)]
        if not bg:
            bgs = "-"
        elif len(bg) <= 4:
            bgs = "/".join(f"{v:.1f}" for v in bg) + " µV"
        else:
            bgs = f"max {max(bg):.1f} µV"
        return (f"{state} | samples {self.samples} | drops {self.drops} | gaps {self.gaps} | "
                f"lag {lag} | background {bgs} | markers {self.markers} | trials "
                f"{self.trials} (detected {self.detected}, rejected {self.rejected}){pos}")


@dataclass
class BackgroundLevel:
    """The target muscle's recent background EMG (`LiveSession.background_rms_uv`).

    ``rms_uv`` holds one RMS per block, oldest first, each after removing offset,
    linear trend and mains (the model the trial background is cleaned with), so it is
    voluntary EMG and noise, not mains or drift. ``newest_s`` is the timestamp of the
    newest sample (EMG clock), ``age_s`` how long ago that was.
    """

    rms_uv: np.ndarray
    newest_s: float
    age_s: float

    def below(self, limit_uv: float, n_blocks: int) -> bool:
        """``n_blocks`` blocks were measured and every one is at or below ``limit_uv``."""
        r = self.rms_uv
        return r.shape[0] >= n_blocks and bool(np.all(r[-n_blocks:] <= limit_uv))

    def above(self, limit_uv: float, n_blocks: int) -> bool:
        """``n_blocks`` blocks were measured and every one is at or above ``limit_uv``."""
        r = self.rms_uv
        return r.shape[0] >= n_blocks and bool(np.all(r[-n_blocks:] >= limit_uv))


def compute_block_rms_uv(samples_uv: np.ndarray, sfreq_hz: float, params: Params,
                         block_n: int, *, line_freq_hz: Any = "params") -> np.ndarray:
    """RMS of consecutive blocks of ``block_n`` samples (the newest last), each cleaned of
    offset, linear trend and mains harmonics by a least-squares fit.

    The same terms and rules as the trial background (docs/methods.md, step 5): trend
    for blocks of 20 ms or more, mains for 1.5 periods or more, harmonics below Nyquist.
    No low-pass, so it reads slightly higher than a trial's ``background_rms_uv``.
    A block with a non-finite sample gives NaN. The mains frequency is ``line_freq_hz``
    (default: the parameters'); ``"auto"`` not yet decided fits both 50 and 60 Hz.

    Returns
    -------
    ndarray, shape (n_blocks,)
        One value per complete block; samples older than the oldest complete block
        are left out.
    """
    x = np.asarray(samples_uv, dtype=np.float64)
    n_blocks = x.shape[0] // block_n if block_n > 0 else 0
    if n_blocks == 0:
        return np.zeros(0)
    y = x[x.shape[0] - n_blocks * block_n:].reshape(n_blocks, block_n).T
    line = params.line_freq_hz if line_freq_hz == "params" else line_freq_hz
    lines = (50.0, 60.0) if line == "auto" else (() if line is None else (float(line),))
    design, pinv = _block_design(block_n, float(sfreq_hz), lines, params.line_harmonics)
    finite = np.all(np.isfinite(y), axis=0)
    out = np.full(n_blocks, np.nan)
    if np.any(finite):
        yf = y[:, finite]
        r = yf - design @ (pinv @ yf)
        out[finite] = np.sqrt(np.mean(r * r, axis=0))
    return out


_DESIGNS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _block_design(block_n: int, sfreq_hz: float, lines: tuple[float, ...],
                  harmonics: int) -> tuple[np.ndarray, np.ndarray]:
    """Regressors of one block and their pseudo-inverse (cached: a gate asks often)."""
    key = (block_n, sfreq_hz, lines, harmonics)
    got = _DESIGNS.get(key)
    if got is None:
        t = np.arange(block_n) / sfreq_hz
        dur_s = block_n / sfreq_hz
        cols = [np.ones(block_n)]
        if dur_s >= 0.020:
            cols.append(t - t.mean())
        for f in lines:
            if f and dur_s * f >= 1.5:
                for h in range(1, harmonics + 1):
                    if h * f < sfreq_hz / 2:
                        cols.append(np.cos(2 * np.pi * h * f * t))
                        cols.append(np.sin(2 * np.pi * h * f * t))
        design = np.stack(cols, axis=1)
        got = _DESIGNS[key] = (design, np.linalg.pinv(design))
    return got


_END = object()


def one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (HDF5 messages span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class _GcHold:
    """Automatic garbage collection is paused while any live session runs.

    A collection stops every Python thread while it runs: about 1 ms for generation 1
    and tens of ms for a full one in a process that imported numpy, h5py and pandas,
    which would delay a result by as much whenever it fell while a trial waits for its
    window. The objects that exist when the first session starts are frozen
    (``gc.freeze``: never scanned again), and sessions collect the young generations
    at quiet moments, when no trial is waiting (`LiveSession._housekeeping`).
    """

    holders = 0
    was_enabled = True
    lock = threading.Lock()

    @classmethod
    def acquire(cls) -> None:
        with cls.lock:
            if cls.holders == 0:
                cls.was_enabled = gc.isenabled()
                gc.collect()
                gc.freeze()
                gc.disable()
            cls.holders += 1

    @classmethod
    def release(cls) -> None:
        with cls.lock:
            cls.holders -= 1
            if cls.holders == 0:
                gc.unfreeze()
                if cls.was_enabled:
                    gc.enable()


class LiveSession:
    """Measure MEPs live from LSL streams, recording everything as it goes.

    Parameters
    ----------
    emg : str or pylsl.StreamInfo
        The EMG stream: its name (resolved with ``emg_type`` and ``source_id``) or a
        resolved ``StreamInfo``.
    markers : str or pylsl.StreamInfo, optional
        The marker stream (name or ``StreamInfo``): each marker is a pulse (JSON
        markers carry intensity, site...; see `mepkit.markers`). Optional with a
        ``trigger_channel`` or ``artifact_triggers``.
    trigger_channel : str or int, optional
        A TTL channel of the EMG stream whose rising edges are pulses.
    params : Params, optional
        Measurement parameters.
    record_path : str or os.PathLike, optional
        The HDF5 record to write (none if not given).
    subject, session : dict or str, optional
        Facts stored in the record (a string is the identifier).
    overwrite : bool
        Replace an existing record.
    on_trial : callable, optional
        ``on_trial(trial)`` is called in the acquisition thread for every trial, in
        order, as soon as it is measured. Keep it short; an exception in it stops
        the session like any background error.
    emg_type : str or None
        The EMG stream's type must be this (``None``: any).
    source_id, marker_source_id : str, optional
        Narrow the resolution of each stream.
    unit : str, optional
        Unit of the EMG samples (V, mV, µV), overriding the stream description.
    marker_filter : str, optional
        Regular expression; only markers it matches are pulses.
    artifact_triggers : bool
        Detect pulses from the stimulus artifact.
    buffer_s : float
        Raw history kept: a marker may arrive this late.
    resolve_timeout_s : float
        How long to look for each stream.
    poll_interval_s : float
        When nothing arrived, the acquisition thread waits in liblsl up to this long for
        EMG data (it wakes as soon as a sample arrives); markers are polled at least this
        often.
    outage_after_s : float
        Silence after which the EMG stream counts as lost (it is re-joined when its
        outlet comes back with the same source_id).
    positions : str or pylsl.StreamInfo, optional
        A neuronavigation stream of coil positions (channels ``x_mm``, ``y_mm``, optionally
        ``z_mm``; any rate). Each trial whose marker gives no position gets the last
        position sample at or before its pulse, if at most ``position_max_age_s`` old;
        a marker's own ``x_mm``/``y_mm`` win. The stream is recorded raw.
    positions_source_id : str, optional
        Narrow the resolution of the position stream.
    position_max_age_s : float
        A position sample older than this at the pulse is not used: the trial gets no
        position, a warning names the stream and the age, and
        `LiveStatus.positions_missing` counts it (default
        `mepkit.sources.positions.POSITION_MAX_AGE_S`).

    Notes
    -----
    All times are on the EMG clock: the EMG stream's fitted clock
    (`mepkit.sources.clock`; its raw stamps go to the record as received, with the
    mapping); markers are mapped onto it with both inlets' time corrections
    (`mepkit.sources.lsl`).
    Each trial's ``available_s`` is ``pylsl.local_clock()`` on the EMG clock at the
    moment its measurement was done, ``last_sample_s`` the timestamp of the last
    sample the measurement needed.

    An error in the acquisition thread stops the session (the record is closed, with what
    was measured) and `error` holds it; like `concurrent.futures`, it is raised again in
    the caller by `trials`, `next_trial`, `wait`, `run` and at the end of the ``with``
    block, so a script never ends quietly with partial results.
    """

    def __init__(self, emg: Any, markers: Any = None, *,
                 trigger_channel: str | int | None = None, params: Params | None = None,
                 record_path: str | os.PathLike | None = None,
                 subject: dict[str, Any] | str | None = None,
                 session: dict[str, Any] | str | None = None, overwrite: bool = False,
                 on_trial: Callable[["Trial"], Any] | None = None, emg_type: str | None = "EMG",
                 source_id: str | None = None, marker_source_id: str | None = None,
                 unit: str | None = None, marker_filter: str | None = None,
                 artifact_triggers: bool = False, buffer_s: float = 4.0,
                 resolve_timeout_s: float = 5.0, poll_interval_s: float = POLL_INTERVAL_S,
                 outage_after_s: float = 1.0, extra_trial_columns: dict[str, Any] | None = None,
                 positions: Any = None, positions_source_id: str | None = None,
                 position_max_age_s: float | None = None) -> None:
        from mepkit.sources.positions import POSITION_MAX_AGE_S

        if (markers is None and marker_source_id is None and trigger_channel is None
                and not artifact_triggers):
            raise ValueError("no source of pulses: give markers=, trigger_channel= or "
                             "artifact_triggers=True")
        if params is not None and not isinstance(params, Params):
            raise TypeError(f"params must be a mepkit Params, got {type(params).__name__}")
        self.params = params if params is not None else Params()
        self._emg_spec, self._marker_spec = emg, markers
        self.trigger_channel = trigger_channel
        self.record_path = os.fspath(record_path) if record_path is not None else None
        if self.record_path and os.path.exists(self.record_path) and not overwrite:
            from mepkit.records import RecordExistsError

            raise RecordExistsError(f"{self.record_path}: file exists; choose another name or "
                                    f"pass overwrite=True (--overwrite)")
        self.subject = {"identifier": subject} if isinstance(subject, str) else dict(subject or {})
        self.session = {"identifier": session} if isinstance(session, str) else dict(session or {})
        self.overwrite = overwrite
        self.on_trial = on_trial
        self.emg_type = emg_type
        self.source_id, self.marker_source_id = source_id, marker_source_id
        self.unit = unit
        self.marker_filter = marker_filter
        self.artifact_triggers = artifact_triggers
        self.buffer_s = float(buffer_s)
        self.resolve_timeout_s = float(resolve_timeout_s)
        self.poll_interval_s = float(poll_interval_s)
        self.outage_after_s = float(outage_after_s)
        self.extra_trial_columns = dict(extra_trial_columns or {})
        self._position_spec, self.positions_source_id = positions, positions_source_id
        self.position_max_age_s = (POSITION_MAX_AGE_S if position_max_age_s is None
                                   else float(position_max_age_s))
        if not (math.isfinite(self.position_max_age_s) and self.position_max_age_s > 0):
            raise ValueError(f"position_max_age_s must be > 0 s, got {position_max_age_s!r}")
        self.position_inlet = None
        self._track = None
        self._n_positions = self._n_positions_missing = 0
        self._rec_positions: list[tuple[np.ndarray, np.ndarray]] = []

        self.emg = None
        self.marker_inlet = None
        self.pipeline = None
        self.writer = None
        self.error: BaseException | None = None
        self.started_local_s = math.nan
        self.stopped_local_s = math.nan
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # the record is written by the acquisition thread and, for protocol steps and
        # results, by the caller's thread (`append_protocol_step`)
        self._write_lock = threading.RLock()
        self._n_trials = self._n_detected = self._n_rejected = 0
        self._n_markers = 0
        self._latencies_s: list[float] = []
        self._closed = False
        # pending record writes (worker thread only)
        self._raw: list[tuple[np.ndarray, np.ndarray]] = []
        self._rec_markers: list[tuple[float, str]] = []
        self._rec_trials: list[Trial] = []
        self._rec_events: list[tuple[float, str, Any]] = []
        self._n_mains = 0
        self._rec_clock: list[np.ndarray] = []
        #: Stream index at which the EMG stream came back after an outage, until the gap
        #: it left is found (-1: none pending).
        self._back_at = -1
        self._last_flush = self._last_full_gc = 0.0
        # the Pipeline, built in the background (`_build_pipeline`), and what arrived before
        self._warm: threading.Thread | None = None
        self._pending_pipeline: Any = None
        self._warm_error: BaseException | None = None
        self._opener_error: BaseException | None = None
        self._backlog: list[tuple[np.ndarray, np.ndarray]] = []
        self._backlog_markers: list[tuple[np.ndarray, list[str]]] = []
        self._live_from_local_s = math.nan
        self._stored_data = False  # the first samples are written at once
        self._ready = threading.Event()  # measuring, or stopped

    @property
    def _fitted_clock(self):
        """The EMG stream's clock model (`mepkit.sources.clock.ClockModel`), once measuring."""
        return self.pipeline.clock if self.pipeline is not None else None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LiveSession":
        """Resolve and open the streams, create the record, start the acquisition thread.

        Samples are recorded as soon as the streams are open; the measurement kernels load
        meanwhile, and `start` returns when they are ready (what arrived before is measured
        then). Raises `StreamNotFoundError` / `StreamFormatError` / `ValueError` here, in
        the caller, for problems found before acquisition starts.
        """
        if self._thread is not None:
            return self
        if self._closed:
            raise MepkitError("this LiveSession was stopped; create a new one")
        try:
            self._open()
        except BaseException:
            self._close_resources()
            raise
        self._stop.clear()
        self._last_flush = self._last_full_gc = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="mepkit-live", daemon=True)
        self.started_local_s = self._local_clock()
        _GcHold.acquire()  # released by the thread when it ends
        try:
            self._thread.start()
        except BaseException:
            _GcHold.release()
            raise
        # samples are recorded from now on; return when they are measured too, so a pulse
        # fired after start() is measured live
        self._ready.wait()
        if self.error is not None:
            self._thread.join()
            self._closed = True
            raise self.error
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop acquisition, write what is left (waiting trials as invalid), close the record."""
        self._stop.set()
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(timeout_s)
            if t.is_alive():
                logger.error("the acquisition thread did not stop within %.0f s", timeout_s)
        if t is None:
            self._close_resources()
        self._closed = True

    close = stop

    def __enter__(self) -> "LiveSession":
        return self.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.stop()
        if exc_type is None:  # an exception already on its way is not hidden
            self._maybe_raise()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def measuring(self) -> bool:
        """Whether the Pipeline is ready (its kernels load in the background after `start`;
        samples and markers that arrive meanwhile are recorded and measured then)."""
        return self.pipeline is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the session stops (error, `stop`) or ``timeout``; True if stopped."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        self._maybe_raise()
        return not self.running

    def run(self, duration_s: float | None = None) -> None:
        """Acquire for ``duration_s`` seconds (or until stopped), then stop."""
        self.start()
        try:
            deadline = None if duration_s is None else time.monotonic() + duration_s
            while self.running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._thread.join(0.1 if left is None else min(0.1, left))
        finally:
            self.stop()
        self._maybe_raise()

    # ------------------------------------------------------------------ results
    def trials(self, timeout: float | None = None) -> Iterator["Trial"]:
        """Yield trials as they are measured.

        Ends when no trial came for ``timeout`` seconds (``None``: wait forever) or
        when the session stopped and every trial was yielded.
        """
        if self._thread is None:
            raise MepkitError("the session is not started: use `with LiveSession(...) as "
                              "session:` or call session.start() first")
        while True:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                return
            if item is _END:
                self._queue.put(_END)  # for other iterators
                self._maybe_raise()
                return
            yield item

    def next_trial(self, timeout: float | None = None) -> "Trial | None":
        """The next trial, or None after ``timeout`` seconds / when the session ended."""
        for trial in self.trials(timeout=timeout):
            return trial
        return None

    @property
    def status(self) -> LiveStatus:
        emg = self.emg
        with self._lock:
            n_tr, n_det, n_rej = self._n_trials, self._n_detected, self._n_rejected
        return LiveStatus(
            running=self.running,
            samples=emg.n_samples if emg else 0,
            drops=self._fitted_clock.n_missing if self._fitted_clock is not None else 0,
            gaps=self._fitted_clock.n_gaps if self._fitted_clock is not None else 0,
            outages=emg.n_outages if emg else 0,
            lag_s=emg.lag_s() if emg else math.nan,
            markers=self._n_markers, trials=n_tr, detected=n_det, rejected=n_rej,
            stream_lost=bool(emg.lost) if emg else False,
            error=None if self.error is None else one_line(self.error),
            background_rms_uv=tuple(float(v) for v in self.pipeline.monitor_rms_uv)
            if self.pipeline is not None else (),
            positions=self._n_positions, positions_missing=self._n_positions_missing)

    @property
    def latencies_s(self) -> np.ndarray:
        """``available_s - last_sample_s`` of every trial measured so far."""
        with self._lock:
            return np.asarray(self._latencies_s, dtype=np.float64)

    @property
    def channels(self) -> tuple[str, ...]:
        """The measured EMG channels (after `start`)."""
        return self.pipeline.channels if self.pipeline is not None else ()

    def now_s(self) -> float:
        """Now on the EMG clock (the clock of trial and record times)."""
        self._check_started("now_s")
        return self.emg.to_emg_clock(self._local_clock())

    def background_rms_uv(self, channel: int | str, duration_s: float = 0.5,
                          block_s: float = 0.1) -> BackgroundLevel:
        """The recent background EMG of one channel, for gating pulses on relaxation.

        Computed on demand in the caller's thread from the Pipeline's raw ring buffer
        (nothing is added to the per-chunk work): the newest ``duration_s`` split into
        blocks of ``block_s``, each cleaned as a trial's background is
        (`compute_block_rms_uv`).

        Parameters
        ----------
        channel : int or str
            A measured channel (label or index in `channels`).
        duration_s, block_s : float
            Span looked at and block length (seconds).
        """
        self._check_started("background_rms_uv")
        pipe = self.pipeline
        x, ts = pipe.recent_samples(duration_s, channel)
        block_n = max(1, int(round(block_s * pipe.sfreq_hz)))
        line = pipe.line_freq_hz if pipe.n_mains_decisions else "params"  # as decided
        rms = compute_block_rms_uv(x, pipe.sfreq_hz, self.params, block_n, line_freq_hz=line)
        newest = float(ts[-1]) if ts.shape[0] else -math.inf
        return BackgroundLevel(rms, newest, self.now_s() - newest)

    def append_protocol_step(self, step: dict[str, Any], *, time_s: float | None = None) -> None:
        """Store one protocol step in the record now (any thread).

        ``time_s`` on the EMG clock (default: now). Raises `MepkitError` when the session
        has no record or its record is already closed (the session stopped).
        """
        with self._write_lock:
            w = self._open_writer("append_protocol_step")
            w.append_protocol_step(step, time_s=self.now_s() if time_s is None else time_s)

    def set_protocol_result(self, name: str, result: dict[str, Any], *,
                            time_s: float | None = None) -> None:
        """Store a protocol's result in the record (any thread); the last one per name wins."""
        with self._write_lock:
            w = self._open_writer("set_protocol_result")
            w.set_protocol_result(name, result, time_s=self.now_s() if time_s is None else time_s)

    def _open_writer(self, what: str) -> Any:
        if self.record_path is None:
            raise MepkitError(f"{what}: this session writes no record (give record_path=)")
        w = self.writer
        if w is None or w.closed:
            raise MepkitError(f"{what}: the record {self.record_path} is already closed "
                              f"(the session stopped)")
        return w

    def _check_started(self, what: str) -> None:
        if self.pipeline is None or self.emg is None:
            raise MepkitError(f"{what}: the session is not started: use `with LiveSession(...) "
                              f"as session:` or call session.start() first")

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _local_clock() -> float:
        import pylsl

        return pylsl.local_clock()

    def _resolve(self, spec: Any, source_id: str | None, type_: str | None) -> Any:
        from mepkit.sources.lsl import resolve_stream

        if isinstance(spec, str):
            return resolve_stream(name=spec, source_id=source_id,
                                  timeout_s=self.resolve_timeout_s)
        if spec is None and source_id is not None:
            return resolve_stream(source_id=source_id, timeout_s=self.resolve_timeout_s)
        if spec is None:
            return resolve_stream(type=type_, timeout_s=self.resolve_timeout_s)
        return spec  # a pylsl.StreamInfo

    def _open(self) -> None:
        from mepkit.sources.lsl import LslInlet, MarkerInlet, StreamFormatError
        from mepkit.errors import FileFormatError
        from mepkit.sources.recording import channel_index
        from mepkit.units import channel_scales

        info = self._resolve(self._emg_spec, self.source_id, self.emg_type or "EMG")
        self.emg = LslInlet(info, expected_type=self.emg_type,
                            gap_tolerance_ms=self.params.gap_tolerance_ms,
                            outage_after_s=self.outage_after_s)
        meta = self.emg.meta
        if self._marker_spec is not None or self.marker_source_id is not None:
            minfo = self._resolve(self._marker_spec, self.marker_source_id, "Markers")
            self.marker_inlet = MarkerInlet(minfo)
        if self._position_spec is not None or self.positions_source_id is not None:
            from mepkit.sources.positions import PositionInlet, PositionTrack

            pinfo = self._resolve(self._position_spec, self.positions_source_id, "Position")
            self.position_inlet = PositionInlet(pinfo)
            pi = self.position_inlet
            self._track = PositionTrack(pi.ix, pi.iy, pi.iz,
                                        history_s=max(10.0, 2.0 * self.buffer_s))
        # units
        try:
            trig_idx = channel_index(meta.channel_labels, self.trigger_channel)
        except ValueError as exc:
            raise StreamFormatError(f"stream {meta.name!r}: {exc}") from None
        try:
            scales, units, notes = channel_scales(
                meta.channel_labels, meta.units, unit_override=self.unit,
                source=f"stream {meta.name!r}", skip=trig_idx)
        except FileFormatError as exc:
            raise StreamFormatError(str(exc)) from None
        for note in notes:
            logger.warning("%s", note)
        self._units = units
        if trig_idx is not None and meta.n_channels < 2:
            raise StreamFormatError(f"stream {meta.name!r}: no EMG channel left besides the "
                                    f"trigger channel")
        if self.marker_filter:
            try:
                re.compile(self.marker_filter)
            except re.error as exc:
                raise ValueError(f"marker_filter {self.marker_filter!r} is not a valid regular "
                                 f"expression: {exc}") from None
        # Loading the kernels takes seconds (numba); it runs in its own thread while the
        # record is created and the streams are opened, and acquisition stores samples from
        # the start: what arrives before the Pipeline is ready waits in a backlog.
        kw = dict(sfreq_hz=meta.sfreq_hz, channel_labels=meta.channel_labels,
                  scale_to_uv=scales, trigger_channel=trig_idx,
                  artifact_triggers=self.artifact_triggers, marker_filter=self.marker_filter,
                  buffer_s=self.buffer_s, monitor=True, stream_name=meta.name)
        self._warm = threading.Thread(target=self._build_pipeline, args=(kw,),
                                      name="mepkit-live-warm-up", daemon=True)
        self._warm.start()
        if self.record_path:
            self._open_record()
        opener = None
        if self.marker_inlet is not None:  # both first time-corrections at once
            opener = threading.Thread(target=self._open_inlet, args=(self.marker_inlet,))
            opener.start()
        self.emg.open()
        if opener is not None:
            opener.join()
            if self._opener_error is not None:
                raise self._opener_error
        if self.position_inlet is not None:
            self.position_inlet.open()

    def _open_inlet(self, inlet: Any) -> None:
        try:
            inlet.open()
        except BaseException as exc:  # noqa: BLE001 - raised again in `_open`
            self._opener_error = exc

    def _build_pipeline(self, kw: dict[str, Any]) -> None:
        from mepkit.pipeline import Pipeline
        from mepkit.sources.lsl import StreamFormatError

        try:
            self._pending_pipeline = Pipeline(self.params, **kw)
        except BaseException as exc:  # noqa: BLE001 - raised by the acquisition thread
            name = self.emg.meta.name if self.emg is not None else "?"
            self._warm_error = (StreamFormatError(f"stream {name!r}: {exc}")
                                if isinstance(exc, ValueError) else exc)

    def _open_record(self) -> None:
        from mepkit.records import RecordWriter

        meta = self.emg.meta
        session = dict(self.session)
        session.setdefault("source", "mepkit live (LSL)")
        session.setdefault("emg_stream", meta.name)
        # how pulses were found, so a reanalysis finds the same ones
        session.setdefault("trigger_channel", self.trigger_channel)
        session.setdefault("artifact_triggers", bool(self.artifact_triggers))
        session.setdefault("marker_filter", self.marker_filter)
        if self.marker_inlet is not None:
            session.setdefault("marker_stream", self.marker_inlet.meta.name)
        if self.position_inlet is not None:
            session.setdefault("position_stream", self.position_inlet.meta.name)
        cols = dict(LIVE_TRIAL_COLUMN_KINDS)
        cols.update(self.extra_trial_columns)
        w = RecordWriter(self.record_path, overwrite=self.overwrite, subject=self.subject,
                         session=session, params=self.params,
                         flush_interval_s=3600.0,  # the worker flushes (around trials)
                         trial_columns=cols,
                         marker_stream=self.marker_inlet.meta.name if self.marker_inlet else "")
        self._emg_record_name = (meta.name or "emg").replace("/", "_")
        w.add_stream(self._emg_record_name, channel_labels=meta.channel_labels, units=self._units,
                     nominal_srate_hz=meta.sfreq_hz, stream_type=meta.type or "EMG",
                     source_id=meta.source_id, description=meta.xml, dtype=self.emg.dtype)
        pi = self.position_inlet
        if pi is not None:
            pm = pi.meta
            self._pos_record_name = (pm.name or "positions").replace("/", "_")
            if self._pos_record_name == self._emg_record_name:
                self._pos_record_name += "-positions"
            units = [u or ("mm" if i in (pi.ix, pi.iy, pi.iz) else "") for i, u in
                     enumerate(pm.units)]
            w.add_stream(self._pos_record_name, channel_labels=pm.channel_labels, units=units,
                         nominal_srate_hz=pm.sfreq_hz, stream_type=pm.type or "Position",
                         source_id=pm.source_id, description=pm.xml, dtype="float64")
        w.start()
        self.writer = w

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - logged, stops the session
            self.error = exc
            logger.error("live session stopped by an error: %s", one_line(exc))
            logger.debug("the error in the acquisition thread", exc_info=True)
        finally:
            try:
                self._finish()
            except BaseException as exc:  # noqa: BLE001
                if self.error is None:
                    self.error = exc
                logger.error("live session: error while closing: %s", one_line(exc))
            try:
                self._close_resources()
            finally:
                self._ready.set()
                _GcHold.release()
                self.stopped_local_s = self._local_clock()
                self._queue.put(_END)

    def _loop(self) -> None:
        import pylsl

        clock = pylsl.local_clock
        emg, mk = self.emg, self.marker_inlet
        empty_x = np.zeros((0, emg.meta.n_channels))
        empty_t = np.zeros(0)
        poll = self.poll_interval_s
        stop = self._stop
        while not stop.is_set():
            if self.pipeline is None and not self._warm.is_alive():
                self._start_measuring()
            now = clock()
            emg.refresh_time_correction(now=now)
            check = False
            if mk is not None:
                mk.refresh_time_correction(now=now)
                check = self._take_markers() > 0 and self.pipeline is not None
            if self.position_inlet is not None:
                self.position_inlet.refresh_time_correction(now=now)
                self._take_positions()
            # wait in liblsl (up to `poll`, waking on data) unless markers need handling now
            data, ts, back = emg.pull(0.0 if check else poll, now)
            if ts.shape[0]:
                self._take_samples(data, ts, back)
            elif check:
                trials = self.pipeline.push(empty_x, empty_t)
                if trials:
                    self._deliver(trials, emg.to_emg_clock(clock()))
            self._housekeeping()
        # stopped: drain what already arrived, then finish
        data, ts, back = emg.pull()
        if mk is not None:
            self._take_markers()
        if self.position_inlet is not None:
            self._take_positions()
        if ts.shape[0]:
            self._take_samples(data, ts, back)
        if self.pipeline is None:
            self._warm.join()
            self._start_measuring()

    def _start_measuring(self) -> None:
        """The Pipeline is built: hand it what arrived meanwhile (markers first), measure."""
        import pylsl

        if self._warm_error is not None:
            raise self._warm_error
        pipe = self._pending_pipeline
        for mt, mv in self._backlog_markers:
            pipe.add_markers(mt, mv)
        backlog, self._backlog, self._backlog_markers = self._backlog, [], []
        self._live_from_local_s = pylsl.local_clock()
        gc.freeze()  # the kernels' objects, like those before the start: never scanned again
        self.pipeline = pipe
        if self.writer is not None:
            n = sum(len(b[1]) for b in backlog)
            self._rec_events.append((self.emg.to_emg_clock(self._live_from_local_s),
                                     "measuring", {"backlog_samples": n}))
        self._ready.set()
        if backlog:
            logger.debug("measuring the %d chunks that arrived while the kernels loaded",
                         len(backlog))
            x = np.concatenate([b[0] for b in backlog])
            t = np.concatenate([b[1] for b in backlog])
            trials = pipe.push(x, t)
            if trials:
                self._deliver(trials, self.emg.to_emg_clock(pylsl.local_clock()))
            self._take_clock()
            if pipe.n_mains_decisions > self._n_mains:
                self._on_mains(float(t[-1]))

    def _take_samples(self, data: np.ndarray, ts: np.ndarray, back: bool) -> None:
        """Samples pulled: measure what completed, deliver, keep them and what the clock
        found (gaps, resets, its mapping) for the record."""
        import pylsl

        if back:  # the stream came back after an outage: the gap it left is an outage
            self._back_at = self.emg.n_samples - ts.shape[0]  # stream index of this chunk
        if self.pipeline is None:  # still loading the kernels
            self._backlog.append((data.copy(), ts))
        else:
            trials = self.pipeline.push(data, ts)
            if trials:  # deliver first: the copy for the record can wait
                self._deliver(trials, self.emg.to_emg_clock(pylsl.local_clock()))
        if self.writer is not None:
            self._raw.append((data.copy(), ts))
        if self.pipeline is not None:
            self._take_clock()
            if self.pipeline.n_mains_decisions > self._n_mains:
                self._on_mains(float(ts[-1]))

    def _on_mains(self, time_s: float) -> None:
        """New mains decisions: logged, and kept as ``mains`` events of the record."""
        from mepkit.dsp.mains import describe

        for d in self.pipeline.mains_decisions[self._n_mains:]:
            logger.info("%s from sample %d", describe(d.line_freq_hz, "detected"),
                        d.sample_index)
            if self.writer is not None:
                self._rec_events.append((time_s, "mains", {**d.to_dict(), "source": "detected"}))
            self._n_mains += 1

    @property
    def mains_decisions(self) -> list:
        """The Pipeline's mains decisions so far (empty when ``line_freq_hz`` is set)."""
        return self.pipeline.mains_decisions if self.pipeline is not None else []

    def _take_clock(self) -> None:
        """What the EMG clock model found since the last call: gaps (an outage when the
        stream came back), resets and warnings to the log and the record's events, new
        mapping rows to the record."""
        clock = self.pipeline.clock
        if clock is None:
            return
        gaps = clock.take_gaps()
        if self._back_at >= 0:
            if gaps:
                gaps[0].outage = True
                self._back_at = -1
            elif clock.settled > self._back_at + 2 * clock.P[clock._k.P_MAXPUSH]:
                self._back_at = -1  # it came back without a gap
        if gaps:
            self._on_gaps(gaps)
        for r in clock.take_resets():
            if self.writer is not None:
                self._rec_events.append((r.stamp_s, "clock_reset", {
                    "index": r.index, "jump_s": r.jump_s}))
        for msg in clock.take_warnings():
            if self.writer is not None:
                self._rec_events.append((self.emg.to_emg_clock(self._local_clock()),
                                         "clock_warning", msg))
        rows = clock.take_rows()
        if self.writer is not None and len(rows):
            self._rec_clock.append(rows)

    def _take_markers(self) -> int:
        """Pull the markers that arrived, map them onto the EMG clock, hand them over."""
        mk, emg = self.marker_inlet, self.emg
        mt, mv = mk.pull()
        if len(mv):
            mt_emg = mt + (mk.time_correction_s - emg.time_correction_s)
            if self.pipeline is None:
                self._backlog_markers.append((mt_emg, mv))
            else:
                self.pipeline.add_markers(mt_emg, mv)
            self._n_markers += len(mv)
            if self.writer is not None:
                self._rec_markers.extend(zip(mt_emg.tolist(), mv))
        return len(mv)

    def _take_positions(self) -> None:
        """Pull coil positions, map them onto the EMG clock, keep them for matching."""
        pi = self.position_inlet
        x, t = pi.pull()
        if t.shape[0]:
            t_emg = t + (pi.time_correction_s - self.emg.time_correction_s)
            self._track.add(x, t_emg)
            self._n_positions += t.shape[0]
            if self.writer is not None:
                self._rec_positions.append((x, t_emg))

    def _match_positions(self, trials: Sequence["Trial"]) -> None:
        """Give each trial without a marker position the coil position at its pulse."""
        self._take_positions()  # the newest samples, in case they came with this chunk
        name = self.position_inlet.meta.name
        for t in trials:
            s = t.stim
            if math.isfinite(s.x_mm) and math.isfinite(s.y_mm):
                continue  # the marker says where the coil was: it wins
            m = self._track.match(t.stim_time_s, self.position_max_age_s)
            if m.ok:
                s.x_mm, s.y_mm = m.x_mm, m.y_mm
                if not math.isfinite(s.z_mm):
                    s.z_mm = m.z_mm
                continue
            with self._lock:
                self._n_positions_missing += 1
            logger.warning("trial %d has no coil position: position stream %r lags or stopped "
                           "(%s)", t.index, name, m.problem)
            if self.writer is not None:
                self._rec_events.append((t.stim_time_s, "position-missing", {
                    "trial": int(t.index), "stream": name,
                    "age_s": m.age_s if math.isfinite(m.age_s) else None,
                    "max_age_s": self.position_max_age_s, "problem": m.problem}))

    def _on_gaps(self, gaps: Sequence[Any]) -> None:
        for g in gaps:
            kind = "outage" if (g.outage or g.duration_s >= OUTAGE_MIN_S) else "gap"
            detail = g.as_dict()
            if kind == "gap":
                logger.warning("EMG gap of %.1f ms at %.3f s (%d samples missing before sample "
                               "%d)", g.duration_s * 1e3, g.start_s, g.n_missing, g.index)
            else:
                logger.warning("EMG outage from %.3f to %.3f s (%d samples missing); "
                               "trials in it are rejected (gap)", g.start_s, g.end_s, g.n_missing)
            if self.writer is not None:
                self._rec_events.append((g.start_s, kind, detail))

    def _deliver(self, trials: Sequence["Trial"], available_s: float) -> None:
        for t in trials:
            t.available_s = available_s
        if self.position_inlet is not None:
            self._match_positions(trials)
        # Trials measured from samples pushed before the session started (a new inlet may
        # first receive the outlet's buffered history) or while the kernels loaded (the
        # backlog) were never measured live, so they stay out of the live latency figures
        # (their available_s in the record still tells the truth).
        live_from_s = self.emg.to_emg_clock(max(self.started_local_s, self._live_from_local_s))
        with self._lock:
            for t in trials:
                self._n_trials += 1
                det = bool(np.any(t.detected & ~t.rejected))
                self._n_detected += int(det)
                self._n_rejected += int(bool(np.all(t.rejected)))
                if math.isfinite(t.last_sample_s) and t.last_sample_s >= live_from_s:
                    self._latencies_s.append(available_s - t.last_sample_s)
        if self.writer is not None:  # recorded even if the callback fails
            self._rec_trials.extend(trials)
        for t in trials:
            self._queue.put(t)
            if self.on_trial is not None:
                self.on_trial(t)

    def _housekeeping(self) -> None:
        """Write the record and collect garbage, at a quiet moment if possible.

        Every `QUIET_FLUSH_INTERVAL_S` when no trial waits for its window (a write and a
        collection would delay its result), and at least every `MAX_FLUSH_INTERVAL_S`; the
        first samples at once, so the record shows data as soon as there is some."""
        now = time.monotonic()
        since = now - self._last_flush
        if since < QUIET_FLUSH_INTERVAL_S and (self._stored_data or not self._raw):
            return
        if self.pipeline is not None and self.pipeline.n_pending and since < MAX_FLUSH_INTERVAL_S:
            return
        if self.pipeline is not None:
            self.pipeline.update_monitor()
        self._stored_data = self._stored_data or bool(self._raw)
        if self.writer is not None:
            self._write_pending()
        self._last_flush = now
        if now - self._last_full_gc >= FULL_GC_INTERVAL_S:
            gc.collect()
            self._last_full_gc = now
        else:
            gc.collect(1)

    def _write_pending(self) -> None:
        with self._write_lock:
            self._write_pending_locked()

    def _write_pending_locked(self) -> None:
        from mepkit.pipeline import trial_columns

        w = self.writer
        if self._raw:
            if len(self._raw) == 1:
                x, t = self._raw[0]
            else:
                x = np.concatenate([r[0] for r in self._raw])
                t = np.concatenate([r[1] for r in self._raw])
            self._raw = []
            w.append_samples(self._emg_record_name, x, t)
        if self._rec_positions:
            x = np.concatenate([r[0] for r in self._rec_positions])
            t = np.concatenate([r[1] for r in self._rec_positions])
            self._rec_positions = []
            w.append_samples(self._pos_record_name, x, t)
        if self._rec_clock:
            rows = np.concatenate(self._rec_clock) if len(self._rec_clock) > 1 \
                else self._rec_clock[0]
            self._rec_clock = []
            w.append_clock(self._emg_record_name, rows)
        if self._rec_markers:
            times, values = zip(*self._rec_markers)
            self._rec_markers = []
            w.append_markers(np.asarray(times), list(values))
        if self._rec_trials:
            w.append_trials(trial_columns(self._rec_trials, live=True))
            self._rec_trials = []
        for time_s, kind, detail in self._rec_events:
            w.append_event(time_s, kind, detail)
        self._rec_events = []
        w.flush()

    def _finish(self) -> None:
        pipe = self.pipeline
        if pipe is not None:
            left = pipe.finish()
            if left:
                self._deliver(left, self.emg.to_emg_clock(self._local_clock()))
            self._take_clock()
        with self._write_lock:
            if self.writer is not None and not self.writer.closed:
                if self.emg is not None:
                    clock = self._fitted_clock
                    self._rec_events.append((self.emg.to_emg_clock(self._local_clock()), "stop", {
                        "samples": self.emg.n_samples,
                        "drops": clock.n_missing if clock is not None else 0,
                        "gaps": clock.n_gaps if clock is not None else 0,
                        "outages": self.emg.n_outages,
                        "clock_resets": clock.n_resets if clock is not None else 0,
                        "error": None if self.error is None else str(self.error)}))
                self._write_pending_locked()
                self.writer.close()

    def _close_resources(self) -> None:
        for inlet in (self.emg, self.marker_inlet, self.position_inlet):
            if inlet is not None:
                inlet.close()
        with self._write_lock:
            if self.writer is not None and not self.writer.closed:
                try:
                    self.writer.close()
                except Exception as exc:  # noqa: BLE001
                    logger.error("could not close the record %s: %s", self.record_path,
                                 one_line(exc))

    def _maybe_raise(self) -> None:
        """Raise the acquisition thread's error in the caller (once per call site)."""
        if self.error is not None:
            raise self.error
