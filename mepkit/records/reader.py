"""Reader of the HDF5 session record: finished, live (being written) and crashed files.

Small parts (markers, trials, protocol, events, metadata) are read at open; raw streams
are read lazily (`RecordStream.read`) because an hour of 16-channel EMG at 5 kHz is
over 1 GB. Every table is cut to the rows that are complete in all columns, so a file
whose writer was killed in the middle of a flush still reads consistently.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

import h5py
import numpy as np

from mepkit.errors import FileFormatError
from mepkit.params import Params
from mepkit.records._schema import FORMAT_NAME, FORMAT_VERSION, RecordNotFoundError

__all__ = ["open_record", "Record", "RecordStream", "Markers", "ProtocolStep"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: What reading a damaged file can raise: h5py and HDF5 fail in many ways (OSError,
#: KeyError, TypeError on a missing object...); all of them mean "damaged" here.
_DAMAGED = Exception
#: How long `open_record` retries while a writer is creating the file (not yet in SWMR mode).
OPEN_RETRY_S = 2.0


class Markers(NamedTuple):
    """Marker times (LSL clock, s) and their string values."""

    times: np.ndarray
    values: list[str]


class ProtocolStep(NamedTuple):
    """One protocol step: when (LSL clock, s) and what (the dict the protocol stored)."""

    time_s: float
    data: dict[str, Any]


class RecordStream:
    """One raw stream of a record; samples are read from the file on demand.

    ``n_samples`` is fixed when the record is opened (a live file keeps growing; open it
    again to see more).
    """

    def __init__(self, record: "Record", name: str, group: h5py.Group) -> None:
        self._record = record
        self.name = name
        self._data_ds: h5py.Dataset = group["data"]
        self._ts_ds: h5py.Dataset = group["timestamps"]
        a = group.attrs
        self.channel_labels: list[str] = [_s(x) for x in a.get("channel_labels", [])]
        self.units: list[str] = [_s(x) for x in a.get("units", [])]
        self.source_units: list[str] = [_s(x) for x in a.get("source_units", [])]
        self.nominal_srate_hz = float(a.get("nominal_srate_hz", np.nan))
        self.type = _s(a.get("type", ""))
        self.source_id = _s(a.get("source_id", ""))
        self.description = _s(a.get("description", ""))
        n_data, n_ts = self._data_ds.shape[0], self._ts_ds.shape[0]
        self.n_samples = min(n_data, n_ts)
        self.n_channels = int(self._data_ds.shape[1])
        if n_data != n_ts:
            record.warnings.append(
                f"stream {name!r}: {n_data} samples but {n_ts} timestamps (cut by a crash "
                f"during a flush); using the first {self.n_samples}")
        self._data: np.ndarray | None = None
        self._timestamps: np.ndarray | None = None
        self.clock_rows = self._clock(record, name)

    @staticmethod
    def _clock(record: "Record", name: str) -> np.ndarray | None:
        """The stream's clock mapping ``(m, 4)``; None when the record has none."""
        path = f"clock/{name}"
        if path not in record._file:
            return None
        try:
            cols, n = _read_table(record._file[path])
        except (KeyError, OSError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            record.warnings.append(f"/{path} is damaged and was not read ({exc}); the clock is "
                                   f"fitted from the raw time stamps")
            return None
        if n == 0:
            return None
        return np.column_stack([np.asarray(cols["sample_index"][:n], dtype=np.float64),
                                cols["time_s"][:n], cols["rate_hz"][:n],
                                np.asarray(cols["timeline"][:n], dtype=np.float64)])

    def read(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(data (k, ch) as stored, in `units`, timestamps (k,) float64 s)``.

        Format version 2 stores samples as the source gave them (its dtype and units;
        ``scale_to_uv`` turns them into µV); version 1 stored float32 µV.
        """
        n = self.n_samples
        start, stop, _ = slice(start, stop).indices(n)
        stop = max(stop, start)
        try:
            return self._data_ds[start:stop], self._ts_ds[start:stop]
        except _DAMAGED as exc:
            raise FileFormatError(f"{self._record.path}: stream {self.name!r}: cannot read "
                                  f"samples {start}..{stop}: {exc}") from None

    @property
    def data(self) -> np.ndarray:
        """All samples, (n, ch) as stored, in `units`; read once, then cached."""
        if self._data is None:
            self._data, self._timestamps = self.read()
        return self._data

    @property
    def timestamps(self) -> np.ndarray:
        """All timestamps, (n,) float64, LSL clock in s."""
        if self._timestamps is None:
            try:
                self._timestamps = self._ts_ds[: self.n_samples]
            except _DAMAGED as exc:
                raise FileFormatError(f"{self._record.path}: stream {self.name!r}: cannot read "
                                      f"timestamps: {exc}") from None
        return self._timestamps

    @property
    def dataset(self) -> h5py.Dataset:
        """The h5py dataset of the samples (valid while the record is open)."""
        return self._data_ds

    @property
    def duration_s(self) -> float:
        if self.n_samples < 1:
            return 0.0
        t = self._ts_ds[[0, self.n_samples - 1]] if self.n_samples > 1 else self._ts_ds[:1]
        return float(t[-1] - t[0])

    def __repr__(self) -> str:
        return (f"<RecordStream {self.name!r}: {self.n_samples} samples x {self.n_channels} ch "
                f"at {self.nominal_srate_hz:g} Hz>")


def _s(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def _read_table(group: h5py.Group) -> tuple[dict[str, Any], int]:
    """Read a table group: its columns, cut to the rows complete in every column."""
    columns = [_s(c) for c in group.attrs["columns"]]
    n = int(group.attrs["n_rows"])
    raw: dict[str, Any] = {}
    for name in columns:
        obj = group[name]
        if isinstance(obj, h5py.Group):  # text column
            end = obj["end"][:]
            n_bytes = obj["utf8"].shape[0]
            complete = int(np.searchsorted(end, n_bytes, side="right"))
            raw[name] = ("text", end[:complete], obj["utf8"])
            n = min(n, complete)
        else:
            raw[name] = ("array", obj[:], None)
            n = min(n, obj.shape[0])
    out: dict[str, Any] = {}
    for name, (kind, arr, utf8) in raw.items():
        if kind == "array":
            out[name] = arr[:n]
            continue
        ends = arr[:n]
        blob = utf8[: int(ends[-1])].tobytes() if n else b""
        starts = np.concatenate([[0], ends[:-1]]) if n else ends
        out[name] = [blob[a:b].decode("utf-8", "replace") for a, b in zip(starts, ends)]
    return out, n


class Record:
    """A session record opened for reading; see `open_record`.

    The file stays open for lazy stream reads until `close` (or the end of a ``with``).
    """

    def __init__(self, path: str, file: h5py.File) -> None:
        self.path = path
        self._file = file
        self.warnings: list[str] = []
        a = file.attrs
        self.format_version = int(a["format_version"])
        self.software_version = _s(a.get("software_version", "unknown"))
        self.created_utc = _s(a.get("created_utc", ""))
        self.closed_cleanly = bool(a.get("closed_cleanly", False))
        self.subject = self._info("subject")
        self.session = self._info("session")
        self.params = self._params()
        self.streams: dict[str, RecordStream] = {}
        if "streams" in file:
            for name, g in file["streams"].items():
                try:
                    self.streams[name] = RecordStream(self, name, g)
                except _DAMAGED as exc:
                    self.warnings.append(f"stream {name!r} is damaged and was skipped: {exc}")
        m = self._table("markers")
        self.markers = Markers(np.asarray(m.get("time_s", np.empty(0)), dtype=np.float64),
                               list(m.get("value", [])))
        self.marker_stream = _s(file["markers"].attrs.get("stream_name", "")) \
            if "markers" in file else ""
        self.trials = self._trials()
        steps = self._table("protocol/steps")
        self.protocol_steps: list[ProtocolStep] = [
            ProtocolStep(float(t), self._loads(j, "protocol step"))
            for t, j in zip(steps.get("time_s", []), steps.get("json", []))]
        res = self._table("protocol/results")
        self.protocol_results: dict[str, dict[str, Any]] = {
            name: self._loads(j, f"protocol result {name!r}")
            for name, j in zip(res.get("name", []), res.get("json", []))}
        import pandas as pd

        ev = self._table("events")
        self.events = pd.DataFrame({"time_s": np.asarray(ev.get("time_s", []), dtype=np.float64),
                                    "kind": ev.get("kind", []), "detail": ev.get("detail", [])})
        if not self.closed_cleanly:
            last = [s.timestamps[-1] for s in self.streams.values() if s.n_samples]
            upto = f"; last sample at {max(last):.3f} s (LSL clock)" if last else ""
            self.warnings.insert(0, "record was not closed cleanly (its writer is still running "
                                    "or crashed): data up to the last flush is intact" + upto)

    # -- parts -----------------------------------------------------------------
    def _info(self, name: str) -> dict[str, Any]:
        if name not in self._file:
            return {}
        a = self._file[name].attrs
        try:
            return dict(json.loads(_s(a["json"])))
        except (KeyError, ValueError, TypeError):
            return {k: (_s(v) if isinstance(v, bytes) else v) for k, v in a.items()}

    def _params(self) -> Params | None:
        try:
            text = _s(self._file["params"].attrs.get("json", "")) if "params" in self._file else ""
            return Params.from_json(text) if text else None
        except (ValueError, TypeError) as exc:
            self.warnings.append(f"parameters could not be read: {exc}")
            return None

    def _table(self, path: str) -> dict[str, Any]:
        if path not in self._file:
            return {}
        try:
            return _read_table(self._file[path])[0]
        except _DAMAGED as exc:
            self.warnings.append(f"/{path} is damaged and was not read: {exc}")
            return {}

    def _trials(self) -> Any:
        import pandas as pd

        from mepkit.params import TRIAL_COLUMNS

        if "trials" in self._file:
            try:
                cols, _ = _read_table(self._file["trials"])
                return pd.DataFrame(cols)
            except _DAMAGED as exc:
                self.warnings.append(f"trials table is damaged and was not read: {exc}")
        return pd.DataFrame({c: [] for c in TRIAL_COLUMNS})

    def _loads(self, text: str, what: str) -> dict[str, Any]:
        try:
            return json.loads(text)
        except ValueError:
            self.warnings.append(f"{what} is not valid JSON: {text[:60]!r}")
            return {"_text": text}

    # -- summary ---------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        """Longest stream's span from first to last timestamp (0 without samples)."""
        return max((s.duration_s for s in self.streams.values()), default=0.0)

    @property
    def file(self) -> h5py.File:
        """The open h5py file (SWMR read mode)."""
        return self._file

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Record":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Record {self.path!r}: {len(self.streams)} stream(s), {len(self.trials)} trial "
                f"rows, {self.duration_s:.1f} s{'' if self.closed_cleanly else ', not closed'}>")


def _check_signature(path: str) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head == _HDF5_SIGNATURE:
                return
            for offset in (512, 1024, 2048):  # after a user block
                fh.seek(offset)
                if fh.read(8) == _HDF5_SIGNATURE:
                    return
    except IsADirectoryError:
        raise FileFormatError(f"{path}: is a directory, not a record file") from None
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    what = "empty file" if not head else "not an HDF5 file"
    raise FileFormatError(f"{path}: {what} (a mepkit record is an HDF5 file)")


#: HDF5 metadata read attempts in SWMR mode. Retries cover a reader catching the writer
#: mid-write; HDF5 backs off exponentially and its default (100) makes a truncated file
#: hang for hours. 24 attempts give up after about 0.1 s.
SWMR_READ_ATTEMPTS = 24


def _hdf5_c_library() -> Any:
    """The libhdf5 that h5py uses, via ctypes (None if it cannot be found)."""
    import ctypes
    import glob

    candidates: list[str] = []
    try:
        with open("/proc/self/maps") as fh:
            candidates += sorted({line.split()[-1] for line in fh
                                  if "libhdf5" in line and "hl" not in line.split("/")[-1]})
    except OSError:
        pass
    here = os.path.dirname(h5py.__file__)
    candidates += glob.glob(os.path.join(here, os.pardir, "h5py.libs", "libhdf5-*"))
    for cand in candidates:
        try:
            lib = ctypes.CDLL(cand)
            lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
            return lib
        except (OSError, AttributeError):
            continue
    return None


def _open_swmr(path: str) -> h5py.File:
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    lib = _hdf5_c_library()
    if lib is not None:
        lib.H5Pset_metadata_read_attempts(fapl.id, SWMR_READ_ATTEMPTS)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ,
                        fapl=fapl)
    return h5py.File(fid)


