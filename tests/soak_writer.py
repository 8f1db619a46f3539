"""A record writer fed a deterministic stream, for fault-injection tests and soak runs.

``python tests/soak_writer.py PATH [--channels 16] [--srate 5000] [--chunk 50]
[--trial-every 0.2] [--duration S] [--signals]``

Appends ``chunk``-sample blocks at real-time pace; every value is a function of the
sample index (`expected_samples`), and a trial row, a marker and a protocol step every
``trial_every`` seconds of data (`expected_trial`). After each append it prints a line
``S <n_samples> <n_trials> <monotonic time>`` to stdout (flushed), so a test that kills it
knows what was appended when. ``READY <t0>`` is printed once the record is in SWMR mode.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

#: Timestamp of sample 0 (LSL clock, s) and values' period, so they stay exact in float32.
T0 = 1000.0
_PERIOD = 1 << 20


def expected_samples(start: int, stop: int, n_channels: int) -> np.ndarray:
    """Values of samples ``start..stop`` as stored (µV, float32): never 0, all exact."""
    i = np.arange(start, stop, dtype=np.int64)[:, None]
    c = np.arange(n_channels, dtype=np.int64)[None, :]
    return (((i * n_channels + c) % _PERIOD) + 1).astype(np.float32)


def expected_timestamps(start: int, stop: int, srate: float) -> np.ndarray:
    return T0 + np.arange(start, stop, dtype=np.float64) / srate


def expected_trial(k: int, n_channels: int) -> dict:
    """Trial row ``k`` (one per trial; channel cycles through the channels)."""
    return {
        "file": "soak",
        "trial": k,
        "channel": f"ch{k % n_channels:02d}",
        "stim_time_s": T0 + 0.2 * k,
        "label": "é" * (k % 5) + f"t{k}",
        "intensity_pct_mso": 30.0 + k % 50,
        "x_mm": float(k % 7),
        "y_mm": -float(k % 11),
        "site": f"s{k % 3}",
        "hemisphere": "left" if k % 2 else "right",
        "condition": "",
        "amplitude_uv": 1.5 * k,
        "latency_ms": 20.0 + (k % 10) * 0.1,
        "area_uv_ms": float(k) / 3.0,
        "background_rms_uv": 5.0,
        "peak_time_ms": 25.0,
        "detected": k % 2 == 0,
        "rejected": k % 7 == 0,
        "reject_reason": "background" if k % 7 == 0 else "",
        "available_s": T0 + 0.2 * k + 0.06,
        "last_sample_s": T0 + 0.2 * k + 0.05,
    }


def main(argv: list[str] | None = None) -> int:
    from mepkit.params import Params
    from mepkit.records.writer import RecordWriter

    ap = argparse.ArgumentParser(prog="soak_writer.py")
    ap.add_argument("path")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--srate", type=float, default=5000.0)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--trial-every", type=float, default=0.2)
    ap.add_argument("--duration", type=float, default=None, help="stop and close after S")
    ap.add_argument("--flush-interval", type=float, default=0.5)
    ap.add_argument("--signals", action="store_true", help="close cleanly on SIGINT/SIGTERM")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)

    ch = a.channels
    w = RecordWriter(a.path, overwrite=a.overwrite, flush_interval_s=a.flush_interval,
                     subject={"identifier": "SOAK"}, params=Params(),
                     trial_columns={"available_s": "float64", "last_sample_s": "float64"},
                     marker_stream="soak-markers", handle_signals=a.signals)
    w.add_stream("emg", channel_labels=[f"ch{c:02d}" for c in range(ch)], units="uV",
                 nominal_srate_hz=a.srate, source_id="soak")
    w.start()
    trial_step = int(round(a.trial_every * a.srate))
    out = sys.stdout
    t_start = time.monotonic()
    out.write(f"READY {t_start!r}\n")
    out.flush()
    n = 0
    k = 0
    try:
        while a.duration is None or n < a.duration * a.srate:
            due = t_start + (n + a.chunk) / a.srate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            w.append_samples("emg", expected_samples(n, n + a.chunk, ch),
                             expected_timestamps(n, n + a.chunk, a.srate))
            n += a.chunk
            while (k + 1) * trial_step <= n:
                row = expected_trial(k, ch)
                w.append_trials([row])
                w.append_markers([row["stim_time_s"]], [f"stim {k}"])
                w.append_protocol_step({"k": k, "intensity": row["intensity_pct_mso"]},
                                       time_s=row["stim_time_s"])
                k += 1
            out.write(f"S {n} {k} {time.monotonic()!r}\n")
            out.flush()
    finally:
        w.close()
        out.write("CLOSED\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
