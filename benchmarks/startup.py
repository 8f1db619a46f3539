"""Start-up of ``mepkit record``: from starting the command to its first stored sample.

An EMG outlet (plain pylsl, 8 channels at 5 kHz, 2 ms chunks) and a marker outlet push from
before the command starts, as an amplifier app would. For each run this script starts
``mepkit record`` and reports, on the LSL clock (one clock: everything runs here):

* **first sample**: the timestamp of the record's first stored sample minus the moment the
  command was started (the time until mepkit receives data);
* **visible**: when a reader first sees a sample in the record file (adds the flush interval);
* **import**: the same command's ``python -X importtime`` total, for the module cost alone.

Usage::

    python benchmarks/startup.py            # 5 runs (the kernels' cache is warm: make kernels)
    python benchmarks/startup.py --runs 10
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np


def _outlets(stop: threading.Event, name: str, sid: str) -> threading.Thread:
    import pylsl

    info = pylsl.StreamInfo(name, "EMG", 8, 5000.0, pylsl.cf_float32, sid)
    chans = info.desc().append_child("channels")
    for i in range(8):
        c = chans.append_child("channel")
        c.append_child_value("label", f"EMG{i + 1}")
        c.append_child_value("unit", "microvolts")
    out = pylsl.StreamOutlet(info)
    mout = pylsl.StreamOutlet(pylsl.StreamInfo(name + "-m", "Markers", 1, 0.0,
                                               pylsl.cf_string, sid + "-m"))

    def push() -> None:
        rng = np.random.default_rng(0)
        t0 = pylsl.local_clock()
        n = 0
        while not stop.is_set():
            due = int((pylsl.local_clock() - t0) * 5000.0)
            if due > n:
                out.push_chunk(rng.normal(0, 5, (due - n, 8)).astype(np.float32),
                               t0 + (n + np.arange(due - n)) / 5000.0)
                n = due
            time.sleep(0.002)

    th = threading.Thread(target=push, daemon=True)
    th.outlets = (out, mout)  # kept alive as long as the thread object
    th.start()
    return th


def one_run(name: str, sid: str, tmp: str, k: int) -> tuple[float, float]:
    import pylsl

    from mepkit.records import open_record

    path = os.path.join(tmp, f"s{k}.h5")
    cmd = [sys.executable, "-m", "mepkit_cli.main", "record", "--emg", name, "--markers",
           name + "-m", "--source-id", sid, "--marker-source-id", sid + "-m", "-o", path,
           "--quiet"]
    t_start = pylsl.local_clock()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    visible = float("nan")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(path):
            try:
                with open_record(path) as rec:
                    if any(s.n_samples for s in rec.streams.values()):
                        visible = pylsl.local_clock() - t_start
                        break
            except Exception:  # noqa: BLE001 - being created
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise SystemExit(f"mepkit record failed: {err[-2000:]}")
    with open_record(path) as rec:
        first = float(next(iter(rec.streams.values())).timestamps[0]) - t_start
    return first, visible


def import_time() -> float:
    res = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import mepkit_cli.main, mepkit_cli.record, mepkit.live"],
                         capture_output=True, text=True)
    selfs = [line.split("|")[0].split(":")[1].strip() for line in res.stderr.splitlines()
             if line.startswith("import time:")]
    return sum(int(v) for v in selfs if v.isdigit()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    sid = f"startup-{uuid.uuid4().hex[:10]}"
    name = f"startup-{sid[-6:]}"
    stop = threading.Event()
    th = _outlets(stop, name, sid)
    time.sleep(1.0)
    firsts, visibles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.runs):
            f, v = one_run(name, sid, tmp, k)
            firsts.append(f)
            visibles.append(v)
            print(f"run {k + 1}: first sample {f:.2f} s, visible in the file {v:.2f} s",
                  flush=True)
    stop.set()
    th.join(2)
    print(f"mepkit record start-up over {a.runs} runs: first sample median "
          f"{np.median(firsts):.2f} s (max {max(firsts):.2f} s), visible median "
          f"{np.median(visibles):.2f} s; imports of the command alone "
          f"{import_time():.2f} s (python -X importtime)")


if __name__ == "__main__":
    main()