def _stored_eof(path: str) -> int | None:
    """End-of-file address in a version 2/3 superblock (what HDF5 last flushed)."""
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 12 or head[:8] != _HDF5_SIGNATURE or head[8] not in (2, 3):
        return None
    size_o = head[9]
    if size_o not in (2, 4, 8) or len(head) < 12 + 3 * size_o:
        return None
    base = int.from_bytes(head[12:12 + size_o], "little")
    eof = int.from_bytes(head[12 + 2 * size_o:12 + 3 * size_o], "little")
    return base + eof


def _open_h5(path: str) -> tuple[h5py.File, list[str]]:
    """Open for reading: plainly if closed (HDF5 checks truncation), else in SWMR mode."""
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        try:
            return h5py.File(path, "r"), []
        except OSError as exc:
            plain = str(exc)
        low = plain.lower()
        truncated = "truncated file" in low
        if not truncated and "already open for write" not in low and "lock" not in low:
            raise FileFormatError(f"{path}: damaged HDF5 file ({_short(plain)})") from None
        try:  # being written by a SWMR writer, or its writer crashed
            f = _open_swmr(path)
        except (OSError, RuntimeError) as exc:
            msg = str(exc).lower()
            if ("already open for write" in msg or "lock" in msg) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)  # a writer is creating it and will switch to SWMR at once
                continue
            if truncated:
                raise FileFormatError(f"{path}: truncated file ({_short(plain)})") from None
            if "already open for write" in msg or "lock" in msg:
                raise FileFormatError(
                    f"{path}: file is open for writing without SWMR, or its writer crashed "
                    f"before the record started (HDF5 status flag set; `h5clear -s` clears "
                    f"it)") from None
            raise FileFormatError(f"{path}: truncated or damaged HDF5 file "
                                  f"({_short(str(exc))})") from None
        if truncated:
            try:
                closed = bool(f.attrs.get("closed_cleanly", True))
            except (OSError, RuntimeError, KeyError):
                closed = True
            if closed:  # a finished file that lost its end: nothing to recover
                f.close()
                raise FileFormatError(f"{path}: truncated file ({_short(plain)})")
        warnings = []
        stored = _stored_eof(path)
        size = os.path.getsize(path)
        if stored is not None and size < stored:
            warnings.append(f"file is {stored - size} bytes shorter than HDF5 last recorded "
                            f"({size} < {stored}): it may be truncated; data past the end "
                            f"reads as zeros or fails")
        return f, warnings


