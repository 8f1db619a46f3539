"""Write XDF (Extensible Data Format) files, as LabRecorder does.

pyxdf only reads XDF, so this module lets the project make sample recordings
and deliberately damaged files for tests.  The layout follows the XDF 1.0
specification (https://github.com/sccn/xdf/wiki/Specifications):

* the magic bytes ``b"XDF:"``;
* a FileHeader chunk (tag 1);
* one StreamHeader chunk (tag 2) per stream;
* Samples chunks (tag 3) of about ``chunk_duration_s`` each, interleaved across
  streams in recording order, with ClockOffset chunks (tag 4) at their
  collection times and Boundary chunks (tag 5) about every ``boundary_every_s``;
* one StreamFooter chunk (tag 6) per stream.

Every chunk is ``[varlen length][uint16 tag][content]`` where the length counts
the tag and the content, and a variable-length integer is one byte giving the
number of bytes that follow (1, 4 or 8) and then the little-endian value.

Every sample is written with its own time stamp (time stamp byte 8 followed by
a little-endian double), which is always correct, even for irregular or
non-monotonic time stamps.

Ordering model: a sample's recorder time is its time stamp plus the median of
the stream's clock offsets (0 without clock offsets); ClockOffset collection
times are already on the recorder clock.  Chunks and clock offsets are merged
in order of recorder time.  Within one stream, samples and clock offsets are
always written in the order given, even when their times go backwards (clock
reset test files); such a stream's chunks then keep the position of its latest
time so far.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import struct
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

__all__ = ["XdfStream", "write_xdf", "BOUNDARY_UUID", "CHANNEL_FORMATS"]

#: The 16 fixed bytes that form the content of every Boundary chunk.
BOUNDARY_UUID: bytes = bytes(
    [0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F,
     0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4]
)  # fmt: skip

#: XDF channel formats and the little-endian numpy dtype of each (None: string).
CHANNEL_FORMATS: dict[str, np.dtype | None] = {
    "float32": np.dtype("<f4"),
    "double64": np.dtype("<f8"),
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "string": None,
}

_TAG_FILE_HEADER = 1
_TAG_STREAM_HEADER = 2
_TAG_SAMPLES = 3
_TAG_CLOCK_OFFSET = 4
_TAG_BOUNDARY = 5
_TAG_STREAM_FOOTER = 6

_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_TIMESTAMP_BYTE = b"\x08"


@dataclass
class XdfStream:
    """One stream to be written to an XDF file.

    Parameters
    ----------
    name : str
        Stream name (``<name>`` in the stream header).
    type : str
        Content type, e.g. ``'EMG'`` or ``'Markers'``.
    channel_format : str
        One of ``'float32'``, ``'double64'``, ``'int8'``, ``'int16'``,
        ``'int32'``, ``'int64'`` or ``'string'``.
    nominal_srate : float
        Nominal sampling rate in Hz; 0 for irregular streams.
    time_series : numpy.ndarray or list of str
        Numeric streams: array of shape ``(n, channel_count)`` (a 1-D array is
        taken as one channel).  String streams: a sequence of ``n`` str, one
        channel.  Numeric values are cast to ``channel_format``; integer
        formats reject non-integral or out-of-range values.
    time_stamps : numpy.ndarray
        1-D float array of length ``n``, on the source's own clock.  Must be
        finite; need not be monotonic.
    channels : list of dict, optional
        Per-channel metadata, e.g. ``{'label': 'FDI_L', 'unit':
        'microvolts', 'type': 'EMG'}``, written to
        ``<desc><channels><channel>``.  Empty, or one dict per channel.
    source_id : str, optional
        LSL source id.
    clock_offsets : list of tuple of float, optional
        ``(collection_time, offset_value)`` pairs; the collection time is on
        the recorder's clock and pyxdf adds ``offset_value`` to the stream's
        time stamps when synchronising clocks.

    Attributes
    ----------
    channel_count : int
        Number of channels, derived from ``time_series`` (1 for strings).
    """

    name: str
    type: str
    channel_format: str
    nominal_srate: float
    time_series: Any
    time_stamps: Any
    channels: list[dict] = field(default_factory=list)
    source_id: str = ""
    clock_offsets: list[tuple[float, float]] = field(default_factory=list)

    @property
    def channel_count(self) -> int:
        """Number of channels (1 for string streams)."""
        if self.channel_format == "string":
            return 1
        shape = np.shape(self.time_series)
        if len(shape) == 1:
            return 1
        if len(shape) == 2:
            return int(shape[1])
        raise ValueError(
            f"stream {self.name!r}: time_series must be 1-D or 2-D (n, channels), "
            f"got shape {shape}"
        )


@dataclass
class _Prepared:
    """A validated stream, ready to be written."""

    stream: XdfStream
    stream_id: int
    dtype: np.dtype | None  # None for strings
    values: Any  # (n, ch) ndarray in dtype, or list[bytes] (utf-8) for strings
    stamps: np.ndarray  # (n,) float64
    offsets: np.ndarray  # (k, 2) float64
    nchan: int


# --------------------------------------------------------------------------
# low-level encoding
# --------------------------------------------------------------------------


def _varlen(n: int) -> bytes:
    """Encode a non-negative integer as an XDF variable-length integer."""
    if n < 0:
        raise ValueError(f"variable-length integer must be >= 0, got {n}")
    if n <= 0xFF:
        return b"\x01" + bytes((n,))
    if n <= 0xFFFFFFFF:
        return b"\x04" + struct.pack("<I", n)
    return b"\x08" + struct.pack("<Q", n)


def _chunk_head(tag: int, content_len: int) -> bytes:
    """Length field and tag of a chunk whose content is ``content_len`` bytes."""
    return _varlen(content_len + 2) + struct.pack("<H", tag)


def _write_chunk(f: BinaryIO, tag: int, *parts: bytes | memoryview) -> None:
    """Write one chunk made of ``parts`` (the content, tag excluded)."""
    f.write(_chunk_head(tag, sum(len(p) for p in parts)))
    for p in parts:
        f.write(p)


def _fmt_float(x: float) -> str:
    """Shortest text that reads back as exactly ``x``."""
    return repr(float(x))


def _xml_bytes(root: ET.Element) -> bytes:
    """Serialise an element with an XML declaration, as UTF-8."""
    return b'<?xml version="1.0"?>' + ET.tostring(root, encoding="utf-8", xml_declaration=False)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def _cast_numeric(name: str, data: Any, dtype: np.dtype, fmt: str) -> np.ndarray:
    """Cast numeric samples to ``dtype`` (little-endian), refusing lossy integer casts."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"stream {name!r}: channel_format {fmt!r} needs numeric time_series, "
            f"got dtype {arr.dtype}"
        )
    if arr.ndim == 1:
        arr = arr[:, None]
    if dtype.kind == "i" and arr.size:
        info = np.iinfo(dtype)
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ValueError(
                    f"stream {name!r}: channel_format {fmt!r} needs integral values, "
                    "time_series has fractional or non-finite values"
                )
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise ValueError(
                f"stream {name!r}: values [{lo}, {hi}] do not fit channel_format {fmt!r} "
                f"([{info.min}, {info.max}])"
            )
    return np.ascontiguousarray(arr, dtype=dtype)


