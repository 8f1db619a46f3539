"""Round-trip tests of mepkit.io.xdf_write against the pyxdf reader."""

from __future__ import annotations

import datetime as dt
import logging
import os
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mepkit.io.xdf_write import BOUNDARY_UUID, XdfStream, write_xdf

FIXED_DT = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
NUMERIC_FORMATS = ["float32", "double64", "int8", "int16", "int32", "int64"]
NUMPY_OF = {
    "float32": np.float32,
    "double64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
}


def load_raw(path):
    """pyxdf load without clock sync or dejittering (time stamps as written)."""
    return pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)


def walk_chunks(data: bytes) -> list[tuple[int, int | None, bytes]]:
    """Independent chunk walker: list of (tag, stream id or None, content after id)."""
    assert data[:4] == b"XDF:"
    pos, out = 4, []
    while pos < len(data):
        nbytes = data[pos]
        assert nbytes in (1, 4, 8), f"bad varlen byte count {nbytes} at {pos}"
        fmt = {1: "<B", 4: "<I", 8: "<Q"}[nbytes]
        length = struct.unpack(fmt, data[pos + 1 : pos + 1 + nbytes])[0]
        body = data[pos + 1 + nbytes : pos + 1 + nbytes + length]
        assert len(body) == length, "chunk runs past end of file"
        tag = struct.unpack("<H", body[:2])[0]
        if tag in (2, 3, 4, 6):
            out.append((tag, struct.unpack("<I", body[2:6])[0], body[6:]))
        else:
            out.append((tag, None, body[2:]))
        pos += 1 + nbytes + length
    assert pos == len(data)
    return out


def numeric_data(fmt: str, n: int, nch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = NUMPY_OF[fmt]
    if fmt.startswith("int"):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=(n, nch), endpoint=True, dtype=dtype)
        if n:
            x[0, 0], x[-1, -1] = info.min, info.max  # extremes survive the trip
        return x
    return (rng.standard_normal((n, nch)) * 1e3).astype(dtype)


# --------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", NUMERIC_FORMATS)
def test_numeric_roundtrip(tmp_path: Path, fmt: str) -> None:
    n, nch, srate = 1234, 3, 1000.0
    x = numeric_data(fmt, n, nch)
    ts = 5000.0 + np.arange(n) / srate + np.random.default_rng(1).normal(0, 1e-5, n)
    chans = [
        {"label": "FDI_L", "unit": "microvolts", "type": "EMG"},
        {"label": "APB_L", "unit": "microvolts", "type": "EMG"},
        {"label": "Trig & <x>", "unit": "V", "type": "TRIG"},  # needs XML escaping
    ]
    s = XdfStream("Amp é", "EMG", fmt, srate, x, ts, channels=chans, source_id="amp-42")
    path = tmp_path / "a.xdf"
    write_xdf(path, [s], recording_datetime=FIXED_DT)

    streams, header = load_raw(path)
    assert header["info"]["version"] == ["1.0"]
    assert header["info"]["datetime"] == [FIXED_DT.isoformat()]
    assert len(streams) == 1
    got = streams[0]
    assert got["time_series"].dtype == np.dtype(NUMPY_OF[fmt])
    np.testing.assert_array_equal(got["time_series"], x)
    np.testing.assert_array_equal(got["time_stamps"], ts)  # doubles, bit exact
    info = got["info"]
    assert info["name"] == ["Amp é"]
    assert info["type"] == ["EMG"]
    assert info["channel_format"] == [fmt]
    assert info["channel_count"] == ["3"]
    assert float(info["nominal_srate"][0]) == srate
    assert info["source_id"] == ["amp-42"]
    chs = info["desc"][0]["channels"][0]["channel"]
    assert [c["label"][0] for c in chs] == ["FDI_L", "APB_L", "Trig & <x>"]
    assert [c["unit"][0] for c in chs] == ["microvolts", "microvolts", "V"]
    assert [c["type"][0] for c in chs] == ["EMG", "EMG", "TRIG"]
    footer = got["footer"]["info"]
    assert footer["sample_count"] == [str(n)]
    assert float(footer["first_timestamp"][0]) == ts[0]
    assert float(footer["last_timestamp"][0]) == ts[-1]


