"""Trial tables (pandas DataFrames with ``mepkit.TRIAL_COLUMNS``): checks and grouping."""

from __future__ import annotations

from typing import Iterator, Sequence

from mepkit.analysis._checks import AnalysisError

#: How marker keys are spelled (docs/README): the column each one fills.
MARKER_KEY = {"intensity_pct_mso": "intensity", "hemisphere": "hemisphere",
              "condition": "condition"}


def require_columns(table, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise AnalysisError(f"the trial table has no column(s) {', '.join(missing)}; "
                            f"expected a table of mepkit.TRIAL_COLUMNS")


def prepared(table, by: Sequence[str] = ()):
    """A copy with ``rejected`` (False when absent) and text columns of ``by`` as str."""
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise AnalysisError(f"expected a pandas DataFrame trial table, got {type(table).__name__}")
    require_columns(table, ["intensity_pct_mso", "amplitude_uv", *by])
    out = table.copy()
    if "rejected" not in out.columns:
        out["rejected"] = False
    out["rejected"] = out["rejected"].fillna(False).astype(bool)
    for c in by:
        if out[c].dtype == object or c in ("hemisphere", "channel", "condition"):
            out[c] = out[c].fillna("").astype(str)
    return out


def grouped(table, by: Sequence[str]) -> Iterator[tuple[tuple, object]]:
    """(key tuple, sub-table) per group, in sorted order; all trials when ``by`` is empty."""
    by = list(by)
    t = prepared(table, by)
    if not by:
        yield (), t
        return
    for key, sub in t.groupby(by, sort=True, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), sub


def results_frame(rows: list[dict], by: Sequence[str]):
    import pandas as pd

    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(by))


def at_main_site(table, min_sites: int = 3):
    """The rows for intensity analyses (thresholds, curves, excitability) and how many were
    left out: in a hemisphere whose trials are at ``min_sites`` or more coil positions (a
    map or a hotspot search), only those without a position or at its most used position
    (the hotspot, where thresholds and curves are measured)."""
    import numpy as np

    t = table
    if not len(t) or not {"x_mm", "y_mm"} <= set(t.columns):
        return t, 0
    x, y = t["x_mm"].to_numpy(float), t["y_mm"].to_numpy(float)
    has = np.isfinite(x) & np.isfinite(y)
    if not has.any():
        return t, 0
    hemi = (t["hemisphere"].fillna("").astype(str).to_numpy(object) if "hemisphere" in t
            else np.full(len(t), "", object))
    keep = np.ones(len(t), bool)
    pos = np.stack([np.round(x, 3), np.round(y, 3)], 1)
    for h in set(hemi[has]):
        sel = has & (hemi == h)
        sites, counts = np.unique(pos[sel], axis=0, return_counts=True)
        if len(sites) < min_sites:
            continue
        main = sites[int(np.argmax(counts))]
        keep &= ~(sel & ~np.all(pos == main, axis=1))
    return (t if keep.all() else t[keep]), int((~keep).sum())