def _prepare(stream: XdfStream, stream_id: int) -> _Prepared:
    """Validate one stream and convert its data for writing."""
    if not isinstance(stream, XdfStream):
        raise ValueError(f"streams must be XdfStream objects, got {type(stream).__name__}")
    name = stream.name
    fmt = stream.channel_format
    if fmt not in CHANNEL_FORMATS:
        raise ValueError(
            f"stream {name!r}: unknown channel_format {fmt!r}; "
            f"expected one of {sorted(CHANNEL_FORMATS)}"
        )
    srate = float(stream.nominal_srate)
    if not math.isfinite(srate) or srate < 0:
        raise ValueError(f"stream {name!r}: nominal_srate must be finite and >= 0, got {srate}")

    stamps = np.asarray(stream.time_stamps, dtype=np.float64)
    if stamps.ndim != 1:
        raise ValueError(
            f"stream {name!r}: time_stamps must be 1-D, got shape {stamps.shape}"
        )
    if not np.all(np.isfinite(stamps)):
        raise ValueError(f"stream {name!r}: time_stamps must all be finite")
    stamps = np.ascontiguousarray(stamps)

    dtype = CHANNEL_FORMATS[fmt]
    if dtype is None:
        if isinstance(stream.time_series, (str, bytes)):
            raise ValueError(f"stream {name!r}: string time_series must be a list of str")
        items = list(stream.time_series)
        bad = [i for i, s in enumerate(items) if not isinstance(s, str)]
        if bad:
            raise ValueError(
                f"stream {name!r}: string stream samples must be str; sample {bad[0]} is "
                f"{type(items[bad[0]]).__name__}"
            )
        values: Any = [s.encode("utf-8") for s in items]
        n, nchan = len(values), 1
    else:
        shape = np.shape(stream.time_series)
        if len(shape) not in (1, 2):
            raise ValueError(
                f"stream {name!r}: time_series must be 1-D or 2-D (n, channels), "
                f"got shape {shape}"
            )
        values = _cast_numeric(name, stream.time_series, dtype, fmt)
        n, nchan = values.shape
        if nchan < 1:
            raise ValueError(f"stream {name!r}: time_series has no channels")

    if len(stamps) != n:
        raise ValueError(
            f"stream {name!r}: {n} samples in time_series but {len(stamps)} time_stamps"
        )

    if stream.channels:
        if len(stream.channels) != nchan:
            raise ValueError(
                f"stream {name!r}: {len(stream.channels)} channel descriptions for "
                f"{nchan} channels"
            )
        for ch in stream.channels:
            if not isinstance(ch, dict):
                raise ValueError(f"stream {name!r}: each channel description must be a dict")
            for key in ch:
                if not isinstance(key, str) or not _XML_NAME.match(key):
                    raise ValueError(
                        f"stream {name!r}: channel field {key!r} is not a valid XML tag name"
                    )

    offsets = np.asarray(stream.clock_offsets, dtype=np.float64)
    if offsets.size == 0:
        offsets = np.zeros((0, 2))
    if offsets.ndim != 2 or offsets.shape[1] != 2:
        raise ValueError(
            f"stream {name!r}: clock_offsets must be (collection_time, offset_value) pairs"
        )
    if not np.all(np.isfinite(offsets)):
        raise ValueError(f"stream {name!r}: clock_offsets must all be finite")

    return _Prepared(stream, stream_id, dtype, values, stamps, offsets, nchan)


