"""Mains frequency found from the data: 50 Hz, 60 Hz or none, offline and on a stream."""

import json

import numpy as np
import pytest

from mepkit.analyze import analyze_recording
from mepkit.dsp.mains import (MainsDetector, detect_line_freq, detect_line_freq_epochs,
                              line_ratios, vote)
from mepkit.params import Params
from mepkit.pipeline import Pipeline
from mepkit.sim.emg import EmgSynth, synthesize_recording
from mepkit.sources.xdf import Recording

FS = 5000.0


def ecg(n, fs, *, rate_hz=1.15, amp_uv=800.0, seed=0):
    """ECG-like content: QRS spikes, a Q/S dip and T waves at a slightly varying rate."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    y = np.zeros(n)
    beat = 0.3
    while beat < t[-1]:
        y += amp_uv * np.exp(-0.5 * ((t - beat) / 0.008) ** 2)
        y -= 0.2 * amp_uv * np.exp(-0.5 * ((t - beat - 0.02) / 0.01) ** 2)
        y += 0.25 * amp_uv * np.exp(-0.5 * ((t - beat - 0.25) / 0.04) ** 2)
        beat += (1.0 + 0.01 * rng.normal()) / rate_hz
    return y


def background(line_hz, line_uv, *, seconds=6.0, seed=0, battery_trouble=False):
    s = EmgSynth(FS, 4, seed=seed, line_freq_hz=line_hz or 50.0,
                 line_amplitude_uv=line_uv if line_hz else 0.0)
    n = int(seconds * FS)
    if battery_trouble:  # strong broadband EMG on two channels, ECG on the others
        s.add_contraction(0, n, 100.0, [0, 1])
    x = s.generate(n)
    if battery_trouble:
        x[:, 2] += ecg(n, FS)
        x[:, 3] += ecg(n, FS, rate_hz=1.0, amp_uv=1500.0, seed=1)
    return x


@pytest.mark.parametrize(("line_hz", "line_uv"), [(50.0, 30.0), (60.0, 30.0), (60.0, 3.0)])
def test_every_block_finds_the_mains(line_hz, line_uv):
    x = background(line_hz, line_uv, battery_trouble=True)
    votes = [vote(line_ratios(x[k:k + 5000], FS)) for k in range(0, len(x), 5000)]
    assert all(v in (line_hz, None, "abstain") for v in votes)  # never the other one
    if line_uv >= 10:  # 3 µV under 100 µV of contraction may go unnoticed (and harmless)
        assert votes == [line_hz] * len(votes)
        assert detect_line_freq(x, FS).line_freq_hz == line_hz


@pytest.mark.parametrize("trouble", [False, True])
def test_battery_amplifier_gets_no_mains(trouble):
    """No mains, with plain noise or with strong broadband EMG and ECG: no detection."""
    for seed in range(3):
        x = background(None, 0.0, seed=seed, battery_trouble=trouble)
        votes = [vote(line_ratios(x[k:k + 5000], FS)) for k in range(0, len(x), 5000)]
        assert 50.0 not in votes and 60.0 not in votes
        assert detect_line_freq(x, FS).line_freq_hz is None


def test_detector_hysteresis_and_decision_at():
    det = MainsDetector(FS)
    x50 = background(50.0, 30.0, seconds=3.0)
    x60 = background(60.0, 30.0, seconds=4.0, seed=1)
    for k in range(3):
        det.add_block(x50[k * 5000:(k + 1) * 5000])
    for k in range(2):  # two blocks of 60 Hz do not yet change the decision
        det.add_block(x60[k * 5000:(k + 1) * 5000])
    assert det.line_freq_hz == 50.0
    det.add_block(x60[2 * 5000:3 * 5000])
    assert det.line_freq_hz == 60.0
    assert [(d.sample_index, d.line_freq_hz) for d in det.decisions] == [(5000, 50.0),
                                                                         (30000, 60.0)]
    assert det.decision_at(4999) is None
    assert det.decision_at(29999).line_freq_hz == 50.0
    assert det.decision_at(30000).line_freq_hz == 60.0


def test_exported_epochs_decide_from_their_pre_stimulus_samples():
    """Exports keep 50-200 ms before the pulse: too short for a spectrum, not for a fit."""
    for line_hz, want in ((50.0, 50.0), (60.0, 60.0), (None, None)):
        x = background(line_hz, 20.0, seconds=3.0)
        ep = np.stack([x[k:k + 500, :2].T for k in range(0, 10000, 1000)])  # 100 ms each
        assert detect_line_freq_epochs(ep, FS, tmin_ms=-100.0) == want


def recording(line_hz, *, seed=0, battery_trouble=False):
    stims = np.array([0.6, 1.7, 2.55, 3.4, 4.3, 5.2, 6.1])
    amps = np.zeros((len(stims), 3))
    amps[:, 0] = 500.0
    amps[:, 2] = np.linspace(80.0, 2000.0, len(stims))
    kw = dict(line_freq_hz=line_hz or 50.0, line_amplitude_uv=40.0 if line_hz else 0.0)
    contractions = [(0.0, 7.0, 60.0, [1])] if battery_trouble else []
    data, ts, truth = synthesize_recording(FS, 3, stims, amps, 22.0, duration_s=7.0, seed=seed,
                                           contractions=contractions, **kw)
    if battery_trouble:
        data[:, 1] += ecg(len(ts), FS, amp_uv=300.0)
    return data, ts, stims, amps


def run(data, ts, stims, chunk, params=Params()):
    p = Pipeline(params, sfreq_hz=FS, channel_labels=["FDI", "rest", "APB"])
    p.add_markers(stims, [json.dumps({"intensity": 50})] * len(stims))
    trials = []
    for a in range(0, len(ts), chunk):
        trials += p.push(data[a:a + chunk], ts[a:a + chunk])
    trials += p.finish()
    return p, trials


@pytest.mark.parametrize("line_hz", [50.0, 60.0, None])
def test_recordings_measured_right_with_the_defaults(line_hz):
    data, ts, stims, amps = recording(line_hz)
    p, trials = run(data, ts, stims, 50)
    assert p.line_freq_hz == line_hz
    assert p.mains_decisions[0].sample_index == 5000
    assert len(p.mains_decisions) == 1
    assert len(trials) == len(stims)
    for t, amp in zip(trials, amps):
        assert t.reject_reason == ("", "", "")  # no false background rejection
        assert t.background_rms_uv.max() < 6.0
        assert not t.detected[1] and t.amplitude_uv[1] < 40.0  # no false MEP at rest
        assert t.detected[0] and t.amplitude_uv[0] == pytest.approx(500.0, rel=0.05)
        assert abs(t.latency_ms[0] - 22.0) < 0.6
    # the first trial (0.6 s) came before the first decision: measured right all the same
    assert trials[0].background_rms_uv.max() < 6.0


def test_battery_amplifier_with_ecg_and_contraction_is_not_given_mains():
    data, ts, stims, amps = recording(None, battery_trouble=True)
    p, trials = run(data, ts, stims, 64)
    assert p.line_freq_hz is None
    assert all(d.line_freq_hz is None for d in p.mains_decisions)
    for t in trials:
        assert t.reject_reason[0] == "" and t.reject_reason[2] == ""


def test_decisions_and_trials_do_not_depend_on_chunking():
    data, ts, stims, _ = recording(60.0, seed=3)
    ref_p, ref = run(data, ts, stims, len(ts))
    for chunk in (1, 37, 4999, 5001):
        p, got = run(data, ts, stims, chunk)
        assert [d.to_dict() for d in p.mains_decisions] == [d.to_dict() for d in ref_p.mains_decisions]
        for a, b in zip(ref, got):
            for key in ("amplitude_uv", "latency_ms", "background_rms_uv", "peak_time_ms",
                        "onset_ambiguous"):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


@pytest.mark.parametrize(("line_hz", "setting", "source"), [
    (60.0, "auto", "detected"), (None, "auto", "detected"), (60.0, 60.0, "set")])
def test_analyze_recording_decides_over_the_recording(line_hz, setting, source):
    data, ts, stims, _ = recording(line_hz)
    rec = Recording("x.xdf", FS, data, ts, ["FDI", "rest", "APB"], ["uV"] * 3, stims,
                    [json.dumps({"intensity": 50})] * len(stims))
    frame = analyze_recording(rec, Params(line_freq_hz=setting))
    assert frame.attrs["line_freq_hz"] == line_hz
    assert frame.attrs["line_freq_source"] == source
    assert not frame["rejected"].any()
    assert not frame.loc[frame.channel == "rest", "detected"].any()
    stream = analyze_recording(rec, Params(line_freq_hz=setting), mains="stream")
    assert stream.attrs["line_freq_hz"] == line_hz


def test_cli_prints_the_decision_and_takes_an_override(tmp_path):
    import subprocess
    import sys

    from mepkit.io.xdf_write import XdfStream, write_xdf

    data, ts, stims, _ = recording(60.0)
    chans = [{"label": c, "unit": "microvolts", "type": "EMG"} for c in ("FDI", "rest", "APB")]
    path = tmp_path / "lab60.xdf"
    write_xdf(path, [
        XdfStream(name="EMG", type="EMG", channel_format="float32", nominal_srate=FS,
                  time_series=data, time_stamps=ts, channels=chans),
        XdfStream(name="Markers", type="Markers", channel_format="string", nominal_srate=0.0,
                  time_series=[json.dumps({"intensity": 50})] * len(stims), time_stamps=stims)])

    def analyze(*extra):
        out = tmp_path / "t.csv"
        res = subprocess.run([sys.executable, "-m", "mepkit_cli.main", "analyze", str(path),
                              "-o", str(out), *extra], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        import pandas as pd

        return res.stderr, pd.read_csv(out)

    err, table = analyze()
    assert "mains: 60 Hz (detected)" in err.splitlines()
    assert not table["rejected"].any()
    err, table = analyze("--line-freq", "50")
    assert "mains: 50 Hz (set)" in err.splitlines()
    assert (table["reject_reason"] == "background").all()  # what a wrong choice does
