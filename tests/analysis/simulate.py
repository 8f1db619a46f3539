"""Trial tables from the virtual subject, made fast without LSL or EMG."""

from __future__ import annotations

import numpy as np

from mepkit.params import TRIAL_COLUMNS
from mepkit.sim.subject import VirtualSubject


def subject_table(subject: VirtualSubject, intensities, *, repeats: int = 1, seed: int = 0,
                  hemispheres=("left", "right"), ihi: dict | None = None,
                  test_intensity: dict | None = None, n_ihi: int = 0):
    """One row per trial and channel, like ``mepkit.analyze_file`` gives.

    Every hemisphere gets ``intensities`` × ``repeats`` single-pulse trials in random
    order. With ``ihi={'right': 0.5}`` and ``test_intensity={'right': 80}`` it also gets
    ``n_ihi`` test-alone trials (condition 'test') and ``n_ihi`` conditioned ones
    (condition 'ihi') whose MEPs are scaled by the given factor.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    plan = []
    for h in hemispheres:
        xs = np.repeat(np.asarray(intensities, float), repeats)
        plan += [(h, float(x), "") for x in xs]
        if ihi and h in ihi:
            plan += [(h, float(test_intensity[h]), "test")] * n_ihi
            plan += [(h, float(test_intensity[h]), "ihi")] * n_ihi
    order = rng.permutation(len(plan))
    rows = []
    for k, i in enumerate(order):
        h, x, cond = plan[i]
        r = subject.respond(x, hemisphere=h)
        amp = r.amplitude_uv * (ihi[h] if cond == "ihi" else 1.0)
        for c, ch in enumerate(r.channels):
            rows.append({"file": "sim", "trial": k, "channel": ch, "stim_time_s": 2.0 * k,
                         "label": "", "intensity_pct_mso": x, "x_mm": np.nan, "y_mm": np.nan,
                         "site": "", "hemisphere": h, "condition": cond,
                         "amplitude_uv": float(amp[c]), "latency_ms": np.nan,
                         "area_uv_ms": np.nan, "background_rms_uv": 4.0,
                         "peak_time_ms": np.nan, "detected": bool(amp[c] >= 50),
                         "rejected": False, "reject_reason": ""})
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