# --------------------------------------------------------------------------
# XML headers and footers
# --------------------------------------------------------------------------


def _file_header(recording_datetime: _dt.datetime | None) -> bytes:
    when = recording_datetime or _dt.datetime.now(_dt.timezone.utc)
    root = ET.Element("info")
    _sub(root, "version", "1.0")
    _sub(root, "datetime", when.isoformat())
    return _xml_bytes(root)


def _stream_header(p: _Prepared) -> bytes:
    s = p.stream
    root = ET.Element("info")
    _sub(root, "name", s.name)
    _sub(root, "type", s.type)
    _sub(root, "channel_count", str(p.nchan))
    _sub(root, "channel_format", s.channel_format)
    _sub(root, "source_id", s.source_id)
    _sub(root, "nominal_srate", _fmt_float(s.nominal_srate))
    _sub(root, "version", "1.1")
    _sub(root, "created_at", _fmt_float(p.stamps[0]) if len(p.stamps) else "0")
    # deterministic uid, so identical inputs give identical files
    uid = uuid.uuid5(uuid.NAMESPACE_URL, f"mepkit-xdf/{p.stream_id}/{s.name}/{s.source_id}")
    _sub(root, "uid", str(uid))
    _sub(root, "session_id", "default")
    _sub(root, "hostname", "mepkit")
    desc = _sub(root, "desc")
    if s.channels:
        chans = _sub(desc, "channels")
        for ch in s.channels:
            c = _sub(chans, "channel")
            for key, value in ch.items():
                _sub(c, key, str(value))
    return struct.pack("<I", p.stream_id) + _xml_bytes(root)


