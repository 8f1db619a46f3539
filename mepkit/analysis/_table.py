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
