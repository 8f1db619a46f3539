"""Batch reanalysis throughput of a long record (default: 1 hour, 16 channels, 5 kHz).

Writes a synthetic record (virtual-subject EMG with a pulse every ~5 s), then times, in
this run: h5py alone reading the raw data (the floor), `mepkit analyze` serially, and
with `--jobs 2` on two copies of the work (a local Dask cluster). Prints samples per
second and multiples of real time.

Floor: >= 300x real time on one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import print_table  # noqa: E402


def make_record(path: str, duration_s: float, n_channels: int, sfreq: float, seed: int = 0):
    from mepkit.records import RecordWriter
    from mepkit.sim.emg import EmgSynth

    rng = np.random.default_rng(seed)
    synth = EmgSynth(sfreq, n_channels, seed=seed)
    n_total = int(duration_s * sfreq)
    stim = np.cumsum(rng.uniform(4.0, 6.0, int(duration_s / 4) + 2))
    stim = stim[stim < duration_s - 1.0]
    t0 = 1000.0
    for s in stim:
        synth.add_pulse(int(round(s * sfreq)), rng.uniform(0, 3000, n_channels),
                        rng.normal(22, 1, n_channels))
    labels = [f"EMG{i + 1}" for i in range(n_channels)]
    with RecordWriter(path, overwrite=True, flush_interval_s=5.0) as w:
        w.add_stream("emg", channel_labels=labels, units="uV", nominal_srate_hz=sfreq)
        w.start()
        block = int(10 * sfreq)
        for a in range(0, n_total, block):
            n = min(block, n_total - a)
            x = synth.generate(n).astype(np.float32)
            w.append_samples("emg", x, t0 + (a + np.arange(n)) / sfreq)
        w.append_markers(t0 + stim, ['{"intensity": 60}'] * len(stim))
    return len(stim)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3600.0, help="seconds of EMG")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--sfreq", type=float, default=5000.0)
    ap.add_argument("--dir", default=None, help="where to write the record (default: temp)")
    ap.add_argument("--no-jobs", action="store_true", help="skip the --jobs 2 run")
    args = ap.parse_args(argv)

    from mepkit.batch import analyze_file, analyze_files
    from mepkit.records import open_record

    tmp = tempfile.TemporaryDirectory(dir=args.dir)
    path = os.path.join(tmp.name, "long.h5")
    t = time.perf_counter()
    n_pulses = make_record(path, args.duration, args.channels, args.sfreq)
    t_make = time.perf_counter() - t
    n_samples = int(args.duration * args.sfreq)
    size_gb = os.path.getsize(path) / 1e9
    print(f"record: {args.duration:g} s x {args.channels} ch at {args.sfreq:g} Hz, {n_pulses} "
          f"pulses, {size_gb:.2f} GB (written in {t_make:.1f} s)")

    def h5py_read() -> float:
        """h5py alone reads every raw sample (the same 1 s blocks as the replay)."""
        t = time.perf_counter()
        rec = open_record(path)
        stream = rec.streams["emg"]
        step = int(args.sfreq)
        for a in range(0, stream.n_samples, step):
            stream.read(a, a + step)
        rec.close()
        return time.perf_counter() - t

    h5py_read()  # warm the page cache, as for the analysis below
    t_h5 = min(h5py_read() for _ in range(2))

    analyze_file(path)  # warm-up (JIT cache, page cache)
    t = time.perf_counter()
    table = analyze_file(path)
    t_serial = time.perf_counter() - t
    rows = [["h5py read only", f"{t_h5:.2f}", f"{n_samples / t_h5 / 1e6:.1f}",
             f"{args.duration / t_h5:,.0f}x", "1.00"],
            ["mepkit analyze (serial, 1 core)", f"{t_serial:.2f}",
             f"{n_samples / t_serial / 1e6:.1f}", f"{args.duration / t_serial:,.0f}x",
             f"{t_serial / t_h5:.2f}"]]
    t_cluster = None
    if not args.no_jobs:
        from distributed import LocalCluster

        t = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster:
            t_cluster = time.perf_counter() - t
            analyze_files([path, path], scheduler=cluster.scheduler_address)  # warm workers
            t = time.perf_counter()
            res = analyze_files([path, path], scheduler=cluster.scheduler_address)
            t_jobs = time.perf_counter() - t
        assert all(r.error is None for r in res), [r.error for r in res]
        rows.append(["mepkit analyze --jobs 2 (2 files)", f"{t_jobs:.2f}",
                     f"{2 * n_samples / t_jobs / 1e6:.1f}",
                     f"{2 * args.duration / t_jobs:,.0f}x", f"{t_jobs / t_h5 / 2:.2f}"])
    print(f"trials measured: {table['trial'].nunique()} x {args.channels} channels\n")
    print_table(["run", "wall s", "Msamples/s", "real time", "time / h5py"], rows)
    if t_cluster is not None:
        print(f"(starting the 2-process local Dask cluster took {t_cluster:.1f} s, not included)")
    rt = args.duration / t_serial
    print(f"\nfloor >= 300x real time on one core: {'ok' if rt >= 300 else 'BELOW FLOOR'} "
          f"({rt:,.0f}x)")
    tmp.cleanup()
    return 0 if rt >= 300 else 1


if __name__ == "__main__":
    sys.exit(main())
