"""The live view's server and feed: a port in use, clients that never read, load, the hook.

Sessions run over real LSL loopback against the virtual subject (`SimulatedAmplifier`);
clients are real sockets on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("pylsl")

from mepkit.errors import UsageError  # noqa: E402
from mepkit.live import LiveSession  # noqa: E402
from mepkit.markers import StimInfo  # noqa: E402
from mepkit.params import Params  # noqa: E402
from mepkit.pipeline import Pipeline, Trial  # noqa: E402
from mepkit.sim.outlet import SimulatedAmplifier  # noqa: E402
from mepkit.view import LiveView  # noqa: E402
from mepkit.view.live import MAX_CLIENTS, decimate_trace  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _get(port, path, timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        conn.close()


class _Live:
    """A virtual subject, a session measuring it and a view of it."""

    def __init__(self, tmp_path, **view_kw):
        sid = f"vs-{uuid.uuid4().hex[:10]}"
        self.amp = SimulatedAmplifier(sfreq_hz=5000.0, name=sid, source_id=sid, seed=4)
        self.session = LiveSession(emg=sid, markers=self.amp.marker_name, source_id=sid,
                                   marker_source_id=self.amp.marker_source_id,
                                   record_path=tmp_path / "s.h5")
        self.view = LiveView(self.session, port=0, **view_kw).start()
        self.session.start()
        self.trials: list[Trial] = []

    def pulses(self, n, every_s=0.2):
        """Fire ``n`` pulses; each trial must come within 2 s of its pulse."""
        for k in range(n):
            self.amp.fire(55.0 + k % 20, x_mm=float(k % 3) * 10, y_mm=0.0)
            t = self.session.next_trial(timeout=2.0)
            assert t is not None, f"pulse {k}: no trial within 2 s"
            self.trials.append(t)
            time.sleep(every_s)

    def close(self):
        self.session.stop()
        self.view.stop()
        self.amp.stop()


@pytest.fixture
def live(tmp_path):
    lv = _Live(tmp_path)
    try:
        yield lv
    finally:
        lv.close()


# ------------------------------------------------------------------ port in use
def test_a_port_in_use_is_one_clear_line_before_anything_starts(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(UsageError) as err:
            LiveView(port=port).start()
        msg = str(err.value)
        assert "\n" not in msg and f"port {port}" in msg and "in use" in msg
        # the command line: the same line, exit status 2, no record created
        out = tmp_path / "never.h5"
        res = subprocess.run(
            [sys.executable, "-m", "mepkit_cli.main", "record", "--emg", "nothing-here",
             "--markers", "nothing-m", "-o", str(out), "--view", "--view-port", str(port),
             "--resolve-timeout", "0.5"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mepkit record: error: live view: port")
    assert "Traceback" not in res.stderr and not out.exists()
    # and a second view on the port of a running one
    with LiveView(port=0) as first:
        with pytest.raises(UsageError, match="in use"):
            LiveView(port=first.port).start()
        assert _get(first.port, "/")[0] == 200  # the first one still serves


def test_only_loopback_names_are_answered_on_loopback():
    """A page elsewhere whose name was rebound to 127.0.0.1 (DNS rebinding) gets nothing."""
    with LiveView(port=0) as view:
        for host, code in ((f"127.0.0.1:{view.port}", 200), (f"localhost:{view.port}", 200),
                           ("localhost", 200), (f"evil.example:{view.port}", 403),
                           ("", 403)):
            conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
            try:
                conn.putrequest("GET", "/api/state", skip_host=True)
                if host:
                    conn.putheader("Host", host)
                conn.endheaders()
                r = conn.getresponse()
                assert r.status == code, host
                if code == 200:
                    assert json.loads(r.read())["seq"] == 0
            finally:
                conn.close()


def test_bad_view_options_are_usage_errors():
    for kw in ({"port": 70000}, {"port": -1}, {"port": "http"}, {"host": ""},
               {"poll_ms": 0}, {"stall_lag_s": 0}):
        with pytest.raises(UsageError, match="live view"):
            LiveView(**kw)


# ------------------------------------------------------------------ slow clients
def test_clients_that_never_read_do_not_disturb_the_session(live):
    port = live.view.port
    live.pulses(3)
    hogs = []
    # a few connections that send nothing, and requests whose replies are never read
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", port))
        hogs.append(s)
    for _ in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /api/state?since=0&traces_since=0 HTTP/1.0\r\n\r\n")
        hogs.append(s)
    try:
        t0 = time.monotonic()
        live.pulses(8, every_s=0.15)  # every trial within 2 s of its pulse, meanwhile
        took = time.monotonic() - t0
        # a fresh client is served at once while the hogs hang on
        t1 = time.monotonic()
        status, _, body = _get(port, "/api/state?since=0", timeout=2.0)
        served_s = time.monotonic() - t1
        assert status == 200 and json.loads(body)["seq"] >= 3
        assert served_s < 3.0, f"a fresh client waited {served_s:.2f} s (stuck behind the others?)"
        # beyond MAX_CLIENTS connections are closed at once, not queued
        more = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CLIENTS + 4)]
        try:
            time.sleep(0.5)
            closed = 0
            for s in more:
                s.settimeout(0.2)
                try:
                    closed += s.recv(1) == b""
                except (TimeoutError, socket.timeout):
                    pass
                except ConnectionResetError:
                    closed += 1
            assert closed >= 4 and live.view.n_refused >= 4
        finally:
            for s in more:
                s.close()
    finally:
        for s in hogs:
            s.close()
    st = live.session.status
    assert st.running and st.trials == 11 and live.session.error is None
    assert took < 8 * (0.15 + 2.0)
    lat_ms = live.session.latencies_s * 1e3
    # (trials whose samples came while the kernels loaded are not counted as live)
    assert lat_ms.size >= 8 and np.all(np.isfinite(lat_ms))
    # the view took every trial; once the hogs are gone, it serves again
    deadline = time.monotonic() + 5
    while live.view.n_trials < 11 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.view.n_trials == 11 and live.view.n_dropped == 0
    assert _get(port, "/api/state?since=10")[0] == 200
    print(f"\nresult latency with stuck clients: median {np.median(lat_ms):.2f} ms, "
          f"max {lat_ms.max():.2f} ms over {lat_ms.size} trials")


# ------------------------------------------------------------------ load
def test_json_endpoints_under_load(live):
    port = live.view.port
    stop = threading.Event()
    results: list[dict] = []

    def client(k):
        since, tsince, seqs, times, n_bad = 0, 0, [], [], 0
        seen_trials: list[int] = []
        n = 0
        while not stop.is_set() and n < 3000:  # bounded in count and time
            n += 1
            t0 = time.perf_counter()
            try:
                status, ctype, body = _get(port, f"/api/state?since={since}&traces_since={tsince}")
            except OSError:
                n_bad += 1
                continue
            times.append(time.perf_counter() - t0)
            if status != 200 or ctype != "application/json":
                n_bad += 1
                continue
            d = json.loads(body)
            seqs.append(d["seq"])
            for t in d["trials"]:
                assert t["seq"] == since + 1, "trials must come in order, none left out"
                since = t["seq"]
                seen_trials.append(t["trial"])
            if d["traces"]:
                tsince = d["traces"][-1]["seq"]
        results.append({"seqs": seqs, "times": times, "bad": n_bad, "trials": seen_trials})

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(6)]
    for t in threads:
        t.start()
    try:
        live.pulses(12, every_s=0.15)
        time.sleep(0.5)  # the last trial reaches every client
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert len(results) == 6
    want = [t.index for t in live.trials]
    times = [x for r in results for x in r["times"]]
    for r in results:
        assert r["bad"] == 0
        assert r["seqs"] == sorted(r["seqs"])  # never goes back
        assert r["trials"] == want  # every trial, once, in order
    assert live.session.status.trials == 12 and live.session.error is None
    assert live.view.n_dropped == 0
    lat_ms = live.session.latencies_s * 1e3
    print(f"\n{len(times)} requests from 6 clients ({len(times) / sum(times) * 6:.0f}/s at most), "
          f"median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms; "
          f"result latency median {np.median(lat_ms):.2f} ms, max {lat_ms.max():.2f} ms")
    # other paths
    assert _get(port, "/nothing")[0] == 404
    assert _get(port, "/api/state?since=x")[0] == 400
    status, ctype, page = _get(port, "/")
    assert status == 200 and ctype.startswith("text/html")
    # self-contained: nothing loaded from elsewhere
    assert b"http://" not in page and b"https://" not in page and b"<link" not in page
    assert b"<script src" not in page


# ------------------------------------------------------------------ feed and pieces
def _trial(index, channels=("A", "B")):
    n = len(channels)
    return Trial(index, 1.0 + index, StimInfo(label="t"), tuple(channels), np.full(n, 100.0),
                 np.full(n, 21.0), np.full(n, 1.0), np.full(n, 3.0), np.full(n, 25.0),
                 np.ones(n, dtype=bool), ("",) * n)


def test_the_hook_keeps_the_callback_it_replaces_and_never_raises(tmp_path):
    seen = []
    session = LiveSession(emg="not-resolved", markers="not-resolved-m",
                          on_trial=seen.append)
    view = LiveView(session, port=0)
    # not started: no pipeline, no epoch; the trial still reaches the view and the callback
    session.on_trial(_trial(0))
    assert seen and seen[0].index == 0 and len(view._inbox) == 1
    view._channel_indices = None  # a broken view: the session must not notice
    session.on_trial(_trial(1, channels=("C",)))
    assert [t.index for t in seen] == [0, 1]
    # the callback's own errors still reach the session, as without a view
    session.on_trial = None
    view.attach(session)

    def boom(trial):
        raise RuntimeError("operator's callback")

    session.on_trial = None
    view.detach()
    session.on_trial = boom
    view.attach(session)
    with pytest.raises(RuntimeError, match="operator's callback"):
        session.on_trial(_trial(2))
    view.detach()
    assert session.on_trial is boom


def test_a_protocol_without_estimate_is_shown_as_such():
    from mepkit.protocols.mapping import make_hotspot_search

    search = make_hotspot_search(((-20, 20), (-20, 20)), intensity_pct_mso=55)
    view = LiveView(protocol=search, port=0)
    view.update_protocol()
    d = json.loads(view.state_json())
    assert d["protocol"]["estimate"] is None and "nothing observed" in d["protocol"]["note"]
    for x in (-10.0, 0.0, 10.0):
        search.observe(x, 0.0, 500.0 if x == 0 else 40.0)
    view.update_protocol()
    d = json.loads(view.state_json())
    est = search.estimate.as_dict()
    assert d["protocol"]["n_pulses"] == 3 and len(d["protocol"]["steps"]) == 3
    assert d["protocol"]["estimate"]["hotspot_mm"] == pytest.approx(est["hotspot_mm"])


def test_decimated_traces_keep_every_extreme():
    rng = np.random.default_rng(1)
    for n in (400, 501, 3100, 4001):
        x = rng.normal(size=(n, 2)).astype(np.float32)
        x[n // 3, 0] = 40.0  # a one-sample peak
        y = decimate_trace(x)
        assert y.shape[0] <= 500 and y.shape[1] == 2
        np.testing.assert_array_equal(y.max(axis=0), x.max(axis=0))
        np.testing.assert_array_equal(y.min(axis=0), x.min(axis=0))


def test_copy_epoch_is_the_raw_epoch_in_microvolts():
    fs = 5000.0
    p = Params()
    pipe = Pipeline(p, sfreq_hz=fs, channel_labels=["A", "B", "C"], scale_to_uv=1000.0)
    n = 20000
    x = np.random.default_rng(2).normal(size=(n, 3))
    ts = 100.0 + np.arange(n) / fs
    pipe.push(x, ts)
    stim_s = ts[15000] - 0.5 / fs
    t0_ms, ep = pipe.copy_epoch(stim_s, np.array([2, 0]), p.pre_ms, p.post_ms)
    lo = 15000 - math.ceil(p.pre_ms * fs / 1000)
    hi = 15000 + math.floor(p.post_ms * fs / 1000) + 1
    np.testing.assert_array_equal(ep, 1000.0 * x[lo:hi][:, [2, 0]])
    assert t0_ms == pytest.approx((ts[lo] - stim_s) * 1000)
    # gone from the buffer, or not yet there
    assert pipe.copy_epoch(ts[10], np.array([0]), p.pre_ms, p.post_ms) is None
    assert pipe.copy_epoch(ts[-1] + 1.0, np.array([0]), p.pre_ms, p.post_ms) is None
