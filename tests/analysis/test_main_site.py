"""`at_main_site`: intensity analyses use a mapped hemisphere's hotspot trials only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mepkit.analysis._table import at_main_site


def table(rows):
    return pd.DataFrame(rows, columns=["trial", "hemisphere", "x_mm", "y_mm"])


def test_a_mapped_hemisphere_keeps_its_most_used_position_and_trials_without_one():
    rows = [(i, "left", 2.0, 6.0) for i in range(10)]  # threshold and curve at the hotspot
    rows += [(10 + i, "left", x, y) for i, (x, y) in enumerate(
        [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (2.0, 6.0)])]  # a map, one site on it
    rows += [(20, "left", np.nan, np.nan)]  # no position: kept
    rows += [(30 + i, "right", x, 0.0) for i, x in enumerate([0.0, 0.0, 5.0])]  # 2 sites
    kept, n_off = at_main_site(table(rows))
    assert n_off == 3
    left = kept[kept.hemisphere == "left"]
    assert sorted(left.trial) == list(range(10)) + [13, 20]
    assert len(kept[kept.hemisphere == "right"]) == 3  # fewer than 3 sites: not a map


def test_no_positions_keeps_everything():
    t = table([(i, "left", np.nan, np.nan) for i in range(4)])
    kept, n_off = at_main_site(t)
    assert n_off == 0 and len(kept) == 4
    kept, n_off = at_main_site(t.drop(columns=["x_mm", "y_mm"]))
    assert n_off == 0 and len(kept) == 4
