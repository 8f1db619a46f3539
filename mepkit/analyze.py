"""Batch measurement: recordings and already-epoched data to trial tables."""

from __future__ import annotations

import json
import logging
import math
import warnings
from typing import Any, Iterable, Sequence

import numpy as np

from mepkit.params import Params
from mepkit.pipeline import Pipeline, Trial, trial_columns

__all__ = ["analyze_epochs", "analyze_recording", "recording_clock", "trials_to_frame",
           "make_params"]

logger = logging.getLogger("mepkit.analyze")

def make_params(params: Params | None = None, **overrides: Any) -> Params:
    """``params`` (or the defaults) with keyword overrides applied and validated."""
    base = params if params is not None else Params()
    return base.replace(**overrides) if overrides else base


#: pandas dtype of each column kind (text columns: whatever pandas makes of Python strings).
_DTYPES = {"float64": "float64", "int64": "int64", "bool": "bool", "text": None}


def trials_to_frame(trials: Iterable[Trial], file: str = "", *, live: bool = False):
    """A pandas DataFrame, one row per trial and channel, in ``TRIAL_COLUMNS`` order
    (with ``live``, the live timing columns too)."""
    import pandas as pd

    from mepkit.params import LIVE_TRIAL_COLUMN_KINDS, TRIAL_COLUMN_KINDS

    kinds = {**TRIAL_COLUMN_KINDS, **(LIVE_TRIAL_COLUMN_KINDS if live else {})}
    cols = trial_columns(sorted(trials, key=lambda t: t.index), file, live=live)
    return pd.DataFrame({c: pd.Series(v, dtype=_DTYPES[kinds[c]] if len(v) or
                                      kinds[c] != "text" else object)
                         for c, v in cols.items()})


