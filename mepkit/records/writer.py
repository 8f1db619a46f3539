"""Crash-safe writer of the HDF5 session record (format: docs/record-format.md).

The file is created with ``libver='latest'`` and switched to SWMR (single writer,
multiple readers) mode as soon as its layout exists. In SWMR mode HDF5 cannot create
groups, datasets or attributes, so every stream and table is declared before
`RecordWriter.start`; after that the writer only appends. HDF5 writes metadata in an
order that keeps the file valid at every moment, so a reader can open the file while it
is written and after the writer crashed; what was flushed is intact.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from mepkit.errors import MepkitError
from mepkit.params import Params
from mepkit.records._schema import (
    CLOCK_COLUMNS, FILL, FIXED_TABLES, FORMAT_NAME, FORMAT_VERSION, TRIAL_COLUMN_KINDS,
    RecordExistsError, normalize_kind,
)
from mepkit.units import scale_to_uv

__all__ = ["RecordWriter", "lsl_clock"]

#: Target size of one chunk of a raw-stream dataset, in bytes.
STREAM_CHUNK_BYTES = 256 * 1024
#: Rows per chunk of table columns, bytes per chunk of text storage.
TABLE_CHUNK_ROWS = 1024
TEXT_CHUNK_BYTES = 16 * 1024


def lsl_clock() -> float:
    """Seconds on the LSL clock (``pylsl.local_clock``; CLOCK_MONOTONIC on Linux)."""
    if sys.platform.startswith("linux") and "pylsl" not in sys.modules:
        return time.monotonic()  # the same clock liblsl uses on Linux, no import needed
    import pylsl

    return pylsl.local_clock()


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("mepkit")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _jsonable(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable: {exc}") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Params):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _write_info_group(group: h5py.Group, info: Mapping[str, Any] | None, what: str) -> None:
    """Store a JSON-able dict as the ``json`` attribute plus one attribute per key."""
    info = dict(info or {})
    group.attrs["json"] = _jsonable(info, what)
    for key, value in info.items():
        if key == "json":
            continue
        if isinstance(value, (str, bool, int, float, np.generic)) and value is not None:
            group.attrs[str(key)] = value
        else:
            group.attrs[str(key)] = _jsonable(value, f"{what}[{key!r}]")


def _append(ds: h5py.Dataset, n0: int, arr: np.ndarray) -> None:
    """Grow ``ds`` along its first axis from ``n0`` rows and write ``arr`` there.

    The low-level calls do what ``ds.resize`` and ``ds[n0:] = arr`` do without their
    per-call overhead (shape queries, selection objects: ~0.3 ms per column), which
    made appending one row to the ~25 columns of the trials table cost ~8 ms."""
    arr = np.ascontiguousarray(arr, dtype=ds.dtype)
    n = arr.shape[0]
    if n == 0:
        return
    rest = tuple(arr.shape[1:])
    ds.id.set_extent((n0 + n, *rest))
    fspace = ds.id.get_space()
    fspace.select_hyperslab((n0,) + (0,) * len(rest), (n, *rest))
    ds.id.write(h5py.h5s.create_simple(arr.shape), fspace, arr)


class _Column:
    """One column of an appendable table: a 1-D dataset or a text group."""

    def __init__(self, parent: h5py.Group, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        if kind == "text":
            g = parent.create_group(name)
            g.attrs["kind"] = "text"
            self.utf8 = g.create_dataset("utf8", shape=(0,), maxshape=(None,), dtype="u1",
                                         chunks=(TEXT_CHUNK_BYTES,))
            self.end = g.create_dataset("end", shape=(0,), maxshape=(None,), dtype="i8",
                                        chunks=(TABLE_CHUNK_ROWS,))
            self.n_bytes = 0
            self.n_rows = 0
        else:
            self.ds = parent.create_dataset(name, shape=(0,), maxshape=(None,),
                                            dtype={"float64": "f8", "int64": "i8",
                                                   "bool": "?"}[kind],
                                            chunks=(TABLE_CHUNK_ROWS,))
            self.ds.attrs["kind"] = kind
            self.n_rows = 0

    def coerce(self, values: Sequence[Any], n: int) -> Any:
        """Convert a batch to what `append` writes; raises ValueError naming the column."""
        if values is None:
            values = [FILL[self.kind]] * n
        try:
            if self.kind == "text":
                out = []
                for v in values:
                    if v is None or (isinstance(v, float) and math.isnan(v)):
                        v = ""
                    elif not isinstance(v, str):
                        v = _jsonable(v, f"column {self.name!r}") if isinstance(
                            v, (dict, list, tuple)) else str(v)
                    out.append(v.encode("utf-8", "replace"))
                arr: Any = out
            elif self.kind == "bool":
                arr = np.asarray(values)
                if arr.dtype.kind not in "biu":
                    arr = np.asarray([False if v is None or (isinstance(v, float) and math.isnan(v))
                                      else bool(v) for v in values])
                arr = arr.astype(bool)
            elif self.kind == "int64":
                arr = np.asarray(values)
                if arr.dtype.kind == "f":
                    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                        raise ValueError("has non-integer values")
                arr = arr.astype(np.int64)
            else:
                arr = np.asarray([np.nan if v is None else v for v in values]
                                 if not isinstance(values, np.ndarray) else values,
                                 dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"trial/table column {self.name!r} ({self.kind}): {exc}") from None
        if len(arr) != n:
            raise ValueError(f"column {self.name!r} has {len(arr)} values, expected {n}")
        return arr

    def append(self, arr: Any) -> None:
        if self.kind == "text":
            blob = b"".join(arr)
            ends = self.n_bytes + np.cumsum([len(b) for b in arr], dtype=np.int64)
            if blob:  # bytes first, then the offsets that point into them
                _append(self.utf8, self.n_bytes, np.frombuffer(blob, dtype=np.uint8))
                self.n_bytes += len(blob)
            _append(self.end, self.n_rows, ends)
        else:
            _append(self.ds, self.n_rows, arr)
        self.n_rows += len(arr)


class _Table:
    """A group of equally long columns with a commit counter attribute ``n_rows``."""

    def __init__(self, parent: h5py.Group, path: str, columns: Sequence[tuple[str, str]]) -> None:
        self.path = path
        self.group = parent.require_group(path)
        self.group.attrs["columns"] = [c for c, _ in columns]
        self.group.attrs["kinds"] = [k for _, k in columns]
        self.group.attrs["n_rows"] = np.int64(0)
        self.columns = {name: _Column(self.group, name, kind) for name, kind in columns}
        self.n_rows = 0
        self.committed = 0

    def append(self, batch: Mapping[str, Sequence[Any]], n: int) -> None:
        unknown = sorted(set(batch) - set(self.columns))
        if unknown:
            raise ValueError(f"/{self.path}: unknown column(s) {unknown}; declare them before "
                             f"start() (known: {list(self.columns)})")
        arrays = {name: col.coerce(batch.get(name), n) for name, col in self.columns.items()}
        for name, col in self.columns.items():
            col.append(arrays[name])
        self.n_rows += n

    def commit(self) -> bool:
        """Publish ``n_rows`` (after the columns were flushed). True if it changed."""
        if self.committed == self.n_rows:
            return False
        self.group.attrs.modify("n_rows", np.int64(self.n_rows))
        self.committed = self.n_rows
        return True


class _Stream:
    def __init__(self, name: str, n_channels: int) -> None:
        self.name, self.n_channels = name, n_channels
        self.data: h5py.Dataset | None = None
        self.timestamps: h5py.Dataset | None = None
        self.n = 0


def _batch_from_rows(rows: Any) -> tuple[dict[str, Sequence[Any]], int]:
    """Accept a DataFrame, a dict of columns or a list of row dicts."""
    if hasattr(rows, "columns") and hasattr(rows, "to_dict"):  # pandas DataFrame
        batch = {str(c): rows[c].to_numpy() for c in rows.columns}
        return batch, len(rows)
    if isinstance(rows, Mapping):
        batch = {str(k): (list(v) if not isinstance(v, np.ndarray) else v) for k, v in rows.items()}
        lengths = {len(v) for v in batch.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: "
                             f"{ {k: len(v) for k, v in batch.items()} }")
        return batch, (lengths.pop() if lengths else 0)
    rows = list(rows)
    names: dict[str, None] = {}
    for r in rows:
        if not isinstance(r, Mapping):
            raise TypeError(f"rows must be a DataFrame, a dict of columns or a list of dicts; "
                            f"got a list containing {type(r).__name__}")
        names.update(dict.fromkeys(map(str, r)))
    batch = {k: [r.get(k) for r in rows] for k in names}
    return batch, len(rows)


class RecordWriter:
    """Write a session record; appends are readable by others at once (after a flush).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.h5`` file to create.
    overwrite : bool
        Replace an existing file. Otherwise an existing file raises `RecordExistsError`.
    subject, session : dict, optional
        JSON-able facts (identifier, ``lesioned_hemisphere``, ``dominant_hand``, ``notes``...),
        written once at `start`.
    params : Params, optional
        The pipeline parameters of the session.
    flush_interval_s : float
        Appends flush when at least this long passed since the last flush, so a crash
        loses at most about this much data while data arrives.
    trial_columns : dict, optional
        Extra trial-table columns beyond ``TRIAL_COLUMNS``: name -> kind ("float64",
        "int64", "bool", "text" or float/int/bool/str). Also `add_trial_columns`.
    marker_stream : str
        Name of the LSL marker stream the markers come from (stored as an attribute).
    handle_signals : bool
        Call `install_signal_handlers` at `start`.

    Examples
    --------
    >>> with RecordWriter("s01.h5", subject={"identifier": "S01"}) as rec:  # doctest: +SKIP
    ...     rec.add_stream("emg", channel_labels=["FDI", "APB"], units="V",
    ...                    nominal_srate_hz=5000.0)
    ...     rec.start()
    ...     rec.append_samples("emg", samples, timestamps)
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False,
                 subject: Mapping[str, Any] | None = None,
                 session: Mapping[str, Any] | None = None,
                 params: Params | None = None, flush_interval_s: float = 0.5,
                 trial_columns: Mapping[str, Any] | None = None,
                 marker_stream: str = "", handle_signals: bool = False) -> None:
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise RecordExistsError(
                f"{self.path}: file exists; choose another name or pass overwrite=True")
        if params is not None and not isinstance(params, Params):
            raise TypeError(f"params must be a mepkit Params or None, got {type(params).__name__}")
        if not flush_interval_s >= 0:
            raise ValueError(f"flush_interval_s must be >= 0, got {flush_interval_s!r}")
        _jsonable(dict(subject or {}), "subject")
        _jsonable(dict(session or {}), "session")
        self.overwrite = overwrite
        self.subject = dict(subject or {})
        self.session = dict(session or {})
        self.params = params
        self.flush_interval_s = float(flush_interval_s)
        self.marker_stream = str(marker_stream)
        self.handle_signals = handle_signals
        self._trial_kinds = dict(TRIAL_COLUMN_KINDS)
        self.add_trial_columns(**dict(trial_columns or {}))
        self._stream_specs: dict[str, dict[str, Any]] = {}
        self._streams: dict[str, _Stream] = {}
        self._tables: dict[str, _Table] = {}
        self._file: h5py.File | None = None
        self._closed = False
        self._last_flush = 0.0
        self._busy = 0
        self._pending_signal: int | None = None
        self._old_handlers: dict[int, Any] = {}
        #: Seconds spent in each flush (for benchmarks and diagnostics).
        self.flush_durations_s: list[float] = []

    # -- declaration -----------------------------------------------------------
    def add_trial_columns(self, **kinds: Any) -> None:
        """Declare extra trial-table columns (before `start`): ``name=kind``."""
        self._check_not_started("add_trial_columns")
        for name, kind in kinds.items():
            if name in TRIAL_COLUMN_KINDS:
                raise ValueError(f"{name!r} is a standard trial column already")
            self._trial_kinds[name] = normalize_kind(kind, name)

    def add_stream(self, name: str, *, channel_labels: Sequence[str],
                   units: str | Sequence[str], nominal_srate_hz: float,
                   stream_type: str = "EMG", source_id: str = "",
                   description: str = "", dtype: Any = "float32") -> None:
        """Declare a raw stream (before `start`).

        Samples are stored as they are given to `append_samples`: in ``units`` (one for
        all channels or one per channel) and as ``dtype`` (give the source's own, e.g. the
        LSL stream's float64, so a reanalysis sees exactly the samples the live session
        measured). ``description`` is the source's stream description (LSL XML or JSON).
        """
        self._check_not_started("add_stream")
        if not name or "/" in name or name in self._stream_specs:
            raise ValueError(f"stream name must be unique, non-empty, without '/', got {name!r}")
        labels = [str(c) for c in channel_labels]
        if not labels:
            raise ValueError(f"stream {name!r}: channel_labels is empty")
        unit_list = [units] * len(labels) if isinstance(units, str) else [str(u) for u in units]
        if len(unit_list) != len(labels):
            raise ValueError(f"stream {name!r}: {len(unit_list)} units for {len(labels)} channels")
        dt = np.dtype(dtype)
        if dt.kind not in "fiu":
            raise ValueError(f"stream {name!r}: dtype must be numeric, got {dt}")
        self._stream_specs[name] = dict(
            channel_labels=labels, source_units=unit_list, dtype=dt,
            nominal_srate_hz=float(nominal_srate_hz), type=str(stream_type),
            source_id=str(source_id), description=str(description))

    def _check_not_started(self, what: str) -> None:
        if getattr(self, "_file", None) is not None or getattr(self, "_closed", False):
            raise MepkitError(f"{what}() must be called before start(): HDF5 cannot create "
                              f"datasets once the record is in SWMR mode")

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "RecordWriter":
        """Create the file with its whole layout and switch to SWMR mode."""
        if self._file is not None:
            return self
        if self._closed:
            raise MepkitError(f"{self.path}: record already closed")
        mode = "w" if self.overwrite else "w-"
        try:
            f = h5py.File(self.path, mode, libver="latest")
        except FileExistsError:
            raise RecordExistsError(
                f"{self.path}: file exists; choose another name or pass overwrite=True") from None
        except OSError as exc:
            if not self.overwrite and os.path.exists(self.path):
                raise RecordExistsError(f"{self.path}: file exists; choose another name or pass "
                                        f"overwrite=True") from None
            raise MepkitError(f"{self.path}: cannot create record: {exc}") from None
        try:
            self._build(f)
            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        self._file = f
        self._last_flush = time.monotonic()
        if self.handle_signals:
            self.install_signal_handlers()
        return self

    def _build(self, f: h5py.File) -> None:
        a = f.attrs
        a["mepkit_format"] = FORMAT_NAME
        a["format_version"] = np.int64(FORMAT_VERSION)
        a["software_version"] = _software_version()
        a["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        a["created_lsl_clock_s"] = lsl_clock()
        a["closed_cleanly"] = np.bool_(False)
        _write_info_group(f.create_group("subject"), self.subject, "subject")
        _write_info_group(f.create_group("session"), self.session, "session")
        pg = f.create_group("params")
        pg.attrs["json"] = self.params.to_json() if self.params is not None else ""
        sg = f.create_group("streams")
        for name, spec in self._stream_specs.items():
            g = sg.create_group(name)
            n_ch = len(spec["channel_labels"])
            units = spec["source_units"]
            dt = spec["dtype"]
            rows = max(256, STREAM_CHUNK_BYTES // (dt.itemsize * n_ch))
            st = _Stream(name, n_ch)
            st.data = g.create_dataset("data", shape=(0, n_ch), maxshape=(None, n_ch),
                                       dtype=dt, chunks=(rows, n_ch))
            st.timestamps = g.create_dataset("timestamps", shape=(0,), maxshape=(None,),
                                             dtype="f8", chunks=(max(rows, 4096),))
            g.attrs["channel_labels"] = spec["channel_labels"]
            g.attrs["units"] = units
            g.attrs["source_units"] = units
            g.attrs["scale_to_uv"] = [math.nan if scale_to_uv(u) is None else scale_to_uv(u)
                                      for u in units]
            g.attrs["nominal_srate_hz"] = spec["nominal_srate_hz"]
            g.attrs["type"] = spec["type"]
            g.attrs["source_id"] = spec["source_id"]
            g.attrs["description"] = spec["description"]
            st.data.attrs["units"] = units
            st.timestamps.attrs["units"] = "s"
            self._streams[name] = st
            self._tables[f"clock/{name}"] = _Table(f, f"clock/{name}", CLOCK_COLUMNS)
        self._tables["trials"] = _Table(f, "trials", list(self._trial_kinds.items()))
        for path, cols in FIXED_TABLES.items():
            self._tables[path] = _Table(f, path, cols)
        self._tables["markers"].group.attrs["stream_name"] = self.marker_stream

    def flush(self) -> None:
        """Write everything appended so far; readers see it afterwards.

        Two steps: the columns and streams first, then the tables' ``n_rows`` counters,
        so ``n_rows`` never counts rows whose data is not on disk.
        """
        if self._file is None:
            return
        t0 = time.perf_counter()
        self._file.flush()
        if any([t.commit() for t in self._tables.values()]):
            self._file.flush()
        self._last_flush = time.monotonic()
        self.flush_durations_s.append(time.perf_counter() - t0)
        if len(self.flush_durations_s) > 10000:
            del self.flush_durations_s[:5000]

    def maybe_flush(self) -> bool:
        """Flush if ``flush_interval_s`` passed since the last flush; True if it did.

        Appends call this; call it yourself when no data arrives for a while.
        """
        if self._file is not None and time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()
            return True
        return False

    def close(self) -> None:
        """Flush, mark the record ``closed_cleanly`` and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        f, self._file = self._file, None
        self._restore_signal_handlers()
        if f is None:
            return
        try:
            self._file = f
            self.flush()
            f.attrs.modify("closed_cleanly", np.bool_(True))
            f.flush()
        finally:
            self._file = None
            f.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- appends ---------------------------------------------------------------
    def _begin(self, what: str) -> h5py.File:
        if self._closed:
            raise MepkitError(f"{self.path}: {what}() on a closed record")
        if self._file is None:
            self.start()
        self._busy += 1
        assert self._file is not None
        return self._file

    def _end(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self.maybe_flush()
            if self._pending_signal is not None:
                signum, self._pending_signal = self._pending_signal, None
                self._on_signal(signum, None)

    def append_samples(self, name: str, samples: Any, timestamps: Any) -> None:
        """Append ``samples (n, ch)`` in the stream's declared units and LSL ``timestamps (n,)``."""
        if name not in self._stream_specs:
            raise MepkitError(f"{self.path}: no stream {name!r}; declared: "
                              f"{list(self._stream_specs)}")
        x = np.asarray(samples)
        if x.dtype.kind not in "fiub":
            raise ValueError(f"stream {name!r}: samples must be numbers, got dtype {x.dtype}")
        t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        spec_ch = len(self._stream_specs[name]["channel_labels"])
        if x.ndim != 2 or x.shape[1] != spec_ch:
            raise ValueError(f"stream {name!r}: samples must have shape (n, {spec_ch}), "
                             f"got {x.shape}")
        if x.shape[0] != t.shape[0]:
            raise ValueError(f"stream {name!r}: {x.shape[0]} samples but {t.shape[0]} timestamps")
        if x.shape[0] == 0:
            return
        self._begin("append_samples")
        try:
            st = self._streams[name]
            assert st.data is not None and st.timestamps is not None
            _append(st.data, st.n, x)
            _append(st.timestamps, st.n, t)
            st.n += x.shape[0]
        finally:
            self._end()

    def append_clock(self, name: str, rows: Any) -> None:
        """Append rows ``(sample_index, time_s, rate_hz, timeline)`` of a stream's clock
        mapping (`mepkit.sources.clock`): how its samples are timed."""
        if name not in self._stream_specs:
            raise MepkitError(f"{self.path}: no stream {name!r}; declared: "
                              f"{list(self._stream_specs)}")
        r = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
        self._append_table(f"clock/{name}", {
            "sample_index": r[:, 0].astype(np.int64), "time_s": r[:, 1], "rate_hz": r[:, 2],
            "timeline": r[:, 3].astype(np.int64)}, r.shape[0])

    def _append_table(self, path: str, batch: Mapping[str, Sequence[Any]], n: int) -> None:
        if n == 0:
            return
        self._begin(f"append to /{path}")
        try:
            self._tables[path].append(batch, n)
        finally:
            self._end()

    def append_markers(self, times: Any, values: Iterable[Any]) -> None:
        """Append markers: LSL times (s) and their string values."""
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        v = [str(x) for x in (values if not isinstance(values, str) else [values])]
        if len(v) != len(t):
            raise ValueError(f"{len(t)} marker times but {len(v)} values")
        self._append_table("markers", {"time_s": t, "value": v}, len(t))

    def append_trials(self, rows: Any) -> None:
        """Append trial rows (DataFrame, dict of columns or list of row dicts).

        Missing columns are filled (NaN, -1, False, ""); unknown columns raise ValueError.
        """
        batch, n = _batch_from_rows(rows)
        self._append_table("trials", batch, n)

    def append_protocol_step(self, step: Mapping[str, Any], *, time_s: float | None = None) -> None:
        """Append one protocol step (JSON-able dict) at LSL time ``time_s`` (default: now)."""
        text = _jsonable(dict(step), "protocol step")
        self._append_table("protocol/steps",
                           {"time_s": [lsl_clock() if time_s is None else time_s],
                            "json": [text]}, 1)

    def set_protocol_result(self, name: str, result: Mapping[str, Any], *,
                            time_s: float | None = None) -> None:
        """Store a protocol's result under ``name``; a later call with the same name wins."""
        text = _jsonable(dict(result), f"protocol result {name!r}")
        self._append_table("protocol/results",
                           {"time_s": [lsl_clock() if time_s is None else time_s],
                            "name": [str(name)], "json": [text]}, 1)

    def append_event(self, time_s: float, kind: str, detail: Any = "") -> None:
        """Append an event (outage, gap, ...): LSL time, kind, detail (text or JSON-able)."""
        if not isinstance(detail, str):
            detail = _jsonable(detail, "event detail")
        self._append_table("events", {"time_s": [float(time_s)], "kind": [str(kind)],
                                      "detail": [detail]}, 1)

    @property
    def n_samples(self) -> dict[str, int]:
        """Samples appended so far, per stream."""
        return {name: st.n for name, st in self._streams.items()}

    @property
    def n_trials(self) -> int:
        t = self._tables.get("trials")
        return t.n_rows if t is not None else 0

    # -- signals ---------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """Close the record cleanly on SIGINT and SIGTERM (main thread only).

        SIGINT then raises KeyboardInterrupt, SIGTERM exits with status 128 + 15. A signal
        arriving during an append is handled when the append is complete.
        """
        if threading.current_thread() is not threading.main_thread():
            raise MepkitError("install_signal_handlers() must be called from the main thread")
        for sig in (signal.SIGINT, signal.SIGTERM):
            if sig not in self._old_handlers:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if not self._old_handlers:
            return
        if threading.current_thread() is threading.main_thread():
            for sig, old in self._old_handlers.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old_handlers = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._busy:
            self._pending_signal = signum
            return
        self.close()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        sys.exit(128 + signum)
