"""Reanalysis of many recordings (XDF files and mepkit records), serially or on Dask."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from mepkit.errors import FileFormatError, MepkitError
from mepkit.params import Params

__all__ = ["AnalyzeOptions", "analyze_file", "analyze_files", "load_recording", "FileResult"]

logger = logging.getLogger("mepkit.batch")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class AnalyzeOptions:
    """How files are read and triggers found (everything but the measurement Params)."""

    emg_stream: str | None = None
    marker_stream: str | None = None
    trigger_channel: str | None = None
    artifact_triggers: bool = False
    marker_filter: str | None = None
    unit: str | None = None
    #: Measure records with the parameters stored in them (XDF files: the given ones).
    record_params: bool = False


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


def analyze_file(path: str | os.PathLike, params: Params | None = None,
                 options: AnalyzeOptions = AnalyzeOptions(), *, file: str | None = None):
    """Measure every trial of one XDF file or mepkit record; returns a DataFrame.

    Raises :class:`~mepkit.errors.MepkitError` with a one-line message for bad input.
    """
    from mepkit.analyze import analyze_recording

    path = os.fspath(path)
    with load_recording(path, options) as rec:
        if options.record_params and rec.params is not None:
            params = rec.params
        try:
            return analyze_recording(
                rec, params, trigger_channel=options.trigger_channel,
                artifact_triggers=options.artifact_triggers,
                marker_filter=options.marker_filter, unit=options.unit,
                file=path if file is None else file)
        except ValueError as exc:
            raise MepkitError(f"{path}: {exc}") from None


def _run_one(path: str, params_json: str, options: AnalyzeOptions) -> FileResult:
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
            frame = analyze_file(path, Params.from_json(params_json), options)
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


def analyze_files(paths: Sequence[str], params: Params | None = None,
                  options: AnalyzeOptions = AnalyzeOptions(), *, jobs: int = 1,
                  scheduler: str | None = None,
                  progress: Callable[[FileResult], None] | None = None) -> list[FileResult]:
    """Analyse many files; returns one :class:`FileResult` per path, in input order.

    ``jobs > 1`` starts a local Dask cluster with that many worker processes;
    ``scheduler`` sends the work to a running Dask distributed scheduler. Every
    path gives the same table whichever way it ran.
    """
    params = params if params is not None else Params()
    pj = params.to_json()
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
