"""Live latency: from pushing the sample that completes a trial's window to its result.

Three processes per configuration, all on this machine (so one LSL clock):

* an **outlet** (plain pylsl, EMG from `mepkit.sim.emg.EmgSynth` in 1 ms chunks paced in
  real time, one JSON marker per pulse) that pushes like amplifier apps do, **without time
  stamps** (liblsl stamps each chunk at the push, so mepkit times the samples on its
  fitted clock; ``--ideal-stamps`` gives every sample its true time instead), and logs,
  for every pulse, ``pylsl.local_clock()`` right after pushing the chunk holding the
  sample that completes the response window;
* **mepkit** (``mepkit record``, writing its HDF5 record) whose trials carry ``available_s``,
  the local clock (on the EMG clock) when the measurement was done; its CPU load comes
  from its summary (process CPU time / wall time after start-up);
* a **floor** process: a bare pylsl inlet that blocks in ``pull_chunk`` and logs when each
  sample arrives — the LSL transport latency alone.

Sample ``i`` is taken at ``t0 + i / srate`` (its true time) and pushed as soon as the
clock reaches the true time of its chunk's last sample; markers carry true times.

Usage::

    python benchmarks/latency.py            # >= 500 pulses per configuration (~3 min)
    python benchmarks/latency.py --quick    # 60 pulses each
    python benchmarks/latency.py --pulses 1000 --config 16x5000
    python benchmarks/latency.py --quick --ideal-stamps   # outlets that stamp each sample
    python benchmarks/latency.py --view     # with the live view open in headless chromium

With ``--view``, ``mepkit record`` also serves its live page (``--view``) and a headless
chromium (Debian's ``chromium``) keeps the page open, polling it as an operator's tab would,
for the whole run; the table then says how many requests the view served.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Floor requirements for mepkit.
P99_LIMIT_MS = 2.0
CHUNK_MS = 1.0


#: Where each pulse falls between two samples (fraction of a sample period after the
#: sample the MEP is placed on): a stimulator is not locked to the amplifier's clock.
STIM_OFFSET = 0.5


def _last_needed(sfreq_hz: float) -> int:
    """Samples from the one before the stimulus to the last sample of its response window
    (the last at or before stimulus + the window's end)."""
    from mepkit.params import Params

    return int(math.floor(STIM_OFFSET + Params().post_ms * sfreq_hz / 1000.0 + 1e-9))


# ---------------------------------------------------------------------------- outlet role
def run_outlet(a: argparse.Namespace) -> int:
    import pylsl

    from mepkit.sim.emg import EmgSynth

    fs, nch = a.srate, a.channels
    info = pylsl.StreamInfo("BenchEMG", "EMG", nch, fs, pylsl.cf_float32, a.source_id)
    chans = info.desc().append_child("channels")
    for i in range(nch):
        c = chans.append_child("channel")
        c.append_child_value("label", f"EMG{i + 1}")
        c.append_child_value("unit", "microvolts")
    out = pylsl.StreamOutlet(info, chunk_size=0)
    mout = pylsl.StreamOutlet(pylsl.StreamInfo("BenchMarkers", "Markers", 1, 0.0,
                                               pylsl.cf_string, a.source_id + "-m"))
    deadline = time.monotonic() + 60
    while not (out.have_consumers() and mout.have_consumers()):
        if time.monotonic() > deadline:
            print("no consumers", file=sys.stderr)
            return 1
        time.sleep(0.01)
    time.sleep(1.5)  # all inlets subscribed, mepkit warmed up
    while not os.path.exists(a.go_file):  # the driver says go (with --view: the page is open)
        if time.monotonic() > deadline + 120:
            print("no go", file=sys.stderr)
            return 1
        time.sleep(0.05)
    rng = np.random.default_rng(a.seed)
    synth = EmgSynth(fs, nch, seed=a.seed)
    last_needed = _last_needed(fs)
    pulses, t = [], 0.5
    for _ in range(a.pulses):
        pulses.append(int(round(t * fs)))
        t += rng.uniform(*a.isi)
    n_total = int(round((t + 0.3) * fs))
    for s in pulses:
        synth.add_pulse(s, np.exp(rng.uniform(np.log(100), np.log(2000), nch)),
                        rng.uniform(19, 26, nch))
    complete = {s + last_needed: s for s in pulses}
    chunk = max(1, int(round(CHUNK_MS * fs / 1000.0)))
    log = []
    pulse_at = set(pulses)
    t0 = pylsl.local_clock() + 0.01
    n = 0
    while n < n_total:
        m = min(chunk, n_total - n)
        target = t0 + (n + m - 1) / fs  # true time of the chunk's last sample
        while True:
            left = target - pylsl.local_clock()
            if left <= 0:
                break
            time.sleep(left if left < 0.0003 else left - 0.0002)
        x = synth.generate(m).astype(np.float32)
        true = t0 + (n + np.arange(m)) / fs
        if a.ideal_stamps:
            out.push_chunk(x, true)
        else:
            out.push_chunk(x)  # no stamp: liblsl stamps the chunk now, as amplifier apps do
        pushed = pylsl.local_clock()
        for i in range(n, n + m):
            if i in pulse_at:
                mout.push_sample([json.dumps({"intensity": 60.0})],
                                 float(true[i - n]) + STIM_OFFSET / fs)
            if i in complete:
                s = complete[i]
                log.append({"stim_ts": t0 + (s + STIM_OFFSET) / fs, "complete_index": i,
                            "pushed": pushed})
        n += m
    with open(a.log, "w", encoding="utf-8") as f:
        json.dump(log, f)
    print("done", flush=True)
    time.sleep(30)
    return 0


# ---------------------------------------------------------------------------- floor role
def run_floor(a: argparse.Namespace) -> int:
    import pylsl

    info = pylsl.resolve_byprop("source_id", a.source_id, 1, 10.0)[0]
    inlet = pylsl.StreamInlet(info, max_buflen=10)
    inlet.open_stream(timeout=5)
    cap = 4096
    buf = np.zeros((cap, info.channel_count()), dtype=np.float32)
    counts, times = [], []
    total = 0
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop:
        # block for the first sample (liblsl waits on a condition variable), then drain
        _, ts = inlet.pull_chunk(timeout=0.2, max_samples=1, dest_obj=buf, as_numpy=True)
        if len(ts) == 0:
            continue
        now = pylsl.local_clock()
        _, more = inlet.pull_chunk(timeout=0.0, max_samples=cap, dest_obj=buf, as_numpy=True)
        total += len(ts) + len(more)
        counts.append(total)  # samples received so far (the outlet's first is index 0)
        times.append(now)
    np.savez(a.log, count=np.asarray(counts), t=np.asarray(times))
    return 0


# ---------------------------------------------------------------------------- driver
def _percentiles(x: np.ndarray) -> list[str]:
    if x.size == 0:
        return ["-"] * 4
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return [f"{p50:.2f}", f"{p95:.2f}", f"{p99:.2f}", f"{x.max():.2f}"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open_browser(url: str, tmp: Path, timeout_s: float = 60.0) -> subprocess.Popen:
    """Headless chromium showing ``url`` (once mepkit serves it), left open."""
    import shutil
    import urllib.request

    exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("--view needs Debian's chromium (apt-get install chromium)")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the live view at {url} did not answer") from None
            time.sleep(0.2)
    profile = tmp / f"chromium-{uuid.uuid4().hex[:6]}"
    return subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--no-first-run",
                             "--disable-extensions", "--disable-background-networking",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}",
                             "--window-size=1400,1500", url],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _wait_for_page(port: int, n_requests: int = 5, timeout_s: float = 90.0) -> None:
    """Until the page polls the view steadily (``n_requests`` served), then one second."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state?since=0",
                                    timeout=5) as r:
            served = json.load(r)["status"].get("view_requests", 0)
        if served >= n_requests + 1:  # + this request
            time.sleep(1.0)
            return
        time.sleep(0.25)
    raise RuntimeError("the browser did not poll the live view")


def run_config(channels: int, srate: float, pulses: int, isi: tuple[float, float],
               tmp: Path, view: bool = False, ideal_stamps: bool = False) -> dict:
    py = sys.executable
    sid = f"bench-{uuid.uuid4().hex[:10]}"
    out_log, floor_log, rec = tmp / f"{sid}-out.json", tmp / f"{sid}-floor.npz", tmp / f"{sid}.h5"
    go = tmp / f"{sid}.go"
    if not view:
        go.touch()
    me = [py, str(Path(__file__).resolve())]
    env = dict(os.environ)
    quiet = {"stderr": subprocess.DEVNULL}
    outlet = subprocess.Popen(me + ["_outlet", "--source-id", sid, "--channels", str(channels),
                                    "--srate", str(srate), "--pulses", str(pulses),
                                    "--isi", str(isi[0]), str(isi[1]), "--log", str(out_log),
                                    "--go-file", str(go)]
                              + (["--ideal-stamps"] if ideal_stamps else []),
                              stdout=subprocess.PIPE, text=True, env=env, **quiet)
    floor = subprocess.Popen(me + ["_floor", "--source-id", sid, "--log", str(floor_log)],
                             env=env, **quiet)
    port = _free_port() if view else 0
    view_args = ["--view", "--view-port", str(port)] if view else []
    mep = subprocess.Popen([py, "-m", "mepkit_cli.main", "record", "--source-id", sid,
                            "--marker-source-id", sid + "-m", "-o", str(rec), "--quiet",
                            "--overwrite", *view_args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
    browser = None
    try:
        if view:
            browser = _open_browser(f"http://127.0.0.1:{port}/", tmp)
            _wait_for_page(port)  # an operator opens the page before stimulating
            go.touch()
        line = outlet.stdout.readline()  # "done" when every pulse was pushed
        if line.strip() != "done":
            raise RuntimeError(f"outlet failed (exit {outlet.poll()})")
        time.sleep(1.0)
        mep.send_signal(signal.SIGINT)
        floor.send_signal(signal.SIGINT)
        m_out, m_err = mep.communicate(timeout=60)
        floor.wait(timeout=30)
    finally:
        for p in (outlet, floor, mep, browser):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    if mep.returncode != 0:
        raise RuntimeError(f"mepkit record failed ({mep.returncode}):\n{m_err[-2000:]}")
    cpu = math.nan
    for ln in m_out.splitlines():
        if ln.startswith("cpu load"):
            cpu = float(ln.split()[2])
    view_requests = None
    for ln in m_err.splitlines():
        if ln.startswith("live view:") and "requests served" in ln:
            view_requests = int(ln.split(",")[1].split()[0])
    log = json.load(open(out_log, encoding="utf-8"))
    from mepkit.records import open_record

    with open_record(rec) as r:
        t = r.trials
        trials = t.drop_duplicates("trial")[["stim_time_s", "available_s", "reject_reason"]]
        ready = r.events[r.events["kind"] == "measuring"]["time_s"].to_numpy()
    # pulses whose window completed while mepkit was still loading its kernels (it records
    # from its first second, measures once they are loaded): start-up, not live latency
    ready_s = float(ready[0]) if len(ready) else -math.inf
    early = [e for e in log if e["pushed"] < ready_s]
    log = [e for e in log if e["pushed"] >= ready_s]
    stim = trials["stim_time_s"].to_numpy(dtype=float)
    order = np.argsort(stim)
    stim, avail = stim[order], trials["available_s"].to_numpy(dtype=float)[order]
    reason = trials["reject_reason"].to_numpy()[order]
    fl = np.load(floor_log)
    lat, floor_lat, missed, false_gap = [], [], 0, 0
    for e in log:
        # markers are mapped onto the EMG clock with time corrections (µs on one machine)
        k = int(np.searchsorted(stim, e["stim_ts"]))
        near = [j for j in (k - 1, k) if 0 <= j < stim.size
                and abs(stim[j] - e["stim_ts"]) < 1e-3]
        if not near or reason[near[0]] == "invalid" or not math.isfinite(avail[near[0]]):
            missed += 1
        else:
            false_gap += reason[near[0]] == "gap"  # no sample is ever lost here
            lat.append(avail[near[0]] - e["pushed"])
        # the first pull that brought the completing sample
        k = int(np.searchsorted(fl["count"], e["complete_index"] + 1, side="left"))
        if k < len(fl["count"]):
            floor_lat.append(fl["t"][k] - e["pushed"])
    for p in (out_log, floor_log, rec):
        try:
            os.remove(p)
        except OSError:
            pass
    if early:
        print(f"  {len(early)} pulse(s) before mepkit was measuring (start-up) left out")
    return {"config": f"{channels} ch x {srate / 1000:g} kHz", "pulses": len(log),
            "missed": missed, "gap": int(false_gap), "cpu_pct": cpu,
            "view_requests": view_requests, "latency_ms": np.asarray(lat) * 1e3,
            "floor_ms": np.asarray(floor_lat) * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="role")
    o = sub.add_parser("_outlet")
    o.add_argument("--source-id", required=True)
    o.add_argument("--channels", type=int, required=True)
    o.add_argument("--srate", type=float, required=True)
    o.add_argument("--pulses", type=int, required=True)
    o.add_argument("--isi", type=float, nargs=2, required=True)
    o.add_argument("--log", required=True)
    o.add_argument("--go-file", required=True)
    o.add_argument("--seed", type=int, default=3)
    o.add_argument("--ideal-stamps", action="store_true")
    f = sub.add_parser("_floor")
    f.add_argument("--source-id", required=True)
    f.add_argument("--log", required=True)
    ap.add_argument("--pulses", type=int, default=500, help="pulses per configuration")
    ap.add_argument("--quick", action="store_true", help="60 pulses per configuration")
    ap.add_argument("--isi", type=float, nargs=2, default=(0.15, 0.21), metavar=("MIN", "MAX"))
    ap.add_argument("--view", action="store_true",
                    help="mepkit record serves its live view, open in headless chromium")
    ap.add_argument("--ideal-stamps", action="store_true",
                    help="outlets stamp every sample with its true time (default: they push "
                         "without stamps, as amplifier apps do)")
    ap.add_argument("--config", action="append", metavar="CHxHZ",
                    help="channels x rate, e.g. 16x5000 (default: 16x5000 and 64x20000)")
    a = ap.parse_args(argv)
    if a.role == "_outlet":
        return run_outlet(a)
    if a.role == "_floor":
        return run_floor(a)
    pulses = 60 if a.quick else a.pulses
    configs = a.config or ["16x5000", "64x20000"]
    results = []
    with tempfile.TemporaryDirectory(prefix="mepkit-bench-") as tmp:
        for c in configs:
            ch, hz = c.lower().split("x")
            print(f"running {ch} channels x {float(hz) / 1000:g} kHz, {pulses} pulses ...",
                  file=sys.stderr, flush=True)
            results.append(run_config(int(ch), float(hz), pulses, tuple(a.isi), Path(tmp),
                                      view=a.view, ideal_stamps=a.ideal_stamps))
    sys.path.insert(0, str(HERE))
    from _util import print_table

    rows = []
    ok = True
    for r in results:
        lat, fl = r["latency_ms"], r["floor_ms"]
        who = "mepkit record" if r["view_requests"] is None else (
            f"mepkit record + view ({r['view_requests']} requests)")
        rows.append([r["config"], who, r["pulses"], r["missed"], r["gap"], *_percentiles(lat),
                     f"{r['cpu_pct']:.1f}"])
        rows.append([r["config"], "bare pylsl inlet", r["pulses"], r["pulses"] - fl.size, "-",
                     *_percentiles(fl), "-"])
        p99 = np.percentile(lat, 99) if lat.size else math.inf
        ok &= r["missed"] == 0 and r["gap"] == 0 and p99 <= P99_LIMIT_MS
    kind = "every sample stamped" if a.ideal_stamps else "chunks stamped by liblsl at the push"
    print(f"\nlatency from pushing the sample that completes the window (ms); outlets: {kind}\n")
    print_table(["config", "consumer", "pulses", "missed", "gap", "p50", "p95", "p99", "max",
                 "cpu %"], rows)
    print(f"\nrequirement for mepkit: p99 <= {P99_LIMIT_MS:g} ms, no missed pulses, no trial "
          f"rejected for a gap: "
          + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