def _stream_footer(p: _Prepared) -> bytes:
    root = ET.Element("info")
    n = len(p.stamps)
    _sub(root, "first_timestamp", _fmt_float(p.stamps[0]) if n else "0")
    _sub(root, "last_timestamp", _fmt_float(p.stamps[-1]) if n else "0")
    _sub(root, "sample_count", str(n))
    offs = _sub(root, "clock_offsets")
    for t, v in p.offsets:
        o = _sub(offs, "offset")
        _sub(o, "time", _fmt_float(t))
        _sub(o, "value", _fmt_float(v))
    return struct.pack("<I", p.stream_id) + _xml_bytes(root)


# --------------------------------------------------------------------------
# samples
# --------------------------------------------------------------------------


def _recorder_times(p: _Prepared) -> np.ndarray:
    """Approximate recorder-clock time of each sample (time stamp + median offset)."""
    shift = float(np.median(p.offsets[:, 1])) if len(p.offsets) else 0.0
    return p.stamps + shift


def _chunk_bounds(r: np.ndarray, t0: float, duration: float) -> np.ndarray:
    """Start indices of chunks (plus ``len(r)``) cutting ``r`` into time bins."""
    if len(r) == 0:
        return np.zeros(1, dtype=np.int64)
    bins = np.floor((r - t0) / duration)
    cuts = np.flatnonzero(bins[1:] != bins[:-1]) + 1
    return np.concatenate(([0], cuts, [len(r)])).astype(np.int64)


def _numeric_samples(p: _Prepared, a: int, b: int) -> bytes:
    """Content of a Samples chunk holding samples ``a:b`` of a numeric stream."""
    assert p.dtype is not None
    rec_dtype = np.dtype(
        [("flag", "u1"), ("t", "<f8"), ("v", p.dtype, (p.nchan,))]
    )  # packed: no padding, 9 + nchan * itemsize bytes per sample
    rec = np.empty(b - a, dtype=rec_dtype)
    rec["flag"] = 8
    rec["t"] = p.stamps[a:b]
    rec["v"] = p.values[a:b]
    return struct.pack("<I", p.stream_id) + _varlen(b - a) + rec.tobytes()