def test_string_roundtrip(tmp_path: Path) -> None:
    markers = ["tms_pulse", "", "naïve ✓ unicode", "x" * 300, "<tag>&amp;", "end"]
    ts = np.array([0.5, 1.25, 1.25, 7.0, 12.0, 30.0])
    s = XdfStream("Markers", "Markers", "string", 0.0, markers, ts)
    path = tmp_path / "m.xdf"
    write_xdf(path, [s], chunk_duration_s=0.5)
    (got,), _ = load_raw(path)
    # pyxdf returns string samples as one list per sample (one entry per channel)
    assert got["time_series"] == [[m] for m in markers]
    np.testing.assert_array_equal(got["time_stamps"], ts)
    assert got["info"]["channel_format"] == ["string"]
    assert got["info"]["channel_count"] == ["1"]
    assert float(got["info"]["nominal_srate"][0]) == 0.0
    assert s.channel_count == 1


def test_one_dimensional_series_is_one_channel(tmp_path: Path) -> None:
    x = np.arange(10, dtype=np.float64)
    s = XdfStream("A", "EMG", "double64", 10.0, x, np.arange(10) / 10)
    assert s.channel_count == 1
    write_xdf(tmp_path / "a.xdf", [s])
    (got,), _ = load_raw(tmp_path / "a.xdf")
    np.testing.assert_array_equal(got["time_series"], x[:, None])


def test_multiple_streams_interleaved_in_time_order(tmp_path: Path) -> None:
    dur, chunk, boundary = 25.0, 0.5, 10.0
    t0 = 1000.0
    emg_ts = t0 + np.arange(int(dur * 2000)) / 2000.0
    acc_ts = t0 + np.arange(int(dur * 100)) / 100.0
    mk_ts = t0 + np.array([0.3, 4.0, 4.1, 19.9])
    emg = XdfStream("EMG", "EMG", "float32", 2000, numeric_data("float32", len(emg_ts), 4), emg_ts)
    acc = XdfStream("ACC", "Accel", "int16", 100, numeric_data("int16", len(acc_ts), 3), acc_ts)
    mk = XdfStream("MK", "Markers", "string", 0, ["a", "b", "c", "d"], mk_ts)
    path = tmp_path / "multi.xdf"
    write_xdf(path, [emg, acc, mk], chunk_duration_s=chunk, boundary_every_s=boundary)

    # file layout: header, all stream headers, then data, footers last
    chunks = walk_chunks(path.read_bytes())
    tags = [c[0] for c in chunks]
    assert tags[:4] == [1, 2, 2, 2]
    assert tags[-3:] == [6, 6, 6]
    assert set(tags[4:-3]) == {3, 5}
    assert [c[1] for c in chunks[1:4]] == [1, 2, 3]
    boundaries = [c for c in chunks if c[0] == 5]
    assert len(boundaries) == 2  # at ~10 s and ~20 s of a 25 s recording
    assert all(c[2] == BOUNDARY_UUID for c in boundaries)

    # chunks in file order, seen through pyxdf's per-chunk callback
    seen: list[tuple[int, np.ndarray]] = []

    def on_chunk(values, stamps, info, stream_id):
        seen.append((stream_id, np.array(stamps)))
        return values, stamps, info

    streams, _ = pyxdf.load_xdf(
        str(path), on_chunk=on_chunk, synchronize_clocks=False, dejitter_timestamps=False
    )
    ids = [sid for sid, _ in seen]
    switches = sum(a != b for a, b in zip(ids, ids[1:]))
    assert switches >= 2 * int(dur / chunk) - 2, "streams are not interleaved"
    last_stamps = [s[-1] for _, s in seen]
    assert all(b >= a for a, b in zip(last_stamps, last_stamps[1:])), "not in time order"
    spans = [s[-1] - s[0] for _, s in seen]
    assert max(spans) < chunk
    # the EMG stream needs about one chunk per chunk_duration_s
    assert ids.count(1) == pytest.approx(dur / chunk, abs=1)

    by_name = {s["info"]["name"][0]: s for s in streams}
    np.testing.assert_array_equal(by_name["EMG"]["time_series"], emg.time_series)
    np.testing.assert_array_equal(by_name["EMG"]["time_stamps"], emg_ts)
    np.testing.assert_array_equal(by_name["ACC"]["time_series"], acc.time_series)
    np.testing.assert_array_equal(by_name["ACC"]["time_stamps"], acc_ts)
    assert by_name["MK"]["time_series"] == [["a"], ["b"], ["c"], ["d"]]
    np.testing.assert_array_equal(by_name["MK"]["time_stamps"], mk_ts)


