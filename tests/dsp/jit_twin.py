"""Deterministic runs of every numba kernel through the public API.

``python tests/dsp/jit_twin.py OUT.npz`` saves the results; `test_jit_disabled` runs it
with ``NUMBA_DISABLE_JIT=1`` (the kernels as plain Python) and compares with the
compiled kernels: the same code must give the same numbers either way.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def results() -> dict[str, np.ndarray]:
    from mepkit.dsp.features import measure_epochs
    from mepkit.dsp.filters import StreamingFilter, design_monitor_filter
    from mepkit.params import Params
    from mepkit.pipeline import Pipeline
    from mepkit.sim.emg import synthesize_recording

    fs = 2000.0
    stims = np.array([0.6, 1.45, 2.3])
    amps = np.array([[800.0, 0.0], [1500.0, 300.0], [60.0, 2000.0]])
    lats = np.full((3, 2), 22.0)
    data, ts, _ = synthesize_recording(fs, 2, stims, amps, lats, duration_s=2.8, seed=5)
    ttl = np.zeros((len(ts), 1))
    for s in stims:
        k = int(np.searchsorted(ts, s))
        ttl[k:k + 2] = 1.0
    data[int(1.1 * fs), 1] = np.nan  # a NaN between trials, one inside trial 1
    data[int(1.46 * fs), 0] = np.nan
    out: dict[str, np.ndarray] = {}
    runs = {
        "markers": dict(channel_labels=["FDI", "APB"]),
        "ttl": dict(channel_labels=["FDI", "APB", "TRIG"], trigger_channel="TRIG"),
        "artifact": dict(channel_labels=["FDI", "APB"], artifact_triggers=True),
    }
    for name, kw in runs.items():
        p = Pipeline(Params(), sfreq_hz=fs, monitor=True, **kw)
        x = np.hstack([data, ttl]) if name == "ttl" else data
        if name == "markers":
            p.add_markers(stims, [json.dumps({"intensity": 50})] * 3)
        trials = []
        for a in range(0, len(ts), 37):  # trials measured as samples arrive and at once
            trials += p.push(x[a:a + 37], ts[a:a + 37])
        trials += p.finish()
        out[name] = np.array([[t.stim_time_s, *t.amplitude_uv, *t.latency_ms, *t.area_uv_ms,
                               *t.background_rms_uv, *t.peak_time_ms, *t.detected,
                               *t.onset_ambiguous]
                              for t in trials])
        out[name + "_monitor"] = p.update_monitor()
    # exported epochs (channel-major copy path) and the filter kernel
    rng = np.random.default_rng(3)
    ep = rng.normal(0, 5, (4, 2, 1501))
    ep[:, :, 1100:1150] += np.hanning(50) * 900.0
    ep[2, 1, 600] = np.inf  # in the background window: invalid
    r = measure_epochs(ep, 5000.0, Params(), tmin_s=np.array([-0.2, -0.2001, -0.1999, -0.2]))
    for k, v in r.items():
        out["epochs_" + k] = np.asarray(v, dtype=float)
    f = StreamingFilter(design_monitor_filter(5000.0, Params()), 2)
    out["filter"] = np.vstack([f.process(ep[0, :, :700].T.copy()), f.process(ep[0, :, 700:].T.copy())])
    # the clock model: stamps made on push with stalls, drift, a loss and a clock reset
    from mepkit.sim.stamps import stamp_on_push
    from mepkit.sources.clock import ClockModel

    st = stamp_on_push(int(8 * fs), fs, seed=2, chunk_ms=(1.0, 20.0), stall_every_s=0.5,
                       drift_ppm=80.0, losses=[(3.0, 0.05)]).stamps
    st[int(6 * fs):] -= 30.0
    m = ClockModel(fs)
    times = np.empty(len(st))
    pos = 0
    while pos < len(st):
        pos += m.update(st[pos:pos + 53], times[pos:pos + 53])
    m.finish()
    out["clock_rows"] = m.rows.copy()
    out["clock_gaps"] = np.array([[g.index, g.n_missing] for g in m.gaps], dtype=float)
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **results())