def _short(msg: str) -> str:
    return " ".join(msg.split())[:160]


def open_record(path: str | os.PathLike) -> Record:
    """Open a session record for reading: finished, being written, or crashed.

    Raises
    ------
    RecordNotFoundError
        No such file.
    FileFormatError
        Not an HDF5 file, an HDF5 file that is not a record, a record of a newer format
        version, or a truncated/damaged file. The message is one line naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise RecordNotFoundError(f"{path}: no such file")
    _check_signature(path)
    f, open_warnings = _open_h5(path)
    try:
        try:
            fmt = _s(f.attrs.get("mepkit_format", ""))
            version = f.attrs.get("format_version")
        except (OSError, RuntimeError, KeyError) as exc:
            raise FileFormatError(f"{path}: damaged HDF5 file ({_short(str(exc))})") from None
        if fmt != FORMAT_NAME:
            raise FileFormatError(f"{path}: HDF5 file is not a mepkit record "
                                  f"(no mepkit_format={FORMAT_NAME!r} attribute)")
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise FileFormatError(f"{path}: record has no valid format_version "
                                  f"attribute ({version!r})") from None
        if version > FORMAT_VERSION:
            raise FileFormatError(f"{path}: record format version {version} is newer than this "
                                  f"mepkit supports ({FORMAT_VERSION}); upgrade mepkit")
        try:
            record = Record(path, f)
            record.warnings.extend(open_warnings)
            return record
        except _DAMAGED as exc:
            raise FileFormatError(f"{path}: damaged record ({_short(str(exc))})") from None
    except BaseException:
        f.close()
        raise
