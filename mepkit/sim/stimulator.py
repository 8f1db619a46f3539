"""Stimulators: the one interface protocols and the session runner use to fire pulses.

A protocol proposes a stimulus, the session runner calls
``stimulator.fire(intensity_pct_mso, x_mm, y_mm, hemisphere, **meta)`` and gets
a :class:`Pulse` back: when the pulse went out (on the LSL clock, as
``pylsl.local_clock()`` counts) and with what settings.  The pipeline measures
the trial from the EMG around ``Pulse.time_s`` (or from the marker/TTL the
device produced, which should agree).

Implementations here:

* :class:`SimulatedStimulator` -- fires the virtual subject inside a
  :class:`mepkit.sim.outlet.SimulatedAmplifier` (artifact, MEPs, marker and
  optional TTL appear in the published LSL streams).
* :class:`ManualStimulator` -- asks the operator to set the intensity and fire
  a real device by hand, and stamps the pulse when the operator confirms.

Writing an adapter for a real device
------------------------------------
Subclass :class:`Stimulator` and implement :meth:`Stimulator.fire`:

1. Validate and set the intensity (%MSO) on the device, wait until it is armed
   and charged (devices report it; MagVenture/Magstim serial protocols do).
2. Trigger the pulse (serial/TTL command) and take ``pylsl.local_clock()``
   right before the trigger is sent; add the device's known trigger-to-pulse
   delay.  Prefer a hardware TTL from the stimulator recorded in the EMG
   stream: then the EMG-clock edge, not this software time, locates the trial.
3. Push a JSON marker (keys of :mod:`mepkit.markers`: ``intensity``, ``x_mm``,
   ``y_mm``, ``site``, ``hemisphere``, ``condition``, ``label``) with that time
   stamp on a marker outlet, if the device does not publish its own.
4. Return ``Pulse(time_s=..., intensity_pct_mso=<the intensity the device
   reports>, ...)``; raise :class:`StimulatorError` when the device refuses
   (not armed, coil too hot, intensity out of range) so the runner can stop
   cleanly.  ``fire`` may block until the pulse is out; it is called from one
   thread at a time.

The coil position (``x_mm``, ``y_mm``) comes from the neuronavigation or the
grid the operator follows; a device adapter passes it through to the marker.
"""

from __future__ import annotations

import abc
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["Pulse", "Stimulator", "SimulatedStimulator", "ManualStimulator",
           "StimulatorError", "make_marker"]


class StimulatorError(RuntimeError):
    """The stimulator could not fire (refused, disconnected, operator aborted)."""


def make_marker(intensity_pct_mso: float, x_mm: float | None = None, y_mm: float | None = None,
                hemisphere: str | None = None, **meta: Any) -> str:
    """The JSON marker string of a pulse (the keys of :mod:`mepkit.markers`).

    ``None`` values are left out.

    Examples
    --------
    >>> make_marker(55, hemisphere="left", site="hotspot")
    '{"intensity": 55.0, "hemisphere": "left", "site": "hotspot"}'
    """
    d: dict[str, Any] = {"intensity": float(intensity_pct_mso)}
    if x_mm is not None:
        d["x_mm"] = float(x_mm)
    if y_mm is not None:
        d["y_mm"] = float(y_mm)
    if hemisphere is not None:
        d["hemisphere"] = hemisphere
    for k, v in meta.items():
        if v is not None:
            d[k] = v
    return json.dumps(d)


@dataclass(eq=False)
class Pulse:
    """One TMS pulse as fired.

    Attributes
    ----------
    time_s : float
        Time of the pulse on the LSL clock (``pylsl.local_clock()``).
    intensity_pct_mso : float
    x_mm, y_mm : float or None
        Coil position (None: not given, i.e. at the hotspot).
    hemisphere : str
    marker : str
        The JSON marker sent (or that would be sent) with it.
    meta : dict
        Further keyword metadata given to ``fire`` (site, condition, label...).
    sample_index : int or None
        Simulated pulses: index of the EMG sample of the pulse (from stream start).
    truth : dict or None
        Simulated pulses: per-channel ground truth (``channels``,
        ``amplitude_uv``, ``latency_ms``, ``expected_amplitude_uv``, ``p_mep``).
    """

    time_s: float
    intensity_pct_mso: float
    x_mm: float | None = None
    y_mm: float | None = None
    hemisphere: str = "left"
    marker: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    sample_index: int | None = None
    truth: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {"time_s": self.time_s, "intensity_pct_mso": self.intensity_pct_mso,
             "x_mm": self.x_mm, "y_mm": self.y_mm, "hemisphere": self.hemisphere,
             "marker": self.marker, "sample_index": self.sample_index, **self.meta}
        if self.truth is not None:
            d.update(self.truth)
        return d


def _check_intensity(intensity_pct_mso: float) -> float:
    try:
        value = float(intensity_pct_mso)
    except (TypeError, ValueError):
        value = math.nan
    if not (0.0 <= value <= 100.0):
        raise ValueError(f"intensity_pct_mso must be within 0..100 %MSO, got {intensity_pct_mso!r}")
    return value


