"""`mepkit analyze` on XDF files: good files, bad files, the CLI end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mepkit.batch import analyze_file
from mepkit.errors import FileFormatError, MepkitError, StreamNotFoundError
from mepkit.io.xdf_write import XdfStream, write_xdf
from mepkit.sim.emg import synthesize_recording
from mepkit.sim.sample import make_sample_session

FS = 5000.0
T0 = 500.0
COLUMNS = ["file", "trial", "channel", "stim_time_s", "label", "intensity_pct_mso", "amplitude_uv",
           "latency_ms", "area_uv_ms", "background_rms_uv", "detected", "rejected", "reject_reason"]


def recording(n=6, seed=0, amps=None):
    stims = T0 + 0.5 + np.arange(n) * 0.6
    amps = np.full((n, 1), 800.0) if amps is None else amps
    data, ts, _ = synthesize_recording(FS, 1, stims, amps, 22.0, duration_s=n * 0.6 + 0.6,
                                       t0_s=T0, seed=seed)
    return data, ts, stims


def emg_stream(data, ts, unit="microvolts", labels=("FDI",), **kw):
    chans = [{"label": lab, "unit": unit, "type": "EMG"} for lab in labels]
    return XdfStream(name=kw.pop("name", "EMG1"), type=kw.pop("type", "EMG"),
                     channel_format="float32", nominal_srate=FS, time_series=data,
                     time_stamps=ts, channels=chans, **kw)


def marker_stream(times, values, **kw):
    return XdfStream(name=kw.pop("name", "Markers1"), type=kw.pop("type", "Markers"), channel_format="string",
                     nominal_srate=0.0, time_series=list(values), time_stamps=np.asarray(times),
                     **kw)


def write(tmp_path, name, streams):
    path = tmp_path / name
    write_xdf(path, streams)
    return str(path)


def test_units_from_metadata(tmp_path):
    data, ts, stims = recording()
    m = marker_stream(stims, ['{"intensity": 60}'] * len(stims))
    uv = analyze_file(write(tmp_path, "uv.xdf", [emg_stream(data, ts), m]))
    mv = analyze_file(write(tmp_path, "mv.xdf", [emg_stream(data / 1000, ts, unit="mV"), m]))
    v = analyze_file(write(tmp_path, "v.xdf", [emg_stream(data / 1e6, ts, unit="V"), m]))
    np.testing.assert_allclose(mv.amplitude_uv, uv.amplitude_uv, rtol=1e-4)
    np.testing.assert_allclose(v.amplitude_uv, uv.amplitude_uv, rtol=1e-4)
    over = analyze_file(write(tmp_path, "wrong.xdf", [emg_stream(data / 1000, ts, unit="uV"), m]),
                        unit="mV")
    np.testing.assert_allclose(over.amplitude_uv, uv.amplitude_uv, rtol=1e-4)
    assert (uv.intensity_pct_mso == 60).all()
    assert uv.amplitude_uv.iloc[0] == pytest.approx(800, rel=0.05)


def test_marker_clock_offset_is_synchronised(tmp_path):
    data, ts, stims = recording()
    offset = 2.5  # marker clock runs 2.5 s behind; ClockOffset chunks say so
    co = [(float(t), offset) for t in np.arange(ts[0], ts[-1], 1.0)]
    m = marker_stream(stims - offset, ["pulse"] * len(stims), clock_offsets=co)
    out = analyze_file(write(tmp_path, "sync.xdf", [emg_stream(data, ts), m]))
    np.testing.assert_allclose(out.stim_time_s, stims, atol=1e-6)
    assert (out.detected).all()
    assert (out.label == "pulse").all()


def test_non_json_markers_become_labels_and_bad_json_warns(tmp_path, caplog):
    data, ts, stims = recording(3)
    vals = ["S  1", '{"intensity": 55, "hemisphere": "left"}', '{"intensity": 5']
    out = analyze_file(write(tmp_path, "m.xdf", [emg_stream(data, ts), marker_stream(stims, vals)]))
    assert list(out.label) == ["S  1", "", '{"intensity": 5']
    assert out.hemisphere.iloc[1] == "left" and out.intensity_pct_mso.iloc[1] == 55
    assert "not valid" in caplog.text
    assert out.detected.all()  # every pulse is still measured


def test_nan_run_and_gap_flag_only_their_trials(tmp_path):
    data, ts, stims = recording(6)
    d = data.copy()
    t = ts.copy()
    i1 = np.searchsorted(ts, stims[1])
    d[i1 + 80:i1 + 200] = np.nan
    i4 = np.searchsorted(ts, stims[4])
    keep = np.r_[0:i4 - 350, i4 - 100:len(t)]  # 50 ms of samples lost just before pulse 4
    d, t = d[keep], t[keep]
    out = analyze_file(write(tmp_path, "bad.xdf", [emg_stream(d, t),
                                                   marker_stream(stims, ["p"] * 6)]))
    assert list(out.reject_reason) == ["", "invalid", "", "", "gap", ""]
    assert out.rejected.tolist() == [False, True, False, False, True, False]
    assert out.amplitude_uv.drop([1, 4]).between(700, 900).all()


def test_clock_reset_flags_only_trials_across_it(tmp_path):
    data, ts, stims = recording(6)
    t = ts.copy()
    cut = np.searchsorted(ts, stims[3] - 0.2)
    t[cut:] -= 1000.0  # the EMG clock resets between pulse 2 and pulse 3
    s = stims.copy()
    s[3:] -= 1000.0
    out = analyze_file(write(tmp_path, "reset.xdf", [emg_stream(data, t),
                                                     marker_stream(s, ["p"] * 6)]))
    assert len(out) == 6
    assert out.reject_reason.tolist()[:3] == ["", "", ""]
    assert out.amplitude_uv.iloc[:3].between(700, 900).all()
    assert out.amplitude_uv.iloc[4:].between(700, 900).all()


def test_truncated_file_is_analysed_up_to_the_cut(tmp_path, caplog):
    data, ts, stims = recording(8)
    path = write(tmp_path, "full.xdf", [emg_stream(data, ts), marker_stream(stims, ["p"] * 8)])
    raw = open(path, "rb").read()
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(raw[: int(len(raw) * 0.6)])
    out = analyze_file(str(cut))
    assert "cut off" in caplog.text
    assert 2 <= len(out) < 8 or out.reject_reason.eq("invalid").any()
    good = out[out.reject_reason == ""]
    assert len(good) >= 2 and good.amplitude_uv.between(700, 900).all()


@pytest.mark.parametrize("case, error, match", [
    ("not_xdf", FileFormatError, "neither an XDF file nor a mepkit record"),
    ("garbage", FileFormatError, "damaged"),
    ("empty_file", FileFormatError, "XDF"),
    ("no_emg", StreamNotFoundError, "no stream of type 'EMG'"),
    ("named_absent", StreamNotFoundError, "no stream named 'Nope'"),
    ("empty_emg", FileFormatError, "no samples"),
    ("no_markers", StreamNotFoundError, "no stream of type 'Markers'"),
    ("trigger_absent", StreamNotFoundError, "trigger channel 'TRIG' not found"),
    ("bad_unit", FileFormatError, "furlongs"),
    ("string_emg", FileFormatError, "strings"),
])
def test_bad_input_one_line_error(tmp_path, case, error, match):
    data, ts, stims = recording(2)
    m = marker_stream(stims, ["p", "p"])
    opts = {}
    path = tmp_path / f"{case}.xdf"
    if case == "not_xdf":
        path.write_text("hello, this is a CSV,1,2,3\n")
    elif case == "garbage":
        path.write_bytes(b"XDF:" + bytes([8]) + b"\xff" * 8 + b"\x01\x00" + os.urandom(100))
    elif case == "empty_file":
        path.write_bytes(b"")
    elif case == "no_emg":
        write_xdf(path, [emg_stream(data, ts, type="EEG"), m])
    elif case == "named_absent":
        write_xdf(path, [emg_stream(data, ts), m])
        opts = dict(emg_stream="Nope")
    elif case == "empty_emg":
        write_xdf(path, [emg_stream(np.zeros((0, 1)), np.zeros(0)), m])
    elif case == "no_markers":
        write_xdf(path, [emg_stream(data, ts)])
    elif case == "trigger_absent":
        write_xdf(path, [emg_stream(data, ts)])
        opts = dict(trigger_channel="TRIG")
    elif case == "bad_unit":
        write_xdf(path, [emg_stream(data, ts, unit="furlongs"), m])
    elif case == "string_emg":
        write_xdf(path, [marker_stream(stims, ["a", "b"], name="E", type="EMG"), m])
    with pytest.raises(error, match=match) as info:
        analyze_file(str(path), **opts)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg


def test_shared_example_files(shared_xdf):
    # other software's files: no EMG stream -> a clear error naming the file
    for name in ("minimal.xdf", "clock_resets.xdf", "empty_streams.xdf"):
        with pytest.raises(StreamNotFoundError, match=name):
            analyze_file(str(shared_xdf / name))
    # told which stream to use, the clock-reset file is read (EEG as 'EMG', 175 markers)
    out = analyze_file(str(shared_xdf / "clock_resets.xdf"),
                       emg_stream="BioSemi", marker_stream="MyMarkerStream")
    assert out.trial.nunique() == 175 and out.channel.nunique() == 8
    # EEG at 100 Hz is a few µV: no MEP anywhere, every trial measured, and a trial is
    # rejected only as `gap`, when its epoch holds a timestamp step longer than a period plus
    # the tolerance or not forward (checked on the stamps as pyxdf reads them)
    assert not out.detected.any()
    kept = out[out.reject_reason == ""]
    assert len(kept) >= 0.8 * len(out)
    assert np.isfinite(kept[["amplitude_uv", "background_rms_uv", "area_uv_ms"]]).all().all()
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(shared_xdf / "clock_resets.xdf"), dejitter_timestamps=False)
    ts = next(s for s in streams if s["info"]["name"][0] == "BioSemi")["time_stamps"]
    for t in out[out.reject_reason != ""].stim_time_s.unique():
        assert out[out.stim_time_s == t].reject_reason.eq("gap").all()
        steps = np.diff(ts[(ts >= t - 0.13) & (ts <= t + 0.07)])  # the epoch and a sample
        assert np.any((steps > 0.01 + 0.002) | (steps <= 0)), t
    with pytest.raises(FileFormatError, match="no samples"):
        analyze_file(str(shared_xdf / "empty_streams.xdf"),
                     emg_stream="Empty data stream: test stream 0 counter",
                     artifact_triggers=True)


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mepkit_cli.main", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_cli_end_to_end_on_sample_recording(tmp_path):
    xdf = tmp_path / "sample.xdf"
    truth = pd.DataFrame(make_sample_session(xdf, truth_csv=tmp_path / "truth.csv"))
    out = tmp_path / "out.csv"
    r = cli("analyze", str(xdf), "-o", str(out))
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(table.columns[:3]) == ["file", "trial", "channel"]
    assert set(COLUMNS) <= set(table.columns)
    raw = open(out).read()
    assert ",true," in raw and ",false," in raw
    m = table.merge(truth, on=["trial", "channel"], suffixes=("", "_true"))
    assert len(m) == len(truth)
    np.testing.assert_allclose(m.stim_time_s, m.stim_time_s_true, atol=1e-6)
    big = m[(m.amplitude_uv_true > 200) & ~m.contraction]
    np.testing.assert_allclose(big.amplitude_uv, big.amplitude_uv_true, rtol=0.1)
    assert (big.latency_ms - big.latency_ms_true).abs().max() < 1.5
    assert m[m.contraction].reject_reason.eq("background").all()
    absent = m[m.amplitude_uv_true == 0]
    assert not absent.detected.astype(str).str.lower().eq("true").any()
    # printed table without -o
    r = cli("analyze", str(xdf))
    assert r.returncode == 0 and "amplitude_uv" in r.stdout and "trials" in r.stdout


def test_cli_bad_file_one_line_and_others_complete(tmp_path):
    xdf = tmp_path / "good.xdf"
    make_sample_session(xdf, n_trials=4)
    bad = tmp_path / "bad.xdf"
    bad.write_text("not xdf")
    out = tmp_path / "o.csv"
    r = cli("analyze", str(bad), str(xdf), "-o", str(out))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "bad.xdf" in errors[0]
    assert pd.read_csv(out).file.unique().tolist() == [str(xdf)]
    r = cli("analyze", str(tmp_path / "missing.xdf"))
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = cli("analyze", str(xdf), "--trigger-channel", "NOPE")
    assert r.returncode == 1 and "NOPE" in r.stderr and "Traceback" not in r.stderr
    r = cli("analyze", str(xdf), "--response-window", "50", "10")
    assert r.returncode == 2 and "start < stop" in r.stderr


def test_cli_ttl_channel_and_marker_filter(tmp_path):
    xdf = tmp_path / "ttl.xdf"
    make_sample_session(xdf, n_trials=5, ttl=True)
    ttl_out = tmp_path / "ttl.csv"
    r = cli("analyze", str(xdf), "--trigger-channel", "TRIG", "-o", str(ttl_out))
    assert r.returncode == 0, r.stderr
    # the same channel by index, on the command line and in Python
    idx_out = tmp_path / "idx.csv"
    assert cli("analyze", str(xdf), "--trigger-channel", "2", "-o", str(idx_out)).returncode == 0
    pd.testing.assert_frame_equal(pd.read_csv(idx_out), pd.read_csv(ttl_out))
    by_index = analyze_file(str(xdf), trigger_channel=2)
    np.testing.assert_array_equal(by_index.amplitude_uv, pd.read_csv(ttl_out).amplitude_uv)
    r = cli("analyze", str(xdf), "--trigger-channel", "7")
    assert r.returncode == 1 and "index 7 out of range" in r.stderr
    mk_out = tmp_path / "mk.csv"
    assert cli("analyze", str(xdf), "-o", str(mk_out)).returncode == 0
    a, b = pd.read_csv(ttl_out), pd.read_csv(mk_out)
    assert set(a.channel) == {"FDI_R", "APB_R"}
    assert set(b.channel) == {"FDI_R", "APB_R", "TRIG"}  # without --trigger-channel it is EMG
    b = b[b.channel != "TRIG"].reset_index(drop=True)
    np.testing.assert_allclose(a.stim_time_s, b.stim_time_s, atol=1.5 / FS)
    np.testing.assert_allclose(a.amplitude_uv, b.amplitude_uv, rtol=0.02, atol=5)
    r = cli("analyze", str(xdf), "--marker-filter", "^nothing$", "-o", str(mk_out))
    assert r.returncode == 0
    assert len(pd.read_csv(mk_out)) == 0


def test_sample_data_is_made_by_the_script(tmp_path):
    sample_xdf = Path(__file__).resolve().parents[2] / "sample_data" / "sample_session.xdf"
    out = tmp_path / "again.xdf"
    make_sample_session(out, truth_csv=tmp_path / "again_truth.csv")
    assert out.read_bytes() == sample_xdf.read_bytes()
    assert (tmp_path / "again_truth.csv").read_text() == \
        sample_xdf.with_name("sample_session_truth.csv").read_text()


def test_bad_markers_in_a_file_warn_and_are_measured(tmp_path, caplog):
    """The markers that once stopped a live session, in an XDF file: each trial measured,
    labelled with the marker's text (cut), each with a warning."""
    from mepkit.markers import MAX_MARKER_CHARS

    bad = ['{"intensity": ' + "9" * 400 + "}", '{"intensity": ' + "9" * 5000 + "}",
           '{"x":' + "[" * 1015, '{"intensity": 50', "x" * 100_000,
           '{"intensity": 1e999, "site": "M1"}']
    data, ts, stims = recording(len(bad))
    out = analyze_file(write(tmp_path, "bad.xdf", [emg_stream(data, ts),
                                                   marker_stream(stims, bad)]))
    assert out.label.tolist() == [b[:MAX_MARKER_CHARS] for b in bad]
    assert not out.rejected.any() and out.amplitude_uv.between(700, 900).all()
    assert out.intensity_pct_mso.isna().all() and out.site.tolist()[-1] == "M1"
    for what in ("not a number", "longer than", "RecursionError", "JSON but is not valid",
                 "not finite"):
        assert what in caplog.text, what
