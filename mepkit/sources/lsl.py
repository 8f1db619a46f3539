"""Acquisition from Lab Streaming Layer: resolve streams, pull EMG and markers.

Clocks
------
Every LSL timestamp is on the clock of the machine that pushed it. mepkit keeps
the EMG samples' own timestamps untouched (the raw stamps go to the record as they
came) and times the samples on the stream's fitted clock (`mepkit.sources.clock`: most
amplifier apps push without stamps, so liblsl stamps each chunk at the push and the
stamps wobble); the *EMG clock* is that fitted clock. Everything else is mapped onto it
with each inlet's ``time_correction()`` — the offset that, added to a remote timestamp,
gives local time (liblsl documentation):

    marker time on the EMG clock = t_marker + tc_marker - tc_emg
    now on the EMG clock         = local_clock() - tc_emg

The corrections are refreshed about once a second (`LslInlet.refresh_time_correction`;
after the first estimate liblsl answers at once). liblsl's ``proc_clocksync`` would
rewrite the EMG timestamps with a moving correction instead, which can make them
step (and look like gaps) whenever the estimate changes, so it is not used.

Polling
-------
`LslInlet.pull` drains what is available with ``pull_chunk(timeout=0.0)`` into a
preallocated, C-contiguous buffer of the stream's own dtype (``dest_obj``; pylsl does
not check it, so `LslInlet` does). When nothing is there it can wait *inside liblsl*
for the first sample (``min_samples=1``, a condition-variable wake-up) instead of the
caller sleeping a fixed interval: the thread wakes as soon as data arrive. Markers
are polled non-blocking on every wake-up (at least every ``wait_s``).
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mepkit.errors import MepkitError, StreamNotFoundError
from mepkit.sources.clock import Gap

__all__ = [
    "StreamMeta", "Gap", "LslInlet", "MarkerInlet", "resolve_stream", "list_streams",
    "describe_stream", "StreamFormatError",
]

logger = logging.getLogger("mepkit.lsl")

#: Seconds `list_streams` waits for answers when a stream was not found.
LIST_WAIT_S = 1.0
#: Seconds the first time-correction estimate may take.
FIRST_TIME_CORRECTION_TIMEOUT_S = 2.0
#: Seconds between time-correction refreshes.
TIME_CORRECTION_INTERVAL_S = 1.0
#: Numeric LSL formats an EMG stream may have, and the numpy dtype of each.
_NUMERIC_FORMATS = {"float32": np.float32, "double64": np.float64, "int16": np.int16,
                    "int32": np.int32}
_FORMAT_NAMES = {1: "float32", 2: "double64", 3: "string", 4: "int32", 5: "int16",
                 6: "int8", 7: "int64", 0: "undefined"}


class StreamFormatError(MepkitError):
    """A stream that is there but cannot be used as asked (format, rate, channels, type)."""


def _pylsl():
    import pylsl

    return pylsl


# ---------------------------------------------------------------------------- metadata
@dataclass
class StreamMeta:
    """What mepkit needs to know about an LSL stream (from its full description)."""

    name: str
    type: str
    source_id: str
    hostname: str
    n_channels: int
    sfreq_hz: float
    channel_format: str
    channel_labels: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    channel_types: list[str] = field(default_factory=list)
    xml: str = ""

    @classmethod
    def from_info(cls, info: Any) -> "StreamMeta":
        """Read a ``pylsl.StreamInfo`` (labels and units from ``desc/channels/channel``)."""
        n = int(info.channel_count())
        labels, units, types = [], [], []
        try:
            ch = info.desc().child("channels").child("channel")
            while not ch.empty() and len(labels) < n:
                labels.append(ch.child_value("label"))
                units.append(ch.child_value("unit"))
                types.append(ch.child_value("type"))
                ch = ch.next_sibling()
        except Exception:  # a malformed description: fall back to numbered channels
            labels, units, types = [], [], []
        if len(labels) != n:
            labels, units, types = [""] * n, [""] * n, [""] * n
        labels = [lab.strip() or f"ch{i + 1}" for i, lab in enumerate(labels)]
        try:
            xml = info.as_xml()
        except Exception:
            xml = ""
        fmt = info.channel_format()
        return cls(name=info.name(), type=info.type(), source_id=info.source_id(),
                   hostname=info.hostname(), n_channels=n,
                   sfreq_hz=float(info.nominal_srate()),
                   channel_format=_FORMAT_NAMES.get(int(fmt), str(fmt)),
                   channel_labels=labels, units=[u.strip() for u in units],
                   channel_types=[t.strip() for t in types], xml=xml)

    def describe(self) -> str:
        rate = f"{self.sfreq_hz:g} Hz" if self.sfreq_hz > 0 else "irregular rate"
        host = f" on {self.hostname}" if self.hostname else ""
        return (f"{self.name!r} (type {self.type!r}, source_id {self.source_id!r}, "
                f"{self.n_channels} channel{'s' if self.n_channels != 1 else ''}, {rate}, "
                f"{self.channel_format}{host})")


def describe_stream(info: Any) -> str:
    """One line about a ``pylsl.StreamInfo``: name, type, source_id, channels, rate."""
    return StreamMeta.from_info(info).describe()


def list_streams(wait_s: float = LIST_WAIT_S) -> list[Any]:
    """Every stream visible on the network (``pylsl.StreamInfo``), waiting ``wait_s``."""
    return list(_pylsl().resolve_streams(wait_time=wait_s))


def _quote(value: str, what: str) -> str:
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{what} {value!r} contains both quote characters; LSL queries cannot "
                     "express it")


def resolve_stream(*, name: str | None = None, type: str | None = None,
                   source_id: str | None = None, timeout_s: float = 5.0) -> Any:
    """Find one LSL stream by name, type and/or source_id.

    Parameters
    ----------
    name, type, source_id : str, optional
        Properties the stream must have (at least one).
    timeout_s : float
        How long to look.

    Returns
    -------
    pylsl.StreamInfo
        The stream (description without the extended ``desc``; an inlet fetches it).

    Raises
    ------
    StreamNotFoundError
        Nothing matches within ``timeout_s``; the message lists the visible streams.
    MepkitError
        More than one stream matches (give ``source_id`` to choose).
    """
    crit = {"name": name, "type": type, "source_id": source_id}
    crit = {k: v for k, v in crit.items() if v is not None and v != ""}
    if not crit:
        raise ValueError("resolve_stream needs at least one of name, type, source_id")
    pred = " and ".join(f"{k}={_quote(v, k)}" for k, v in crit.items())
    pylsl = _pylsl()
    found = list(pylsl.resolve_bypred(pred, 1, timeout_s))
    want = ", ".join(f"{k}={v!r}" for k, v in crit.items())
    if not found:
        visible = list_streams()
        if visible:
            lines = "\n".join(f"  - {describe_stream(i)}" for i in visible)
            msg = (f"no LSL stream with {want} found within {timeout_s:g} s; "
                   f"visible streams:\n{lines}")
        else:
            msg = (f"no LSL stream with {want} found within {timeout_s:g} s, and no LSL streams "
                   f"are visible at all: is the amplifier's LSL app running (and not blocked "
                   f"by a firewall)?")
        raise StreamNotFoundError(msg)
    uids = {(i.source_id() or i.uid()) for i in found}
    if len(uids) > 1:
        lines = "\n".join(f"  - {describe_stream(i)}" for i in found)
        raise MepkitError(f"{len(found)} LSL streams match {want}; give a source_id to "
                          f"choose one:\n{lines}")
    return found[0]


# ---------------------------------------------------------------------------- gaps
# Gaps (samples missing) are found by the stream's clock model (mepkit.sources.clock),
# not from single steps between stamps: stamps made on push wobble at every chunk edge.
# `Gap` is re-exported here for older imports.


def _has_kw(func: Any, name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


class _InletBase:
    """Shared by EMG and marker inlets: open, describe, time correction, close."""

    def __init__(self, info: Any, *, max_buflen: int, recover: bool, open_timeout_s: float):
        pylsl = _pylsl()
        self._pylsl = pylsl
        self.inlet = pylsl.StreamInlet(info, max_buflen=max_buflen, recover=recover)
        try:
            full = self.inlet.info(timeout=open_timeout_s)
        except Exception as exc:  # TimeoutError / LostError
            raise StreamNotFoundError(
                f"LSL stream {info.name()!r} (source_id {info.source_id()!r}) did not answer "
                f"within {open_timeout_s:g} s ({type(exc).__name__}: {exc})") from None
        self.meta = StreamMeta.from_info(full)
        self.time_correction_s = 0.0
        self._tc_next = -math.inf
        self._tc_ok = False

    def open(self, timeout_s: float = 5.0) -> None:
        """Subscribe to the data and get a first time-correction estimate."""
        try:
            self.inlet.open_stream(timeout=timeout_s)
        except Exception as exc:
            raise StreamNotFoundError(
                f"could not open LSL stream {self.meta.name!r}: {type(exc).__name__}: {exc}"
            ) from None
        self.refresh_time_correction(timeout_s=FIRST_TIME_CORRECTION_TIMEOUT_S, force=True)

    def refresh_time_correction(self, *, timeout_s: float = 0.0, force: bool = False,
                                now: float | None = None) -> float:
        """Refresh ``time_correction_s`` at most every second; keep the last one on failure."""
        if now is None:
            now = self._pylsl.local_clock()
        if not force and now < self._tc_next:
            return self.time_correction_s
        self._tc_next = now + TIME_CORRECTION_INTERVAL_S
        try:
            tc = float(self.inlet.time_correction(timeout=timeout_s))
        except Exception as exc:  # no estimate yet (just recovered) or lost: keep the last
            if force:
                logger.debug("time correction of %r not available yet: %s", self.meta.name, exc)
            return self.time_correction_s
        if math.isfinite(tc):
            self.time_correction_s = tc
            self._tc_ok = True
        return self.time_correction_s

    def close(self) -> None:
        inlet, self.inlet = self.inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception:
                pass
            del inlet


# ---------------------------------------------------------------------------- EMG
class LslInlet(_InletBase):
    """Non-blocking reader of a regular-rate numeric (EMG) LSL stream.

    Parameters
    ----------
    info : pylsl.StreamInfo
        From `resolve_stream`.
    expected_type : str or None
        The stream's type must be this (case-insensitive); ``None`` accepts any.
    n_channels : int, optional
        The stream must have this many channels.
    channel_labels : sequence of str, optional
        These labels must be among the stream's channels.
    chunk_capacity : int, optional
        Samples one `pull` may return (default: 0.5 s of data, at least 1024).
    gap_tolerance_ms : float
        Kept for compatibility; gaps are found by the clock model of the Pipeline.
    outage_after_s : float
        Silence (no samples, by the local clock) after which the stream counts as lost.
    recover : bool
        Let liblsl re-join an outlet that restarts with the same source_id.
    max_buflen_s : int
        Seconds liblsl buffers when mepkit falls behind.
    open_timeout_s : float
        Time allowed for the stream's full description.

    Notes
    -----
    `pull` returns a *view* of the preallocated buffer: use the samples before the
    next `pull` (the Pipeline copies them into its ring; copy to keep them).
    """

    def __init__(self, info: Any, *, expected_type: str | None = "EMG",
                 n_channels: int | None = None, channel_labels: Sequence[str] | None = None,
                 chunk_capacity: int | None = None, gap_tolerance_ms: float = 2.0,
                 outage_after_s: float = 1.0, recover: bool = True, max_buflen_s: int = 60,
                 open_timeout_s: float = 5.0) -> None:
        super().__init__(info, max_buflen=max_buflen_s, recover=recover,
                         open_timeout_s=open_timeout_s)
        m = self.meta
        try:
            self._check(m, expected_type, n_channels, channel_labels)
        except Exception:
            self.close()
            raise
        self.dtype = np.dtype(_NUMERIC_FORMATS[m.channel_format])
        self.sfreq_hz = m.sfreq_hz
        cap = chunk_capacity or max(1024, int(math.ceil(0.5 * m.sfreq_hz)))
        self.chunk_capacity = int(cap)
        self._buf = np.zeros((self.chunk_capacity, m.n_channels), dtype=self.dtype, order="C")
        if not (self._buf.flags.c_contiguous and self._buf.flags.writeable):  # pragma: no cover
            raise MepkitError("internal: the pull buffer must be writable and C-contiguous")
        self._as_numpy = _has_kw(self.inlet.pull_chunk, "as_numpy")
        self._min_samples = _has_kw(self.inlet.pull_chunk, "min_samples")
        self._period_s = 1.0 / m.sfreq_hz
        self.outage_after_s = float(outage_after_s)
        self.last_timestamp_s: float | None = None
        self.first_timestamp_s: float | None = None
        self.last_receive_local_s: float | None = None
        self.n_samples = 0
        self.n_outages = 0
        self.lost = False
        self._lost_since_local: float | None = None

    @staticmethod
    def _check(m: StreamMeta, expected_type, n_channels, channel_labels) -> None:
        if m.channel_format not in _NUMERIC_FORMATS:
            raise StreamFormatError(
                f"stream {m.describe()} has channel format {m.channel_format}; an EMG stream "
                f"must be numeric ({', '.join(_NUMERIC_FORMATS)})"
                + (" — is this the marker stream?" if m.channel_format == "string" else ""))
        if not m.sfreq_hz > 0:
            raise StreamFormatError(
                f"stream {m.describe()} has an irregular rate; an EMG stream needs a nominal "
                f"sampling rate (is this a marker stream?)")
        if expected_type is not None and m.type.strip().lower() != str(expected_type).lower():
            raise StreamFormatError(
                f"stream {m.describe()} has type {m.type!r}, not {expected_type!r}; if it "
                f"really carries EMG, say so with emg_type={m.type!r} (--emg-type {m.type})")
        if n_channels is not None and m.n_channels != int(n_channels):
            raise StreamFormatError(
                f"stream {m.describe()} has {m.n_channels} channels, expected {n_channels}")
        if channel_labels:
            missing = [c for c in channel_labels if c not in m.channel_labels]
            if missing:
                raise StreamFormatError(
                    f"stream {m.describe()} has no channel(s) {missing}; its channels are "
                    f"{m.channel_labels}")

    @property
    def buffer(self) -> np.ndarray:
        """The preallocated pull buffer ``(chunk_capacity, n_channels)``."""
        return self._buf

    def pull(self, wait_s: float = 0.0, now_local_s: float | None = None
             ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Everything available: ``(samples view, raw timestamps, back)``.

        With ``wait_s == 0`` it never blocks. With ``wait_s > 0`` and nothing available,
        it waits inside liblsl up to ``wait_s`` for the first sample and returns as soon
        as one arrives (then drains the rest without waiting): a wake-up on data instead
        of a sleep-and-poll, for the lowest latency at the lowest CPU cost.

        ``samples`` is ``(n, n_channels)`` in the stream's dtype, a view of the buffer;
        ``timestamps`` are the raw stamps as received. ``back`` is True for the first
        samples after the stream was silent longer than ``outage_after_s`` (an outage:
        the gap it left is found by the clock model).
        """
        buf = self._buf
        if self._as_numpy:
            if wait_s > 0 and self._min_samples:
                _, ts = self.inlet.pull_chunk(timeout=wait_s, max_samples=self.chunk_capacity,
                                              dest_obj=buf, min_samples=1, as_numpy=True)
            else:
                _, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=self.chunk_capacity,
                                              dest_obj=buf, as_numpy=True)
            ts = np.asarray(ts, dtype=np.float64)
        else:  # pragma: no cover - pylsl < 1.17
            _, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=self.chunk_capacity,
                                          dest_obj=buf)
            ts = np.asarray(ts, dtype=np.float64)
            if ts.shape[0] == 0 and wait_s > 0:
                import time

                time.sleep(wait_s)
        n = ts.shape[0]
        data = buf[:n]
        now = self._pylsl.local_clock() if now_local_s is None else now_local_s
        if n == 0:
            if (self.last_receive_local_s is not None and not self.lost
                    and now - self.last_receive_local_s > self.outage_after_s):
                self.lost = True
                self._lost_since_local = self.last_receive_local_s
                logger.warning("EMG stream %r silent for %.1f s: outlet gone? Waiting for it "
                               "to come back (source_id %r)", self.meta.name,
                               now - self.last_receive_local_s, self.meta.source_id)
            return data, ts, False
        back = self.lost
        if back:
            self.n_outages += 1
            logger.warning("EMG stream %r is back after %.1f s", self.meta.name,
                           now - (self._lost_since_local or now))
            self.lost = False
            self._lost_since_local = None
        if self.first_timestamp_s is None:
            self.first_timestamp_s = float(ts[0])
        self.last_timestamp_s = float(ts[-1])
        self.last_receive_local_s = now
        self.n_samples += n
        return data, ts, back

    def lag_s(self, now_local_s: float | None = None) -> float:
        """Local time minus the newest sample's raw stamp (NaN before data)."""
        if self.last_timestamp_s is None:
            return math.nan
        now = self._pylsl.local_clock() if now_local_s is None else now_local_s
        return now - self.time_correction_s - self.last_timestamp_s

    def to_emg_clock(self, local_s: float) -> float:
        """A local ``pylsl.local_clock()`` time on the EMG clock."""
        return local_s - self.time_correction_s


