"""LSL outlets of the virtual subject: EMG (+ optional TTL) and JSON markers, in real time.

:class:`SimulatedAmplifier` renders the subject's EMG with
:class:`~mepkit.sim.emg.EmgSynth` and publishes it from a background thread:

* an EMG outlet (type ``EMG``, float32, µV; channel labels, units and types in
  ``<desc><channels>``; ``<acquisition><manufacturer>mepkit</manufacturer>``),
  plus an optional ``TRIG`` channel (``V``, 1 for 1 ms at each pulse);
* a marker outlet (type ``Markers``, one string channel, irregular rate, name
  ``<name>-markers``, source_id ``<source_id>-markers``) with one JSON marker
  per pulse (keys of :mod:`mepkit.markers`);
* with ``navigation=True``, a neuronavigation outlet (type ``Position``, name
  ``<name>-coil``, source_id ``<source_id>-coil``, ``navigation_rate_hz``, double)
  with channels ``x_mm y_mm z_mm qw qx qy qz``: where the stimulator last put the
  coil (:meth:`SimulatedAmplifier.move_coil`, or a pulse fired at a new position)
  plus hand jitter (an AR(1) wobble of ``navigation_jitter_mm`` SD per axis), the
  pose an identity quaternion. :meth:`SimulatedAmplifier.pause_navigation` makes
  the tracker lose the coil (no samples) and ``navigation_delay_s`` delays every
  sample (time stamps stay exact), for the failure cases.

Timing
------
Sample ``k`` (counted from the start) is taken at ``t0 + k / (sfreq_hz * (1 +
drift_ppm * 1e-6))`` where ``t0 = pylsl.local_clock()`` at
:meth:`SimulatedAmplifier.start` (the amplifier's clock runs ``drift_ppm`` fast
against the computer's): its *true time*, :meth:`SimulatedAmplifier.time_of_sample`.
A sample is pushed as soon as the clock has reached its true time, in chunks of
``chunk_ms`` (1 ms by default: 5 samples at 5 kHz), so the stream is real time
and a sample waits at most about one chunk plus the thread's wake-up jitter
before it is on the wire (see :meth:`SimulatedAmplifier.timing_stats`).

By default the chunks are pushed **without time stamps**, as most amplifier apps do:
liblsl stamps each chunk's last sample with the clock at the push and back-fills the
others at the nominal rate, so the stamps are late by the push delay and wobble at
every chunk edge. With ``stall_every_s`` the pushing thread stalls now and then
(``stall_ms``) and pushes the chunks due meanwhile back to back when it resumes, each
stamped at about that moment. ``stamps="ideal"`` stamps every sample with its true time
instead. Either way the ground truth (pulse sample index and true time) is exact.

A pulse fired with :meth:`SimulatedAmplifier.fire` lands on the next sample not
yet pushed (or on the first sample at or after ``at_s``); its artifact starts
on that very sample, its MEPs follow at the subject's latencies, and its marker
carries that sample's time stamp exactly.  The marker is pushed right after
the EMG chunk that contains the pulse sample (never before it), or
``marker_delay_s`` later to simulate markers that arrive late.

After :meth:`SimulatedAmplifier.restart` (outlets destroyed and re-created
with the same source_id, as when an amplifier is power-cycled) sample counting
goes on but ``t0`` is taken anew, so the time stamps jump by the pause.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from mepkit.sim.stimulator import Pulse, _check_intensity, make_marker
from mepkit.sim.subject import _HAND, HEMISPHERES, VirtualSubject

__all__ = ["SimulatedAmplifier"]

logger = logging.getLogger("mepkit.sim.outlet")

_TTL_MS = 1.0
_MAX_PUSH_S = 0.05  # a backlog is pushed in pieces of at most this
_N_LAG = 1 << 16


def _acquisition(desc, model: str):
    """The ``acquisition`` element of a stream description: mepkit's virtual ``model``."""
    acq = desc.append_child("acquisition")
    acq.append_child_value("manufacturer", "mepkit")
    acq.append_child_value("model", model)
    return acq


