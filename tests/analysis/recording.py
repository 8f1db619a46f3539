"""An XDF recording of both hemispheres of a virtual subject, with intensity/hemisphere markers."""

from __future__ import annotations

import json

import numpy as np

from mepkit.sim.subject import VirtualSubject

SFREQ_HZ = 5000.0
T0_S = 3000.0


def write_excitability_xdf(path, subject: VirtualSubject, intensities, *, repeats: int = 4,
                           isi_s: float = 0.5, seed: int = 0, ihi: dict | None = None,
                           test_intensity: dict | None = None, n_ihi: int = 0,
                           markers: bool = True, hemisphere_key: bool = True) -> list[dict]:
    """Write an XDF file (EMG of every subject channel + JSON markers); return the trials.

    Each trial's marker is ``{"intensity": I, "hemisphere": h}`` (plus ``"condition"`` for
    IHI trials); ``hemisphere_key=False`` leaves the hemisphere out (bad-input tests).
    """
    from mepkit.io.xdf_write import XdfStream, write_xdf
    from mepkit.sim.emg import synthesize_recording

    rng = np.random.default_rng(seed)
    plan = []
    for h in ("left", "right"):
        plan += [(h, float(x), "") for x in np.repeat(np.asarray(intensities, float), repeats)]
        if ihi and h in ihi:
            plan += [(h, float(test_intensity[h]), "test")] * n_ihi
            plan += [(h, float(test_intensity[h]), "ihi")] * n_ihi
    plan = [plan[i] for i in rng.permutation(len(plan))]
    n = len(plan)
    stim = 0.5 + isi_s * np.arange(n)
    amps = np.zeros((n, len(subject.channels)))
    lats = np.full((n, len(subject.channels)), 22.0)
    trials = []
    for k, (h, x, cond) in enumerate(plan):
        r = subject.respond(x, hemisphere=h)
        scale = ihi[h] if cond == "ihi" else 1.0
        amps[k] = r.amplitude_uv * scale
        lats[k] = np.where(np.isfinite(r.latency_ms), r.latency_ms, 22.0)
        trials.append({"hemisphere": h, "intensity_pct_mso": x, "condition": cond,
                       "amplitude_uv": amps[k].tolist()})
    data, ts, _ = synthesize_recording(SFREQ_HZ, len(subject.channels), stim, amps, lats,
                                       duration_s=float(stim[-1] + 0.5), seed=seed)
    labels = []
    for h, x, cond in plan:
        m = {"intensity": x}
        if hemisphere_key:
            m["hemisphere"] = h
        if cond:
            m["condition"] = cond
        labels.append(json.dumps(m))
    streams = [XdfStream(name="VirtualEMG", type="EMG", channel_format="float32",
                         nominal_srate=SFREQ_HZ, time_series=data.astype(np.float32),
                         time_stamps=ts + T0_S,
                         channels=[{"label": c, "unit": "microvolts", "type": "EMG"}
                                   for c in subject.channels],
                         source_id="mepkit-test-excitability-emg")]
    if markers:
        streams.append(XdfStream(name="TMSMarkers", type="Markers", channel_format="string",
                                 nominal_srate=0.0, time_series=labels, time_stamps=stim + T0_S,
                                 source_id="mepkit-test-excitability-markers"))
    write_xdf(path, streams)
    return trials