def test_empty_streams(tmp_path: Path) -> None:
    full = XdfStream("A", "EMG", "float32", 100, np.ones((50, 2), np.float32), np.arange(50) / 100)
    empty_num = XdfStream("E", "EMG", "int32", 100, np.zeros((0, 5), np.int32), np.zeros(0))
    empty_str = XdfStream("M", "Markers", "string", 0, [], np.zeros(0))
    path = tmp_path / "e.xdf"
    write_xdf(path, [empty_num, full, empty_str])
    tags = [(c[0], c[1]) for c in walk_chunks(path.read_bytes())]
    assert (3, 1) not in tags and (3, 3) not in tags  # no Samples chunks for them
    assert (6, 1) in tags and (6, 3) in tags  # but footers are there
    streams, _ = load_raw(path)
    e, a, m = streams
    assert e["time_series"].shape == (0, 5)
    assert e["time_stamps"].shape == (0,)
    assert e["info"]["channel_count"] == ["5"]
    assert e["footer"]["info"]["sample_count"] == ["0"]
    assert m["time_series"] == []
    assert m["footer"]["info"]["sample_count"] == ["0"]
    assert a["time_series"].shape == (50, 2)


def test_all_streams_empty(tmp_path: Path) -> None:
    path = tmp_path / "e.xdf"
    write_xdf(path, [XdfStream("E", "EMG", "double64", 10, np.zeros((0, 1)), [])])
    assert [c[0] for c in walk_chunks(path.read_bytes())] == [1, 2, 6]
    (e,), _ = load_raw(path)
    assert e["time_series"].shape == (0, 1)


def test_no_streams(tmp_path: Path) -> None:
    path = tmp_path / "none.xdf"
    write_xdf(path, [])
    assert [c[0] for c in walk_chunks(path.read_bytes())] == [1]
    streams, header = load_raw(path)
    assert streams == [] and header["info"]["version"] == ["1.0"]


