"""Units of EMG channels: stream metadata says V, mV or µV; mepkit reports µV."""

from __future__ import annotations

__all__ = ["scale_to_uv", "UNIT_SCALES"]

#: Factor that turns a value in the named unit into µV (keys lower-case).
UNIT_SCALES = {
    "v": 1e6, "volt": 1e6, "volts": 1e6,
    "mv": 1e3, "millivolt": 1e3, "millivolts": 1e3,
    "uv": 1.0, "µv": 1.0, "μv": 1.0, "microvolt": 1.0, "microvolts": 1.0, "micro volts": 1.0,
    "nv": 1e-3, "nanovolt": 1e-3, "nanovolts": 1e-3,
}


def scale_to_uv(unit: str | None) -> float | None:
    """Factor from ``unit`` to µV, or ``None`` when the unit is not a voltage mepkit knows.

    Examples
    --------
    >>> scale_to_uv("mV"), scale_to_uv("microvolts"), scale_to_uv("V")
    (1000.0, 1.0, 1000000.0)
    """
    if unit is None:
        return None
    return UNIT_SCALES.get(str(unit).strip().lower())
