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
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from mepkit.errors import MepkitError
from mepkit.params import Params

__all__ = ["LiveSession", "LiveStatus"]

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
#: Trial columns mepkit adds to the standard ones in live records.
LIVE_TRIAL_COLUMNS = {"last_sample_s": "float64", "available_s": "float64"}


def _raise_in_caller() -> bool:
    return os.environ.get("MEPKIT_RAISE", "").strip() not in ("", "0", "false", "no")


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

    def line(self) -> str:
        """A one-line summary for a terminal status line."""
        lag = f"{self.lag_s * 1e3:.1f} ms" if math.isfinite(self.lag_s) else "-"
        state = "LOST (waiting for the stream)" if self.stream_lost else (
            "running" if self.running else "stopped")
        return (f"{state} | samples {self.samples} | drops {self.drops} | gaps {self.gaps} | "
                f"lag {lag} | markers {self.markers} | trials {self.trials} "
                f"(detected {self.detected}, rejected {self.rejected})")


_END = object()


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

    Notes
    -----
    All times are on the EMG clock: the EMG stream's fitted clock
    (`mepkit.sources.clock`; its raw stamps go to the record as received, with the
    mapping); markers are mapped onto it with both inlets' time corrections
    (`mepkit.sources.lsl`).
    Each trial's ``available_s`` is ``pylsl.local_clock()`` on the EMG clock at the
    moment its measurement was done, ``last_sample_s`` the timestamp of the last
    sample the measurement needed.

    Background errors are logged and stop the session; `error` holds the exception
    and `trials` / `wait` raise it again when the environment variable ``MEPKIT_RAISE=1``.
    """

    def __init__(self, emg: Any, markers: Any = None, *,
                 trigger_channel: str | int | None = None, params: Params | None = None,
                 record_path: str | os.PathLike | None = None,
                 subject: dict[str, Any] | str | None = None,
                 session: dict[str, Any] | str | None = None, overwrite: bool = False,
                 on_trial: Callable[[Any], Any] | None = None, emg_type: str | None = "EMG",
                 source_id: str | None = None, marker_source_id: str | None = None,
                 unit: str | None = None, marker_filter: str | None = None,
                 artifact_triggers: bool = False, buffer_s: float = 4.0,
                 resolve_timeout_s: float = 5.0, poll_interval_s: float = POLL_INTERVAL_S,
                 outage_after_s: float = 1.0, extra_trial_columns: dict[str, Any] | None = None
                 ) -> None:
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
        self._n_trials = self._n_detected = self._n_rejected = 0
        self._n_markers = 0
        self._latencies_s: list[float] = []
        self._closed = False
        # pending record writes (worker thread only)
        self._raw: list[tuple[np.ndarray, np.ndarray]] = []
        self._rec_markers: list[tuple[float, str]] = []
        self._rec_trials: list[Any] = []
        self._rec_events: list[tuple[float, str, Any]] = []
        self._rec_clock: list[np.ndarray] = []
        #: Stream index at which the EMG stream came back after an outage, until the gap
        #: it left is found (-1: none pending).
        self._back_at = -1
        self._last_flush = self._last_full_gc = 0.0

    @property
    def _clock(self):
        return self.pipeline.clock if self.pipeline is not None else None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LiveSession":
        """Resolve and open the streams, create the record, start the acquisition thread.

        Raises `StreamNotFoundError` / `StreamFormatError` / `ValueError` here, in the
        caller, for problems found before acquisition starts.
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

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
    def trials(self, timeout: float | None = None) -> Iterator[Any]:
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

    def next_trial(self, timeout: float | None = None) -> Any | None:
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
            drops=self._clock.n_missing if self._clock is not None else 0,
            gaps=self._clock.n_gaps if self._clock is not None else 0,
            outages=emg.n_outages if emg else 0,
            lag_s=emg.lag_s() if emg else math.nan,
            markers=self._n_markers, trials=n_tr, detected=n_det, rejected=n_rej,
            stream_lost=bool(emg.lost) if emg else False,
            error=None if self.error is None else f"{type(self.error).__name__}: {self.error}")

    @property
    def latencies_s(self) -> np.ndarray:
        """``available_s - last_sample_s`` of every trial measured so far."""
        with self._lock:
            return np.asarray(self._latencies_s, dtype=np.float64)

    @property
    def channels(self) -> tuple[str, ...]:
        """The measured EMG channels (after `start`)."""
        return self.pipeline.channels if self.pipeline is not None else ()

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
        from mepkit.pipeline import Pipeline
        from mepkit.sources.lsl import LslInlet, MarkerInlet, StreamFormatError
        from mepkit.units import scale_to_uv

        info = self._resolve(self._emg_spec, self.source_id, self.emg_type or "EMG")
        self.emg = LslInlet(info, expected_type=self.emg_type,
                            gap_tolerance_ms=self.params.gap_tolerance_ms,
                            outage_after_s=self.outage_after_s)
        meta = self.emg.meta
        if self._marker_spec is not None or self.marker_source_id is not None:
            minfo = self._resolve(self._marker_spec, self.marker_source_id, "Markers")
            self.marker_inlet = MarkerInlet(minfo)
        # units
        trig_idx = None
        if self.trigger_channel is not None:
            if isinstance(self.trigger_channel, (int, np.integer)):
                trig_idx = int(self.trigger_channel)
            elif self.trigger_channel in meta.channel_labels:
                trig_idx = meta.channel_labels.index(self.trigger_channel)
            else:
                raise StreamFormatError(
                    f"trigger channel {self.trigger_channel!r} is not in stream "
                    f"{meta.name!r}; its channels are {meta.channel_labels}")
        units = list(meta.units)
        if self.unit is not None:
            if scale_to_uv(self.unit) is None:
                raise ValueError(f"unit {self.unit!r} is not a voltage unit mepkit knows "
                                 f"(V, mV, uV)")
            units = [self.unit] * meta.n_channels
        scales = []
        for i, (lab, u) in enumerate(zip(meta.channel_labels, units)):
            if i == trig_idx:
                scales.append(1.0)
                continue
            s = scale_to_uv(u) if u else None
            if s is None:
                if u:
                    raise StreamFormatError(
                        f"channel {lab!r} of stream {meta.name!r} has unit {u!r}, which is not "
                        f"a voltage unit mepkit knows; give the unit (unit='uV', --unit uV)")
                logger.warning("channel %r of stream %r has no unit in its description; "
                               "assuming microvolts (set unit=/--unit otherwise)", lab, meta.name)
                units[i] = "microvolts"
                s = 1.0
            scales.append(s)
        self._units = units
        try:
            self.pipeline = Pipeline(
                self.params, sfreq_hz=meta.sfreq_hz, channel_labels=meta.channel_labels,
                scale_to_uv=scales, trigger_channel=trig_idx,
                artifact_triggers=self.artifact_triggers, marker_filter=self.marker_filter,
                buffer_s=self.buffer_s, stream_name=meta.name)
        except ValueError as exc:
            raise StreamFormatError(f"stream {meta.name!r}: {exc}") from None
        # the Pipeline has loaded its kernels in its constructor: the first pulse is not late
        if self.record_path:
            self._open_record()
        self.emg.open()
        if self.marker_inlet is not None:
            self.marker_inlet.open()

    def _open_record(self) -> None:
        from mepkit.records import RecordWriter

        meta = self.emg.meta
        session = dict(self.session)
        session.setdefault("source", "mepkit live (LSL)")
        session.setdefault("emg_stream", meta.name)
        if self.marker_inlet is not None:
            session.setdefault("marker_stream", self.marker_inlet.meta.name)
        cols = dict(LIVE_TRIAL_COLUMNS)
        cols.update(self.extra_trial_columns)
        w = RecordWriter(self.record_path, overwrite=self.overwrite, subject=self.subject,
                         session=session, params=self.params,
                         flush_interval_s=3600.0,  # the worker flushes (around trials)
                         trial_columns=cols,
                         marker_stream=self.marker_inlet.meta.name if self.marker_inlet else "")
        self._emg_record_name = (meta.name or "emg").replace("/", "_")
        w.add_stream(self._emg_record_name, channel_labels=meta.channel_labels, units=self._units,
                     nominal_srate_hz=meta.sfreq_hz, stream_type=meta.type or "EMG",
                     source_id=meta.source_id, description=meta.xml)
        w.start()
        self.writer = w

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - logged, stops the session
            self.error = exc
            logger.error("live session stopped by an error: %s: %s", type(exc).__name__, exc,
                         exc_info=not isinstance(exc, MepkitError))
        finally:
            try:
                self._finish()
            except BaseException as exc:  # noqa: BLE001
                if self.error is None:
                    self.error = exc
                logger.error("live session: error while closing: %s: %s",
                             type(exc).__name__, exc)
            try:
                self._close_resources()
            finally:
                _GcHold.release()
                self.stopped_local_s = self._local_clock()
                self._queue.put(_END)

    def _loop(self) -> None:
        import pylsl

        clock = pylsl.local_clock
        emg, mk, pipe = self.emg, self.marker_inlet, self.pipeline
        empty_x = np.zeros((0, pipe.n_stream_channels))
        empty_t = np.zeros(0)
        poll = self.poll_interval_s
        stop = self._stop
        while not stop.is_set():
            now = clock()
            emg.refresh_time_correction(now=now)
            check = False
            if mk is not None:
                mk.refresh_time_correction(now=now)
                check = self._take_markers() > 0
            # wait in liblsl (up to `poll`, waking on data) unless markers need handling now
            data, ts, back = emg.pull(0.0 if check else poll, now)
            if ts.shape[0]:
                self._take_samples(data, ts, back)
            elif check:
                trials = pipe.push(empty_x, empty_t)
                if trials:
                    self._deliver(trials, emg.to_emg_clock(clock()))
            self._housekeeping()
        # stopped: drain what already arrived, then finish
        data, ts, back = emg.pull()
        if mk is not None:
            self._take_markers()
        if ts.shape[0]:
            self._take_samples(data, ts, back)

    def _take_samples(self, data: np.ndarray, ts: np.ndarray, back: bool) -> None:
        """Samples pulled: measure what completed, deliver, keep them and what the clock
        found (gaps, resets, its mapping) for the record."""
        import pylsl

        pipe = self.pipeline
        if back:
            self._back_at = pipe.clock.n_samples
        trials = pipe.push(data, ts)
        if trials:  # deliver first: the copy for the record can wait
            self._deliver(trials, self.emg.to_emg_clock(pylsl.local_clock()))
        if self.writer is not None:
            self._raw.append((data.copy(), ts))
        self._take_clock()

    def _take_clock(self) -> None:
        clock = self.pipeline.clock
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
            self.pipeline.add_markers(mt_emg, mv)
            self._n_markers += len(mv)
            if self.writer is not None:
                self._rec_markers.extend(zip(mt_emg.tolist(), mv))
        return len(mv)

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

    def _deliver(self, trials: Sequence[Any], available_s: float) -> None:
        for t in trials:
            t.available_s = available_s
        # A new inlet first receives the outlet's buffered history: trials measured from
        # samples pushed before the session started were never live, so they stay out of
        # the live latency figures (their available_s in the record still tells the truth).
        live_from_s = self.emg.to_emg_clock(self.started_local_s)
        with self._lock:
            for t in trials:
                self._n_trials += 1
                det = bool(np.any(t.detected & ~t.rejected))
                self._n_detected += int(det)
                self._n_rejected += int(bool(np.all(t.rejected)))
                if math.isfinite(t.last_sample_s) and t.last_sample_s >= live_from_s:
                    self._latencies_s.append(available_s - t.last_sample_s)
        for t in trials:
            self._queue.put(t)
            if self.on_trial is not None:
                self.on_trial(t)
        if self.writer is not None:
            self._rec_trials.extend(trials)

    def _housekeeping(self) -> None:
        """Write the record and collect garbage, at a quiet moment if possible.

        Every `QUIET_FLUSH_INTERVAL_S` when no trial waits for its window (a write and a
        collection would delay its result), and at least every `MAX_FLUSH_INTERVAL_S`."""
        now = time.monotonic()
        since = now - self._last_flush
        if since < QUIET_FLUSH_INTERVAL_S:
            return
        if self.pipeline.n_pending and since < MAX_FLUSH_INTERVAL_S:
            return
        if self.writer is not None:
            self._write_pending()
        self._last_flush = now
        if now - self._last_full_gc >= FULL_GC_INTERVAL_S:
            gc.collect()
            self._last_full_gc = now
        else:
            gc.collect(1)

    def _write_pending(self) -> None:
        w = self.writer
        if self._raw:
            if len(self._raw) == 1:
                x, t = self._raw[0]
            else:
                x = np.concatenate([r[0] for r in self._raw])
                t = np.concatenate([r[1] for r in self._raw])
            self._raw = []
            w.append_samples(self._emg_record_name, x, t)
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
            rows = [r for t in self._rec_trials for r in t.rows()]
            self._rec_trials = []
            w.append_trials(rows)
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
        if self.writer is not None and not self.writer.closed:
            if self.emg is not None:
                clock = self.pipeline.clock
                self._rec_events.append((self.emg.to_emg_clock(self._local_clock()), "stop", {
                    "samples": self.emg.n_samples, "drops": clock.n_missing,
                    "gaps": clock.n_gaps, "outages": self.emg.n_outages,
                    "clock_resets": clock.n_resets,
                    "error": None if self.error is None else str(self.error)}))
            self._write_pending()
            self.writer.close()

    def _close_resources(self) -> None:
        for inlet in (self.emg, self.marker_inlet):
            if inlet is not None:
                inlet.close()
        if self.writer is not None and not self.writer.closed:
            try:
                self.writer.close()
            except Exception as exc:  # noqa: BLE001
                logger.error("could not close the record %s: %s", self.record_path, exc)

    def _maybe_raise(self) -> None:
        if self.error is not None and _raise_in_caller():
            raise self.error