def test_clock_offsets_applied_by_pyxdf(tmp_path: Path) -> None:
    n = 3000
    ts = 200.0 + np.arange(n) / 100.0  # 30 s at 100 Hz on the source clock
    offset = -123.25
    collect = 200.0 + offset + np.arange(0, 31, 5.0)  # on the recorder clock
    a = XdfStream(
        "A", "EMG", "double64", 100, np.arange(n, dtype=float), ts,
        clock_offsets=[(c, offset) for c in collect],
    )  # fmt: skip
    b_ts = 77.0 + np.arange(100) / 10.0
    b = XdfStream("B", "EMG", "double64", 10, np.zeros((100, 1)), b_ts)
    path = tmp_path / "c.xdf"
    write_xdf(path, [a, b], chunk_duration_s=1.0, boundary_every_s=None)

    raw, _ = load_raw(path)
    np.testing.assert_array_equal(raw[0]["time_stamps"], ts)
    assert raw[0]["clock_times"] == list(collect)
    assert raw[0]["clock_values"] == [offset] * len(collect)
    assert raw[1]["clock_times"] == []

    synced, _ = pyxdf.load_xdf(str(path), synchronize_clocks=True, dejitter_timestamps=False)
    np.testing.assert_allclose(synced[0]["time_stamps"], ts + offset, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(synced[1]["time_stamps"], b_ts)  # no offsets: unchanged

    # each ClockOffset chunk is written at its collection time: after the
    # stream-1 Samples chunks recorded before it (1 s chunks, 5 s apart)
    order = [c[0] for c in walk_chunks(path.read_bytes()) if c[0] == 4 or c[:2] == (3, 1)]
    before = [order[:i].count(3) for i, tag in enumerate(order) if tag == 4]
    assert before == pytest.approx([5 * k for k in range(len(collect))], abs=1)
    # and the footer lists them
    offs = raw[0]["footer"]["info"]["clock_offsets"][0]["offset"]
    assert [float(o["time"][0]) for o in offs] == list(collect)
    assert [float(o["value"][0]) for o in offs] == [offset] * len(collect)


def test_single_clock_offset_is_an_exact_shift(tmp_path: Path) -> None:
    ts = np.arange(20) / 10.0
    s = XdfStream("A", "EMG", "float32", 10, np.zeros((20, 1), np.float32), ts,
                  clock_offsets=[(1.0, 0.75)])  # fmt: skip
    write_xdf(tmp_path / "c.xdf", [s])
    (got,), _ = pyxdf.load_xdf(str(tmp_path / "c.xdf"), dejitter_timestamps=False)
    np.testing.assert_array_equal(got["time_stamps"], ts + 0.75)


def test_non_monotonic_timestamps_kept_in_order(tmp_path: Path) -> None:
    # a clock reset: the source clock jumps back by 100 s half-way through
    ts = np.concatenate([500.0 + np.arange(1000) / 100.0, 400.0 + np.arange(1000) / 100.0])
    x = np.arange(2000, dtype=np.int32)[:, None]
    other_ts = 395.0 + np.arange(250) / 10.0
    s = XdfStream("A", "EMG", "int32", 100, x, ts)
    o = XdfStream("B", "EMG", "float32", 10, np.ones((250, 1), np.float32), other_ts)
    write_xdf(tmp_path / "r.xdf", [s, o], chunk_duration_s=0.5)
    (a, b), _ = load_raw(tmp_path / "r.xdf")
    np.testing.assert_array_equal(a["time_stamps"], ts)
    np.testing.assert_array_equal(a["time_series"], x)
    np.testing.assert_array_equal(b["time_stamps"], other_ts)
    # chunks stay bounded in size even after the reset
    n_chunks = sum(1 for c in walk_chunks((tmp_path / "r.xdf").read_bytes()) if c[:2] == (3, 1))
    assert n_chunks >= 35


def test_identical_input_gives_identical_bytes(tmp_path: Path) -> None:
    def streams():
        x = numeric_data("float32", 500, 2)
        return [
            XdfStream("A", "EMG", "float32", 250, x, np.arange(500) / 250),
            XdfStream("M", "Markers", "string", 0, ["p"], [0.5], clock_offsets=[(0.1, 0.2)]),
        ]

    write_xdf(tmp_path / "1.xdf", streams(), recording_datetime=FIXED_DT)
    write_xdf(tmp_path / "2.xdf", streams(), recording_datetime=FIXED_DT)
    assert (tmp_path / "1.xdf").read_bytes() == (tmp_path / "2.xdf").read_bytes()


def test_chunk_bytes_are_exact(tmp_path: Path) -> None:
    """One sample per chunk: check the Samples chunk byte for byte."""
    x = np.array([[1.5, -2.0], [3.25, 4.0]], dtype=np.float32)
    ts = np.array([10.0, 20.0])
    write_xdf(tmp_path / "b.xdf", [XdfStream("A", "EMG", "float32", 0, x, ts)],
              boundary_every_s=None)  # fmt: skip
    samples = [c for c in walk_chunks((tmp_path / "b.xdf").read_bytes()) if c[0] == 3]
    assert len(samples) == 2
    for (tag, sid, body), row, t in zip(samples, x, ts):
        assert sid == 1
        assert body == b"\x01\x01" + b"\x08" + struct.pack("<d", t) + struct.pack("<2f", *row)


# --------------------------------------------------------------------------
# truncated files
# --------------------------------------------------------------------------


MARKERS = ["pulse_one", "pulse_two"]


def _truncation_fixture(tmp_path: Path) -> tuple[bytes, list[dict], np.ndarray, np.ndarray]:
    """A small two-stream file, plus where each chunk starts and ends."""
    n = 150
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)  # every row distinct
    ts = np.arange(n) / 100.0
    s = XdfStream("A", "EMG", "float32", 100, x, ts)
    m = XdfStream("M", "Markers", "string", 0, MARKERS, [0.3, 1.2],
                  clock_offsets=[(0.0, 1.0), (1.0, 1.0)])  # fmt: skip
    write_xdf(tmp_path / "full.xdf", [s, m], chunk_duration_s=0.25, boundary_every_s=0.5)
    data = (tmp_path / "full.xdf").read_bytes()
    pos, chunks = 4, []
    for tag, sid, body in walk_chunks(data):
        head = 1 + data[pos]
        end = pos + head + 2 + (4 if sid is not None else 0) + len(body)
        chunks.append(dict(start=pos, head=head, end=end, tag=tag, sid=sid))
        pos = end
    assert {c["tag"] for c in chunks} == {1, 2, 3, 4, 5, 6}
    return data, chunks, x, ts


