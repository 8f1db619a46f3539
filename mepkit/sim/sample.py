"""The sample recording: a short TMS session with known MEPs, written as XDF.

``python -m mepkit.sim.sample OUT.xdf`` (or :func:`make_sample_session`) writes
it; ``sample_data/sample_session.xdf`` in the repository was made this way.
Ground truth goes to a CSV beside it.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

__all__ = ["make_sample_session", "SAMPLE_CHANNELS"]

SAMPLE_CHANNELS = ("FDI_R", "APB_R")
SFREQ_HZ = 5000.0
#: LSL-like clock at the start of the recording (any large value, as liblsl gives).
T0_S = 41523.25


def make_sample_session(path: str | os.PathLike, *, n_trials: int = 24, seed: int = 7,
                        truth_csv: str | os.PathLike | None = None,
                        ttl: bool = False, marker_clock_offset_s: float = 0.0):
    """Write a sample session and return its ground truth (list of dicts).

    A recruitment-curve-like run: intensities from 30 to 80 %MSO in random
    order, MEP amplitude a Boltzmann sigmoid of intensity (threshold ~45 %MSO)
    with log-normal variability, two channels (FDI, APB), 50 Hz mains, drift,
    a 5 mV stimulus artifact, and one trial with voluntary background contraction.

    Parameters
    ----------
    ttl : bool
        Add a TTL channel ``TRIG`` (0/1 V pulses of 1 ms at each stimulus).
    marker_clock_offset_s : float
        The marker stream's clock runs this much behind the EMG clock; the XDF
        ClockOffset chunks say so, so synchronised markers land on the EMG clock.
    """
    from mepkit.io.xdf_write import XdfStream, write_xdf
    from mepkit.sim.emg import synthesize_recording

    rng = np.random.default_rng(seed)
    isi_s = rng.uniform(1.6, 2.4, n_trials)
    stim_rel = 1.0 + np.concatenate([[0.0], np.cumsum(isi_s[:-1])])
    duration_s = float(stim_rel[-1] + 1.0)
    intensity = rng.permutation(np.linspace(30, 80, n_trials)).round()
    # Boltzmann recruitment: max 3 mV FDI, 1.5 mV APB, midpoint 55 %MSO, slope 4 %MSO
    mean_fdi = 3000.0 / (1 + np.exp((55.0 - intensity) / 4.0))
    amp = np.stack([mean_fdi, 0.5 * mean_fdi], axis=1) * rng.lognormal(0.0, 0.3, (n_trials, 2))
    amp[amp < 20.0] = 0.0  # below 20 µV nothing is visible: no MEP
    lat = np.stack([rng.normal(22.0, 0.5, n_trials), rng.normal(23.0, 0.5, n_trials)], axis=1)
    contraction_trial = int(np.argmax(intensity == np.sort(intensity)[n_trials // 2]))
    t_c = stim_rel[contraction_trial]
    data, ts_rel, truth = synthesize_recording(
        SFREQ_HZ, 2, stim_rel, amp, lat, duration_s=duration_s, seed=seed,
        contractions=[(t_c - 0.6, t_c + 0.3, 80.0)])
    ts = ts_rel + T0_S
    stim_s = stim_rel + T0_S
    channels = [{"label": c, "unit": "microvolts", "type": "EMG"} for c in SAMPLE_CHANNELS]
    series = data.astype(np.float32)
    if ttl:
        trig = np.zeros((len(ts), 1), np.float32)
        for s in np.round((stim_s - ts[0]) * SFREQ_HZ).astype(int):
            trig[s:s + int(SFREQ_HZ / 1000)] = 1.0
        series = np.hstack([series, trig])
        channels.append({"label": "TRIG", "unit": "V", "type": "TTL"})
    markers = [json.dumps({"intensity": float(i), "site": "hotspot", "hemisphere": "left"})
               for i in intensity]
    offsets = []
    if marker_clock_offset_s:
        offsets = [(float(t), marker_clock_offset_s) for t in np.arange(ts[0], ts[-1], 5.0)]
    streams = [
        XdfStream(name="VirtualEMG", type="EMG", channel_format="float32",
                  nominal_srate=SFREQ_HZ, time_series=series, time_stamps=ts,
                  channels=channels, source_id="mepkit-sample-emg"),
        XdfStream(name="TMSMarkers", type="Markers", channel_format="string", nominal_srate=0.0,
                  time_series=markers, time_stamps=stim_s - marker_clock_offset_s,
                  source_id="mepkit-sample-markers", clock_offsets=offsets),
    ]
    import datetime as _dt

    write_xdf(path, streams, recording_datetime=_dt.datetime(2026, 1, 5, 9, 0, tzinfo=_dt.timezone.utc))
    rows = []
    for k, g in enumerate(truth):
        for c, name in enumerate(SAMPLE_CHANNELS):
            rows.append({"trial": k, "channel": name, "stim_time_s": float(stim_s[k]),
                         "intensity_pct_mso": float(intensity[k]),
                         "amplitude_uv": float(np.asarray(g["amplitude_uv"])[c]),
                         "latency_ms": float(np.asarray(g["latency_ms"])[c]),
                         "contraction": k == contraction_trial})
    if truth_csv is not None:
        import csv

        with open(truth_csv, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "sample_data/sample_session.xdf"
    truth = os.path.splitext(out)[0] + "_truth.csv"
    rows = make_sample_session(out, truth_csv=truth)
    print(f"wrote {out} ({len(rows) // 2} trials) and {truth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
