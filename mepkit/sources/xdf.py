"""Reading LabRecorder XDF files (pyxdf) into a :class:`Recording`.

Clocks are synchronised (pyxdf's ClockOffset handling, with clock-reset
detection); timestamps are *not* dejittered: the raw stamps are kept, and the EMG
stream's clock is fitted by `mepkit.sources.clock.fit_clock` (which finds gaps within
the wobble of stamps made on push, where pyxdf's dejittering would smear them). A file
cut off mid-way (the recorder crashed) is read up to the last complete chunk, with a
warning.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from typing import Any

import numpy as np

from mepkit.errors import FileFormatError, StreamNotFoundError
from mepkit.sources.recording import Recording

__all__ = ["read_xdf"]

logger = logging.getLogger("mepkit.xdf")


# ---------------------------------------------------------------------- file structure
def _read_varlen(f) -> int | None:
    nb = f.read(1)
    if not nb:
        return None
    width = nb[0]
    if width not in (1, 4, 8):
        raise ValueError(f"invalid length width {width}")
    raw = f.read(width)
    if len(raw) < width:
        return None
    return int.from_bytes(raw, "little")


def _scan_chunks(path: str) -> tuple[int, int, bool, str]:
    """Walk the chunk headers; return (valid_end, file_size, truncated, reason)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(4) != b"XDF:":
            raise FileFormatError(f"{path}: not an XDF file (it does not start with 'XDF:')")
        pos = 4
        while pos < size:
            f.seek(pos)
            try:
                length = _read_varlen(f)
            except ValueError as exc:
                return pos, size, True, f"damaged chunk header at byte {pos} ({exc})"
            if length is None:
                return pos, size, True, f"file ends inside a chunk header at byte {pos}"
            body = f.tell()
            if length < 2:
                return pos, size, True, f"damaged chunk (length {length}) at byte {pos}"
            if body + length > size:
                return pos, size, True, (f"file ends inside a chunk that starts at byte {pos} "
                                         f"(needs {body + length - size} more bytes)")
            pos = body + length
    return size, size, False, ""


def _text(d: dict, key: str, default: str = "") -> str:
    try:
        v = d[key][0]
    except (KeyError, IndexError, TypeError):
        return default
    return default if v is None else str(v)


def _channels(info: dict, n: int) -> tuple[list[str], list[str]]:
    labels: list[str] = []
    units: list[str] = []
    try:
        chans = info["desc"][0]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        chans = []
    for ch in chans or []:
        labels.append(_text(ch, "label"))
        units.append(_text(ch, "unit") or _text(ch, "units"))
    if len(labels) != n:
        labels = [f"ch{i + 1}" for i in range(n)]
        units = [""] * n
    labels = [lab or f"ch{i + 1}" for i, lab in enumerate(labels)]
    return labels, units


def _describe(stream: dict) -> dict[str, Any]:
    info = stream["info"]
    return {
        "name": _text(info, "name"), "type": _text(info, "type"),
        "source_id": _text(info, "source_id"), "channel_format": _text(info, "channel_format"),
        "nominal_srate": float(_text(info, "nominal_srate", "0") or 0),
        "channel_count": int(float(_text(info, "channel_count", "0") or 0)),
        "n_samples": len(stream.get("time_stamps", [])),
    }


def _xml(info: dict) -> str:
    """The stream header back as XML text (for provenance in records)."""
    from xml.etree.ElementTree import Element, SubElement, tostring

    def build(parent, key, value):
        if isinstance(value, list):
            for item in value:
                build(parent, key, item)
        elif isinstance(value, dict):
            node = SubElement(parent, key)
            for k, v in value.items():
                build(node, k, v)
        else:
            SubElement(parent, key).text = "" if value is None else str(value)

    root = Element("info")
    for k, v in info.items():
        build(root, k, v)
    return tostring(root, encoding="unicode")


def _pick(streams: list[dict], name: str | None, kind: str, path: str, what: str) -> dict | None:
    desc = [_describe(s) for s in streams]
    listing = ", ".join(f"{d['name']!r} (type {d['type']!r})" for d in desc) or "none"
    if name is not None:
        hits = [s for s, d in zip(streams, desc) if d["name"] == name or d["source_id"] == name]
        if not hits:
            raise StreamNotFoundError(f"{path}: no stream named {name!r}; streams are {listing}")
        return hits[0]
    hits = [s for s, d in zip(streams, desc) if d["type"].lower() == kind.lower()]
    if not hits:
        return None
    if len(hits) > 1:
        names = ", ".join(repr(_describe(h)["name"]) for h in hits)
        raise StreamNotFoundError(
            f"{path}: several {what} streams ({names}); choose one with --{what.lower()}-stream")
    return hits[0]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().splitlines()[0])


