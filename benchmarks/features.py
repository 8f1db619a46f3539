"""Per-trial features: ``mepkit.analyze_epochs`` vs a plain NumPy implementation.

Epochs like those exported by Signal/Nexstim/MATLAB pipelines (pulse at 0, 200 ms before,
100 ms after, 5 kHz): trials x channels measured per second by mepkit (numba kernel, the
whole table included) and by a vectorised NumPy/SciPy implementation of the same steps
(artifact line, pre-stimulus regression, low-pass, peak-to-peak, area, background, onset).
Both are checked to agree before timing. The reference's onset step runs the four onset
methods of ``tests/naive.py`` in plain Python per MEP (the kernel runs all four as well).
Onset walk-backs are sequential and do not vectorise, so that loop dominates the reference;
the table therefore also gives each ratio against the reference *without* onsets (mepkit
still measuring them): a lower bound of the speed-up.

Floor: >= 5x against the reference doing the same steps.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import naive  # noqa: E402  (the onset methods, plain NumPy)
from _util import print_table  # noqa: E402


def numpy_features(epochs, sfreq, tmin_ms, p, onsets=True):
    """The same measurement in plain vectorised NumPy/SciPy (reference); ``onsets=False``
    skips the per-MEP onset loop (latency_ms stays NaN)."""
    from scipy import signal

    n_all = epochs.shape[-1]
    dt = 1000.0 / sfreq
    t_all = tmin_ms + np.arange(n_all) * dt
    lo = int(np.flatnonzero(t_all >= p.background_window_ms[0] - 1e-9)[0])
    hi = int(np.flatnonzero(t_all <= p.response_window_ms[1] + 1e-9)[-1]) + 1
    x = np.array(epochs[..., lo:hi], dtype=np.float64)  # (tr, ch, s): the samples used
    t = t_all[lo:hi]
    n = x.shape[-1]
    bg = (t >= p.background_window_ms[0] - 1e-9) & (t < p.background_window_ms[1] - 1e-9)
    resp = (t >= p.response_window_ms[0] - 1e-9) & (t <= p.response_window_ms[1] + 1e-9)
    art = np.flatnonzero((t >= p.artifact_window_ms[0] - 1e-9) & (t <= p.artifact_window_ms[1] + 1e-9))
    finite = np.isfinite(x).all(axis=-1)
    left, right = art[0] - 1, art[-1] + 1
    w = (art - left) / (right - left)
    x[..., art] = x[..., [left]] * (1 - w) + x[..., [right]] * w
    cols = [np.ones(n), t * 1e-3]
    for k in range(1, p.line_harmonics + 1):
        cols += [np.cos(2 * np.pi * k * p.line_freq_hz * t * 1e-3),
                 np.sin(2 * np.pi * k * p.line_freq_hz * t * 1e-3)]
    design = np.stack(cols, axis=1)
    coef = np.linalg.pinv(design[bg]) @ np.moveaxis(x[..., bg], -1, -2)  # (tr, p, ch)
    x -= np.einsum("sp,tpc->tcs", design, coef)
    sos = signal.butter(2, p.lowpass_hz, fs=sfreq, output="sos")
    zi = signal.sosfilt_zi(sos)[:, None, None, :] * x[None, :, :, 0, None]  # (sec, tr, ch, 2)
    x, _ = signal.sosfilt(sos, x, axis=-1, zi=zi)
    r = x[..., resp]
    amp = r.max(-1) - r.min(-1)
    area = np.abs(r).sum(-1) * dt
    bgr = np.sqrt((x[..., bg] ** 2).mean(-1))
    pk = np.argmax(np.abs(r), axis=-1)
    detected = amp >= p.detection_threshold_uv
    lat = np.full(amp.shape, np.nan)
    r0 = int(np.flatnonzero(resp)[0])
    r1 = int(np.flatnonzero(resp)[-1]) + 1
    b0, b1 = int(np.flatnonzero(bg)[0]), int(np.flatnonzero(bg)[-1]) + 1
    for i, j in zip(*np.nonzero(detected)) if onsets else ():
        found, _ = naive.onset_rows(x[i, j], dt=dt, r0=r0, r1=r1, pk=r0 + int(pk[i, j]),
                                    a1=right, lo=0, b0=b0, b1=b1, bg=bgr[i, j], params=p)
        if found[p.onset_method] is not None:
            lat[i, j] = t[0] + found[p.onset_method] * dt
    amp[~finite] = np.nan
    return {"amplitude_uv": amp, "area_uv_ms": area, "background_rms_uv": bgr, "latency_ms": lat,
            "detected": detected}


def make_epochs(n_trials, n_channels, sfreq, tmin_s, tmax_s, seed=0):
    from mepkit.sim.emg import epochs_from_recording, synthesize_recording

    rng = np.random.default_rng(seed)
    stims = 0.5 + np.arange(n_trials) * 0.4
    amps = rng.uniform(0, 3000, (n_trials, n_channels))
    amps[rng.random((n_trials, n_channels)) < 0.3] = 0
    data, ts, _ = synthesize_recording(sfreq, n_channels, stims, amps, rng.normal(22, 1, (n_trials, n_channels)),
                                       duration_s=stims[-1] + 0.5, seed=seed)
    idx = np.round(stims * sfreq).astype(int)
    return epochs_from_recording(data, sfreq, idx, tmin_s, tmax_s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--sfreq", type=float, default=5000.0)
    args = ap.parse_args(argv)

    import mepkit
    from mepkit.params import Params

    p = Params(line_freq_hz=50.0)  # as the reference: no mains detection in the timing
    tmin_s, tmax_s = -0.2, 0.1
    ep = make_epochs(args.trials, args.channels, args.sfreq, tmin_s, tmax_s)
    n_meas = ep.shape[0] * ep.shape[1]

    # agree first (same features)
    table = mepkit.analyze_epochs(ep, args.sfreq, tmin_s, params=p)
    ref = numpy_features(ep, args.sfreq, tmin_s * 1000, p)
    for key in ("amplitude_uv", "area_uv_ms", "background_rms_uv", "latency_ms"):
        got = table[key].to_numpy().reshape(ref[key].shape)
        assert np.allclose(got, ref[key], rtol=1e-6, atol=1e-6, equal_nan=True), key
    assert np.array_equal(table["detected"].to_numpy().reshape(ref["detected"].shape), ref["detected"])

    def timeit(fn, rounds=5):
        best = math.inf
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    t_mep = timeit(lambda: mepkit.analyze_epochs(ep, args.sfreq, tmin_s, params=p))
    t_np = timeit(lambda: numpy_features(ep, args.sfreq, tmin_s * 1000, p))
    t_np0 = timeit(lambda: numpy_features(ep, args.sfreq, tmin_s * 1000, p, onsets=False))
    from mepkit.dsp.features import measure_epochs

    t_kernel = timeit(lambda: measure_epochs(ep, args.sfreq, p, tmin_s=tmin_s))
    import numba

    n_threads = numba.get_num_threads()
    numba.set_num_threads(1)
    t_one = timeit(lambda: mepkit.analyze_epochs(ep, args.sfreq, tmin_s, params=p))
    numba.set_num_threads(n_threads)
    rows = [
        [f"mepkit.analyze_epochs (table, {n_threads} threads)", f"{t_mep * 1e3:.1f}",
         f"{n_meas / t_mep:,.0f}", f"{t_np / t_mep:.1f}x", f"{t_np0 / t_mep:.1f}x"],
        ["mepkit.analyze_epochs (table, 1 thread)", f"{t_one * 1e3:.1f}",
         f"{n_meas / t_one:,.0f}", f"{t_np / t_one:.1f}x", f"{t_np0 / t_one:.1f}x"],
        ["mepkit kernel only", f"{t_kernel * 1e3:.1f}", f"{n_meas / t_kernel:,.0f}",
         f"{t_np / t_kernel:.1f}x", f"{t_np0 / t_kernel:.1f}x"],
        ["NumPy/SciPy reference", f"{t_np * 1e3:.1f}", f"{n_meas / t_np:,.0f}", "1.0x", "-"],
        ["NumPy/SciPy reference, no onsets", f"{t_np0 * 1e3:.1f}", f"{n_meas / t_np0:,.0f}",
         "-", "1.0x"],
    ]
    print(f"{args.trials} trials x {args.channels} channels, {ep.shape[-1]} samples each "
          f"({args.sfreq:g} Hz, {tmin_s * 1e3:g}..{tmax_s * 1e3:g} ms)")
    print_table(["implementation", "ms", "trials x channels / s", "vs reference",
                 "vs reference without onsets"], rows)
    ratio = t_np / t_mep
    print(f"\nfloor >= 5x against the reference doing the same steps: "
          f"{'ok' if ratio >= 5 else 'BELOW FLOOR'} ({ratio:.1f}x; against the reference "
          f"without onsets, a lower bound: {t_np0 / t_mep:.1f}x)")
    return 0 if ratio >= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
