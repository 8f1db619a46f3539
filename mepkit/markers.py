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

__all__ = ["StimInfo", "parse_marker", "KNOWN_KEYS", "MAX_MARKER_CHARS"]

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


#: Longest marker text parsed; a longer one is cut to this many characters, its label.
MAX_MARKER_CHARS = 1024


def _clean(text: str) -> str:
    """``text`` as valid UTF-8 (a lone surrogate from a JSON escape becomes "?")."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _number(value: Any, key: str, info: StimInfo) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError("a boolean")
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        info.problems.append(f"{key}={_short(value)} is not a number")
        return math.nan
    if not math.isfinite(out):
        info.problems.append(f"{key}={_short(value)} is not finite")
        return math.nan
    return out


def _short(value: Any, n: int = 60) -> str:
    try:
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "<huge int>"
    except Exception:  # noqa: BLE001 - a repr that fails (int digit limit, recursion)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= n else text[:n] + "..."


def parse_marker(text: Any) -> StimInfo:
    """Parse one marker string into :class:`StimInfo`.

    Markers come from other programs and are not trusted: a text longer than
    `MAX_MARKER_CHARS` is cut, and every failure of parsing (invalid JSON, numbers beyond
    float range or the integer digit limit, deep nesting, invalid Unicode, a value that is
    not a number) is listed in ``StimInfo.problems``, never raised. A marker with a problem
    keeps its text (cut) as its ``label`` unless it gives one, so the trial is still
    measured and can be told apart.
    """
    if isinstance(text, (list, tuple)):
        text = text[0] if len(text) else ""
    try:
        text = _clean("" if text is None else str(text)).strip()
    except Exception:  # noqa: BLE001 - an object whose str() fails
        text = f"<unprintable {type(text).__name__} marker>"
    info = StimInfo()
    if len(text) > MAX_MARKER_CHARS:
        info.label = text[:MAX_MARKER_CHARS]
        info.problems.append(f"marker of {len(text)} characters is longer than "
                             f"{MAX_MARKER_CHARS}; its first {MAX_MARKER_CHARS} are its label")
        return info
    if not text.startswith("{"):
        info.label = text
        return info
    try:
        _fill(info, json.loads(text))
    except json.JSONDecodeError as exc:
        info.problems.append(f"marker looks like JSON but is not valid ({exc.msg} at char "
                             f"{exc.pos})")
    except Exception as exc:  # noqa: BLE001 - digit limit, recursion, anything else
        info.problems.append(f"marker could not be read ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:80]})")
    if info.problems and not info.label:
        info.label = text
    if info.extra:
        info.problems.append(f"unknown marker key(s) {sorted(info.extra)} kept as extra metadata")
    return info


def _fill(info: StimInfo, data: Any) -> None:
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if key in ("intensity", "intensity_pct_mso"):
            info.intensity_pct_mso = _number(value, key, info)
        elif key in ("x_mm", "y_mm", "z_mm"):
            setattr(info, key, _number(value, key, info))
        elif key in ("site", "hemisphere", "condition", "label"):
            if isinstance(value, (dict, list)):
                info.problems.append(f"{key} is a {type(value).__name__}, not text")
                continue
            text = "" if value is None else str(value)
            clean = _clean(text)
            if clean != text:
                info.problems.append(f"{key} is not valid Unicode; replaced by {clean[:40]!r}")
            setattr(info, key, clean[:MAX_MARKER_CHARS])
        else:
            info.extra[_clean(str(key))] = value
