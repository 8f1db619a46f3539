"""Closed-loop live runs: a protocol, a stimulator and a `LiveSession`, joined.

The runner asks the protocol for the next stimulus, waits until the pulse is allowed
(spacing since the last pulse, target muscle relaxed), fires it through the
stimulator, waits for that pulse's trial from the live session, feeds the target
channel's amplitude (and whether the trial was rejected) back to the protocol, and
stores every step and the final estimate in the session's record (``/protocol/steps``,
``/protocol/results``). See ``docs/live.md`` ("Closed-loop runs") and the defaults'
sources in ``docs/methods.md`` ("Closed-loop runs: gating and spacing").

Example
-------
>>> from mepkit.live import LiveSession                                  # doctest: +SKIP
>>> from mepkit.protocols.runner import ClosedLoopRunner
>>> with LiveSession(emg="BrainAmp EMG", markers="TMSMarkers", record_path="s01.h5") as s:
...     result = ClosedLoopRunner(s, stimulator, hunter, channel="FDI_R").run()
>>> print(result.reason, result.estimate)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mepkit.errors import MepkitError
from mepkit.protocols.base import Protocol, ProtocolError, Step, Stimulus

__all__ = ["ClosedLoopRunner", "RunResult", "run_protocol", "MIN_INTERVAL_S", "JITTER",
           "RELAX_S", "TRIAL_TIMEOUT_S", "MATCH_WINDOW_S", "STREAM_TIMEOUT_S"]

logger = logging.getLogger("mepkit.protocols.runner")

#: Shortest time between two pulses (s): slower than 0.2 Hz, so single pulses do not
#: become low-frequency rTMS (sources: docs/methods.md).
MIN_INTERVAL_S = 5.0
#: Each interval is drawn uniformly from ``[min, min * (1 + JITTER)]``: never shorter
#: than the minimum, and not predictable by the subject.
JITTER = 0.2
#: The target muscle's EMG must have stayed below the rejection limit this long (s).
RELAX_S = 0.5
#: A pulse whose trial has not come this long (s) after the stimulator returned counts
#: as rejected (the Pipeline still measures a marker up to ``buffer_s`` late).
TRIAL_TIMEOUT_S = 3.0
#: A trial belongs to a pulse when its stimulus time is within this of the pulse time (s).
MATCH_WINDOW_S = 1.0
#: No EMG samples for this long (s) while waiting to fire: the stream is lost, the run stops.
STREAM_TIMEOUT_S = 5.0
#: The gate looks only at samples this recent (s); older data does not open it.
FRESH_S = 0.25
#: How often the gate is checked while waiting (s).
POLL_S = 0.01


class _Stop(Exception):
    """Ends the run with a reason (internal)."""

    def __init__(self, reason: str, error: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


@dataclass
class RunResult:
    """How a closed-loop run ended.

    Attributes
    ----------
    protocol : str
        The protocol's name.
    reason : str
        Why it stopped: ``"done"``, ``"max pulses (N) reached"``, ``"interrupted"``,
        ``"stimulator: ..."``, ``"EMG stream lost: ..."``, ``"live session stopped: ..."``,
        ``"stopped: ..."`` (`ClosedLoopRunner.stop`).
    complete : bool
        The protocol said it was done.
    estimate : object or None
        The protocol's estimate at the end (None when nothing was observed).
    steps : list of dict
        Every step as stored in the record.
    record_path : str or None
    saved : bool
        Every step and the result were written to the record.
    """

    protocol: str
    reason: str
    complete: bool
    estimate: Any
    steps: list[dict[str, Any]] = field(default_factory=list)
    record_path: str | None = None
    saved: bool = True
    interrupted: bool = False
    error: bool = False

    def as_dict(self) -> dict[str, Any]:
        est = self.estimate.as_dict() if self.estimate is not None else None
        return {"protocol": self.protocol, "reason": self.reason, "complete": self.complete,
                "estimate": est, "n_pulses": len(self.steps),
                "n_counted": sum(bool(s["counted"]) for s in self.steps),
                "record_path": self.record_path, "saved": self.saved}


class ClosedLoopRunner:
    """Run a protocol live: gated, spaced pulses, each trial fed back, everything recorded.

    Parameters
    ----------
    session : LiveSession
        A started session (its record, if any, receives the steps and the result).
    stimulator : mepkit.sim.stimulator.Stimulator
        Fires the pulses (simulated, manual, or a device adapter).
    protocol : Protocol
        Proposes stimuli and takes their results.
    channel : str or int, optional
        The target muscle's channel (default: the session's first channel).
    hemisphere : {'left', 'right'}
        Hemisphere for stimuli that do not name one.
    min_interval_s : float
        Shortest time between pulses (default `MIN_INTERVAL_S`).
    jitter : float
        Intervals are uniform in ``[min_interval_s, min_interval_s * (1 + jitter)]``.
    gate : {'rest', 'active', None}
        ``'rest'``: fire once the channel's background stayed at or below ``gate_limit_uv``
        for ``relax_s``; ``'active'`` (active thresholds): once it stayed at or above it
        (the subject holds a slight contraction); None: no gating.
    gate_limit_uv : float, optional
        Default: the session's ``Params.background_limit_uv`` (the trial rejection limit).
    relax_s : float
        How long the condition must have held (default `RELAX_S`), judged in blocks as
        long as the trial's background window.
    trial_timeout_s, match_window_s, stream_timeout_s : float
        See `TRIAL_TIMEOUT_S`, `MATCH_WINDOW_S`, `STREAM_TIMEOUT_S`.
    max_pulses : int, optional
        Stop after this many pulses even if the protocol is not done.
    seed : int, optional
        Seed of the interval jitter.
    result_name : str, optional
        Name of the result in the record (default: the protocol's name).
    on_step : callable, optional
        ``on_step(step_dict, protocol)`` after each stored step (progress display).
    on_wait : callable, optional
        ``on_wait(level, waited_s)`` about once a second while the gate holds a pulse back.
    """

    def __init__(self, session: Any, stimulator: Any, protocol: Protocol, *,
                 channel: str | int | None = None, hemisphere: str = "left",
                 min_interval_s: float = MIN_INTERVAL_S, jitter: float = JITTER,
                 gate: str | None = "rest", gate_limit_uv: float | None = None,
                 relax_s: float = RELAX_S, trial_timeout_s: float = TRIAL_TIMEOUT_S,
                 match_window_s: float = MATCH_WINDOW_S,
                 stream_timeout_s: float = STREAM_TIMEOUT_S, max_pulses: int | None = None,
                 seed: int | None = None, result_name: str | None = None,
                 on_step: Callable[[dict[str, Any], Protocol], Any] | None = None,
                 on_wait: Callable[[Any, float], Any] | None = None) -> None:
        if not isinstance(protocol, Protocol):
            raise TypeError(f"protocol must be a mepkit Protocol, got {type(protocol).__name__}")
        if not hasattr(stimulator, "fire"):
            raise TypeError(f"stimulator must have a fire() method (a mepkit Stimulator), "
                            f"got {type(stimulator).__name__}")
        if hemisphere not in ("left", "right"):
            raise ValueError(f"hemisphere must be 'left' or 'right', got {hemisphere!r}")
        if gate not in ("rest", "active", None):
            raise ValueError(f"gate must be 'rest', 'active' or None, got {gate!r}")
        for name, value, low in (("min_interval_s", min_interval_s, 0.0), ("jitter", jitter, 0.0),
                                 ("relax_s", relax_s, 0.0),
                                 ("trial_timeout_s", trial_timeout_s, 1e-9),
                                 ("match_window_s", match_window_s, 1e-9),
                                 ("stream_timeout_s", stream_timeout_s, 1e-9)):
            if not (math.isfinite(float(value)) and float(value) >= low):
                raise ValueError(f"{name} must be a number >= {low:g}, got {value!r}")
        if max_pulses is not None and int(max_pulses) < 1:
            raise ValueError(f"max_pulses must be >= 1, got {max_pulses!r}")
        if gate_limit_uv is not None and not float(gate_limit_uv) > 0:
            raise ValueError(f"gate_limit_uv must be > 0, got {gate_limit_uv!r}")
        self.session = session
        self.stimulator = stimulator
        self.protocol = protocol
        self.channel = channel
        self.hemisphere = hemisphere
        self.min_interval_s = float(min_interval_s)
        self.jitter = float(jitter)
        self.gate = gate
        self.gate_limit_uv = None if gate_limit_uv is None else float(gate_limit_uv)
        self.relax_s = float(relax_s)
        self.trial_timeout_s = float(trial_timeout_s)
        self.match_window_s = float(match_window_s)
        self.stream_timeout_s = float(stream_timeout_s)
        self.max_pulses = None if max_pulses is None else int(max_pulses)
        self.seed = seed
        self.result_name = result_name or protocol.name
        self.on_step = on_step
        self.on_wait = on_wait
        self._rng = np.random.default_rng(seed)
        self._stop_reason: str | None = None
        self._stop_lock = threading.Lock()
        self.steps: list[dict[str, Any]] = []
        self.pulses: list[Any] = []

    # ------------------------------------------------------------------ control
    def stop(self, reason: str = "requested") -> None:
        """Ask a running `run` (in another thread) to stop before its next pulse."""
        with self._stop_lock:
            if self._stop_reason is None:
                self._stop_reason = f"stopped: {reason}"

    def settings(self) -> dict[str, Any]:
        """The runner's settings, stored with the result."""
        return {"channel": self._channel_name, "hemisphere": self.hemisphere,
                "min_interval_s": self.min_interval_s, "jitter": self.jitter,
                "gate": self.gate, "gate_limit_uv": self._limit_uv, "relax_s": self.relax_s,
                "gate_block_s": self._block_s, "trial_timeout_s": self.trial_timeout_s,
                "match_window_s": self.match_window_s, "max_pulses": self.max_pulses,
                "seed": self.seed, "stimulator": type(self.stimulator).__name__}

    # ------------------------------------------------------------------ the run
    def run(self) -> RunResult:
        """Run until the protocol is done, ``max_pulses``, a failure, `stop` or Ctrl-C.

        Never raises for a stimulator that refuses (`StimulatorError`), a lost stream, a
        session that stopped, or KeyboardInterrupt: the run ends, every step so far is
        in the record, and `RunResult.reason` says why. The session is left running.
        """
        s = self.session
        if s.pipeline is None or not s.running:
            raise MepkitError("ClosedLoopRunner.run: the live session is not running; start "
                              "it first (with LiveSession(...) as session: ...)")
        pipe = s.pipeline
        self._channel_idx = pipe.channel_index(0 if self.channel is None else self.channel)
        self._channel_name = pipe.channels[self._channel_idx]
        p = s.params
        self._limit_uv = (self.gate_limit_uv if self.gate_limit_uv is not None
                          else p.background_limit_uv)
        bw = p.background_window_ms
        self._block_s = (bw[1] - bw[0]) / 1000.0
        self._n_blocks = max(1, int(math.ceil(self.relax_s / self._block_s - 1e-9)))
        self._saved = True
        reason, error, interrupted = "done", False, False
        in_flight: tuple[Stimulus, Any, dict[str, Any]] | None = None
        last_pulse_local: float | None = None
        try:
            while not self.protocol.done:
                if self.max_pulses is not None and len(self.pulses) >= self.max_pulses:
                    reason = f"max pulses ({self.max_pulses}) reached"
                    break
                stim = self.protocol.propose()
                earliest = (-math.inf if last_pulse_local is None else
                            last_pulse_local + self._draw_interval())
                gate_info = self._wait_to_fire(earliest)
                pulse = self._fire(stim)
                last_pulse_local = float(pulse.time_s)
                in_flight = (stim, pulse, gate_info)
                t_fired = time.monotonic()
                trial = self._wait_for_trial(pulse)
                gate_info = {**gate_info, "trial_wait_s": time.monotonic() - t_fired}
                in_flight = None
                self._observe(stim, pulse, gate_info, trial, "")
        except _Stop as stop:
            reason, error = stop.reason, stop.error
        except KeyboardInterrupt:
            reason, interrupted = "interrupted", True
        if in_flight is not None and not self.protocol.done:
            stim, pulse, gate_info = in_flight
            try:
                self._observe(stim, pulse, gate_info, None,
                              f"run ended before its trial was measured ({reason})")
            except (_Stop, KeyboardInterrupt, ProtocolError):
                pass
        return self._finish(reason, error, interrupted)

    # ------------------------------------------------------------------ steps
    def _draw_interval(self) -> float:
        return self.min_interval_s * (1.0 + self.jitter * float(self._rng.random()))

    def _check_running(self) -> None:
        with self._stop_lock:
            if self._stop_reason is not None:
                raise _Stop(self._stop_reason, error=False)
        s = self.session
        if not s.running:
            raise _Stop(_session_stopped(s))

    def _wait_to_fire(self, earliest_local: float) -> dict[str, Any]:
        """Block until the spacing and the gate allow a pulse; returns what the gate saw."""
        import pylsl

        clock = pylsl.local_clock
        s = self.session
        t_start = clock()
        stale_since: float | None = None
        waited_from: float | None = None
        next_report = 0.0
        while True:
            self._check_running()
            now = clock()
            if now < earliest_local:
                time.sleep(min(POLL_S * 5, earliest_local - now))
                continue
            if waited_from is None:
                waited_from = now
            level = s.background_rms_uv(self._channel_idx, self._n_blocks * self._block_s,
                                        self._block_s)
            if not level.age_s <= FRESH_S:
                stale_since = now if stale_since is None else stale_since
                if now - stale_since >= self.stream_timeout_s:
                    last = ("no samples yet" if not math.isfinite(level.age_s) else
                            f"no samples for {level.age_s:.1f} s")
                    raise _Stop(f"EMG stream lost: {last}")
                time.sleep(POLL_S)
                continue
            stale_since = None
            if self.gate is None:
                is_open = True
            elif self.gate == "rest":
                is_open = level.below(self._limit_uv, self._n_blocks)
            else:
                is_open = level.above(self._limit_uv, self._n_blocks)
            if is_open:
                r = level.rms_uv
                return {"gate_rms_uv": float(np.max(r)) if r.size else math.nan,
                        "gate_wait_s": now - waited_from, "spacing_wait_s": waited_from - t_start}
            if self.on_wait is not None and now - waited_from >= next_report:
                self.on_wait(level, now - waited_from)
                next_report = now - waited_from + 1.0
            time.sleep(POLL_S)

    def _fire(self, stim: Stimulus) -> Any:
        from mepkit.sim.stimulator import StimulatorError

        meta = {k: getattr(stim, k) for k in ("site", "condition", "label") if getattr(stim, k)}
        try:
            return self._fire_call(stim, meta)
        except StimulatorError as exc:
            raise _Stop(f"stimulator: {exc}") from None
        except ValueError as exc:  # a device adapter refusing the settings
            raise _Stop(f"stimulator refused {stim.intensity_pct_mso:g} %MSO: {exc}") from None

    def _fire_call(self, stim: Stimulus, meta: dict[str, Any]) -> Any:
        pulse = self.stimulator.fire(
            stim.intensity_pct_mso,
            None if math.isnan(stim.x_mm) else stim.x_mm,
            None if math.isnan(stim.y_mm) else stim.y_mm,
            stim.hemisphere or self.hemisphere, **meta)
        self.pulses.append(pulse)
        return pulse

    def _wait_for_trial(self, pulse: Any) -> Any | None:
        """The session's trial of ``pulse`` (nearest in time within the match window), or
        None after ``trial_timeout_s``."""
        s = self.session
        t_emg = s.emg.to_emg_clock(float(pulse.time_s))
        deadline = time.monotonic() + self.trial_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                trial = s.next_trial(timeout=min(left, 0.1))
            except Exception as exc:  # noqa: BLE001 - the session's own error, raised here
                if exc is not s.error:
                    raise
                raise _Stop(_session_stopped(s)) from None
            if trial is None:
                self._check_running()
                continue
            if abs(trial.stim_time_s - t_emg) <= self.match_window_s:
                return trial
            logger.info("trial %d at %.3f s matches no pulse of this run (pulse at %.3f s); "
                        "ignored", trial.index, trial.stim_time_s, t_emg)

    def _observe(self, stim: Stimulus, pulse: Any, gate_info: dict[str, Any], trial: Any,
                 note: str) -> None:
        s = self.session
        c = self._channel_idx
        fired = dataclasses.replace(stim, intensity_pct_mso=float(pulse.intensity_pct_mso),
                                    hemisphere=pulse.hemisphere or stim.hemisphere)
        spatial = math.isfinite(stim.x_mm) and math.isfinite(stim.y_mm)
        if spatial and trial is not None and math.isfinite(trial.stim.x_mm) \
                and math.isfinite(trial.stim.y_mm):
            # where the coil actually was (marker or neuronavigation), not where it was asked
            # to go: a spatial protocol learns from the measured position
            ts = trial.stim
            fired = dataclasses.replace(fired, x_mm=float(ts.x_mm), y_mm=float(ts.y_mm),
                                        z_mm=float(ts.z_mm))
        t_emg = s.emg.to_emg_clock(float(pulse.time_s))
        if trial is None:
            amp, reason, idx, bg = math.nan, "", -1, math.nan
            note = note or f"no trial within {self.trial_timeout_s:g} s of the pulse"
            rejected = True
        else:
            amp = float(trial.amplitude_uv[c])
            reason = trial.reject_reason[c]
            idx, bg = int(trial.index), float(trial.background_rms_uv[c])
            rejected = bool(reason)
            note = note or (f"rejected: {reason}" if rejected else "")
        refused = None
        try:
            step = self.protocol.observe_stimulus(fired, amp, rejected=rejected)
        except ProtocolError as exc:  # e.g. an operator set an intensity it cannot use
            refused = f"the protocol refused this trial: {exc}"
            step = Step(len(self.protocol.steps), fired, amp, rejected, False, refused)
        prev = self.pulses[-2].time_s if len(self.pulses) >= 2 else math.nan
        row = {"protocol": self.result_name, **step.as_dict(),
               "note": refused or note or step.note,
               "proposed_intensity_pct_mso": float(stim.intensity_pct_mso),
               "pulse_time_s": t_emg, "interval_s": float(pulse.time_s) - prev,
               "trial": idx, "channel": self._channel_name, "reject_reason": reason,
               "background_rms_uv": bg, **gate_info}
        if spatial:
            row["proposed_x_mm"], row["proposed_y_mm"] = float(stim.x_mm), float(stim.y_mm)
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in row.items()}
        self.steps.append(row)
        if s.record_path is not None:
            try:
                s.append_protocol_step(row, time_s=t_emg)
            except MepkitError as exc:
                self._saved = False
                raise _Stop(f"could not store step {step.index}: {exc}") from None
        if self.on_step is not None:
            self.on_step(row, self.protocol)
        if refused is not None:
            raise _Stop(refused)

    def _finish(self, reason: str, error: bool, interrupted: bool) -> RunResult:
        try:
            estimate = self.protocol.estimate
        except ProtocolError:
            estimate = None
        result = RunResult(self.protocol.name, reason, bool(self.protocol.done), estimate,
                           list(self.steps), self.session.record_path, self._saved,
                           interrupted=interrupted, error=error)
        s = self.session
        if s.record_path is not None:
            doc = {**result.as_dict(), "options": self.protocol.options(),
                   "runner": self.settings()}
            doc.pop("saved")
            try:
                s.set_protocol_result(self.result_name, doc)
            except MepkitError as exc:
                logger.error("the result of %s was not stored: %s", self.protocol.name, exc)
                result.saved = False
        if reason != "done":
            log = logger.warning if error else logger.info
            log("%s: run ended after %d pulses: %s", self.protocol.name, len(self.steps), reason)
        return result


def _session_stopped(session: Any) -> str:
    from mepkit.live import one_line

    err = session.error
    return "live session stopped" + (f": {one_line(err)}" if err is not None else "")


def run_protocol(session: Any, stimulator: Any, protocol: Protocol, **options: Any) -> RunResult:
    """Run ``protocol`` live (`ClosedLoopRunner` with ``options``) and return the result."""
    return ClosedLoopRunner(session, stimulator, protocol, **options).run()
