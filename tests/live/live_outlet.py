"""A plain pylsl EMG + marker outlet fed by `mepkit.sim.emg.EmgSynth`, for the live tests.

Run as a script (its own process, so tests can kill and restart it)::

    python live_outlet.py --source-id ID --truth truth.jsonl [options]

It waits for a consumer on each outlet, then pushes EMG in real time (chunks of
``--chunk-ms``) with pulses every ``--isi`` seconds, and one JSON marker per pulse
(optionally ``--marker-delay`` seconds late). Like most amplifier apps it pushes the
chunks without time stamps (liblsl stamps each at the push); ``--ideal-stamps`` gives
every sample its true time ``t0 + n / srate`` instead. Ground truth goes to ``--truth`` as JSON
lines: one ``{"pulse": ...}`` line per pulse (written when its marker is pushed) and a
final ``{"done": ...}`` line with the number of samples pushed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


#: Markers no program should send, each of which once stopped a live session or could: a
#: number beyond float range, one beyond Python's integer digit limit, nesting deeper than
#: the recursion limit, invalid JSON, a lone surrogate, bytes that are not UTF-8, a NUL, a
#: very long text, an infinite intensity.
BAD_MARKERS: list = [
    '{"intensity": ' + "9" * 400 + "}",
    '{"intensity": ' + "9" * 5000 + "}",
    '{"x":' + "[" * 1015,
    '{"intensity": 50',
    '{"label": "coil \\ud800"}',
    b'\xff\xfe{"intensity": 50}',
    "pulse\x00 with a NUL",
    "x" * 100_000,
    '{"intensity": 1e999, "site": "M1"}',
]


#: µV in one unit of the pushed samples (the synthesiser makes µV).
UV_PER_UNIT = {"microvolts": 1.0, "uV": 1.0, "mV": 1e3, "V": 1e6}


def amplitude_mix(rng: np.random.Generator, n_channels: int) -> np.ndarray:
    """Per-channel MEP amplitudes: absent, small (< 25 µV) or clear (100-3000 µV)."""
    kind = rng.choice(3, size=n_channels, p=[0.25, 0.2, 0.55])
    small = rng.uniform(8.0, 20.0, n_channels)
    big = np.exp(rng.uniform(np.log(150.0), np.log(3000.0), n_channels))
    return np.where(kind == 0, 0.0, np.where(kind == 1, small, big))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", default="TestEMG")
    p.add_argument("--type", default="EMG")
    p.add_argument("--source-id", required=True)
    p.add_argument("--markers-name", default="TestMarkers")
    p.add_argument("--no-markers", action="store_true")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--srate", type=float, default=5000.0)
    p.add_argument("--format", default="float32", choices=["float32", "double64", "string"])
    p.add_argument("--unit", default="microvolts")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of pushing")
    p.add_argument("--linger", type=float, default=60.0, help="stay alive this long after")
    p.add_argument("--isi", type=float, nargs=2, default=(0.2, 0.3))
    p.add_argument("--first-pulse", type=float, default=0.4)
    p.add_argument("--chunk-ms", type=float, default=2.0)
    p.add_argument("--ideal-stamps", action="store_true",
                   help="stamp every sample with its true time (default: no stamps, as "
                        "amplifier apps push; liblsl stamps each chunk at the push)")
    p.add_argument("--marker-delay", type=float, default=0.0)
    p.add_argument("--extra-key", action="store_true", help="add an unknown key to markers")
    p.add_argument("--bad-markers", action="store_true",
                   help="send the BAD_MARKERS in turn instead of JSON markers")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--truth", default=None)
    p.add_argument("--wait-consumers", type=float, default=20.0)
    args = p.parse_args(argv)

    import pylsl

    from mepkit.sim.emg import EmgSynth

    fs, nch = args.srate, args.channels
    labels = [f"EMG{i + 1}" for i in range(nch)]
    fmt = {"float32": pylsl.cf_float32, "double64": pylsl.cf_double64,
           "string": pylsl.cf_string}[args.format]
    info = pylsl.StreamInfo(args.name, args.type, nch, fs, fmt, args.source_id)
    chans = info.desc().append_child("channels")
    for lab in labels:
        c = chans.append_child("channel")
        c.append_child_value("label", lab)
        c.append_child_value("unit", args.unit)
        c.append_child_value("type", "EMG")
    out = pylsl.StreamOutlet(info, chunk_size=0)
    mout = None
    if not args.no_markers:
        minfo = pylsl.StreamInfo(args.markers_name, "Markers", 1, 0.0, pylsl.cf_string,
                                 args.source_id + "-markers")
        mout = pylsl.StreamOutlet(minfo)
    truth = open(args.truth, "a", encoding="utf-8") if args.truth else None

    def log(obj) -> None:
        if truth is not None:
            truth.write(json.dumps(obj) + "\n")
            truth.flush()

    deadline = time.monotonic() + args.wait_consumers
    while time.monotonic() < deadline:
        if out.have_consumers() and (mout is None or mout.have_consumers()):
            break
        time.sleep(0.01)
    time.sleep(0.2)  # let the inlets finish subscribing

    rng = np.random.default_rng(args.seed)
    synth = EmgSynth(fs, nch, seed=args.seed)
    n_total = int(round(args.duration * fs))
    pulses = []
    t = args.first_pulse
    while t < args.duration - 0.15:
        pulses.append(int(round(t * fs)))
        t += rng.uniform(*args.isi)
    info_by_sample = {}
    for k, s in enumerate(pulses):
        amp = amplitude_mix(rng, nch)
        lat = rng.uniform(19.0, 26.0, nch)
        synth.add_pulse(s, amp, lat)
        info_by_sample[s] = (k, amp, lat, float(rng.uniform(30, 90)))
    chunk = max(1, int(round(args.chunk_ms * fs / 1000.0)))
    t0 = pylsl.local_clock()
    log({"start": {"t0": t0, "srate": fs, "channels": labels}})
    marker_queue: list[tuple[float, float, str]] = []  # (push at local time, ts, text)
    n = 0
    next_pulse = 0
    while n < n_total:
        now = pylsl.local_clock()
        due = min(n_total, int((now - t0) * fs) + 1)
        while n < due:
            m = min(chunk, due - n)
            x = synth.generate(m)
            ts = t0 + (n + np.arange(m)) / fs
            stamp = ts.tolist() if args.ideal_stamps else 0.0
            if args.format == "string":
                out.push_chunk([[f"{v:.3f}" for v in row] for row in x], stamp)
            else:
                out.push_chunk(np.ascontiguousarray(x / UV_PER_UNIT[args.unit], dtype=np.float32
                                                    if args.format == "float32" else np.float64),
                               stamp)
            while next_pulse < len(pulses) and pulses[next_pulse] < n + m:
                s = pulses[next_pulse]
                k, amp, lat, inten = info_by_sample[s]
                stim_ts = t0 + s / fs
                marker = {"intensity": round(inten, 1), "site": "hotspot"}
                if args.extra_key:
                    marker["coil_temp_c"] = 31.5
                text = BAD_MARKERS[k % len(BAD_MARKERS)] if args.bad_markers else json.dumps(marker)
                marker_queue.append((pylsl.local_clock() + args.marker_delay, stim_ts, text))
                log({"pulse": k, "time_s": stim_ts, "sample": s, "intensity": round(inten, 1),
                     "amplitude_uv": amp.tolist(), "latency_ms": lat.tolist()})
                next_pulse += 1
            n += m
        if mout is not None:
            now = pylsl.local_clock()
            while marker_queue and marker_queue[0][0] <= now:
                _, stim_ts, text = marker_queue.pop(0)
                mout.push_sample([text], stim_ts)
        time.sleep(0.0005)
    while marker_queue and mout is not None:
        if marker_queue[0][0] <= pylsl.local_clock():
            _, stim_ts, text = marker_queue.pop(0)
            mout.push_sample([text], stim_ts)
        time.sleep(0.001)
    log({"done": {"samples": n, "first_ts": t0, "last_ts": t0 + (n - 1) / fs,
                  "pulses": len(pulses)}})
    print("done", flush=True)
    time.sleep(args.linger)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------------------- test helpers
def new_source_id(prefix: str = "mepkit-test") -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def start_outlet(truth_path, source_id: str, *args: str, name: str = "TestEMG",
                 markers_name: str = "TestMarkers"):
    """Start this script in a child process; returns the Popen."""
    import subprocess
    from pathlib import Path

    cmd = [sys.executable, str(Path(__file__).resolve()), "--source-id", source_id,
           "--truth", str(truth_path), "--name", name, "--markers-name", markers_name, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def read_truth(path) -> tuple[dict, list[dict], dict | None]:
    """(start, pulses, done) from a truth file (done is None while still pushing)."""
    start, pulses, done = {}, [], None
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        return start, pulses, done
    for line in lines:
        if not line.strip():
            continue
        obj = json.loads(line)
        if "start" in obj:
            start = obj["start"]
        elif "pulse" in obj:
            pulses.append(obj)
        elif "done" in obj:
            done = obj["done"]
    return start, pulses, done


def wait_until(pred, timeout_s: float, what: str, step_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def stop_process(p) -> None:
    if p is not None and p.poll() is None:
        p.kill()
        p.wait(10)
