"""Session records for the report tests: raw EMG of the virtual subject, trials measured by
the Pipeline, protocol steps and a result in the closed-loop runner's format, events."""

from __future__ import annotations

import json
import math

import numpy as np

from mepkit.analyze import analyze_recording
from mepkit.params import Params
from mepkit.records import RecordWriter
from mepkit.sim.emg import synthesize_recording
from mepkit.sim.subject import VirtualSubject
from mepkit.sources.recording import Recording

SFREQ_HZ = 5000.0
T0_S = 1000.0
ISI_S = 0.45
#: Untrusted text that must come out escaped.
HOSTILE = "<script>alert('mepkit')</script>"
HOSTILE_CONDITION = "</h3><img src=x onerror=alert(1)>"


def _hunt_plan(subject: VirtualSubject, hemisphere: str, n: int, rng) -> list[float]:
    """A simple up/down staircase driven by the subject's responses (test data only)."""
    x, out = 60.0, []
    for _ in range(n):
        out.append(x)
        r = subject.respond(x, hemisphere=hemisphere)
        hit = float(np.max(r.amplitude_uv)) >= 50.0
        x = min(100.0, max(20.0, x + (-3.0 if hit else 2.0)))
    return out


def write_session_record(path, *, seed: int = 3) -> dict:
    """A record with every section's data: a threshold hunt (steps + result), trials at
    several intensities on both hemispheres, a 3x3 map of each hemisphere, a contraction
    (rejected trial), a gap and an outage event, hostile marker and subject text."""
    rng = np.random.default_rng(seed)
    subject = VirtualSubject.from_preset("stroke-mild", seed=seed, lesioned_hemisphere="right",
                                         muscles=("FDI",))
    channels = list(subject.channels)
    plan: list[dict] = []
    hunt = _hunt_plan(subject, "left", 12, rng)
    for x in hunt:
        plan.append({"intensity": x, "hemisphere": "left", "part": "hunt"})
    for h in ("left", "right"):
        for x in (40.0, 50.0, 60.0, 70.0, 80.0, 90.0):
            for _ in range(2):
                plan.append({"intensity": x, "hemisphere": h, "part": "curve"})
    for h in ("left", "right"):
        hx, hy = subject.hotspot(h)
        for dx in (-10.0, 0.0, 10.0):
            for dy in (-10.0, 0.0, 10.0):
                plan.append({"intensity": 75.0, "hemisphere": h, "x_mm": hx + dx,
                             "y_mm": hy + dy, "part": "map"})
    plan.append({"intensity": 70.0, "hemisphere": "left", "label": HOSTILE,
                 "condition": HOSTILE_CONDITION, "part": "hostile"})
    n = len(plan)
    stim = T0_S + 0.5 + ISI_S * np.arange(n)
    amps = np.zeros((n, len(channels)))
    lats = np.full((n, len(channels)), 22.0)
    for k, p in enumerate(plan):
        r = subject.respond(p["intensity"], hemisphere=p["hemisphere"], x_mm=p.get("x_mm"),
                            y_mm=p.get("y_mm"))
        amps[k] = r.amplitude_uv
        lats[k] = np.where(np.isfinite(r.latency_ms), r.latency_ms, 22.0)
    contraction = 20  # a curve trial with the hand not at rest: rejected (background)
    data, ts, _ = synthesize_recording(
        SFREQ_HZ, len(channels), stim, amps, lats, duration_s=float(stim[-1] - T0_S + 0.5),
        seed=seed, t0_s=T0_S,
        contractions=[(stim[contraction] - 0.5, stim[contraction] + 0.1, 80.0)])
    markers = [json.dumps({k: v for k, v in p.items() if k != "part"}) for p in plan]
    params = Params()
    recording = Recording(path=str(path), sfreq_hz=SFREQ_HZ, data=data, timestamps=ts,
                          channel_labels=channels, units=["µV"] * len(channels),
                          marker_times=stim, marker_values=markers)
    table = analyze_recording(recording, params)
    with RecordWriter(path, subject={"identifier": "S<01>", "lesioned_hemisphere": "right",
                                     "notes": HOSTILE},
                      session={"protocol": "report test"}, params=params,
                      marker_stream="TMSMarkers") as w:
        w.add_stream("emg", channel_labels=channels, units="µV", nominal_srate_hz=SFREQ_HZ)
        w.start()
        w.append_samples("emg", data.astype(np.float32), ts)
        w.append_markers(stim, markers)
        w.append_trials(table)
        target = "FDI_R"
        steps = []
        for k, x in enumerate(hunt):
            row = table[(table["trial"] == k) & (table["channel"] == target)].iloc[0]
            amp = float(row["amplitude_uv"])
            rejected = bool(row["rejected"])
            step = {"protocol": "ml-pest", "step": k, "intensity_pct_mso": x,
                    "x_mm": None, "y_mm": None,
                    "z_mm": None, "hemisphere": "left", "site": "", "condition": "",
                    "label": "", "amplitude_uv": amp, "rejected": rejected,
                    "counted": not rejected and math.isfinite(amp),
                    "note": HOSTILE if k == 0 else "", "proposed_intensity_pct_mso": x,
                    "pulse_time_s": float(stim[k]), "interval_s": ISI_S, "trial": k,
                    "channel": target, "reject_reason": str(row["reject_reason"]),
                    "background_rms_uv": float(row["background_rms_uv"])}
            steps.append(step)
            w.append_protocol_step(step, time_s=float(stim[k]))
        last = np.array(hunt[-6:])
        thr = float(last.mean())
        estimate = {"method": "staircase", "threshold_pct_mso": thr,
                    "ci_low_pct_mso": thr - 2.0, "ci_high_pct_mso": thr + 2.0, "ci_level": 0.9,
                    "interval": "likelihood", "n_pulses": len(hunt),
                    "n_counted": sum(s["counted"] for s in steps), "found": True, "done": True,
                    "criterion_uv": 50.0, "message": f"threshold {thr:.1f} %MSO"}
        w.set_protocol_result("ml-pest", {
            "protocol": "ml-pest", "reason": "done", "complete": True, "estimate": estimate,
            "n_pulses": len(hunt), "n_counted": estimate["n_counted"], "record_path": str(path),
            "options": {"max_pulses": 12, "criterion_uv": 50.0},
            "runner": {"channel": target, "hemisphere": "left"}},
            time_s=float(stim[len(hunt) - 1]) + 0.1)
        w.append_event(float(stim[30]) + 0.2, "gap",
                       {"start_s": float(stim[30]) + 0.2, "duration_s": 0.012})
        w.append_event(float(stim[40]) + 0.2, "outage", HOSTILE)
    return {"plan": plan, "hunt": hunt, "threshold": thr, "channels": channels,
            "n_trials": n, "table": table}


def write_bare_record(path) -> None:
    """A record with raw EMG (noise only) but no markers, trials or protocol."""
    fs = 1000.0
    x = np.random.default_rng(0).normal(0.0, 5.0, (2000, 2)).astype(np.float32)
    with RecordWriter(path, params=Params()) as w:
        w.add_stream("emg", channel_labels=["FDI_R", "APB_R"], units="µV", nominal_srate_hz=fs)
        w.start()
        w.append_samples("emg", x, T0_S + np.arange(2000) / fs)