def analyze_recording(recording, params: Params | None = None, *, trigger_channel=None,
                      artifact_triggers: bool = False, marker_filter: str | None = None,
                      unit: str | None = None, file: str | None = None, chunk_s: float = 1.0,
                      mains: str = "recording", clock=None):
    """Replay a :class:`~mepkit.sources.recording.Recording` through the Pipeline.

    Returns a DataFrame with one row per trial and EMG channel. Its ``attrs`` hold
    ``line_freq_hz`` (the mains frequency used, None for none) and ``line_freq_source``
    (``"set"`` or ``"detected"``).

    With ``params.line_freq_hz == "auto"``, ``mains="recording"`` decides the mains
    frequency over the whole recording before measuring (every trial uses it);
    ``mains="stream"`` decides as a live session does (1 s blocks as the samples arrive),
    which reproduces a live session's trials exactly.

    Every sample is timed on the stream's fitted clock (`recording_clock`, or ``clock``
    when given): a record made live stores the mapping its session used.
    """
    from mepkit.errors import StreamNotFoundError
    from mepkit.sources.recording import channel_index
    from mepkit.units import channel_scales

    params = params if params is not None else Params()
    name = recording.path if file is None else file
    labels = list(recording.channel_labels)
    try:
        trigger_channel = channel_index(labels, trigger_channel)
    except ValueError as exc:
        raise StreamNotFoundError(f"{recording.path}: {exc}") from None
    scales, _, notes = channel_scales(labels, list(recording.units), unit_override=unit,
                                      source=recording.path, skip=trigger_channel)
    for note in list(recording.warnings) + notes:
        logger.warning("%s", note)
    data = recording.data
    line_source = "set"
    if params.line_freq_hz == "auto" and mains == "recording":
        from mepkit.dsp.mains import describe, detect_line_freq

        emg_cols = [i for i in range(len(labels)) if i != trigger_channel]
        est = detect_line_freq(np.asarray(data)[:, emg_cols], recording.sfreq_hz)
        params = params.replace(line_freq_hz=est.line_freq_hz)
        line_source = "detected"
        logger.info("%s: %s", name, describe(est.line_freq_hz, "detected"))
    elif mains not in ("recording", "stream"):
        raise ValueError(f"mains must be 'recording' or 'stream', got {mains!r}")
    fit = clock if clock is not None else recording_clock(recording, params)
    times = fit.times()
    segments = fit.timelines
    if len(segments) > 1:
        logger.warning("%s: the EMG clock jumps backwards %d time(s) (clock reset); each part is "
                       "measured on its own clock", recording.path, len(segments) - 1)
    if fit.gaps:
        logger.warning("%s: %d gap(s) in the EMG stream, %d samples missing (the first %.1f ms "
                       "at %.3f s); trials across them are rejected (gap)", recording.path,
                       len(fit.gaps), sum(g.n_missing for g in fit.gaps),
                       fit.gaps[0].duration_s * 1e3, fit.gaps[0].start_s)
    use_markers = trigger_channel is None and not artifact_triggers
    assigned = _assign_markers(recording.marker_times, times, segments) if use_markers else None
    step = max(1, int(round(chunk_s * recording.sfreq_hz)))
    trials: list[Trial] = []
    next_index = 0
    for k, (a, b) in enumerate(segments):
        pipe = Pipeline(params, sfreq_hz=recording.sfreq_hz, channel_labels=labels,
                        scale_to_uv=scales, trigger_channel=trigger_channel,
                        artifact_triggers=artifact_triggers, marker_filter=marker_filter,
                        buffer_s=max(4.0, 2 * chunk_s), first_index=next_index,
                        fit_clock=False)
        if use_markers:
            sel = np.flatnonzero(assigned == k)
            pipe.add_markers(recording.marker_times[sel], [recording.marker_values[i] for i in sel])
        for start in range(a, b, step):
            stop = min(b, start + step)
            trials.extend(pipe.push(data[start:stop], times[start:stop]))
        trials.extend(pipe.finish())
        next_index = pipe.next_index
    if use_markers:
        lost = np.flatnonzero(assigned < 0)
        if lost.size:
            logger.warning("%s: %d marker(s) fall outside the EMG recording and are ignored "
                           "(first at %.3f s)", recording.path, lost.size,
                           recording.marker_times[lost[0]])
    frame = trials_to_frame(trials, name)
    line = params.line_freq_hz
    if line == "auto":  # decided per stream block: the last decision
        line = pipe.line_freq_hz if segments else None
        line_source = "detected"
    frame.attrs["line_freq_hz"] = line
    frame.attrs["line_freq_source"] = line_source
    return frame


def recording_clock(recording, params: Params | None = None):
    """The fitted clock of a recording's EMG stream (`mepkit.sources.clock.ClockFit`).

    A record made live stores the mapping its session used: that one, so a reanalysis
    times every sample as the session did. Otherwise (XDF files, older records) the clock
    is fitted over the whole stream from its raw stamps."""
    from mepkit.sources.clock import ClockFit, fit_clock

    params = params if params is not None else Params()
    n = len(recording.timestamps)
    rows = getattr(recording, "clock_rows", None)
    if rows is not None and len(rows):
        return ClockFit(np.asarray(rows, dtype=np.float64), n)
    name = (recording.emg_stream or {}).get("name", "") or "EMG"
    return fit_clock(recording.timestamps, recording.sfreq_hz,
                     tolerance_s=params.gap_tolerance_ms / 1000.0, name=name)


def _assign_markers(times: np.ndarray, ts: np.ndarray, segments) -> np.ndarray:
    """Timeline index of each marker (-1: none), from the samples' fitted times ``ts``.
    Markers keep their stream order, so after a reset a marker goes to the first timeline
    at or after the previous marker's that spans it."""
    out = np.full(len(times), -1, dtype=np.int64)
    spans = [(ts[a] - 0.5, ts[b - 1] + 0.5) for a, b in segments]
    current = 0
    for i, t in enumerate(times):
        order = list(range(current, len(spans))) + list(range(0, current))
        for k in order:
            if spans[k][0] <= t <= spans[k][1]:
                out[i] = current = k
                break
    return out