class SimulatedAmplifier:
    """The virtual subject's EMG and markers as live LSL streams.

    Parameters
    ----------
    subject : VirtualSubject, optional
        Default: the ``healthy`` preset with ``seed``.
    sfreq_hz : float
        Sampling rate.
    n_channels : int, optional
        Number of EMG channels: the first ones are the subject's channels, any
        beyond them noise-only (``EMG7``, ...).  Default: the subject's channels.
    channels : sequence of str, optional
        Explicit EMG channel labels instead of ``n_channels``; labels the
        subject does not have are noise-only.
    name : str
        EMG stream name; the marker stream is ``<name>-markers``.
    source_id : str, optional
        EMG stream source_id (default ``mepkit-<random hex>``); the marker
        stream's is ``<source_id>-markers``.
    markers : bool
        Publish the marker stream.
    ttl : bool
        Add the ``TRIG`` channel (0/1 V, 1 ms pulses).
    chunk_ms : float
        Push granularity.
    marker_delay_s : float
        Push each marker this long after its pulse sample (time stamps stay exact).
    stamps : {"push", "ideal"}
        ``"push"`` (default): chunks without time stamps, stamped by liblsl at the push,
        like real amplifier apps; ``"ideal"``: each sample stamped with its true time.
    drift_ppm : float
        The amplifier's clock runs this much fast against the computer's (negative: slow).
    stall_every_s : float, optional
        Mean time between stalls of the pushing thread (exponential); None: no stalls.
    stall_ms : (float, float)
        Range of stall durations (uniform), ms.
    seed : int
        Seed of the background EMG and of :meth:`auto_pulses`.
    navigation : bool
        Publish the neuronavigation stream of coil positions (module doc).
    navigation_rate_hz : float
        Its sampling rate (30 Hz, within the 10-60 Hz of optical trackers).
    navigation_jitter_mm : float
        SD per axis of the reported position around where the coil was put (0.5 mm).
    navigation_delay_s : float
        Push each position sample this long after its time stamp (a lagging tracker).
    marker_positions : bool
        Markers carry the coil position (``x_mm``, ``y_mm``); False: they do not, as
        from a stimulator that does not know where the coil is (then positions come
        from the navigation stream).
    start : bool
        Start publishing immediately (else call :meth:`start`).

    Examples
    --------
    >>> with SimulatedAmplifier(VirtualSubject.from_preset("healthy")) as amp:  # doctest: +SKIP
    ...     pulse = amp.fire(60, hemisphere="left")
    """

    def __init__(
        self,
        subject: VirtualSubject | None = None,
        *,
        sfreq_hz: float = 5000.0,
        n_channels: int | None = None,
        channels: Sequence[str] | None = None,
        name: str = "mepkit-virtual-emg",
        source_id: str | None = None,
        markers: bool = True,
        ttl: bool = False,
        chunk_ms: float = 1.0,
        marker_delay_s: float = 0.0,
        stamps: str = "push",
        drift_ppm: float = 0.0,
        stall_every_s: float | None = None,
        stall_ms: tuple[float, float] = (3.0, 15.0),
        seed: int = 0,
        navigation: bool = False,
        navigation_rate_hz: float = 30.0,
        navigation_jitter_mm: float = 0.5,
        navigation_delay_s: float = 0.0,
        marker_positions: bool = True,
        start: bool = True,
    ) -> None:
        self.subject = subject if subject is not None else VirtualSubject.from_preset("healthy", seed=seed)
        self.sfreq_hz = float(sfreq_hz)
        if not (math.isfinite(self.sfreq_hz) and self.sfreq_hz > 0):
            raise ValueError(f"sfreq_hz must be a positive number, got {sfreq_hz!r}")
        subj = list(self.subject.channels)
        if channels is not None:
            labels = [str(c) for c in channels]
            if not labels or len(set(labels)) != len(labels):
                raise ValueError(f"channels must be distinct labels, got {channels!r}")
        else:
            n = len(subj) if n_channels is None else int(n_channels)
            if n < 1:
                raise ValueError(f"n_channels must be >= 1, got {n_channels!r}")
            labels = subj[:n] + [f"EMG{k + 1}" for k in range(len(subj), n)]
        if "TRIG" in labels:
            raise ValueError("'TRIG' is reserved for the TTL channel (ttl=True)")
        self.emg_channels: tuple[str, ...] = tuple(labels)
        self._map = np.array([subj.index(c) if c in subj else -1 for c in labels])
        self.ttl = bool(ttl)
        self.channels: tuple[str, ...] = self.emg_channels + (("TRIG",) if self.ttl else ())
        self.name = str(name)
        self.source_id = str(source_id) if source_id else f"mepkit-{uuid.uuid4().hex[:12]}"
        self.marker_name = f"{self.name}-markers"
        self.marker_source_id = f"{self.source_id}-markers"
        self.markers = bool(markers)
        self.chunk_samples = max(1, int(round(float(chunk_ms) * self.sfreq_hz / 1000.0)))
        self.marker_delay_s = float(marker_delay_s)
        if not (math.isfinite(self.marker_delay_s) and self.marker_delay_s >= 0):
            raise ValueError(f"marker_delay_s must be >= 0, got {marker_delay_s!r}")
        if stamps not in ("push", "ideal"):
            raise ValueError(f"stamps must be 'push' or 'ideal', got {stamps!r}")
        self.stamps = stamps
        self.drift_ppm = float(drift_ppm)
        if not (math.isfinite(self.drift_ppm) and abs(self.drift_ppm) < 1e4):
            raise ValueError(f"drift_ppm must be a number of ppm (|x| < 10000), got {drift_ppm!r}")
        #: Rate at which the amplifier really takes samples (computer clock).
        self.true_rate_hz = self.sfreq_hz * (1.0 + self.drift_ppm * 1e-6)
        if stall_every_s is not None and not float(stall_every_s) > 0:
            raise ValueError(f"stall_every_s must be > 0 or None, got {stall_every_s!r}")
        self.stall_every_s = None if stall_every_s is None else float(stall_every_s)
        lo, hi = (float(v) for v in stall_ms)
        if not 0 <= lo <= hi:
            raise ValueError(f"stall_ms must be (MIN, MAX) with 0 <= MIN <= MAX, got {stall_ms!r}")
        self.stall_ms = (lo, hi)
        self.n_stalls = 0
        self._drops: list[tuple[int, int]] = []
        self._stall_rng = np.random.default_rng([int(seed), 11])
        self.seed = int(seed)
        self._synth = self.subject.make_emg_synth(self.sfreq_hz, len(labels), seed=self.seed)
        self._ttl_n = max(1, int(round(_TTL_MS * self.sfreq_hz / 1000.0)))
        self._rng = np.random.default_rng([self.seed, 7])

        self.navigation = bool(navigation)
        self.navigation_rate_hz = float(navigation_rate_hz)
        self.navigation_jitter_mm = float(navigation_jitter_mm)
        self.navigation_delay_s = float(navigation_delay_s)
        for nm, v in (("navigation_rate_hz", self.navigation_rate_hz),):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{nm} must be > 0, got {v!r}")
        for nm, v in (("navigation_jitter_mm", self.navigation_jitter_mm),
                      ("navigation_delay_s", self.navigation_delay_s)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{nm} must be >= 0, got {v!r}")
        self.marker_positions = bool(marker_positions)
        self.navigation_name = f"{self.name}-coil"
        self.navigation_source_id = f"{self.source_id}-coil"
        self._nav_outlet = None
        self._nav_next = math.nan
        self._nav_paused_until = -math.inf
        self._nav_wobble = np.zeros(3)
        self._nav_rng = np.random.default_rng([self.seed, 11])
        self._coil: list[tuple[float, float, float, float]] = []  # (since_s, x, y, z)
        self.navigation_samples = 0
        self._lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._emg_outlet = None
        self._marker_outlet = None
        self._t0 = math.nan
        self._k0 = 0
        self._pushed = 0  # samples pushed so far (absolute index of the next one)
        self._pulses: list[Pulse] = []
        self._pending: list[Pulse] = []  # markers not pushed yet
        self._ttl_on: list[tuple[int, int]] = []
        self._auto: dict[str, Any] | None = None
        self._next_contraction: int | None = None
        self.contractions: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._lags = np.zeros(_N_LAG)
        self._n_lags = 0
        if start:
            self.start()

    # ------------------------------------------------------------ lifecycle
    def _make_outlets(self) -> None:
        import pylsl

        info = pylsl.StreamInfo(self.name, "EMG", len(self.channels), self.sfreq_hz,
                                pylsl.cf_float32, self.source_id)
        desc = info.desc()
        _acquisition(desc, "virtual subject").append_child_value("serial_number", self.source_id)
        chs = desc.append_child("channels")
        for label in self.channels:
            ch = chs.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", "V" if label == "TRIG" else "microvolts")
            ch.append_child_value("type", "TTL" if label == "TRIG" else "EMG")
        subj = desc.append_child("subject")
        subj.append_child_value("preset", self.subject.name)
        subj.append_child_value("seed", str(self.subject.seed))
        self._emg_outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
        if self.markers:
            minfo = pylsl.StreamInfo(self.marker_name, "Markers", 1, pylsl.IRREGULAR_RATE,
                                     pylsl.cf_string, self.marker_source_id)
            mdesc = minfo.desc()
            _acquisition(mdesc, "virtual stimulator")
            mdesc.append_child_value("emg_source_id", self.source_id)
            self._marker_outlet = pylsl.StreamOutlet(minfo)
        if self.navigation:
            ninfo = pylsl.StreamInfo(self.navigation_name, "Position", 7,
                                     self.navigation_rate_hz, pylsl.cf_double64,
                                     self.navigation_source_id)
            nd = ninfo.desc()
            _acquisition(nd, "virtual neuronavigation")
            nd.append_child_value("emg_source_id", self.source_id)
            nch = nd.append_child("channels")
            for label in ("x_mm", "y_mm", "z_mm", "qw", "qx", "qy", "qz"):
                ch = nch.append_child("channel")
                ch.append_child_value("label", label)
                ch.append_child_value("unit", "mm" if label.endswith("_mm") else "")
                ch.append_child_value("type", "Position" if label.endswith("_mm") else
                                      "Orientation")
            self._nav_outlet = pylsl.StreamOutlet(ninfo)

    def start(self) -> "SimulatedAmplifier":
        """Create the outlets and start publishing (``t0`` = now)."""
        if self.running:
            return self
        self._check_error()
        self._make_outlets()
        self._stop_evt.clear()
        ready = threading.Event()
        with self._lock:  # fire() waits until t0 is set
            self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                            name=f"mepkit-sim-{self.source_id}")
            self._thread.start()
            ready.wait(5.0)
        return self

    def _set_t0_locked(self) -> None:
        import pylsl

        self._t0 = pylsl.local_clock()
        self._k0 = self._synth.position
        self._nav_next = self._t0
        for p in self._pending:  # pulses not pushed before a restart
            p.time_s = self.time_of_sample(p.sample_index)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop publishing and destroy the outlets (inlets see the streams vanish)."""
        self._stop_evt.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._emg_outlet = None
        self._marker_outlet = None
        self._nav_outlet = None
        self._check_error()

    close = stop

    def restart(self, gap_s: float = 0.0) -> None:
        """Destroy and re-create the outlets with the same source_id after ``gap_s``."""
        self.stop()
        if gap_s > 0:
            time.sleep(gap_s)
        self.start()

    def __enter__(self) -> "SimulatedAmplifier":
        return self if self.running else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self._stop_evt.set()
        except Exception:
            pass

    def _check_error(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"the simulated amplifier {self.source_id} failed") from err

    # ------------------------------------------------------------ clock
    @property
    def t0(self) -> float:
        """LSL time of the first sample since the last (re)start."""
        return self._t0

    def time_of_sample(self, k: int) -> float:
        """True time of absolute sample ``k`` (when the amplifier took it, LSL clock)."""
        return self._t0 + (k - self._k0) / self.true_rate_hz

    @property
    def n_pushed(self) -> int:
        """Samples pushed so far (= index of the next sample)."""
        return self._pushed

    # ------------------------------------------------------------ contractions
    def contract(self, duration_s: float, hand: str = "R", *, at_s: float | None = None,
                 rms_uv: float | None = None) -> dict[str, Any]:
        """The subject contracts one hand (``'R'`` or ``'L'``) voluntarily for
        ``duration_s``, now (from the next sample not yet pushed) or from ``at_s``.

        Background EMG rises to ``rms_uv`` (default: the subject's
        ``contraction_rms_uv``) on that hand's channels, and pulses answered by that
        hand meanwhile are facilitated (see `VirtualSubject`). Thread-safe. Returns the
        episode as also listed in `contractions`."""
        if hand not in ("R", "L"):
            raise ValueError(f"hand must be 'R' or 'L', got {hand!r}")
        if not float(duration_s) > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
        rms = self.subject.emg.contraction_rms_uv if rms_uv is None else float(rms_uv)
        idx = [i for i, c in enumerate(self.emg_channels) if c.endswith("_" + hand)]
        if not idx:
            raise ValueError(f"no channel of hand {hand!r} in {list(self.emg_channels)}")
        self._check_error()
        with self._lock:
            start = self._sample_at_locked(at_s)
            stop = start + max(4, int(round(float(duration_s) * self.sfreq_hz)))
            self._synth.add_contraction(start, stop, rms, idx)
            episode = {"start_s": self.time_of_sample(start), "stop_s": self.time_of_sample(stop),
                       "channels": [self.emg_channels[i] for i in idx], "rms_uv": rms}
            self.contractions.append(episode)
        return episode

    # ------------------------------------------------------------ navigation
    def move_coil(self, x_mm: float, y_mm: float, z_mm: float = 0.0) -> float:
        """Put the coil at ``(x_mm, y_mm, z_mm)`` now; returns the LSL time of the move.

        The navigation stream reports it (plus jitter) from its next sample on.
        """
        import pylsl

        x, y, z = float(x_mm), float(y_mm), float(z_mm)
        if not all(math.isfinite(v) for v in (x, y, z)):
            raise ValueError(f"the coil position must be finite, got ({x_mm!r}, {y_mm!r}, "
                             f"{z_mm!r})")
        now = pylsl.local_clock()
        with self._lock:
            self._coil.append((now, x, y, z))
            del self._coil[:-64]
        return now

    def pause_navigation(self, duration_s: float = math.inf) -> None:
        """The tracker loses the coil: no position samples for ``duration_s`` (default: until
        :meth:`resume_navigation`)."""
        import pylsl

        self._nav_paused_until = pylsl.local_clock() + float(duration_s)

    def resume_navigation(self) -> None:
        """Position samples flow again (from now; the pause is not back-filled)."""
        self._nav_paused_until = -math.inf

    def coil_position(self, time_s: float) -> tuple[float, float, float]:
        """Where the coil was put at LSL time ``time_s`` (NaN before any move)."""
        pos = (math.nan, math.nan, math.nan)
        for since, x, y, z in self._coil:
            if since <= time_s:
                pos = (x, y, z)
        return pos

    def _push_navigation(self, now: float) -> None:
        out = self._nav_outlet
        if out is None:
            return
        period = 1.0 / self.navigation_rate_hz
        # AR(1) hand wobble, correlation time ~0.5 s, stationary SD navigation_jitter_mm
        a = math.exp(-period / 0.5)
        sd = self.navigation_jitter_mm * math.sqrt(1.0 - a * a)
        while self._nav_next <= now - self.navigation_delay_s:
            t = self._nav_next
            self._nav_next += period
            self._nav_wobble = a * self._nav_wobble + sd * self._nav_rng.standard_normal(3)
            if t < self._nav_paused_until:
                continue
            with self._lock:
                x, y, z = self.coil_position(t)
            if not math.isfinite(x):
                continue  # no coil on the head yet
            out.push_sample([x + self._nav_wobble[0], y + self._nav_wobble[1],
                             z + self._nav_wobble[2], 1.0, 0.0, 0.0, 0.0], t)
            self.navigation_samples += 1

    # ------------------------------------------------------------ pulses
    def fire(self, intensity_pct_mso: float, x_mm: float | None = None, y_mm: float | None = None,
             hemisphere: str = "left", *, at_s: float | None = None, **meta: Any) -> Pulse:
        """Fire a pulse now or at ``at_s`` (local clock).

        "Now" is the sample the amplifier is acquiring at this moment, as with real
        hardware, even when the pushing thread lags behind (a loaded computer, a stall):
        the pulse never lands on a sample acquired before it was fired. A pulse is never
        placed on a sample already generated (pushed).

        Thread-safe.  Returns the :class:`~mepkit.sim.stimulator.Pulse` with its
        exact time stamp, sample index and per-channel ground truth; when it
        returns, the pulse sample may still be up to one chunk in the future
        (:meth:`wait_pushed` waits for it).  ``meta`` (``site``, ``condition``,
        ``label``) goes into the marker.
        """
        intensity = _check_intensity(intensity_pct_mso)
        if hemisphere not in HEMISPHERES:
            raise ValueError(f"hemisphere must be one of {HEMISPHERES}, got {hemisphere!r}")
        self._check_error()
        import pylsl

        now = pylsl.local_clock()
        if self.navigation and x_mm is not None and y_mm is not None:
            with self._lock:
                cx, cy, _ = self.coil_position(now)
            if not (cx == float(x_mm) and cy == float(y_mm)):
                # the coil goes there first; the pulse waits until the tracker has seen it
                moved = self.move_coil(x_mm, y_mm)
                settle = moved + 1.5 / self.navigation_rate_hz + self.navigation_delay_s
                at_s = settle if at_s is None else max(float(at_s), settle)
        with self._lock:
            k = self._sample_at_locked(now if at_s is None else at_s)
            return self._fire_locked(k, intensity, x_mm, y_mm, hemisphere, meta)

    def _sample_at_locked(self, at_s: float | None) -> int:
        """The next sample not yet generated, or the first at or after ``at_s`` if later
        (the lock is held)."""
        if not self.running:
            raise RuntimeError("the simulated amplifier is not running: call start() first")
        k = self._synth.position
        if at_s is not None:
            k = max(k, int(math.ceil((float(at_s) - self._t0) * self.true_rate_hz - 1e-6))
                    + self._k0)
        return k

    def _fire_locked(self, k: int, intensity: float, x_mm, y_mm, hemisphere: str,
                     meta: dict[str, Any]) -> Pulse:
        # the hand that answers (the opposite one) may be contracting: facilitation
        hand = "_" + _HAND[hemisphere]
        activation = self._synth.activation(
            k, [i for i, c in enumerate(self.emg_channels) if c.endswith(hand)])
        r = self.subject.respond(intensity, hemisphere=hemisphere, x_mm=x_mm, y_mm=y_mm,
                                 activation=activation)
        sel = self._map >= 0
        amp = np.zeros(len(self.emg_channels))
        lat = np.full(len(self.emg_channels), np.nan)
        med = np.zeros(len(self.emg_channels))
        pm = np.zeros(len(self.emg_channels))
        amp[sel] = r.amplitude_uv[self._map[sel]]
        lat[sel] = r.latency_ms[self._map[sel]]
        med[sel] = r.expected_amplitude_uv[self._map[sel]]
        pm[sel] = r.p_mep[self._map[sel]]
        self._synth.add_pulse(k, amp, lat, artifact=True)
        if self.ttl:
            self._ttl_on.append((k, k + self._ttl_n))
        if self.marker_positions:
            marker = make_marker(intensity, x_mm, y_mm, hemisphere, **meta)
        else:
            marker = make_marker(intensity, None, None, hemisphere, **meta)
        truth = {"channels": list(self.emg_channels), "amplitude_uv": amp, "latency_ms": lat,
                 "expected_amplitude_uv": med, "p_mep": pm, "subject_trial": r.trial,
                 "coil_x_mm": r.x_mm, "coil_y_mm": r.y_mm, "activation": r.activation}
        pulse = Pulse(time_s=self.time_of_sample(k), intensity_pct_mso=intensity, x_mm=x_mm,
                      y_mm=y_mm, hemisphere=hemisphere, marker=marker, meta=dict(meta),
                      sample_index=k, truth=truth)
        self._pulses.append(pulse)
        if self.markers:
            self._pending.append(pulse)
            self._pending.sort(key=lambda p: p.sample_index)
        return pulse

    def drop_samples(self, start: int, n: int) -> None:
        """Lose samples ``start .. start + n - 1`` between the amplifier and the app: they
        are never pushed (the app goes on with the next ones), as when a USB or radio link
        drops packets. Their ground truth is kept."""
        with self._lock:
            self._drops.append((int(start), int(start) + int(n)))

    def wait_pushed(self, pulse: Pulse, timeout: float = 1.0) -> bool:
        """Wait until the pulse's sample (and marker, unless delayed) has been pushed."""
        deadline = time.monotonic() + timeout
        while self._pushed <= pulse.sample_index or (
                self.marker_delay_s == 0 and any(p is pulse for p in self._pending)):
            if time.monotonic() > deadline or not self.running:
                return False
            time.sleep(0.0005)
        return True

    def auto_pulses(self, intensity_range: tuple[float, float] = (30.0, 80.0),
                    isi_s: tuple[float, float] = (4.0, 6.0), hemisphere: str = "left", *,
                    x_mm: float | None = None, y_mm: float | None = None,
                    n_pulses: int | None = None, first_after_s: float | None = None,
                    **meta: Any) -> None:
        """Fire by itself: uniform random integer intensities and intervals.

        ``hemisphere='both'`` picks one at random per pulse.  The first pulse
        comes after ``first_after_s`` (default ``min(1 s, isi_s[0])``); it stops
        after ``n_pulses`` or :meth:`stop_auto_pulses`.
        """
        lo, hi = (float(v) for v in intensity_range)
        _check_intensity(lo), _check_intensity(hi)
        a, b = (float(v) for v in isi_s)
        if not (lo <= hi and 0 < a <= b):
            raise ValueError(f"need intensity MIN <= MAX and 0 < ISI MIN <= MAX, got "
                             f"{intensity_range!r}, {isi_s!r}")
        if hemisphere not in HEMISPHERES + ("both",):
            raise ValueError(f"hemisphere must be 'left', 'right' or 'both', got {hemisphere!r}")
        first = min(1.0, a) if first_after_s is None else float(first_after_s)
        with self._lock:
            self._auto = {"next": self._synth.position + int(round(first * self.sfreq_hz)),
                          "intensity": (lo, hi), "isi": (a, b), "hemisphere": hemisphere,
                          "x_mm": x_mm, "y_mm": y_mm, "left": n_pulses, "meta": meta}

    def stop_auto_pulses(self) -> None:
        with self._lock:
            self._auto = None

    @property
    def pulses(self) -> list[Pulse]:
        """Every pulse fired, in order (a copy of the list)."""
        with self._lock:
            return list(self._pulses)

    @property
    def ground_truth(self) -> list[dict[str, Any]]:
        """One dict per pulse: time, settings, marker and per-channel truth."""
        return [p.as_dict() for p in self.pulses]

    def timing_stats(self) -> dict[str, float]:
        """Push lag (ms): clock after the push minus the true time of the chunk's last sample."""
        n = min(self._n_lags, _N_LAG)
        lag = self._lags[:n] * 1000.0
        if n == 0:
            return {"n_pushes": 0}
        return {"n_pushes": int(self._n_lags), "mean_ms": float(lag.mean()),
                "p50_ms": float(np.percentile(lag, 50)), "p99_ms": float(np.percentile(lag, 99)),
                "max_ms": float(lag.max())}

    # ------------------------------------------------------------ worker
    def _schedule_locked(self, stop: int) -> None:
        """Add contractions and auto pulses that start before sample ``stop``
        (contractions first: a pulse in one is facilitated)."""
        e = self.subject.emg
        if e.contraction_rate_per_min > 0:
            if self._next_contraction is None:
                self._next_contraction = self._synth.position + self._draw_wait()
            while self._next_contraction < stop:
                start = max(self._next_contraction, self._synth.position)
                dur = int(round(self._rng.uniform(*e.contraction_duration_s) * self.sfreq_hz))
                hand = "_R" if self._rng.integers(2) == 0 else "_L"
                idx = [i for i, c in enumerate(self.emg_channels) if c.endswith(hand)]
                if idx:
                    self._synth.add_contraction(start, start + max(dur, 4), e.contraction_rms_uv, idx)
                    self.contractions.append({"start_s": self.time_of_sample(start),
                                              "stop_s": self.time_of_sample(start + dur),
                                              "channels": [self.emg_channels[i] for i in idx],
                                              "rms_uv": e.contraction_rms_uv})
                self._next_contraction = start + dur + self._draw_wait()
        auto = self._auto
        while auto is not None and auto["next"] < stop:
            lo, hi = auto["intensity"]
            intensity = float(self._rng.integers(int(math.ceil(lo)), int(math.floor(hi)) + 1)) \
                if math.floor(hi) >= math.ceil(lo) else lo
            h = auto["hemisphere"]
            if h == "both":
                h = HEMISPHERES[int(self._rng.integers(2))]
            self._fire_locked(max(auto["next"], self._synth.position), intensity, auto["x_mm"],
                              auto["y_mm"], h, dict(auto["meta"]))
            auto["next"] += int(round(self._rng.uniform(*auto["isi"]) * self.sfreq_hz))
            if auto["left"] is not None:
                auto["left"] -= 1
                if auto["left"] <= 0:
                    self._auto = auto = None

    def _draw_wait(self) -> int:
        rate = self.subject.emg.contraction_rate_per_min / 60.0
        return max(1, int(round(self._rng.exponential(1.0 / rate) * self.sfreq_hz)))

    def _run(self, ready: threading.Event) -> None:
        try:
            self._set_t0_locked()  # in the thread: the first samples are not late
            ready.set()
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - log, stop, maybe re-raise later
            logger.exception("simulated amplifier %s stopped by an error", self.source_id)
            self.error = exc
        finally:
            ready.set()

    def _loop(self) -> None:
        import pylsl

        clock = pylsl.local_clock
        fs, chunk = self.true_rate_hz, self.chunk_samples
        max_push = max(chunk, int(math.ceil(_MAX_PUSH_S * fs)))
        emg_out, mk_out = self._emg_outlet, self._marker_outlet
        n_emg = len(self.emg_channels)
        block = np.zeros((max_push, len(self.channels)), dtype=np.float32)
        t0, k0 = self._t0, self._k0
        ideal = self.stamps == "ideal"
        per_sample = ideal and self.drift_ppm != 0.0
        stall_at = self._next_stall(clock())
        while not self._stop_evt.is_set():
            now = clock()
            if now >= stall_at:  # the app is held up; the chunks due meanwhile wait
                self._stall()
                stall_at = self._next_stall(clock())
                continue
            due = k0 + int(math.floor((now - t0) * fs)) + 1  # samples taken by now
            pos = self._pushed
            n = min(due - pos, max_push)
            to_push: list[Pulse] = []
            if n >= chunk:
                with self._lock:
                    self._schedule_locked(pos + n)
                    data = self._synth.generate(n)
                    out = block[:n]
                    out[:, :n_emg] = data
                    if self.ttl:
                        out[:, n_emg] = 0.0
                        for a, b in self._ttl_on:
                            lo, hi = max(a, pos), min(b, pos + n)
                            if lo < hi:
                                out[lo - pos:hi - pos, n_emg] = 1.0
                        self._ttl_on = [(a, b) for a, b in self._ttl_on if b > pos + n]
                kept = np.arange(pos, pos + n)
                if self._drops:
                    lost = np.zeros(n, dtype=bool)
                    for a, b in self._drops:
                        lost |= (kept >= a) & (kept < b)
                    if lost.any():
                        out, kept = out[~lost], kept[~lost]
                if ideal and len(kept):
                    if per_sample or len(kept) < n:
                        emg_out.push_chunk(out, [t0 + (k - k0) / fs for k in kept.tolist()])
                    else:
                        emg_out.push_chunk(out, t0 + (pos + n - 1 - k0) / fs)
                elif len(kept):
                    # as amplifier apps do: one push per chunk, no stamp (liblsl stamps it now)
                    for a in range(0, len(kept), chunk):
                        emg_out.push_chunk(out[a:min(len(kept), a + chunk)])
                self._lags[self._n_lags % _N_LAG] = clock() - (t0 + (pos + n - 1 - k0) / fs)
                self._n_lags += 1
                self._pushed = pos + n
            if self._pending and mk_out is not None:
                t_now = clock()
                with self._lock:
                    while self._pending and self._pending[0].sample_index < self._pushed and \
                            t_now >= self._pending[0].time_s + self.marker_delay_s:
                        to_push.append(self._pending.pop(0))
                for p in to_push:
                    mk_out.push_sample([p.marker], p.time_s)
            if self._nav_outlet is not None:
                self._push_navigation(clock())
            # sleep until the next chunk is due
            wake = t0 + (self._pushed + chunk - 1 - k0) / fs
            wait = min(wake, stall_at) - clock()
            if wait > 0:
                time.sleep(min(wait, 0.01))

    def _next_stall(self, now: float) -> float:
        if self.stall_every_s is None:
            return math.inf
        return now + float(self._stall_rng.exponential(self.stall_every_s))

    def _stall(self) -> None:
        lo, hi = self.stall_ms
        time.sleep(float(self._stall_rng.uniform(lo, hi)) / 1000.0)
        self.n_stalls += 1
