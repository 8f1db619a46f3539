"""Reanalysis of many recordings (XDF files and mepkit records), serially or on Dask."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

from mepkit.errors import FileFormatError, MepkitError, UsageError
from mepkit.params import Params

__all__ = ["AnalyzeOptions", "analyze_file", "analyze_files", "load_recording", "FileResult"]

logger = logging.getLogger("mepkit.batch")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class AnalyzeOptions:
    """How files are read and triggers found (everything but the measurement Params)."""

    emg_stream: str | None = None
    marker_stream: str | None = None
    #: A TTL channel of the EMG stream, by label or index.
    trigger_channel: str | int | None = None
    artifact_triggers: bool = False
    marker_filter: str | None = None
    unit: str | None = None

    @classmethod
    def split(cls, options: dict[str, Any]) -> tuple["AnalyzeOptions", dict[str, Any]]:
        """Keyword options as ``(AnalyzeOptions, Params overrides)``; unknown ones raise."""
        mine = {f.name for f in fields(cls)}
        known = mine | {f.name for f in fields(Params)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; options are {sorted(known)}")
        return (cls(**{k: v for k, v in options.items() if k in mine}),
                {k: v for k, v in options.items() if k not in mine})


@dataclass
class FileResult:
    """The outcome of one file: a table, or an error message (never both)."""

    path: str
    frame: Any = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def _kind(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except IsADirectoryError:
        raise FileFormatError(f"{path}: is a directory") from None
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot be read ({exc.strerror})") from None
    if head.startswith(b"XDF:"):
        return "xdf"
    if head == _HDF5_MAGIC:
        return "record"
    raise FileFormatError(f"{path}: neither an XDF file nor a mepkit record (HDF5)")


def load_recording(path: str, options: AnalyzeOptions = AnalyzeOptions()):
    """Read a file of either kind as a :class:`~mepkit.sources.recording.Recording`."""
    kind = _kind(path)
    if kind == "xdf":
        from mepkit.sources.xdf import read_xdf

        need_markers = options.trigger_channel is None and not options.artifact_triggers
        return read_xdf(path, emg_stream=options.emg_stream, marker_stream=options.marker_stream,
                        require_markers=need_markers)
    from mepkit.sources.replay import recording_from_record

    return recording_from_record(path, emg_stream=options.emg_stream)


def analyze_file(path: str | os.PathLike, params: Params | None = None, *,
                 file: str | None = None, **options: Any):
    """Measure every trial of one XDF file or mepkit record; returns a DataFrame.

    Parameters
    ----------
    path : path
        An XDF file or a mepkit record.
    params : Params, optional
        The measurement parameters. Default: for a record, the ones stored in it (so its
        trials come out as they were measured live); for an XDF file, ``Params()``.
    file : str, optional
        The ``file`` column (default ``path``).
    **options
        `AnalyzeOptions` fields (``emg_stream``, ``marker_stream``, ``trigger_channel``,
        ``artifact_triggers``, ``marker_filter``, ``unit``) and single `Params` fields that
        override ``params`` (``detection_threshold_uv=100``). A record measured with
        parameters other than its own says so in a warning.

    Raises
    ------
    MepkitError
        With a one-line message for bad input.
    """
    from mepkit.analyze import analyze_recording

    opts, overrides = AnalyzeOptions.split(options)
    path = os.fspath(path)
    with load_recording(path, opts) as rec:
        # how the record's pulses were found, unless options say otherwise
        found = {k: v for k, v in rec.pulses.items() if not getattr(opts, k)}
        if found:
            opts = dataclasses.replace(opts, **found)
        stored = rec.params
        base = params if params is not None else (stored or Params())
        try:
            used = base.replace(**overrides) if overrides else base
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if stored is not None and used != stored:
            logger.warning("%s: measured with parameters other than those stored in the record: "
                           "%s", path, _param_changes(stored, used))
        try:
            return analyze_recording(
                rec, used, trigger_channel=opts.trigger_channel,
                artifact_triggers=opts.artifact_triggers, marker_filter=opts.marker_filter,
                unit=opts.unit, file=path if file is None else file)
        except ValueError as exc:
            raise MepkitError(f"{path}: {exc}") from None


def _param_changes(old: Params, new: Params) -> str:
    a, b = old.to_dict(), new.to_dict()
    return ", ".join(f"{k} {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k])


def _run_one(path: str, params_json: str | None, options: dict[str, Any]) -> FileResult:
    """Analyse one file, capturing errors and warnings (runs on Dask workers too)."""
    import warnings as _w

    records: list[str] = []

    class _H(logging.Handler):
        def emit(self, record):  # noqa: D401
            records.append(record.getMessage())

    handler = _H(logging.WARNING)
    root = logging.getLogger("mepkit")
    root.addHandler(handler)
    propagate = root.propagate
    root.propagate = False  # reported once, through FileResult.warnings
    try:
        with _w.catch_warnings(record=True) as caught:
            _w.simplefilter("always")
            params = Params.from_json(params_json) if params_json else None
            frame = analyze_file(path, params, **options)
        records.extend(str(w.message) for w in caught)
        return FileResult(path, frame=frame, warnings=records)
    except MepkitError as exc:
        return FileResult(path, error=str(exc), warnings=records)
    except Exception as exc:  # a bug or an unforeseen file problem: still one line
        return FileResult(path, error=f"{path}: unexpected {type(exc).__name__}: {exc}",
                          warnings=records)
    finally:
        root.removeHandler(handler)
        root.propagate = propagate


def analyze_files(paths: Sequence[str], params: Params | None = None, *, jobs: int = 1,
                  scheduler: str | None = None,
                  progress: Callable[[FileResult], None] | None = None,
                  **options: Any) -> list[FileResult]:
    """Analyse many files; returns one :class:`FileResult` per path, in input order.

    ``params`` and ``options`` are those of `analyze_file`.

    ``jobs > 1`` starts a local Dask cluster with that many worker processes;
    ``scheduler`` sends the work to a running Dask distributed scheduler. Every
    path gives the same table whichever way it ran.
    """
    AnalyzeOptions.split(options)  # unknown options fail here, not in every file
    pj = params.to_json() if params is not None else None
    paths = [os.fspath(p) for p in paths]
    results: list[FileResult | None] = [None] * len(paths)
    if scheduler is None and jobs <= 1:
        for i, path in enumerate(paths):
            results[i] = _run_one(path, pj, options)
            if progress:
                progress(results[i])
        return results  # type: ignore[return-value]
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise MepkitError("parallel analysis needs Dask: pip install 'mepkit[distributed]'") from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="10s")
        except Exception as exc:
            raise MepkitError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        futures = {client.submit(_run_one, p, pj, options, pure=False): i
                   for i, p in enumerate(paths)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:
                results[i] = FileResult(paths[i], error=f"{paths[i]}: worker failed: {exc}")
            if progress:
                progress(results[i])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results  # type: ignore[return-value]
