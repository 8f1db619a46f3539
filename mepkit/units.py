"""Units of EMG channels: stream metadata says V, mV, µV or nV; mepkit reports µV.

The one place that turns unit names into factors: the XDF reader, live acquisition, the
record and ``convert`` all use `scale_to_uv` and `channel_scales`.
"""

from __future__ import annotations

from typing import Sequence

from mepkit.errors import FileFormatError, UsageError

__all__ = ["scale_to_uv", "channel_scales", "UNIT_SCALES", "ASSUMED_UNIT"]

#: Factor that turns a value in the named unit into µV (keys lower-case, without spaces).
UNIT_SCALES = {
    "v": 1e6, "volt": 1e6, "volts": 1e6,
    "mv": 1e3, "millivolt": 1e3, "millivolts": 1e3,
    "uv": 1.0, "µv": 1.0, "μv": 1.0, "microvolt": 1.0, "microvolts": 1.0,
    "nv": 1e-3, "nanovolt": 1e-3, "nanovolts": 1e-3,
}
#: The unit taken for a channel whose metadata gives none (with a warning).
ASSUMED_UNIT = "microvolts"


def scale_to_uv(unit: str | None) -> float | None:
    """Factor from ``unit`` to µV, or ``None`` when the unit is not a voltage mepkit knows.

    Examples
    --------
    >>> scale_to_uv("mV"), scale_to_uv("micro volts"), scale_to_uv("V"), scale_to_uv("a.u.")
    (1000.0, 1.0, 1000000.0, None)
    """
    if unit is None:
        return None
    return UNIT_SCALES.get(str(unit).strip().lower().replace(" ", ""))


def channel_scales(labels: Sequence[str], units: Sequence[str], *,
                   unit_override: str | None = None, source: str = "",
                   skip: int | None = None) -> tuple[list[float], list[str], list[str]]:
    """Per-channel factors to µV from the channels' unit names.

    Parameters
    ----------
    labels, units : sequence of str
        Each channel's label and unit as the stream describes them ("" when it gives none).
    unit_override : str, optional
        The unit of every channel, whatever the metadata says (``--unit``).
    source : str
        What the channels belong to (a file, a stream), for messages.
    skip : int, optional
        Index of a channel that is not EMG (a TTL trigger): factor 1, unit kept, not checked.

    Returns
    -------
    scales : list of float
        Factor per channel.
    units : list of str
        The unit each channel is taken to be in (a missing one becomes `ASSUMED_UNIT`).
    notes : list of str
        Warnings to show (channels without a unit).

    Raises
    ------
    UsageError
        ``unit_override`` is not a voltage unit mepkit knows.
    FileFormatError
        A channel's unit is not a voltage unit mepkit knows.
    """
    if unit_override is not None and scale_to_uv(unit_override) is None:
        raise UsageError(f"unit {unit_override!r} is not a voltage unit mepkit knows "
                         f"(V, mV, uV, nV)")
    scales: list[float] = []
    out: list[str] = []
    missing: list[str] = []
    for i, (label, unit) in enumerate(zip(labels, units)):
        unit = (unit or "").strip()
        if i == skip:
            scales.append(1.0)
            out.append(unit)
            continue
        if unit_override is not None:
            unit = unit_override
        elif not unit:
            missing.append(str(label))
            unit = ASSUMED_UNIT
        scale = scale_to_uv(unit)
        if scale is None:
            raise FileFormatError(
                f"{source}: channel {label!r} has unit {unit!r}, which is not a voltage mepkit "
                f"knows (V, mV, uV, nV); give the unit (unit='uV', --unit uV)")
        scales.append(scale)
        out.append(unit)
    notes = []
    if missing:
        notes.append(f"{source}: no unit in the stream metadata for channel(s) "
                     f"{', '.join(missing)}; assuming microvolts (override with --unit)")
    return scales, out, notes
