"""Session record: round trip, live reading, overwrite, bad input, signals, info."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pandas as pd
import pytest

from mepkit.errors import FileFormatError, MepkitError
from mepkit.params import TRIAL_COLUMNS, Params
from mepkit.records import (
    FORMAT_VERSION, RecordExistsError, RecordNotFoundError, RecordWriter, format_info,
    open_record,
)
import soak_writer  # noqa: E402
from soak_writer import expected_samples, expected_timestamps, expected_trial


def trial_row(k, channel, **extra):
    row = {c: None for c in TRIAL_COLUMNS}
    row.update(file="f.xdf", trial=k, channel=channel, stim_time_s=10.0 + k,
               label="spTMS", intensity_pct_mso=50.0 + k, x_mm=1.5, y_mm=-2.0, site="C3",
               hemisphere="left", condition="pre", amplitude_uv=100.0 * (k + 1),
               latency_ms=21.5, area_uv_ms=300.0, background_rms_uv=4.0, peak_time_ms=25.0,
               detected=k % 2 == 0, rejected=k == 1, reject_reason="background" if k == 1 else "")
    row.update(extra)
    return row


def write_full_record(path, **kw):
    subject = {"identifier": "P07", "lesioned_hemisphere": "left", "dominant_hand": "right",
               "notes": "stroke 2019 — ischaemic", "age": 61, "scores": {"fm_ue": 44}}
    session = {"identifier": "pre", "operator": "AB", "notes": ""}
    params = Params(detection_threshold_uv=60.0, line_freq_hz=None)
    w = RecordWriter(path, subject=subject, session=session, params=params,
                     trial_columns={"available_s": float, "last_sample_s": float,
                                    "stim_id": "text"},
                     marker_stream="stim-markers", **kw)
    w.add_stream("emg", channel_labels=["FDI", "APB"], units="mV", nominal_srate_hz=5000.0,
                 source_id="amp-1", description="<info><name>emg</name></info>",
                 dtype="float64")
    w.add_stream("trig", channel_labels=["TTL"], units=[""], nominal_srate_hz=1000.0,
                 stream_type="Trigger")
    w.start()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 2))
    t = 100.0 + np.arange(1000) / 5000.0
    for a in range(0, 1000, 100):
        w.append_samples("emg", x[a:a + 100], t[a:a + 100])
    w.append_samples("trig", np.ones((10, 1)) * 3.3, 100.0 + np.arange(10) / 1000.0)
    w.append_markers([100.05, 100.15], ["stim", "stim ü"])
    w.append_trials([trial_row(0, "FDI", available_s=1.0, last_sample_s=0.98, stim_id="a"),
                     trial_row(0, "APB", available_s=1.0, last_sample_s=0.97, stim_id="a")])
    w.append_trials(pd.DataFrame([trial_row(1, "FDI"), trial_row(1, "APB")]))
    w.append_trials({"trial": [2], "channel": ["FDI"], "amplitude_uv": [7.0]})
    w.append_protocol_step({"method": "ml-pest", "intensity_pct_mso": 52}, time_s=100.1)
    w.append_protocol_step({"method": "ml-pest", "intensity_pct_mso": 48}, time_s=100.2)
    w.set_protocol_result("rmt", {"rmt_pct_mso": 47.5, "n": 17})
    w.set_protocol_result("rmt", {"rmt_pct_mso": 48.0, "n": 18})
    w.append_event(100.3, "gap", {"stream": "emg", "duration_s": 0.02})
    w.append_event(100.4, "outage", "marker stream lost")
    w.close()
    return x, t, subject, session, params


def test_round_trip_every_field(tmp_path):
    path = tmp_path / "s.h5"
    x, t, subject, session, params = write_full_record(path)
    with open_record(path) as rec:
        assert rec.path == str(path)
        assert rec.format_version == FORMAT_VERSION
        assert rec.software_version
        assert rec.closed_cleanly is True
        assert rec.warnings == []
        assert rec.subject == subject and rec.session == session
        assert rec.params == params
        emg = rec.streams["emg"]
        assert emg.channel_labels == ["FDI", "APB"]
        assert emg.units == ["mV", "mV"] and emg.source_units == ["mV", "mV"]
        assert emg.nominal_srate_hz == 5000.0 and emg.type == "EMG"
        assert emg.source_id == "amp-1" and emg.description.startswith("<info>")
        # stored as given: the source's dtype and units, every bit
        assert emg.data.dtype == np.float64 and emg.data.shape == (1000, 2)
        np.testing.assert_array_equal(emg.data, x)
        assert list(rec.file["streams/emg"].attrs["scale_to_uv"]) == [1000.0, 1000.0]
        np.testing.assert_array_equal(emg.timestamps, t)
        part, pt = emg.read(100, 150)
        np.testing.assert_array_equal(part, emg.data[100:150])
        np.testing.assert_array_equal(pt, t[100:150])
        trig = rec.streams["trig"]
        assert trig.units == [""] and trig.type == "Trigger"
        np.testing.assert_array_equal(trig.data, np.full((10, 1), 3.3, dtype=np.float32))
        assert rec.duration_s == pytest.approx(t[-1] - t[0])
        np.testing.assert_array_equal(rec.markers.times, [100.05, 100.15])
        assert rec.markers.values == ["stim", "stim ü"]
        assert rec.marker_stream == "stim-markers"

        tr = rec.trials
        assert list(tr.columns) == [*TRIAL_COLUMNS, "available_s", "last_sample_s", "stim_id"]
        assert len(tr) == 5
        assert tr["trial"].tolist() == [0, 0, 1, 1, 2]
        assert tr["trial"].dtype == np.int64
        assert tr["detected"].dtype == bool and tr["rejected"].tolist() == [0, 0, 1, 1, 0]
        assert tr["reject_reason"].tolist() == ["", "", "background", "background", ""]
        assert tr["amplitude_uv"].tolist() == [100.0, 100.0, 200.0, 200.0, 7.0]
        assert tr["stim_id"].tolist() == ["a", "a", "", "", ""]
        assert np.isnan(tr["available_s"].iloc[2]) and tr["available_s"].iloc[0] == 1.0
        assert tr["file"].iloc[4] == "" and np.isnan(tr["latency_ms"].iloc[4])

        assert [s.time_s for s in rec.protocol_steps] == [100.1, 100.2]
        assert rec.protocol_steps[1].data == {"method": "ml-pest", "intensity_pct_mso": 48}
        assert rec.protocol_results == {"rmt": {"rmt_pct_mso": 48.0, "n": 18}}
        assert rec.events["kind"].tolist() == ["gap", "outage"]
        assert rec.events["time_s"].tolist() == [100.3, 100.4]
        assert rec.events["detail"].iloc[1] == "marker stream lost"


def test_layout_is_readable_with_plain_h5py(tmp_path):
    path = tmp_path / "s.h5"
    x, t, *_ = write_full_record(path)
    with h5py.File(path, "r") as f:  # closed file: no SWMR flag needed
        assert f.attrs["mepkit_format"] == "mepkit-record"
        assert f.attrs["format_version"] == FORMAT_VERSION and f.attrs["closed_cleanly"]
        d = f["streams/emg/data"]
        assert d.dtype == np.float64 and d.maxshape == (None, 2) and d.chunks is not None
        assert f["streams/emg/timestamps"].dtype == np.float64
        assert list(f["streams/emg"].attrs["channel_labels"]) == ["FDI", "APB"]
        g = f["trials"]
        assert int(g.attrs["n_rows"]) == 5
        assert list(g.attrs["columns"])[:3] == ["file", "trial", "channel"]
        end = g["channel/end"][:]
        text = g["channel/utf8"][:].tobytes().decode()
        starts = np.r_[0, end[:-1]]
        assert [text[a:b] for a, b in zip(starts, end)] == ["FDI", "APB", "FDI", "APB", "FDI"]
        assert Params.from_json(f["params"].attrs["json"]).detection_threshold_uv == 60.0
        assert f["subject"].attrs["lesioned_hemisphere"] == "left"


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"precious")
    with pytest.raises(RecordExistsError, match="exists"):
        RecordWriter(path)
    assert isinstance(RecordExistsError("x"), FileExistsError)
    assert path.read_bytes() == b"precious"
    # created between construction and start: still refused
    p2 = tmp_path / "late.h5"
    w = RecordWriter(p2)
    p2.write_bytes(b"late")
    with pytest.raises(RecordExistsError):
        w.start()
    assert p2.read_bytes() == b"late"
    with RecordWriter(path, overwrite=True) as w:
        w.start()
    assert open_record(path).closed_cleanly


def test_declarations_after_start_and_bad_appends_are_refused(tmp_path):
    w = RecordWriter(tmp_path / "s.h5")
    w.add_stream("emg", channel_labels=["a", "b"], units="uV", nominal_srate_hz=1000)
    with pytest.raises(ValueError, match="unique"):
        w.add_stream("emg", channel_labels=["a"], units="uV", nominal_srate_hz=1000)
    w.start()
    with pytest.raises(MepkitError, match="before start"):
        w.add_stream("x", channel_labels=["a"], units="uV", nominal_srate_hz=1000)
    with pytest.raises(MepkitError, match="before start"):
        w.add_trial_columns(foo=float)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        w.append_samples("emg", np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(MepkitError, match="no stream"):
        w.append_samples("eeg", np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="unknown column"):
        w.append_trials([{"trial": 1, "nonsense": 2}])
    with pytest.raises(ValueError, match="trial"):
        w.append_trials([{"trial": 1.5}])
    w.close()
    with pytest.raises(MepkitError, match="closed"):
        w.append_markers([1.0], ["x"])
    rec = open_record(tmp_path / "s.h5")
    assert len(rec.trials) == 0 and rec.streams["emg"].n_samples == 0


def test_not_started_writer_creates_nothing_and_closes(tmp_path):
    w = RecordWriter(tmp_path / "never.h5")
    w.close()
    assert not (tmp_path / "never.h5").exists()


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "directory", "not_record",
                                  "newer", "truncated"])
def test_bad_input_gives_one_line_error(tmp_path, kind):
    path = tmp_path / "bad.h5"
    if kind == "text":
        path.write_text("time,value\n1,2\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "not_record":
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(3)
    elif kind == "newer":
        write_full_record(path)
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = 7
    elif kind == "truncated":
        write_full_record(path)
        os.truncate(path, os.path.getsize(path) // 2)
    expected = {"missing": (RecordNotFoundError, "no such file"),
                "text": (FileFormatError, "not an HDF5 file"),
                "empty": (FileFormatError, "empty file"),
                "directory": (FileFormatError, "directory"),
                "not_record": (FileFormatError, "not a mepkit record"),
                "newer": (FileFormatError, r"record format version 7 is newer than this "
                                           r"mepkit supports \(2\); upgrade mepkit"),
                "truncated": (FileFormatError, "truncated")}[kind]
    with pytest.raises(expected[0], match=expected[1]) as info:
        open_record(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path))


def test_damaged_trials_table_keeps_raw_data_readable(tmp_path):
    path = tmp_path / "s.h5"
    x, *_ = write_full_record(path)
    with h5py.File(path, "r+") as f:
        del f["trials/amplitude_uv"]
    with open_record(path) as rec:
        assert len(rec.trials) == 0 and "amplitude_uv" in rec.trials.columns
        assert any("trials table is damaged" in w for w in rec.warnings)
        np.testing.assert_allclose(rec.streams["emg"].data, x)
        assert rec.markers.values == ["stim", "stim ü"]
        assert "warning: trials table is damaged" in format_info(rec)


def test_tables_cut_to_rows_complete_in_every_column(tmp_path):
    """What a crash between column writes leaves: the reader keeps complete rows only."""
    path = tmp_path / "s.h5"
    write_full_record(path)
    with h5py.File(path, "r+") as f:
        f["trials/amplitude_uv"].resize((3,))  # one column short
        f["trials/stim_id/end"].resize((4,))
    with open_record(path) as rec:
        assert len(rec.trials) == 3
        assert rec.trials["channel"].tolist() == ["FDI", "APB", "FDI"]
    with h5py.File(path, "r+") as f:
        f["trials"].attrs["n_rows"] = 2  # commit counter lower than the columns
        f["markers/value/utf8"].resize((6,))  # text bytes cut inside the 2nd value
    with open_record(path) as rec:
        assert len(rec.trials) == 2
        assert rec.markers.values == ["stim"] and len(rec.markers.times) == 1


def soak_cmd(path, *extra):
    return [sys.executable, soak_writer.__file__, str(path), *extra]


def start_soak(path, *extra):
    proc = subprocess.Popen(soak_cmd(path, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("READY"), (line, proc.stderr.read() if proc.poll() else "")
    return proc


def test_reading_while_another_process_writes(tmp_path):
    path = tmp_path / "live.h5"
    proc = start_soak(path, "--signals", "--flush-interval", "0.2")
    seen = []
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            with open_record(path) as rec:
                assert not rec.closed_cleanly
                st = rec.streams["emg"]
                n = st.n_samples
                data, ts = st.read()
                np.testing.assert_array_equal(data, expected_samples(0, n, 16))
                np.testing.assert_array_equal(ts, expected_timestamps(0, n, 5000.0))
                k = len(rec.trials)
                for i, row in enumerate(rec.trials.to_dict("records")):
                    assert row["amplitude_uv"] == expected_trial(i, 16)["amplitude_uv"]
                    assert row["label"] == expected_trial(i, 16)["label"]
                seen.append((n, k))
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert len(seen) >= 5
    ns = [n for n, _ in seen]
    assert ns == sorted(ns) and ns[-1] > ns[0] and ns[-1] > 0, seen
    assert seen[-1][1] > seen[0][1]
    assert proc.returncode == 128 + signal.SIGTERM, err
    with open_record(path) as rec:
        assert rec.closed_cleanly and rec.warnings == []
        assert rec.streams["emg"].n_samples >= ns[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_record_cleanly(tmp_path, sig):
    path = tmp_path / "sig.h5"
    proc = start_soak(path, "--signals")
    time.sleep(0.7)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, err
    else:  # KeyboardInterrupt re-raised and uncaught: Python dies by SIGINT
        assert proc.returncode in (-signal.SIGINT, 130), err
        assert "KeyboardInterrupt" in err
    assert "CLOSED" in out
    last = [line for line in out.splitlines() if line.startswith("S ")][-1]
    with open_record(path) as rec:
        assert rec.closed_cleanly and rec.warnings == []
        assert rec.streams["emg"].n_samples >= int(last.split()[1])
        np.testing.assert_array_equal(rec.streams["emg"].data,
                                      expected_samples(0, rec.streams["emg"].n_samples, 16))


def test_signal_handlers_only_from_main_thread(tmp_path):
    w = RecordWriter(tmp_path / "s.h5")
    errors = []

    def target():
        try:
            w.install_signal_handlers()
        except MepkitError as exc:
            errors.append(str(exc))

    th = threading.Thread(target=target)
    th.start()
    th.join()
    assert errors and "main thread" in errors[0]
    before = signal.getsignal(signal.SIGTERM)
    w.install_signal_handlers()
    assert signal.getsignal(signal.SIGTERM) != before
    w.close()
    assert signal.getsignal(signal.SIGTERM) == before


def test_flush_interval_bounds_unflushed_data(tmp_path):
    """An append flushes when flush_interval_s has passed; maybe_flush() too."""
    w = RecordWriter(tmp_path / "s.h5", flush_interval_s=0.2)
    w.add_stream("emg", channel_labels=["a"], units="uV", nominal_srate_hz=1000)
    w.start()
    n0 = len(w.flush_durations_s)
    w.append_samples("emg", np.ones((10, 1)), np.arange(10.0))
    assert len(w.flush_durations_s) == n0  # too soon
    time.sleep(0.25)
    w.append_samples("emg", np.ones((10, 1)), np.arange(10.0, 20.0))
    assert len(w.flush_durations_s) == n0 + 1
    assert not w.maybe_flush()
    time.sleep(0.25)
    assert w.maybe_flush()
    w.close()


def test_format_info_summarises(tmp_path):
    path = tmp_path / "s.h5"
    write_full_record(path)
    with open_record(path) as rec:
        text = format_info(rec)
    assert str(path) in text
    assert "mepkit-record v2" in text and "closed cleanly: yes" in text
    assert "'emg' (EMG): 2 channels at 5000 Hz, 1000 samples" in text
    assert "FDI [mV], APB [mV]" in text
    assert "markers: 2" in text and "trial rows: 5" in text
    assert "rejected: 2 (background: 2)" in text
    assert "median amplitude (accepted): FDI 54 µV, APB 100 µV" in text
    assert "p50 25.0 ms, p99 30.0 ms" in text.replace("p99 29.9", "p99 30.0")
    assert "lesioned_hemisphere=left" in text


def test_cli_info(tmp_path, capsys):
    from mepkit_cli import info
    from mepkit_cli.main import build_parser

    good = tmp_path / "good.h5"
    write_full_record(good)
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    args = build_parser().parse_args(["info", str(bad), str(good)])
    assert info.run(args) == 1
    cap = capsys.readouterr()
    assert cap.err.strip() == f"mepkit info: error: {bad}: not an HDF5 file (a mepkit record " \
                              f"is an HDF5 file)"
    assert "trial rows: 5" in cap.out
    assert info.run(build_parser().parse_args(["info", str(good)])) == 0


def test_crashed_writer_record_copy_is_readable(tmp_path):
    """A SIGKILLed SWMR file opens (HDF5 2.0 needs no h5clear for SWMR readers), also copied."""
    path = tmp_path / "k.h5"
    proc = start_soak(path)
    time.sleep(1.2)
    proc.kill()
    proc.communicate(timeout=20)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")  # a plain reader refuses: status flag still set
    copy = tmp_path / "copy.h5"
    shutil.copy(path, copy)
    for p in (path, copy):
        with open_record(p) as rec:
            assert not rec.closed_cleanly
            assert "not closed cleanly" in rec.warnings[0]
            assert rec.streams["emg"].n_samples > 0
            assert len(rec.trials) > 0
    with h5py.File(path, "r", swmr=True, libver="latest") as f:  # the documented recipe
        assert f["streams/emg/data"].shape[0] > 0