def test_truncated_in_samples_chunk_loads_whole_chunks_before_the_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, chunks, x, ts = _truncation_fixture(tmp_path)
    a_chunks = [c for c in chunks if c["tag"] == 3 and c["sid"] == 1]
    chunk = a_chunks[len(a_chunks) // 2]
    cut = chunk["start"] + chunk["head"] + 2 + 4 + 20  # inside that chunk's samples
    path = tmp_path / "cut.xdf"
    path.write_bytes(data[:cut])

    with caplog.at_level(logging.ERROR, logger="pyxdf.pyxdf"):
        streams, _ = load_raw(path)
    # pyxdf logs the corruption, drops the damaged chunk and keeps all before it
    assert "corruption" in caplog.text
    a = streams[0]
    k = len(a["time_stamps"])
    assert 0 < k < len(ts)
    np.testing.assert_array_equal(a["time_stamps"], ts[:k])
    np.testing.assert_array_equal(a["time_series"], x[:k])
    assert "footer" not in a  # footers are at the end and were cut off
    # k is exactly the number of samples in stream 1's complete chunks before the cut
    whole = [c for c in walk_chunks(data[: chunk["start"]]) if c[:2] == (3, 1)]
    assert k == sum(body[1] for _, _, body in whole)  # counts < 256: 1-byte varlen


def ts_in_chunk(data: bytes, chunk: dict) -> list[float]:
    """Time stamps of a complete float32 x 2 Samples chunk (1-byte sample count)."""
    body = data[chunk["start"] + chunk["head"] + 2 + 4 : chunk["end"]]
    assert body[0] == 1
    return [struct.unpack("<d", body[2 + 17 * i + 1 : 2 + 17 * i + 9])[0] for i in range(body[1])]


def test_truncated_at_every_byte(tmp_path: Path) -> None:
    """Record what pyxdf 1.17 does with a file cut at each possible byte.

    * cut in a chunk's 2-byte tag, or in a ClockOffset chunk's two doubles:
      ``struct.error`` escapes load_xdf (the file cannot be loaded at all);
    * cut in the FileHeader or a StreamHeader XML: ``ParseError``;
    * cut in a chunk's 4-byte stream id: it loads (pyxdf skips ahead to the
      next Boundary chunk, here the end of the file);
    * cut in the *values of the last sample* of a Samples chunk: it loads and
      silently returns that sample with stale bytes (numeric: left over from
      the previous sample; string: a shortened string), because pyxdf does not
      check for short reads there;
    * anywhere else (length field, earlier in a Samples chunk, Boundary,
      StreamFooter): it loads, each stream holding exactly a prefix of its
      samples made of whole chunks.
    """
    data, chunks, x, ts = _truncation_fixture(tmp_path)
    path = tmp_path / "cut.xdf"
    outcomes: dict[tuple[int, str], set[str]] = {}
    stale_numeric = stale_string = 0
    logging.disable(logging.CRITICAL)
    try:
        for cut in range(5, len(data)):
            c = max((c for c in chunks if c["start"] < cut), key=lambda c: c["start"])
            off = cut - c["start"]
            where = "len" if off < c["head"] else "tag" if off < c["head"] + 2 else "body"
            if c["sid"] is not None and where == "body" and off < c["head"] + 6:
                where = "sid"
            if cut == c["end"]:
                where = "whole"  # the cut falls between chunks
            if c["tag"] == 3 and c["sid"] == 1 and c["end"] - 2 * 4 <= cut < c["end"]:
                where = "last_values"
            if c["tag"] == 3 and c["sid"] == 2 and c["end"] - len("pulse_xxx") <= cut < c["end"]:
                where = "last_values"
            path.write_bytes(data[:cut])
            try:
                streams, _ = load_raw(path)
            except Exception as e:  # noqa: BLE001 - we record what happens
                outcomes.setdefault((c["tag"], where), set()).add(type(e).__name__)
                continue
            outcomes.setdefault((c["tag"], where), set()).add("ok")
            for s in streams:
                k = len(s["time_stamps"])
                if s["info"]["name"] == ["A"]:
                    np.testing.assert_array_equal(s["time_stamps"], ts[:k])
                    if where == "last_values" and c["sid"] == 1:
                        np.testing.assert_array_equal(s["time_series"][:-1], x[: k - 1])
                        # the bytes read so far, then what the read buffer held
                        # before: the previous sample of the chunk, or zeros
                        first = (k - 1) - (len(ts_in_chunk(data, c)) - 1)
                        prev = x[k - 2] if k - 1 > first else np.zeros(2, np.float32)
                        n_read = cut - (c["end"] - 8)
                        stale = x[k - 1].tobytes()[:n_read] + prev.tobytes()[n_read:]
                        assert s["time_series"][-1].tobytes() == stale
                        stale_numeric += not np.array_equal(s["time_series"][-1], x[k - 1])
                    else:
                        np.testing.assert_array_equal(s["time_series"], x[:k])
                else:
                    got = [v[0] for v in s["time_series"]]
                    if where == "last_values" and c["sid"] == 2:
                        assert got[:-1] == MARKERS[: k - 1]
                        assert MARKERS[k - 1].startswith(got[-1]) and got[-1] != MARKERS[k - 1]
                        stale_string += 1
                    else:
                        assert got == MARKERS[:k]
    finally:
        logging.disable(logging.NOTSET)
    assert outcomes[(3, "tag")] == {"error"}  # struct.error
    assert outcomes[(4, "body")] == {"error"}
    assert outcomes[(4, "sid")] == {"ok"}  # a short stream id is caught and skipped
    assert outcomes[(2, "sid")] == {"ok"}
    assert outcomes[(1, "body")] == {"ParseError"}
    assert outcomes[(2, "body")] == {"ParseError"}
    assert outcomes[(3, "len")] == {"ok"}
    assert outcomes[(3, "body")] == {"ok"}
    assert outcomes[(3, "last_values")] == {"ok"}
    assert outcomes[(5, "body")] == {"ok"}
    assert outcomes[(6, "body")] == {"ok"}
    assert all(outcomes[(tag, "whole")] == {"ok"} for tag in range(1, 7))
    assert stale_numeric > 0 and stale_string > 0


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(channel_format="float16"), "unknown channel_format"),
        (dict(time_stamps=np.arange(9.0)), "10 samples in time_series but 9"),
        (dict(time_stamps=np.ones((10, 1))), "time_stamps must be 1-D"),
        (dict(time_series=np.zeros((10, 2, 2))), "1-D or 2-D"),
        (dict(time_series=np.zeros((10, 0))), "no channels"),
        (dict(time_stamps=np.r_[np.arange(9.0), np.nan]), "finite"),
        (dict(channels=[{"label": "x"}]), "1 channel descriptions for 2 channels"),
        (dict(channels=[{"bad key": 1}, {"a": 2}]), "not a valid XML tag name"),
        (dict(channel_format="int16", time_series=np.full((10, 2), 40000)), "do not fit"),
        (dict(channel_format="int16", time_series=np.full((10, 2), 0.5)), "integral"),
        (dict(time_series=np.full((10, 2), "a")), "numeric"),
        (dict(channel_format="string", time_series=[1] * 10), "must be str"),
        (dict(nominal_srate=-1.0), "nominal_srate"),
        (dict(clock_offsets=[(1.0, 2.0, 3.0)]), "pairs"),
        (dict(clock_offsets=[(1.0, np.inf)]), "finite"),
    ],
)
def test_invalid_input_raises_and_writes_nothing(tmp_path: Path, kwargs, match) -> None:
    base = dict(
        name="A", type="EMG", channel_format="float32", nominal_srate=10.0,
        time_series=np.zeros((10, 2)), time_stamps=np.arange(10.0),
    )  # fmt: skip
    base.update(kwargs)
    path = tmp_path / "bad.xdf"
    with pytest.raises(ValueError, match=match):
        write_xdf(path, [XdfStream(**base)])
    assert not path.exists()