def _string_samples(p: _Prepared, a: int, b: int) -> bytes:
    """Content of a Samples chunk holding samples ``a:b`` of a string stream."""
    parts = [struct.pack("<I", p.stream_id), _varlen(b - a)]
    for t, raw in zip(p.stamps[a:b].tolist(), p.values[a:b]):
        parts.append(_TIMESTAMP_BYTE)
        parts.append(struct.pack("<d", t))
        parts.append(_varlen(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def _with_boundaries(events: list, t0: float, every: float) -> list:
    """Insert a Boundary event before the first event at or past each multiple of ``every``.

    A gap spanning several intervals gets a single Boundary chunk (more would
    hold nothing between them), so the count is bounded by the data chunks.
    """
    out = []
    next_at = t0 + every
    for ev in events:
        if ev[0] >= next_at:
            out.append((ev[0], -1, 0, 0, ("B",)))
            next_at = t0 + (math.floor((ev[0] - t0) / every) + 1) * every
        out.append(ev)
    return out


# --------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------


def write_xdf(
    path: str | os.PathLike,
    streams: Sequence[XdfStream],
    *,
    chunk_duration_s: float = 0.5,
    boundary_every_s: float | None = 10.0,
    recording_datetime: _dt.datetime | None = None,
) -> None:
    """Write streams to an XDF file laid out as LabRecorder would.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; overwritten if it exists.
    streams : sequence of XdfStream
        Streams to write; they get stream ids 1, 2, ... in this order.
    chunk_duration_s : float, optional
        Approximate time span of each Samples chunk, in seconds of recorder
        time.  Must be positive.
    boundary_every_s : float or None, optional
        Interval between Boundary chunks in seconds of recorder time (a
        Boundary chunk goes before the first chunk at or past each multiple;
        a long gap gets only one); None writes no Boundary chunks.  Must be
        positive when given.
    recording_datetime : datetime.datetime or None, optional
        Written to ``<datetime>`` in the file header; default now (UTC).
        Pass a fixed value to get byte-identical files from identical input.

    Raises
    ------
    ValueError
        On an unknown channel format, time_series / time_stamps length or
        shape mismatch, non-finite time stamps or clock offsets, lossy
        integer casts, malformed channel descriptions or bad chunking
        parameters.

    Notes
    -----
    Every sample carries its own time stamp.  Time stamps may be
    non-monotonic; samples are always written in the order given.  All input
    is validated before the file is opened, so a ValueError leaves ``path``
    untouched.
    """
    chunk_duration_s = float(chunk_duration_s)
    if not (math.isfinite(chunk_duration_s) and chunk_duration_s > 0):
        raise ValueError(f"chunk_duration_s must be finite and > 0, got {chunk_duration_s}")
    if boundary_every_s is not None:
        boundary_every_s = float(boundary_every_s)
        if not (math.isfinite(boundary_every_s) and boundary_every_s > 0):
            raise ValueError(
                f"boundary_every_s must be finite and > 0 (or None), got {boundary_every_s}"
            )
    if isinstance(streams, XdfStream):
        raise ValueError("streams must be a sequence of XdfStream, not a single XdfStream")

    prepared = [_prepare(s, i + 1) for i, s in enumerate(streams)]
    rec_times = [_recorder_times(p) for p in prepared]

    firsts = [r.min() for r in rec_times if len(r)] + [
        p.offsets[:, 0].min() for p in prepared if len(p.offsets)
    ]
    t0 = float(min(firsts)) if firsts else 0.0

    # Events: (recorder time, kind, stream id, sequence, payload).  Per-stream
    # keys are running maxima, so sorting never reorders within a stream.
    events: list[tuple[float, int, int, int, Any]] = []
    for p, r in zip(prepared, rec_times):
        if len(r):
            bounds = _chunk_bounds(r, t0, chunk_duration_s)
            latest = np.maximum.accumulate(r)
            for seq, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
                events.append((float(latest[b - 1]), 1, p.stream_id, seq, ("S", a, b)))
        if len(p.offsets):
            keys = np.maximum.accumulate(p.offsets[:, 0])
            for seq, ((t, v), key) in enumerate(zip(p.offsets.tolist(), keys.tolist())):
                events.append((key, 0, p.stream_id, seq, ("C", t, v)))
    events.sort(key=lambda e: e[:4])
    if boundary_every_s is not None:
        events = _with_boundaries(events, t0, boundary_every_s)

    by_id = {p.stream_id: p for p in prepared}
    with open(path, "wb") as f:
        f.write(b"XDF:")
        _write_chunk(f, _TAG_FILE_HEADER, _file_header(recording_datetime))
        for p in prepared:
            _write_chunk(f, _TAG_STREAM_HEADER, _stream_header(p))
        for _key, _kind, sid, _seq, payload in events:
            if payload[0] == "S":
                p = by_id[sid]
                _, a, b = payload
                if p.dtype is None:
                    content = _string_samples(p, a, b)
                else:
                    content = _numeric_samples(p, a, b)
                _write_chunk(f, _TAG_SAMPLES, content)
            elif payload[0] == "C":
                _, t, v = payload
                _write_chunk(f, _TAG_CLOCK_OFFSET, struct.pack("<Idd", sid, t, v))
            else:
                _write_chunk(f, _TAG_BOUNDARY, BOUNDARY_UUID)
        for p in prepared:
            _write_chunk(f, _TAG_STREAM_FOOTER, _stream_footer(p))
