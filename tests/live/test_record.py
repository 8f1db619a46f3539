"""``mepkit record`` end to end: a real outlet process, the CLI in another, the HDF5 record."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from live_outlet import new_source_id, read_truth, start_outlet, stop_process, wait_until  # noqa: E402

from mepkit.records import open_record  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def record_cmd(out, sid, name, *extra):
    return [sys.executable, "-m", "mepkit_cli.main", "record", "--emg", name,
            "--markers", f"{name}-m", "--source-id", sid, "--marker-source-id",
            f"{sid}-markers", "-o", str(out), *extra]


def run_record(cmd, timeout=45):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def trials_by_pulse(rec):
    t = rec.trials
    out = {}
    for trial, g in t.groupby("trial"):
        out[int(trial)] = g.sort_values("channel")
    return out


def test_record_end_to_end_matches_ground_truth(tmp_path):
    sid = new_source_id()
    name = f"e2e-{sid[-8:]}"
    truth = tmp_path / "truth.jsonl"
    out = tmp_path / "s.h5"
    outlet = start_outlet(truth, sid, "--duration", "7", "--channels", "4", "--seed", "5",
                          name=name, markers_name=f"{name}-m")
    try:
        res = run_record(record_cmd(out, sid, name, "--duration", "9", "--subject", "S07"))
    finally:
        stop_process(outlet)
    assert res.returncode == 0, res.stderr[-3000:]
    start, pulses, done = read_truth(truth)
    assert done is not None, "the outlet did not finish within the recording"
    assert "trials:" in res.stdout and "p50" in res.stdout and str(out) in res.stdout
    with open_record(out) as rec:
        assert rec.closed_cleanly and rec.subject["identifier"] == "S07"
        st = rec.streams[name]
        data, ts = st.read()
        # every sample, contiguous; the raw stamps as liblsl made them at each push (late by
        # the push delay, back-filled), and the stored clock times every sample within a
        # fraction of a sample of its true time
        assert data.shape == (done["samples"], 4)
        true = start["t0"] + np.arange(done["samples"]) / 5000.0
        late = ts - true
        assert late.min() > -1e-6 and np.median(late) < 2e-3
        from mepkit.sources.clock import clock_times

        assert st.clock_rows is not None
        err = clock_times(st.clock_rows, 0, done["samples"]) - true
        assert err.min() > -1e-4 and np.percentile(err, 99) < 0.5e-3, (err.min(), err.max())
        times, values = rec.markers
        assert len(values) == len(pulses)
        np.testing.assert_allclose(times, [p["time_s"] for p in pulses], atol=1e-4)
        t = rec.trials
        assert t["trial"].nunique() == len(pulses)
        assert {"available_s", "last_sample_s"} <= set(t.columns)
        assert np.all(t["available_s"] >= t["last_sample_s"] - 1e-3)
        by = trials_by_pulse(rec)
        # the outlet's 50 Hz mains, found from the data within the first second and stored
        import json

        mains = [json.loads(d) for d in rec.events.loc[rec.events["kind"] == "mains", "detail"]]
        assert [(m["sample_index"], m["line_freq_hz"]) for m in mains] == [(5000, 50.0)]
    assert "mains: 50 Hz (detected)" in res.stderr.splitlines()
    agree = total = 0
    for k, p in enumerate(pulses):
        g = by[k]
        assert g["stim_time_s"].iloc[0] == pytest.approx(p["time_s"], abs=1e-4)
        for c, ch in enumerate(start["channels"]):
            row = g[g["channel"] == ch].iloc[0]
            assert not row["rejected"], row["reject_reason"]
            amp = p["amplitude_uv"][c]
            if amp >= 200:
                assert row["amplitude_uv"] == pytest.approx(amp, rel=0.10)
                assert abs(row["latency_ms"] - p["latency_ms"][c]) <= 1.0
            if amp < 25 or amp > 100:
                total += 1
                agree += bool(row["detected"]) == (amp > 100)
    assert total >= 80
    assert agree / total >= 0.98, f"detection agreement {agree}/{total}"


def test_outlet_restart_is_rejoined_and_outage_recorded(tmp_path):
    sid = new_source_id()
    name = f"restart-{sid[-8:]}"
    truth_a, truth_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    out = tmp_path / "r.h5"
    a = start_outlet(truth_a, sid, "--duration", "30", "--seed", "1", name=name,
                     markers_name=f"{name}-m")
    rec = subprocess.Popen(record_cmd(out, sid, name, "--duration", "11"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = None
    try:
        wait_until(lambda: read_truth(truth_a)[0], 20, "outlet A to start pushing")
        wait_until(lambda: len(read_truth(truth_a)[1]) >= 5, 10, "pulses from outlet A")
        stop_process(a)  # killed mid-session
        time.sleep(1.0)
        b = start_outlet(truth_b, sid, "--duration", "3", "--seed", "2", name=name,
                         markers_name=f"{name}-m")
        wait_until(lambda: read_truth(truth_b)[2], 25, "outlet B to finish")
        stdout, stderr = rec.communicate(timeout=30)
    finally:
        stop_process(rec)
        stop_process(a)
        stop_process(b)
    assert rec.returncode == 0, stderr[-3000:]
    start_b, pulses_b, done_b = read_truth(truth_b)
    _, pulses_a, _ = read_truth(truth_a)
    with open_record(out) as r:
        assert r.closed_cleanly
        ev = r.events
        outage = ev[ev["kind"] == "outage"]
        assert len(outage) == 1, ev
        import json

        detail = json.loads(outage["detail"].iloc[0])
        assert detail["samples_missing"] > 5000 * 0.8  # about a second or more missing
        # the first sample of outlet B on the fitted clock: its true time (+ the push delay)
        assert detail["end_s"] == pytest.approx(start_b["t0"], abs=2e-3)
        _, ts = r.streams[name].read()
        assert np.sum(ts >= start_b["t0"] - 1e-9) == done_b["samples"]
        t = r.trials
        after = t[t["stim_time_s"] >= start_b["t0"]]
        assert after["trial"].nunique() == len(pulses_b) > 3
        assert not after["rejected"].any()
        for p in pulses_b:
            g = after[np.isclose(after["stim_time_s"], p["time_s"], atol=1e-4)]
            for c, amp in enumerate(p["amplitude_uv"]):
                if amp >= 200:
                    assert g.iloc[c]["amplitude_uv"] == pytest.approx(amp, rel=0.10)
        before = t[t["stim_time_s"] < start_b["t0"]]
        assert before["trial"].nunique() >= 5
    assert "outages 1" in stdout


def test_sigint_closes_the_record_cleanly(tmp_path):
    sid = new_source_id()
    name = f"sigint-{sid[-8:]}"
    truth = tmp_path / "truth.jsonl"
    out = tmp_path / "i.h5"
    outlet = start_outlet(truth, sid, "--duration", "30", name=name, markers_name=f"{name}-m")
    rec = subprocess.Popen(record_cmd(out, sid, name), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(read_truth(truth)[1]) >= 6, 25, "pulses")
        time.sleep(0.3)
        rec.send_signal(signal.SIGINT)
        stdout, stderr = rec.communicate(timeout=20)
    finally:
        stop_process(rec)
        stop_process(outlet)
    assert rec.returncode == 0, stderr[-3000:]
    assert "record closed" in stderr and str(out) in stdout
    with open_record(out) as r:
        assert r.closed_cleanly
        assert r.trials["trial"].nunique() >= 5
        assert r.streams[name].n_samples > 5000
        assert "stop" in set(r.events["kind"])


def test_record_errors_are_one_line(tmp_path):
    sid = new_source_id()
    name = f"err-{sid[-8:]}"
    outlet = start_outlet(tmp_path / "t.jsonl", sid, "--duration", "30", "--type", "EEG",
                          name=name, markers_name=f"{name}-m")
    try:
        wait_until(lambda: __import__("pylsl").resolve_byprop("source_id", sid, 1, 0.5), 10,
                   "the outlet")
        res = run_record(record_cmd(tmp_path / "x.h5", sid, f"missing-{sid}",
                                    "--resolve-timeout", "0.5"))
        assert res.returncode != 0
        assert "no LSL stream with name=" in res.stderr and name in res.stderr
        assert "Traceback" not in res.stderr
        res = run_record(record_cmd(tmp_path / "y.h5", sid, name, "--resolve-timeout", "3"))
        assert res.returncode != 0 and "--emg-type EEG" in res.stderr
        assert "Traceback" not in res.stderr
        res = run_record([sys.executable, "-m", "mepkit_cli.main", "record", "--emg", name,
                          "-o", str(tmp_path / "z.h5")])
        assert res.returncode == 2 and "no source of pulses" in res.stderr
    finally:
        stop_process(outlet)


def test_record_virtual_subject_matches_ground_truth(tmp_path):
    """The simulator's SimulatedAmplifier (in this process) recorded by ``mepkit record``."""
    from mepkit.sim import outlet as sim

    sid = new_source_id()
    name = f"virt-{sid[-8:]}"
    out = tmp_path / "v.h5"
    amp = sim.SimulatedAmplifier(sfreq_hz=5000.0, name=name, source_id=sid, seed=11)
    rec = subprocess.Popen(
        [sys.executable, "-m", "mepkit_cli.main", "record", "--emg", name, "--markers",
         amp.marker_name, "--source-id", sid, "--marker-source-id", amp.marker_source_id,
         "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: amp._marker_outlet.have_consumers(), 25, "mepkit record to connect")
        # pulses at fixed samples of the amplifier's seeded EMG: the same noise under every
        # MEP in every run, so the test does not depend on when the machine gets to it
        first = int(8.0 * amp.sfreq_hz)
        assert amp.n_pushed < first - amp.sfreq_hz, "mepkit record took > 7 s to connect"
        rng = np.random.default_rng(3)
        for i, intensity in enumerate(rng.permutation(np.linspace(30, 85, 30)).round()):
            amp.fire(float(intensity), at_s=amp.time_of_sample(first + i * int(0.25 * amp.sfreq_hz)))
        last = amp.pulses[-1]
        wait_until(lambda: amp.n_pushed > last.sample_index + 0.5 * amp.sfreq_hz, 30,
                   "the last pulse's response to be published")
        rec.send_signal(signal.SIGINT)
        stdout, stderr = rec.communicate(timeout=20)
    finally:
        stop_process(rec)
        amp.stop()
    assert rec.returncode == 0, stderr[-3000:]
    agree = total = 0
    with open_record(out) as r:
        t = r.trials
        assert t["trial"].nunique() == 30
        for p in amp.pulses:
            g = t[np.isclose(t["stim_time_s"], p.time_s, atol=1e-4)]
            assert len(g) == len(p.truth["channels"])
            for ch, amp_uv, lat in zip(p.truth["channels"], p.truth["amplitude_uv"],
                                       p.truth["latency_ms"]):
                row = g[g["channel"] == ch].iloc[0]
                if row["rejected"]:
                    continue  # e.g. a voluntary contraction before the pulse
                if amp_uv >= 200:
                    assert row["amplitude_uv"] == pytest.approx(amp_uv, rel=0.10)
                    assert abs(row["latency_ms"] - lat) <= 1.0
                if amp_uv < 25 or amp_uv > 100:
                    total += 1
                    agree += bool(row["detected"]) == (amp_uv > 100)
    assert total >= 50
    assert agree / total >= 0.98, f"detection agreement {agree}/{total}"


def test_record_stops_with_one_line_when_the_disk_is_full(tmp_path):
    """A write error in the acquisition thread (here: the file-size limit, as a full disk):
    one clear line, the record closed as far as it can be, a non-zero exit."""
    import resource

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))

    sid = new_source_id()
    name = f"full-{sid[-8:]}"
    out = tmp_path / "full.h5"
    outlet = start_outlet(tmp_path / "t.jsonl", sid, "--duration", "30", "--channels", "8",
                          name=name, markers_name=f"{name}-m")
    try:
        res = subprocess.run(record_cmd(out, sid, name, "--duration", "25"), capture_output=True,
                             text=True, timeout=45, preexec_fn=small_files)
    finally:
        stop_process(outlet)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if "error: the session stopped early" in ln]
    assert len(errors) == 1 and str(out) in errors[0]
    assert out.exists()


