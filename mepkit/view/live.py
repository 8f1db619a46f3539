"""`LiveView`: the live page of a session, served from a background thread.

Three kinds of thread take part, and only the first one matters for measurement:

* the session's **acquisition thread** calls the view's ``on_trial`` hook: it copies the
  target channels' raw epoch out of the Pipeline's ring buffer (a slice of a few hundred
  rows, microseconds) and appends ``(trial, epoch)`` to a bounded deque. It never
  blocks, takes no lock of the view, does no JSON or HTTP work, and cannot raise;
* the view's own **view thread** wakes every `TICK_S`: it drains the deque, decimates
  and encodes each new trial once (JSON, traces as base64 float32), takes the session's
  status and the protocol's estimate, and keeps everything as ready-made bytes;
* the **server threads** (``http.server.ThreadingHTTPServer``, one per connection, at
  most `MAX_CLIENTS`) join those bytes into responses. Sockets time out after
  `SOCKET_TIMEOUT_S`, so a tab that is closed, frozen or never reads only ties up its
  own thread for that long; errors are logged, never raised into the session.
"""

from __future__ import annotations

import base64
import collections
import errno
import json
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mepkit.errors import UsageError
from mepkit.view import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from mepkit.live import LiveSession
    from mepkit.pipeline import Trial

__all__ = ["LiveView", "DEFAULT_HOST", "DEFAULT_PORT"]

logger = logging.getLogger("mepkit.view")

#: Trials waiting between the acquisition thread and the view thread; beyond that the
#: oldest are dropped (counted in the status as ``view_dropped``), never waited for.
INBOX_TRIALS = 512
#: Trials whose numbers (amplitude, background, position...) the view keeps for the page.
HISTORY_TRIALS = 5000
#: Trials whose traces are kept: the latest one drawn over the ones before it.
TRACE_TRIALS = 12
#: Channels whose traces are shown when none are named.
MAX_TRACE_CHANNELS = 4
#: Points per trace sent to the page (min/max pairs when the epoch has more samples).
MAX_POINTS = 500
#: How often the view thread takes new trials and the session's status (seconds).
TICK_S = 0.1
#: How often the page asks for news (milliseconds).
POLL_MS = 500
#: No new EMG sample for this long (the session's ``lag_s``) shows the stream as stalled.
STALL_LAG_S = 0.5
#: Connections served at once; more are closed at once.
MAX_CLIENTS = 16
#: A client socket that neither sends nor reads for this long is closed (seconds).
SOCKET_TIMEOUT_S = 5.0
#: Trials in one response at most (the page asks again for the rest).
MAX_TRIALS_PER_RESPONSE = 2000
#: Protocol steps kept for the page.
MAX_STEPS = 5000