def read_xdf(path: str | os.PathLike, *, emg_stream: str | None = None,
             marker_stream: str | None = None, require_markers: bool = True) -> Recording:
    """Read the EMG stream and the marker stream of an XDF file.

    Parameters
    ----------
    path : path
        LabRecorder XDF file.
    emg_stream, marker_stream : str, optional
        Stream names (or source ids); defaults are the stream of type ``EMG`` and
        the stream of type ``Markers``.
    require_markers : bool
        Raise when there is no marker stream (set False when triggers come from
        a TTL channel or the artifact).

    Raises
    ------
    FileFormatError, StreamNotFoundError
        With a one-line message that names the file and the problem.
    """
    import pyxdf

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileFormatError(f"{path}: no such file")
    if os.path.isdir(path):
        raise FileFormatError(f"{path}: is a directory, not an XDF file")
    valid_end, size, truncated, reason = _scan_chunks(path)
    warnings: list[str] = []
    source: Any = path
    if truncated:
        if valid_end <= 4:
            raise FileFormatError(f"{path}: damaged XDF file ({reason}); nothing readable")
        warnings.append(f"{path}: recording is cut off ({reason}); analysed up to the cut "
                        f"({valid_end} of {size} bytes)")
        with open(path, "rb") as f:
            source = io.BytesIO(f.read(valid_end))
    capture = _Capture()
    pyxdf_logger = logging.getLogger("pyxdf")
    pyxdf_logger.addHandler(capture)
    old_propagate = pyxdf_logger.propagate
    pyxdf_logger.propagate = False
    try:
        streams, _header = pyxdf.load_xdf(
            source, synchronize_clocks=True, dejitter_timestamps=False,
            handle_clock_resets=True, verbose=None)
    except FileFormatError:
        raise
    except Exception as exc:  # pyxdf raises many kinds on damaged input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileFormatError(f"{path}: damaged or unreadable XDF file ({msg})") from None
    finally:
        pyxdf_logger.removeHandler(capture)
        pyxdf_logger.propagate = old_propagate
    for m in capture.messages:
        if "Segments and clock-segments differ" in m:
            continue  # benign: we do not dejitter, so pyxdf's segments are unused
        warnings.append(f"{path}: pyxdf: {m}")

    emg = _pick(streams, emg_stream, "EMG", path, "EMG")
    if emg is None:
        listing = ", ".join(f"{_describe(s)['name']!r} (type {_describe(s)['type']!r})"
                            for s in streams) or "none"
        raise StreamNotFoundError(
            f"{path}: no stream of type 'EMG'; streams are {listing}; choose one with --emg-stream")
    d = _describe(emg)
    if d["channel_format"] == "string":
        raise FileFormatError(f"{path}: stream {d['name']!r} holds strings, not EMG samples")
    if d["nominal_srate"] <= 0:
        raise FileFormatError(
            f"{path}: stream {d['name']!r} has an irregular rate (nominal_srate 0); EMG needs a "
            f"regular sampling rate")
    data = np.asarray(emg["time_series"])
    ts = np.asarray(emg["time_stamps"], dtype=np.float64)
    if data.size == 0 or ts.size == 0:
        raise FileFormatError(f"{path}: EMG stream {d['name']!r} has no samples")
    if data.ndim == 1:
        data = data[:, None]
    labels, units = _channels(emg["info"], data.shape[1])

    markers = None
    if marker_stream is not None or require_markers:
        markers = _pick(streams, marker_stream, "Markers", path, "Marker")
        if markers is None and require_markers:
            raise StreamNotFoundError(
                f"{path}: no stream of type 'Markers'; name one with --marker-stream, or take "
                f"pulses from a TTL channel (--trigger-channel) or the artifact "
                f"(--artifact-triggers)")
    m_times = np.zeros(0)
    m_values: list[str] = []
    if markers is not None:
        m_times = np.asarray(markers.get("time_stamps", []), dtype=np.float64).reshape(-1)
        raw = markers.get("time_series", [])
        for v in (raw if raw is not None else []):
            if isinstance(v, (list, tuple, np.ndarray)):
                v = v[0] if len(v) else ""
            m_values.append(str(v))
        if len(m_values) != len(m_times):
            raise FileFormatError(f"{path}: marker stream has {len(m_times)} timestamps but "
                                  f"{len(m_values)} values")
        if len(m_times) == 0:
            warnings.append(f"{path}: marker stream {_describe(markers)['name']!r} is empty")
    return Recording(
        path=path, sfreq_hz=d["nominal_srate"], data=data, timestamps=ts,
        channel_labels=labels, units=units, marker_times=m_times, marker_values=m_values,
        emg_stream={**d, "xml": _xml(emg["info"])},
        marker_stream=_describe(markers) if markers is not None else None,
        warnings=warnings,
    )