@pytest.mark.parametrize("unit, fmt", [
    ("V", "double64"), ("mV", "float32"),
    pytest.param("microvolts", "double64", marks=pytest.mark.soak),
])
def test_analyze_of_a_live_record_gives_the_live_rows(tmp_path, unit, fmt):
    """A live session (real LSL, non-default parameters) and `mepkit analyze` on its record
    give the same trial rows, bit for bit, whatever the stream's unit and sample type."""
    import pandas as pd

    from mepkit.analyze import trials_to_frame
    from mepkit.live import LiveSession
    from mepkit.params import TRIAL_COLUMNS, Params

    params = Params(detection_threshold_uv=80.0, response_window_ms=(12.0, 55.0),
                    background_window_ms=(-90.0, -4.0), lowpass_hz=1000.0, line_freq_hz=60.0,
                    background_limit_uv=30.0, onset_sd=4.0)
    sid = new_source_id()
    name = f"re-{sid[-8:]}"
    truth, out = tmp_path / "truth.jsonl", tmp_path / "live.h5"
    outlet = start_outlet(truth, sid, "--duration", "3", "--unit", unit, "--format", fmt,
                          name=name, markers_name=f"{name}-m")
    try:
        with LiveSession(emg=name, markers=f"{name}-m", source_id=sid,
                         marker_source_id=sid + "-markers", params=params,
                         record_path=out) as session:
            wait_until(lambda: read_truth(truth)[2], 20, "the outlet to finish")
            time.sleep(0.5)
            live = list(session.trials(timeout=0.5))
    finally:
        stop_process(outlet)
    assert len(live) == len(read_truth(truth)[1]) > 5
    res = subprocess.run([sys.executable, "-m", "mepkit_cli.main", "analyze", str(out), "-o",
                          str(tmp_path / "again.parquet")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "other than those stored" not in res.stderr  # its own parameters
    cols = [c for c in TRIAL_COLUMNS if c != "file"]
    again = pd.read_parquet(tmp_path / "again.parquet")[cols]
    want = trials_to_frame(live)[cols]
    assert want.detected.any() and not want.rejected.all()
    pd.testing.assert_frame_equal(again.reset_index(drop=True), want.reset_index(drop=True),
                                  check_exact=True, check_dtype=False)
    with open_record(out) as rec:
        assert rec.params == params
        assert rec.streams[name].data.dtype == (np.float64 if fmt == "double64" else np.float32)
