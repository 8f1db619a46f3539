"""Parsing of TMS pulse markers.

A marker that is a JSON object supplies stimulus metadata: ``intensity`` (%MSO;
``intensity_pct_mso`` is accepted too), ``x_mm``, ``y_mm``, ``z_mm`` (coil position;
``z_mm`` from neuronavigation), ``site`` (a grid site name, see
:mod:`mepkit.analysis.grids`),
``hemisphere``, ``condition`` and ``label``. Any other string is the trial's label.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StimInfo", "parse_marker", "KNOWN_KEYS"]

logger = logging.getLogger("mepkit.markers")

KNOWN_KEYS = ("intensity", "intensity_pct_mso", "x_mm", "y_mm", "z_mm", "site", "hemisphere",
              "condition", "label")


@dataclass
class StimInfo:
    """Metadata of one pulse, parsed from its marker."""

    label: str = ""
    intensity_pct_mso: float = math.nan
    x_mm: float = math.nan
    y_mm: float = math.nan
    z_mm: float = math.nan
    site: str = ""
    hemisphere: str = ""
    condition: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _number(value: Any, key: str, info: StimInfo) -> float:
    if isinstance(value, bool):
        value = None
    try:
        out = float(value)
    except (TypeError, ValueError):
        info.problems.append(f"{key}={value!r} is not a number")
        return math.nan
    if not math.isfinite(out):
        info.problems.append(f"{key}={value!r} is not finite")
        return math.nan
    return out


def parse_marker(text: Any) -> StimInfo:
    """Parse one marker string into :class:`StimInfo`.

    Problems (invalid JSON, a non-numeric intensity, unknown keys) are listed in
    ``StimInfo.problems`` rather than raised, so one bad marker never stops a session.
    """
    if isinstance(text, (list, tuple)):
        text = text[0] if len(text) else ""
    text = "" if text is None else str(text)
    stripped = text.strip()
    info = StimInfo()
    if not stripped.startswith("{"):
        info.label = stripped
        return info
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        info.label = stripped
        info.problems.append(f"marker looks like JSON but is not valid ({exc.msg} at char {exc.pos})")
        return info
    if not isinstance(data, dict):
        info.label = stripped
        return info
    for key, value in data.items():
        if key in ("intensity", "intensity_pct_mso"):
            info.intensity_pct_mso = _number(value, key, info)
        elif key in ("x_mm", "y_mm", "z_mm"):
            setattr(info, key, _number(value, key, info))
        elif key in ("site", "hemisphere", "condition", "label"):
            setattr(info, key, "" if value is None else str(value))
        else:
            info.extra[key] = value
    if info.extra:
        info.problems.append(f"unknown marker key(s) {sorted(info.extra)} kept as extra metadata")
    return info