def _num(value: Any) -> Any:
    """A JSON-ready number: non-finite floats become None, numpy scalars Python ones."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


def _jsonable(obj: Any, depth: int = 0) -> Any:
    """Plain JSON data from estimates (dicts, lists, tuples, numpy arrays and numbers)."""
    if depth > 8:
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in obj]
    if obj is None or isinstance(obj, str):
        return obj
    v = _num(obj)
    return v if isinstance(v, (bool, int, float)) or v is None else str(v)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def decimate_trace(x: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """At most ``max_points`` points of ``x`` (n_samples, n_channels) keeping its extremes.

    Epochs with more samples are cut into ``max_points // 2`` bins and each bin gives its
    minimum and maximum, in the order they occur, so a peak of an MEP is never lost.
    """
    n, n_ch = x.shape
    if n <= max_points:
        return x
    k = math.ceil(n / max(1, max_points // 2))  # samples per bin
    bins = math.ceil(n / k)
    pad = bins * k - n
    xp = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
    r = xp.reshape(bins, k, n_ch)
    imin, imax = r.argmin(axis=1), r.argmax(axis=1)
    lo = np.take_along_axis(r, imin[:, None, :], axis=1)[:, 0]
    hi = np.take_along_axis(r, imax[:, None, :], axis=1)[:, 0]
    first_min = imin <= imax  # each pair in the order it occurs
    out = np.empty((2 * bins, n_ch), dtype=x.dtype)
    out[0::2] = np.where(first_min, lo, hi)
    out[1::2] = np.where(first_min, hi, lo)
    return out


class LiveView:
    """Serve a live page of a session: traces, amplitudes, background, estimate, map.

    Parameters
    ----------
    session : LiveSession, optional
        The session to show (its trials through ``on_trial``, its `status`). Can be
        given later with `attach`; the view may be started before the session.
    protocol : Protocol, optional
        A protocol whose estimate (threshold, hotspot, map) and steps are shown. The
        view thread reads them when ``protocol.steps`` grew; a runner may instead call
        `update_protocol` from its own thread after each step.
    channels : str or sequence of str, optional
        Channels whose traces are shown (default: the first `MAX_TRACE_CHANNELS`).
    host : str
        Interface to listen on. The default `DEFAULT_HOST` (127.0.0.1) is this machine
        only; anything else makes the page reachable from the network.
    port : int
        Port to listen on (0: a free one; see `url`).
    title : str
        Shown at the top of the page.
    poll_ms : int
        How often the page asks for news.
    stall_lag_s : float
        The page shows the stream as stalled when no sample came for this long.

    Raises
    ------
    mepkit.errors.UsageError
        From `start`, in one line, when the port is in use or the host cannot be used.

    Examples
    --------
    >>> from mepkit.live import LiveSession                              # doctest: +SKIP
    >>> from mepkit.view import LiveView
    >>> session = LiveSession(emg="VirtualEMG", markers="VirtualEMG-markers")
    >>> with LiveView(session, port=8765) as view, session:
    ...     print("open", view.url)
    ...     session.wait()
    """

    def __init__(self, session: "LiveSession | None" = None, *, protocol: Any = None,
                 channels: str | Sequence[str] | None = None, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, title: str = "mepkit live",
                 poll_ms: int = POLL_MS, stall_lag_s: float = STALL_LAG_S) -> None:
        if not isinstance(host, str) or not host:
            raise UsageError(f"live view: host must be an address such as 127.0.0.1, got {host!r}")
        try:
            port_i = int(port)
        except (TypeError, ValueError):
            raise UsageError(f"live view: port must be a number 0-65535, got {port!r}") from None
        if not 0 <= port_i <= 65535 or port_i != port:
            raise UsageError(f"live view: port must be a number 0-65535, got {port!r}")
        if not (isinstance(poll_ms, (int, float)) and 20 <= poll_ms <= 60000):
            raise UsageError(f"live view: poll_ms must be 20-60000 ms, got {poll_ms!r}")
        if not (isinstance(stall_lag_s, (int, float)) and stall_lag_s > 0):
            raise UsageError(f"live view: stall_lag_s must be > 0 s, got {stall_lag_s!r}")
        if isinstance(channels, str):
            channels = [channels]
        self.channels: list[str] | None = None if channels is None else [str(c) for c in channels]
        self.host = host
        self.port = port_i
        self.title = str(title)
        self.poll_ms = int(poll_ms)
        self.stall_lag_s = float(stall_lag_s)
        self.protocol = protocol

        # acquisition thread -> view thread (deque appends are atomic: no lock, no wait)
        self._inbox: collections.deque = collections.deque(maxlen=INBOX_TRIALS)
        self._n_fed = 0
        self._n_taken = 0
        self._feed_error: BaseException | None = None
        self._idx: np.ndarray | None = None
        self._idx_key: Any = None
        self._pre_ms, self._post_ms = 105.0, 50.0

        # view thread -> server threads (under _lock: references only)
        self._lock = threading.Lock()
        self._seq = 0
        self._trials: list[tuple[int, bytes]] = []
        self._traces: collections.deque = collections.deque(maxlen=TRACE_TRIALS)
        self._status = b"{}"
        self._config = b"{}"
        self._proto = b"null"
        self._proto_steps: list[dict[str, Any]] = []
        self._proto_history: list[dict[str, Any]] = []
        self._proto_n = -1
        self._proto_lock = threading.Lock()
        self._trace_channels: list[str] = []
        self._first_stim_s = math.nan
        self.n_requests = 0
        self.n_refused = 0
        self.n_client_errors = 0

        self._session: LiveSession | None = None
        self._prev_on_trial: Any = None
        self._hook: Any = None
        self._server: Any = None
        self._serve_thread: threading.Thread | None = None
        self._view_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._logged: set[str] = set()
        self._encode_config()
        if session is not None:
            self.attach(session)

    # ------------------------------------------------------------------ lifecycle
    def attach(self, session: "LiveSession") -> "LiveView":
        """Show ``session``: hook into its ``on_trial`` (keeping any callback it had)."""
        self.detach()
        self._session = session
        prev = session.on_trial
        feed = self._feed

        def on_trial(trial: "Trial") -> None:
            feed(trial)
            if prev is not None:
                prev(trial)

        self._prev_on_trial, self._hook = prev, on_trial
        params = getattr(session, "params", None)
        if params is not None:
            self._pre_ms, self._post_ms = float(params.pre_ms), float(params.post_ms)
        session.on_trial = on_trial
        self._encode_config()
        return self

    def detach(self) -> None:
        """Stop showing the session (its ``on_trial`` is given back)."""
        s = self._session
        if s is not None and s.on_trial is self._hook:
            s.on_trial = self._prev_on_trial
        self._session, self._hook, self._prev_on_trial = None, None, None

    def start(self) -> "LiveView":
        """Listen on `host`:`port` and start serving.

        Raises `UsageError` (one line) when the port is in use or the address cannot be
        used: call it before the session starts, so nothing was measured yet.
        """
        if self._server is not None:
            return self
        from mepkit.view._server import ViewServer

        try:
            self._server = ViewServer((self.host, self.port), self)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"live view: port {self.port} on {self.host} is in use (another mepkit "
                    f"view or program?); choose another port (--view-port)") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise UsageError(f"live view: not allowed to listen on port {self.port} "
                                 f"(ports below 1024 need privileges); choose another "
                                 f"port (--view-port)") from None
            raise UsageError(f"live view: cannot listen on {self.host}:{self.port}: "
                             f"{exc.strerror or exc}") from None
        self.port = int(self._server.server_address[1])
        self._stop.clear()
        self._view_thread = threading.Thread(target=self._run, name="mepkit-view", daemon=True)
        self._view_thread.start()
        self._serve_thread = threading.Thread(target=self._server.serve_forever,
                                              kwargs={"poll_interval": 0.25},
                                              name="mepkit-view-http", daemon=True)
        self._serve_thread.start()
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("the live view listens on %s: reachable from other machines",
                           self.host)
        return self

    def stop(self) -> None:
        """Take the last trials and status, stop serving, give the session's hook back."""
        if self._view_thread is not None:
            self._stop.set()
            self._view_thread.join(5.0)
            self._view_thread = None
        if self._server is not None:
            try:
                self._server.shutdown()
                self._server.server_close()
            except Exception as exc:  # noqa: BLE001 - closing: log, go on
                logger.warning("live view: error while closing the server: %s", exc)
            self._server = None
        if self._serve_thread is not None:
            self._serve_thread.join(2.0)
            self._serve_thread = None
        self.detach()

    close = stop

    def __enter__(self) -> "LiveView":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The page's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def n_trials(self) -> int:
        """Trials the view has taken in (and serves)."""
        return self._seq

    @property
    def n_dropped(self) -> int:
        """Trials dropped because the view thread fell behind (never waited for)."""
        return max(0, self._n_fed - self._n_taken - len(self._inbox))

    # ------------------------------------------------------------------ acquisition thread
    def _feed(self, trial: "Trial") -> None:
        """``on_trial`` hook, in the acquisition thread: copy the epoch, drop it in the deque."""
        try:
            epoch = None
            if self._idx_key is not trial.channels:
                self._idx = self._channel_indices(trial.channels)
                self._idx_key = trial.channels
            s = self._session
            pipe = s.pipeline if s is not None else None
            if pipe is not None and self._idx.size:
                epoch = pipe.copy_epoch(trial.stim_time_s, self._idx, self._pre_ms,
                                        self._post_ms)
            self._inbox.append((trial, epoch))
            self._n_fed += 1
        except Exception as exc:  # noqa: BLE001 - never into the session; logged by the view
            self._feed_error = exc

    def _channel_indices(self, channels: Sequence[str]) -> np.ndarray:
        if self.channels is None:
            return np.arange(min(len(channels), MAX_TRACE_CHANNELS), dtype=np.int64)
        return np.array([channels.index(c) for c in self.channels if c in channels],
                        dtype=np.int64)

    # ------------------------------------------------------------------ view thread
    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self._tick()
        self._tick()  # the last trials and the final status

    def _tick(self) -> None:
        try:
            self._take_trials()
        except Exception as exc:  # noqa: BLE001
            self._log_once("trials", "live view: could not show a trial: %s", exc)
        if self._feed_error is not None:
            exc, self._feed_error = self._feed_error, None
            self._log_once("feed", "live view: could not take a trial's epoch: %s", exc)
        if self.protocol is not None:
            try:
                n = len(self.protocol.steps)
            except Exception:  # noqa: BLE001
                n = self._proto_n
            if n != self._proto_n:
                self.update_protocol()
        try:
            status = _dumps(self._status_dict())
        except Exception as exc:  # noqa: BLE001
            self._log_once("status", "live view: could not read the session's status: %s", exc)
            status = _dumps({"state": "unknown", "error": str(exc)})
        with self._lock:
            self._status = status

    def _log_once(self, key: str, fmt: str, exc: BaseException) -> None:
        if key not in self._logged:
            self._logged.add(key)
            logger.warning(fmt, exc)
        else:
            logger.debug(fmt, exc)

    def _take_trials(self) -> None:
        inbox = self._inbox
        new_trials: list[tuple[int, bytes]] = []
        new_traces: list[tuple[int, bytes]] = []
        seq = self._seq
        while inbox:
            trial, epoch = inbox.popleft()
            self._n_taken += 1
            seq += 1
            if not self._trace_channels and self._idx is not None:
                self._trace_channels = [trial.channels[i] for i in self._idx.tolist()]
                self._encode_config(trial.channels)
            new_trials.append((seq, _dumps(self._trial_dict(seq, trial))))
            if epoch is not None:
                new_traces.append((seq, _dumps(self._trace_dict(seq, trial, epoch))))
        if not new_trials:
            return
        with self._lock:
            self._trials.extend(new_trials)
            if len(self._trials) > HISTORY_TRIALS + HISTORY_TRIALS // 4:
                del self._trials[:len(self._trials) - HISTORY_TRIALS]
            self._traces.extend(new_traces)
            self._seq = seq

    def _trial_dict(self, seq: int, t: "Trial") -> dict[str, Any]:
        if not math.isfinite(self._first_stim_s) and math.isfinite(t.stim_time_s):
            self._first_stim_s = t.stim_time_s
        s = t.stim
        f = lambda a: [_num(v) for v in np.asarray(a, dtype=np.float64).tolist()]  # noqa: E731
        return {"seq": seq, "trial": int(t.index), "time_s": _num(t.stim_time_s - self._first_stim_s),
                "intensity_pct_mso": _num(s.intensity_pct_mso), "x_mm": _num(s.x_mm),
                "y_mm": _num(s.y_mm), "site": s.site, "hemisphere": s.hemisphere,
                "condition": s.condition, "label": s.label,
                "amplitude_uv": f(t.amplitude_uv), "latency_ms": f(t.latency_ms),
                "background_rms_uv": f(t.background_rms_uv),
                "detected": [bool(v) for v in np.asarray(t.detected).tolist()],
                "reject_reason": list(t.reject_reason)}

    def _trace_dict(self, seq: int, t: "Trial", epoch: tuple[float, np.ndarray]) -> dict[str, Any]:
        t0_ms, x = epoch
        dt_ms = 1000.0 / self._session.pipeline.sfreq_hz if self._session is not None and \
            self._session.pipeline is not None else 0.2
        n = x.shape[0]
        times = t0_ms + dt_ms * np.arange(n)
        # baseline: the mean before the stimulus artifact (raw EMG may carry an offset)
        params = getattr(self._session, "params", None)
        art0 = params.artifact_window_ms[0] if params is not None else -1.0
        before = times < art0
        y = x - (x[before].mean(axis=0) if before.any() else 0.0)
        y = decimate_trace(np.asarray(y, dtype=np.float32))
        return {"seq": seq, "trial": int(t.index), "t0_ms": float(times[0]),
                "t1_ms": float(times[-1]),
                "traces": [base64.b64encode(np.ascontiguousarray(y[:, c]).astype("<f4")
                                            .tobytes()).decode("ascii")
                           for c in range(y.shape[1])]}

    def _status_dict(self) -> dict[str, Any]:
        s = self._session
        out: dict[str, Any] = {"view_trials": self._seq, "view_dropped": self.n_dropped,
                               "view_requests": self.n_requests, "time": time.time()}
        if s is None:
            out["state"] = "no session"
            return out
        st = s.status
        started = math.isfinite(getattr(s, "started_local_s", math.nan))
        lag = st.lag_s
        if st.error:
            state = "error"
        elif not st.running:
            state = "stopped" if started else "waiting"
        elif st.stream_lost:
            state = "lost"
        elif not math.isfinite(lag):
            state = "waiting"
        elif lag > self.stall_lag_s:
            state = "stalled"
        else:
            state = "running"
        out.update({"state": state, "samples": st.samples, "drops": st.drops, "gaps": st.gaps,
                    "outages": st.outages, "lag_ms": _num(lag * 1e3), "markers": st.markers,
                    "trials": st.trials, "detected": st.detected, "rejected": st.rejected,
                    "error": st.error})
        return out

    def _encode_config(self, all_channels: Sequence[str] | None = None) -> None:
        s = self._session
        params = getattr(s, "params", None)
        if params is None:
            from mepkit.params import Params

            params = Params()
        if all_channels is None and s is not None and getattr(s, "pipeline", None) is not None:
            all_channels = s.pipeline.channels
        cfg = {"title": self.title, "poll_ms": self.poll_ms, "stall_lag_s": self.stall_lag_s,
               "trace_channels": list(self._trace_channels),
               "channels": list(all_channels or ()),
               "window_ms": [-self._pre_ms, self._post_ms],
               "response_window_ms": list(params.response_window_ms),
               "background_window_ms": list(params.background_window_ms),
               "artifact_window_ms": list(params.artifact_window_ms),
               "detection_threshold_uv": params.detection_threshold_uv,
               "background_limit_uv": params.background_limit_uv,
               "record": getattr(s, "record_path", None)}
        data = _dumps(_jsonable(cfg))
        with self._lock:
            self._config = data

    # ------------------------------------------------------------------ protocol
    def update_protocol(self, protocol: Any = None) -> None:
        """Take the protocol's estimate and new steps now (any thread; never raises).

        ``protocol`` replaces the one shown. A runner can call this after each step (for
        example from ``on_step``) so the estimate is computed in its thread.
        """
        try:
            with self._proto_lock:  # the view thread and a runner may both ask
                self._update_protocol(protocol)
        except Exception as exc:  # noqa: BLE001
            self._log_once("protocol", "live view: could not read the protocol: %s", exc)

    def _update_protocol(self, protocol: Any) -> None:
        if protocol is not None and protocol is not self.protocol:
            self.protocol = protocol
            self._proto_steps, self._proto_history, self._proto_n = [], [], -1
        p = self.protocol
        if p is None:
            return
        steps = list(p.steps)
        for step in steps[len(self._proto_steps):]:
            stim = getattr(step, "stimulus", None)
            self._proto_steps.append(_jsonable({
                "step": getattr(step, "index", len(self._proto_steps)),
                "intensity_pct_mso": getattr(stim, "intensity_pct_mso", None),
                "x_mm": getattr(stim, "x_mm", None), "y_mm": getattr(stim, "y_mm", None),
                "amplitude_uv": getattr(step, "amplitude_uv", None),
                "counted": getattr(step, "counted", True),
                "rejected": getattr(step, "rejected", False)}))
        del self._proto_steps[:-MAX_STEPS]
        try:
            est = p.estimate
            est = est.as_dict() if hasattr(est, "as_dict") else est
            est = _jsonable(est) if isinstance(est, dict) else {"value": _jsonable(est)}
            note = None
        except Exception as exc:  # noqa: BLE001 - no estimate yet (nothing observed)
            est, note = None, " ".join(str(exc).split())
        if est is not None and "threshold_pct_mso" in est:
            self._proto_history.append({k: est.get(k) for k in (
                "threshold_pct_mso", "ci_low_pct_mso", "ci_high_pct_mso")} | {"n": len(steps)})
            del self._proto_history[:-MAX_STEPS]
        try:
            done = bool(p.done)
        except Exception:  # noqa: BLE001
            done = False
        data = _dumps({"name": str(getattr(p, "name", type(p).__name__)), "done": done,
                       "n_pulses": len(steps), "estimate": est, "note": note,
                       "steps": self._proto_steps, "history": self._proto_history})
        self._proto_n = len(steps)
        with self._lock:
            self._proto = data

    # ------------------------------------------------------------------ server threads
    def state_json(self, since: int = 0, traces_since: int = 0) -> bytes:
        """The page's news: status, config, protocol, trials after ``since``, recent traces."""
        with self._lock:
            seq, status, config, proto = self._seq, self._status, self._config, self._proto
            trials = self._trials
            first = trials[0][0] if trials else seq + 1
            i = max(0, since + 1 - first)
            part = trials[i:i + MAX_TRIALS_PER_RESPONSE]
            more = i + len(part) < len(trials)
            traces = [b for s, b in self._traces if s > traces_since]
        return b"".join([
            b'{"seq":', str(seq).encode(), b',"more":', b"true" if more else b"false",
            b',"status":', status, b',"config":', config, b',"protocol":', proto,
            b',"trials":[', b",".join(b for _, b in part), b'],"traces":[',
            b",".join(traces), b"]}"])