def analyze_epochs(data: np.ndarray, sfreq_hz: float, tmin_s: float,
                   channels: Sequence[str] | None = None, *, params: Params | None = None,
                   stim: Sequence[Any] | None = None, file: str = "", **overrides: Any):
    """Measure already-epoched data (pulse at time 0).

    Parameters
    ----------
    data : array, shape (n_trials, n_channels, n_samples)
        Epochs in µV.
    sfreq_hz : float
        Sampling rate in Hz.
    tmin_s : float
        Time of the first sample relative to the pulse, in seconds (e.g. -0.05).
    channels : sequence of str, optional
        Channel names (default ``ch1``, ``ch2``, ...).
    params : Params, optional
        Base parameters; keyword arguments override single fields
        (e.g. ``detection_threshold_uv=100``).
    stim : sequence, optional
        Per-trial marker (string, dict or StimInfo) for the metadata columns.

    Returns
    -------
    pandas.DataFrame
        One row per trial and channel, with the columns of ``mepkit analyze``.

    Notes
    -----
    Windows that do not fit in the epochs (exports often keep only 50 ms before
    the pulse) are shortened with a warning rather than failing.
    """
    from mepkit.dsp.features import FEATURES, measure_epochs, reason_names
    from mepkit.markers import StimInfo, parse_marker

    for old, new in (("sfreq", "sfreq_hz"), ("tmin", "tmin_s")):
        if old in overrides:
            raise TypeError(f"analyze_epochs: {old}= is now spelled {new}=")
    p = make_params(params, **overrides)
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3:
        raise ValueError(f"data must have shape (n_trials, n_channels, n_samples), got {np.shape(data)}")
    n_tr, n_ch, n_s = x.shape
    sfreq_hz = float(sfreq_hz)
    if not (math.isfinite(sfreq_hz) and sfreq_hz > 0):
        raise ValueError(f"sfreq_hz must be a positive number, got {sfreq_hz!r}")
    names = [f"ch{i + 1}" for i in range(n_ch)] if channels is None else [str(c) for c in channels]
    if len(names) != n_ch:
        raise ValueError(f"{len(names)} channel names for {n_ch} channels")
    tmin_ms = float(tmin_s) * 1000.0
    tmax_ms = tmin_ms + (n_s - 1) * 1000.0 / sfreq_hz
    for name, (lo, hi) in (("background_window_ms", p.background_window_ms),
                           ("response_window_ms", p.response_window_ms),
                           ("artifact_window_ms", p.artifact_window_ms)):
        if lo < tmin_ms or hi > tmax_ms:
            new = (max(lo, tmin_ms), min(hi, tmax_ms))
            if new[0] >= new[1]:
                raise ValueError(f"{name} {lo:g}..{hi:g} ms lies outside the epochs "
                                 f"({tmin_ms:g}..{tmax_ms:g} ms)")
            warnings.warn(f"{name} {lo:g}..{hi:g} ms does not fit the epochs "
                          f"({tmin_ms:g}..{tmax_ms:g} ms); shortened to {new[0]:g}..{new[1]:g} ms",
                          stacklevel=2)
    res = measure_epochs(x, sfreq_hz, p, tmin_s=float(tmin_s))
    reasons = reason_names(res["reject_code"])
    if stim is None:
        infos = [StimInfo() for _ in range(n_tr)]
    else:
        if len(stim) != n_tr:
            raise ValueError(f"{len(stim)} stim entries for {n_tr} trials")
        infos = [s if isinstance(s, StimInfo) else parse_marker(
            json.dumps(s) if isinstance(s, dict) else s) for s in stim]
    names = tuple(names)
    trials = [Trial(k, 0.0, infos[k], names, *(res[f][k] for f in FEATURES),
                    res["detected"][k], tuple(reasons[k]),
                    onset_ambiguous=res["onset_ambiguous"][k]) for k in range(n_tr)]
    return trials_to_frame(trials, file)