class Stimulator(abc.ABC):
    """A device that fires TMS pulses (see the module doc for writing one)."""

    @abc.abstractmethod
    def fire(self, intensity_pct_mso: float, x_mm: float | None = None,
             y_mm: float | None = None, hemisphere: str = "left", **meta: Any) -> Pulse:
        """Fire one pulse and return it with its time on the LSL clock.

        Parameters
        ----------
        intensity_pct_mso : float
            Stimulator output, 0–100 %MSO.
        x_mm, y_mm : float, optional
            Coil position (``None``: the hotspot / not tracked).
        hemisphere : {'left', 'right'}
            Stimulated hemisphere.
        **meta
            Marker metadata: ``site``, ``condition``, ``label``.

        Raises
        ------
        StimulatorError
            When the pulse was not delivered.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device (default: nothing)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SimulatedStimulator(Stimulator):
    """Fires the virtual subject of a :class:`~mepkit.sim.outlet.SimulatedAmplifier`.

    The pulse lands on the next EMG sample the amplifier has not pushed yet
    (``Pulse.time_s`` is at most one push chunk in the future when ``fire``
    returns); the marker goes out when that sample is pushed.
    """

    def __init__(self, amplifier) -> None:
        self.amplifier = amplifier

    def fire(self, intensity_pct_mso: float, x_mm: float | None = None,
             y_mm: float | None = None, hemisphere: str = "left", **meta: Any) -> Pulse:
        try:
            return self.amplifier.fire(intensity_pct_mso, x_mm, y_mm, hemisphere, **meta)
        except RuntimeError as exc:
            raise StimulatorError(str(exc)) from exc


class ManualStimulator(Stimulator):
    """The operator fires a real stimulator by hand; this class asks and stamps.

    ``fire`` writes a prompt (intensity, position, hemisphere) to ``prompt_stream``
    and reads one line with ``input_fn``: an empty line confirms the requested
    intensity, a number is the intensity actually used, ``q``/``quit``/``abort``
    (or end of input) raises :class:`StimulatorError`.  The pulse time is the
    clock reading when the answer arrived (the operator presses Enter as they
    fire; expect ~0.1–0.3 s of human delay, so pair it with markers or a TTL
    from the device for the trial timing).

    Parameters
    ----------
    input_fn : callable, optional
        Reads one line (default :func:`input`); ``EOFError`` means abort.
    prompt_stream : text stream, optional
        Where the prompt goes (default ``sys.stderr``).
    clock : callable, optional
        Returns the time (default ``pylsl.local_clock``).
    marker_outlet : pylsl.StreamOutlet, optional
        If given, the JSON marker is pushed to it with the pulse time.
    """

    def __init__(self, *, input_fn: Callable[[], str] | None = None,
                 prompt_stream: TextIO | None = None,
                 clock: Callable[[], float] | None = None, marker_outlet=None) -> None:
        self._input = input_fn if input_fn is not None else input
        self._out = prompt_stream
        if clock is None:
            import pylsl

            clock = pylsl.local_clock
        self._clock = clock
        self.marker_outlet = marker_outlet
        self.pulses: list[Pulse] = []

    def fire(self, intensity_pct_mso: float, x_mm: float | None = None,
             y_mm: float | None = None, hemisphere: str = "left", **meta: Any) -> Pulse:
        requested = _check_intensity(intensity_pct_mso)
        fmt = lambda v: "?" if v is None else f"{float(v):.1f}"  # noqa: E731
        where = ("" if x_mm is None and y_mm is None else
                 f", coil at x={fmt(x_mm)} mm, y={fmt(y_mm)} mm")
        extra = "".join(f", {k}={v}" for k, v in meta.items())
        out = self._out if self._out is not None else sys.stderr
        while True:
            out.write(f"Set {requested:g} %MSO, {hemisphere} hemisphere{where}{extra}; "
                      "fire and press Enter (or type the intensity used, q to abort): ")
            out.flush()
            try:
                answer = self._input()
            except EOFError:
                raise StimulatorError("operator input closed: pulse not fired") from None
            t = float(self._clock())
            answer = (answer or "").strip()
            if answer.lower() in ("q", "quit", "abort"):
                raise StimulatorError("operator aborted: pulse not fired")
            if not answer:
                used = requested
                break
            try:
                used = _check_intensity(answer.rstrip("%"))
                break
            except ValueError:
                out.write(f"not an intensity: {answer!r} (0-100 %MSO)\n")
        marker = make_marker(used, x_mm, y_mm, hemisphere, **meta)
        pulse = Pulse(time_s=t, intensity_pct_mso=used, x_mm=x_mm, y_mm=y_mm,
                      hemisphere=hemisphere, marker=marker, meta=dict(meta))
        if self.marker_outlet is not None:
            self.marker_outlet.push_sample([marker], t)
        self.pulses.append(pulse)
        return pulse