# ---------------------------------------------------------------------------- markers
class MarkerInlet(_InletBase):
    """Non-blocking reader of an irregular-rate marker stream (strings; numbers accepted).

    Values come back as strings; with several channels the first one is the marker.
    """

    def __init__(self, info: Any, *, recover: bool = True, max_buflen: int = 360,
                 open_timeout_s: float = 5.0) -> None:
        super().__init__(info, max_buflen=max_buflen, recover=recover,
                         open_timeout_s=open_timeout_s)
        m = self.meta
        if m.sfreq_hz > 0:
            self.close()
            raise StreamFormatError(
                f"marker stream {m.describe()} has a regular rate of {m.sfreq_hz:g} Hz; that is "
                f"a data stream, not markers (did you swap --emg and --markers?)")
        if m.channel_format not in ("string", "int32", "int16", "int8", "int64", "float32",
                                    "double64"):
            self.close()
            raise StreamFormatError(f"marker stream {m.describe()} has an unusable format "
                                    f"{m.channel_format}")
        self.n_markers = 0
        self._as_numpy = _has_kw(self.inlet.pull_chunk, "as_numpy")

    def pull(self, max_markers: int = 256) -> tuple[np.ndarray, list[str]]:
        """Markers available now: ``(timestamps on the marker clock, values)``.

        Values come from other programs: bytes that are not UTF-8 are decoded with
        replacement characters rather than failing (pylsl's own decoding would raise).
        """
        if self._as_numpy:
            values, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=max_markers,
                                               as_numpy=True)
        else:  # pragma: no cover - pylsl < 1.17
            values, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=max_markers)
        if len(ts) == 0:
            return np.empty(0), []
        out = [_marker_text(v[0] if len(v) else "") for v in values]
        self.n_markers += len(out)
        return np.asarray(ts, dtype=np.float64), out


def _marker_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            text = bytes(value).decode("utf-8", "replace")
            logger.warning("marker %r is not valid UTF-8; read with replacement characters",
                           text[:60])
            return text
    return str(value)
