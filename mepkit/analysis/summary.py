"""Numbers, intervals and a hemispheric-excitability result as text, one way for every output.

``mepkit excitability`` prints with :data:`PLAIN` (ASCII: ``-`` for nothing, ``inf``); the
HTML report uses :data:`TYPOGRAPHIC` (``–``, ``∞``, ``−``). Both take their rows from
:func:`excitability_rows`, so the terminal and the report always say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Style", "PLAIN", "TYPOGRAPHIC", "number", "interval", "quantity", "threshold",
           "ExcitabilityRows", "excitability_rows"]


@dataclass(frozen=True)
class Style:
    """How a missing value, infinity and a minus sign are written."""

    missing: str
    inf: str
    minus: str


PLAIN = Style(missing="-", inf="inf", minus="-")
TYPOGRAPHIC = Style(missing="–", inf="∞", minus="−")


def number(v: Any, digits: int = 1, style: Style = PLAIN) -> str:
    """``v`` with ``digits`` decimals; None and NaN are ``style.missing``; text stays text."""
    if v is None:
        return style.missing
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(x):
        return style.missing
    if math.isinf(x):
        return style.inf if x > 0 else style.minus + style.inf
    text = f"{x:.{digits}f}"
    return style.minus + text[1:] if text.startswith("-") else text


def interval(ci: Any, digits: int = 1, style: Style = PLAIN) -> str:
    """``[lo, hi]``, or an empty string when there is no interval."""
    if not ci:
        return ""
    return f"[{number(ci[0], digits, style)}, {number(ci[1], digits, style)}]"


def _value_or_bound(value: Any, ci: Any, lower: Any, upper: Any, digits: int,
                    style: Style) -> str:
    if value is not None:
        return f"{number(value, digits, style)} {interval(ci, digits, style)}".rstrip()
    if lower is not None:
        return f"> {number(lower, digits, style)}"
    if upper is not None:
        return f"< {number(upper, digits, style)}"
    return style.missing


def quantity(q: Any, digits: int = 2, style: Style = PLAIN) -> str:
    """A :class:`~mepkit.analysis.Quantity`: value and interval, or its bound."""
    return _value_or_bound(q.value, q.ci, q.lower_bound, q.upper_bound, digits, style)


def threshold(r: Any, style: Style = PLAIN) -> str:
    """A :class:`~mepkit.analysis.ThresholdEstimate` (%MSO): value and interval, or its bound."""
    return _value_or_bound(r.threshold_pct_mso if r.ok else None, r.ci, r.lower_bound_pct_mso,
                           r.upper_bound_pct_mso, 1, style)


@dataclass
class ExcitabilityRows:
    """A hemispheric-excitability result as rows of text.

    ``sides``: (hemisphere, channel, trials, RMT, MEPmax, I50, slope, notes) per side and
    channel, ``notes`` a list of messages. ``ratios``: (muscle, channels, measure, value,
    note), or a muscle with measure ``None`` when it has no ratios. ``ihi``: (test
    hemisphere, channel, condition, ratio, note).
    """

    sides: list[tuple]
    ratios: list[tuple]
    ihi: list[tuple]
    role: str
    ci_level: float
    notes: list[str]


def excitability_rows(res: Any, style: Style = PLAIN) -> ExcitabilityRows:
    """Rows of a :class:`~mepkit.analysis.HemisphericExcitability`, as text in ``style``."""
    m_ = style.minus
    sides = []
    for h, chans in res.sides.items():
        for ch, sd in chans.items():
            r, f = sd.rmt, sd.recruitment
            if f.ok:
                fit = [f"{number(v, d, style)} {interval(ci, d, style)}".rstrip()
                       for v, ci, d in ((f.mep_max_uv, f.mep_max_uv_ci, 0),
                                        (f.i50_pct_mso, f.i50_pct_mso_ci, 1),
                                        (f.slope_pct_mso, f.slope_pct_mso_ci, 1))]
            else:
                fit = [style.missing] * 3
            notes = [m for m in [r.message, f.message, *r.notes, *f.notes] if m]
            sides.append((h, ch, int(sd.x.size), threshold(r, style), *fit,
                          list(dict.fromkeys(notes))))
    ratios = []
    for m, e in res.muscles.items():
        chans = ", ".join(f"{h} {c}" for h, c in e["channels"].items())
        if "rmt_ratio" not in e:
            ratios.append((m, chans, None, style.missing, ""))
            continue
        i0 = e["mep_ratio"]["same_pct_mso"].details.get("intensity_pct_mso")
        for name, q in (("RMT ratio", e["rmt_ratio"]),
                        (f"MEP ratio at {res.settings['matched_pct_rmt']:g} % RMT",
                         e["mep_ratio"]["same_pct_rmt"]),
                        (f"MEP ratio at {number(i0, 1, style)} %MSO",
                         e["mep_ratio"]["same_pct_mso"]),
                        (f"laterality index, MEP (U{m_}A)/(U+A)", e["laterality_index"]["mep"]),
                        (f"laterality index, RMT (A{m_}U)/(A+U)", e["laterality_index"]["rmt"])):
            ratios.append((m, chans, name, quantity(q, 2, style), q.message or ""))
    ihi = [(h, ch, cond, quantity(q, 2, style), q.message or "")
           for h, chans in (res.ihi or {}).items() for ch, conds in chans.items()
           for cond, q in conds.items()]
    role = ("affected / unaffected" if res.affected_given
            else f"{res.affected} / {res.unaffected}")
    return ExcitabilityRows(sides, ratios, ihi, role, float(res.settings["ci_level"]),
                            list(res.notes))