@pytest.mark.parametrize("kwargs", [dict(chunk_duration_s=0), dict(chunk_duration_s=np.nan),
                                    dict(boundary_every_s=-1.0)])  # fmt: skip
def test_invalid_options_raise(tmp_path: Path, kwargs) -> None:
    s = XdfStream("A", "EMG", "float32", 10, np.zeros((3, 1)), np.arange(3.0))
    with pytest.raises(ValueError):
        write_xdf(tmp_path / "x.xdf", [s], **kwargs)
    assert not (tmp_path / "x.xdf").exists()


def test_integral_floats_accepted_for_int_formats(tmp_path: Path) -> None:
    x = np.array([[-32768.0], [0.0], [32767.0]])
    write_xdf(tmp_path / "i.xdf", [XdfStream("A", "EMG", "int16", 1, x, np.arange(3.0))])
    (got,), _ = load_raw(tmp_path / "i.xdf")
    np.testing.assert_array_equal(got["time_series"], x.astype(np.int16))


# --------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------


def test_large_float32_recording_writes_fast(tmp_path: Path) -> None:
    # 2 minutes of 16 channels at 5 kHz (1/30 of the one-hour target)
    fs, nch, n = 5000, 16, 5000 * 120
    x = np.random.default_rng(0).standard_normal((n, nch)).astype(np.float32)
    ts = np.arange(n) / fs
    path = tmp_path / "big.xdf"
    t = time.perf_counter()
    write_xdf(path, [XdfStream("EMG", "EMG", "float32", fs, x, ts)], chunk_duration_s=0.5)
    elapsed = time.perf_counter() - t
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    n_chunks = int(n / fs / 0.5)
    boundaries = int((ts[-1] - ts[0]) // 10.0)
    # 2500 samples/chunk -> 4-byte sample-count varlen; 5-byte chunk length field
    expected = (n * (1 + 8 + nch * 4) + n_chunks * (5 + 2 + 4 + 5)
                + boundaries * (2 + 2 + 16))  # fmt: skip
    size = os.path.getsize(path)
    headers = size - expected
    assert 0 < headers < 2000, f"unexpected file size {size} (expected ~{expected})"


# --------------------------------------------------------------------------
# property test
# --------------------------------------------------------------------------


@st.composite
def xdf_streams(draw) -> XdfStream:
    fmt = draw(st.sampled_from(NUMERIC_FORMATS + ["string"]))
    n = draw(st.integers(0, 300))
    srate = draw(st.sampled_from([0.0, 1.0, 100.0, 1000.0, 5000.0]))
    start = draw(st.floats(-1e5, 1e6, allow_nan=False))
    step = 1.0 / srate if srate else draw(st.floats(1e-4, 3.0))
    ts = start + np.arange(n) * step
    if draw(st.booleans()):  # jitter, possibly non-monotonic
        seed = draw(st.integers(0, 2**31))
        ts = ts + np.random.default_rng(seed).normal(0, step, n)
    if fmt == "string":
        data = draw(st.lists(st.text(max_size=20), min_size=n, max_size=n))
        nch = 1
    else:
        nch = draw(st.integers(1, 5))
        data = numeric_data(fmt, n, nch, seed=draw(st.integers(0, 2**31)))
    offsets = draw(
        st.lists(
            st.tuples(st.floats(-1e5, 1e6, allow_nan=False), st.floats(-1e3, 1e3, allow_nan=False)),
            max_size=4,
        )
    )
    chans = [{"label": f"ch{i}", "unit": "uV"} for i in range(nch)] if draw(st.booleans()) else []
    return XdfStream(f"S{fmt}", fmt, fmt, srate, data, ts, channels=chans, clock_offsets=offsets)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    streams=st.lists(xdf_streams(), min_size=1, max_size=3),
    chunk=st.floats(1e-3, 5.0),
    boundary=st.one_of(st.none(), st.floats(1e-2, 20.0)),
)
def test_property_roundtrip(streams: list[XdfStream], chunk: float, boundary) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.xdf"
        write_xdf(path, streams, chunk_duration_s=chunk, boundary_every_s=boundary)
        data = path.read_bytes()
        got, _ = load_raw(path)
    chunks = walk_chunks(data)
    tags = [c[0] for c in chunks]
    if boundary is None:
        assert 5 not in tags
    else:
        assert tags.count(5) <= tags.count(3) + tags.count(4)
    assert len(got) == len(streams)
    for s, g in zip(streams, got):
        np.testing.assert_array_equal(g["time_stamps"], np.asarray(s.time_stamps, float))
        if s.channel_format == "string":
            assert g["time_series"] == [[v] for v in s.time_series]
        else:
            assert g["time_series"].shape == (len(s.time_stamps), s.channel_count)
            np.testing.assert_array_equal(g["time_series"], s.time_series)
        assert g["info"]["channel_count"] == [str(s.channel_count)]
        assert g["clock_times"] == [t for t, _ in s.clock_offsets]
        assert g["clock_values"] == [v for _, v in s.clock_offsets]
        assert g["footer"]["info"]["sample_count"] == [str(len(s.time_stamps))]
        if s.channels:
            labels = [c["label"][0] for c in g["info"]["desc"][0]["channels"][0]["channel"]]
            assert labels == [c["label"] for c in s.channels]
