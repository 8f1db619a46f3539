"""Onset methods, amplitudes and mains detection on real MEP recordings.

No public MEP recording with reference (manually marked) onsets under an open licence was
found (docs/methods.md, "Real recordings"). On real recordings without reference onsets this
script reports, for every ``Params.onset_method`` measured with the default parameters
otherwise: the detected, kept MEPs that get an onset, the share flagged ``onset_ambiguous``,
the spread between the four methods' onsets, and each onset against a visual-start proxy
(below): median and 90th percentile of |onset - proxy|, the median signed difference and the
share more than 2 ms before the proxy. It also checks every amplitude against a plain NumPy
peak-to-peak of the same response, and the mains decision against an independent spectrum.

Visual-start proxy (:func:`visual_start_ms`): where the trace leaves its preceding course
for the MEP, found by a broken-stick fit that is none of mepkit's methods. On the response
cleaned here in NumPy (offset, slope and mains harmonics fitted over the background window,
extrapolated), the *anchor* is the first sample of the response window at a fraction of its
largest |deviation|, not counting an excursion already under way at the window's start (an
artifact tail); over the 6 ms before the anchor (not before the window's start or that
excursion's end) a line, then the line plus a parabola from tau, is fitted by least squares
for every tau; the best tau is the proxy. Two anchors bracket the visual start:

* 30 % of the peak: on the synthetic MEPs of ``benchmarks/onsets.py`` (true onsets known,
  printed first) 0.1 ms early in the median and never more than 1 ms late; but real MEPs
  often begin with a slow, small phase (a few hundred µV over 2-4 ms before the steep
  deflection), and there it marks the start of the steep part: late;
* 10 % of the peak: reaches back into that slow first phase, but on synthetic MEPs it is
  more than 2 ms early in 11-14 % (slow deviations and noise before small MEPs).

The share of onsets more than 2 ms before the proxy is therefore an upper bound with the
30 % anchor and close to a lower bound with the 10 % anchor.

Data
----
* committed: ``tests/data/real-meps/dimep_examples.npy`` -- five real EMG traces at 1 kHz
  around a TMS pulse, in a contracted muscle (MIT, from tool-dimep; see the README there);
* local only: the single-pulse input-output recordings (``*INPUTOUTPUT*.mat``, Biopac,
  EMG in mV, its samples held 4x to the 10 kHz of the trigger channel: 2.5 kHz real) of the
  public repository ``marianamourao-37/TMS-EMG-Project``, folder ``TMS-EMG Data``. It has no
  licence: its data may not be redistributed, so mepkit does not keep them. Give the folder
  with ``--mourao-dir DIR`` (or ``MEPKIT_MOURAO_DIR``); without it that part is skipped.

Usage::

    python benchmarks/onsets_real.py
    python benchmarks/onsets_real.py --mourao-dir "/path/to/TMS-EMG-Project/TMS-EMG Data"
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DIMEP = ROOT / "tests" / "data" / "real-meps" / "dimep_examples.npy"
EARLY_MS = 2.0
#: A MEP at least this large is "clear" (its start stands out of any artifact tail).
CLEAR_UV = 500.0
#: Anchor fractions of the proxy: 30 % (tight on synthetic MEPs, late on real MEPs that
#: begin with a slow small phase) and 10 % (catches that phase, early on noise).
PROXY_FRACS = (0.3, 0.1)
PROXY_SPAN_MS = 6.0
EPS_MS = 1e-6


# -- the independent NumPy side ------------------------------------------------------------

def clean_numpy(x, t_ms, line_hz, *, background_ms=(-105.0, -5.0), harmonics=3):
    """Offset, slope and mains harmonics fitted over the background window, subtracted."""
    x = np.asarray(x, dtype=np.float64)
    sel = (t_ms >= background_ms[0] - EPS_MS) & (t_ms < background_ms[1] - EPS_MS)
    ts = t_ms * 1e-3
    cols = [np.ones_like(ts), ts]
    if line_hz:
        sfreq = 1000.0 / (t_ms[1] - t_ms[0])
        for h in range(1, harmonics + 1):
            if h * line_hz < 0.45 * sfreq:
                cols += [np.cos(2 * np.pi * h * line_hz * ts), np.sin(2 * np.pi * h * line_hz * ts)]
    design = np.stack(cols, axis=1)
    coef, *_ = np.linalg.lstsq(design[sel], x[sel], rcond=None)
    return x - design @ coef


def peak_to_peak_uv(y, t_ms, window_ms=(15.0, 50.0)):
    sel = (t_ms >= window_ms[0] - EPS_MS) & (t_ms <= window_ms[1] + EPS_MS)
    return float(np.ptp(y[sel]))


def visual_start_ms(y, t_ms, window_ms=(15.0, 50.0), *, frac=PROXY_FRACS[0],
                    span_ms=PROXY_SPAN_MS):
    """The broken-stick visual-start proxy of a cleaned response (see the module docstring);
    NaN when the response has no excursion that starts inside the window."""
    resp = np.flatnonzero((t_ms >= window_ms[0] - EPS_MS) & (t_ms <= window_ms[1] + EPS_MS))
    mag = np.abs(y[resp])
    above = mag >= frac * mag.max()
    first = 0
    if above[0]:  # an excursion under way at the window's start: skip it
        if above.all():
            return float("nan")
        first = int(np.argmin(above))
    hits = np.flatnonzero(above[first:])
    if hits.size == 0:
        return float("nan")
    anchor = resp[first + hits[0]]
    dt = t_ms[1] - t_ms[0]
    seg = np.arange(max(resp[first], anchor - int(round(span_ms / dt))), anchor + 1)
    if seg.size < 6:
        return float("nan")
    ts, ys = t_ms[seg], y[seg]
    best, tau_best = np.inf, float("nan")
    for i in range(2, seg.size - 2):
        tau = ts[i]
        design = np.stack([np.ones_like(ts), ts - tau, np.maximum(0.0, ts - tau) ** 2], axis=1)
        coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
        r = ys - design @ coef
        if r @ r < best:
            best, tau_best = float(r @ r), float(tau)
    return tau_best


def spectrum_line_ratio(x, sfreq_hz, f0, *, harmonics=3, seg_s=1.0, max_segments=60):
    """Independent mains check: averaged Hann periodogram of 1 s segments; the power of the
    lines (f0 and harmonics below 0.45 x the rate, strongest bin within +-1 Hz) over the
    median power 3-6 Hz away on both sides."""
    x = np.asarray(x, dtype=np.float64)
    n = int(round(seg_s * sfreq_hz))
    starts = list(range(0, x.size - n + 1, n))[:max_segments]
    if not starts:
        return float("nan")
    win = np.hanning(n)
    psd = np.zeros(n // 2 + 1)
    for a in starts:
        s = x[a:a + n] - np.polyval(np.polyfit(np.arange(n), x[a:a + n], 1), np.arange(n))
        psd += np.abs(np.fft.rfft(s * win)) ** 2
    f = np.fft.rfftfreq(n, 1.0 / sfreq_hz)
    line = side = 0.0
    for h in range(1, harmonics + 1):
        fh = h * f0
        if fh >= 0.45 * sfreq_hz:
            break
        line += psd[np.abs(f - fh) <= 1.0].max()
        side += np.median(psd[(np.abs(f - fh) >= 3.0) & (np.abs(f - fh) <= 6.0)])
    return float(line / side) if side > 0 else float("inf")


# -- measuring ------------------------------------------------------------------------------

def measure_all_methods(epochs_uv, sfreq_hz, tmin_s, params=None):
    """{method: feature dict (n_trials,)} for every onset method, one channel."""
    from mepkit.dsp.features import measure_epochs
    from mepkit.params import ONSET_METHODS, Params

    p = params or Params()
    out = {}
    for m in ONSET_METHODS:
        r = measure_epochs(np.asarray(epochs_uv)[:, None, :], sfreq_hz, p.replace(onset_method=m),
                           tmin_s=tmin_s)
        out[m] = {k: v[:, 0] for k, v in r.items()}
    return out


def _fmt(v, spec=".2f"):
    return "-" if not np.isfinite(v) else format(v, spec)


def onset_table(res, proxies, sel, title):
    """One row per method: onsets found, their median, the share flagged, and the difference
    to each proxy (``proxies``: {fraction: array})."""
    from mepkit.params import ONSET_METHODS

    lat = np.stack([res[m]["latency_ms"] for m in ONSET_METHODS], axis=1)
    rows = []
    for i, m in enumerate(ONSET_METHODS):
        found = sel & np.isfinite(lat[:, i])
        amb = res[m]["onset_ambiguous"][sel]
        row = [m, f"{found.sum()}/{sel.sum()}", _fmt(np.median(lat[found, i]) if found.any() else np.nan),
               f"{100 * np.mean(amb) if amb.size else 0:.1f}"]
        for frac, proxy in proxies.items():
            d = lat[found, i] - proxy[found]
            d = d[np.isfinite(d)]
            row += [d.size, _fmt(np.median(np.abs(d)) if d.size else np.nan),
                    _fmt(np.percentile(np.abs(d), 90) if d.size else np.nan),
                    _fmt(np.median(d) if d.size else np.nan, "+.2f"),
                    _fmt(100 * np.mean(d < -EARLY_MS) if d.size else np.nan, ".1f")]
        rows.append(row)
    headers = ["method", "onsets", "median ms", "% flagged"]
    for frac in proxies:
        p = f"{100 * frac:g}%"
        headers += [f"n({p})", f"med|d| {p}", f"p90|d| {p}", f"med d {p}", f">{EARLY_MS:g}ms early {p}"]
    print(title)
    print_table(headers, rows)
    if sel.any():
        with warnings.catch_warnings():  # a MEP no method found an onset for: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            spread = np.nanmax(lat[sel], axis=1) - np.nanmin(lat[sel], axis=1)
        spread = spread[np.isfinite(spread)]
        print(f"spread between the methods' onsets: median {np.median(spread):.2f} ms, "
              f"p90 {np.percentile(spread, 90):.2f} ms ({spread.size} MEPs)")


def report_epochs(name, epochs_uv, sfreq_hz, tmin_s, line_hz, params=None):
    """Onsets of every method, the proxies and the amplitude twin on one set of real epochs.
    Every detected MEP counts, rejected or not (rejected trials keep their numbers)."""
    from mepkit.params import Params

    p = params or Params()
    tmin_s = np.broadcast_to(np.asarray(tmin_s, dtype=np.float64), (len(epochs_uv),))
    res = measure_all_methods(epochs_uv, sfreq_hz, tmin_s, p)
    d = res[p.onset_method]
    det = d["detected"]
    proxies = {f: np.full(len(epochs_uv), np.nan) for f in PROXY_FRACS}
    twin = np.full(len(epochs_uv), np.nan)
    for k in range(len(epochs_uv)):
        t = tmin_s[k] * 1000.0 + np.arange(epochs_uv.shape[1]) * 1000.0 / sfreq_hz
        y = clean_numpy(epochs_uv[k], t, line_hz, background_ms=p.background_window_ms)
        twin[k] = peak_to_peak_uv(y, t, p.response_window_ms)
        if det[k]:
            for f in PROXY_FRACS:
                proxies[f][k] = visual_start_ms(y, t, p.response_window_ms, frac=f)
    amp = d["amplitude_uv"]
    rel = np.abs(amp / twin - 1.0)
    reasons = np.bincount(d["reject_code"], minlength=6)
    print(f"\n== {name}: {len(epochs_uv)} epochs at {sfreq_hz:g} Hz, mains {line_hz} Hz, "
          f"response window {p.response_window_ms} ms; detected {int(det.sum())}; reject codes "
          f"(0 kept, 1 invalid, 2 gap, 3 clipped, 4 background) {reasons[:5].tolist()}")
    print(f"amplitude vs the NumPy peak-to-peak of the same cleaned response: median "
          f"|rel diff| {np.nanmedian(rel):.1e}, max {np.nanmax(rel):.1e}")
    tail = det & ~np.isfinite(proxies[PROXY_FRACS[0]])
    print(f"detected MEPs whose largest excursion in the window is one under way at its start "
          f"(an artifact tail; no proxy): {int(tail.sum())} of {int(det.sum())}")
    onset_table(res, proxies, det, "detected MEPs (onset - proxy = d):")
    onset_table(res, proxies, det & ~d["onset_ambiguous"],
                f"detected MEPs whose {p.onset_method!r} onset is not flagged:")
    clear = det & (amp >= CLEAR_UV)
    if clear.any():
        onset_table(res, proxies, clear, f"clear MEPs (>= {CLEAR_UV:g} µV):")
    return res, proxies


def proxy_on_synthetic(n_epochs=400, seed=11):
    """The proxy's own error where the truth is known (the synthetic MEPs of onsets.py)."""
    from mepkit.sim.emg import synthesize_onset_epochs

    rows = []
    for sfreq in (2500.0, 5000.0):
        d = synthesize_onset_epochs(sfreq, n_epochs, seed=seed, line_freq_hz=50.0)
        ep = d["epochs"][:, 0]
        t = d["t0_ms"] + np.arange(ep.shape[1]) * 1000.0 / sfreq
        ys = [clean_numpy(ep[k], t, 50.0) for k in range(len(ep))]
        for f in PROXY_FRACS:
            e = np.array([visual_start_ms(ys[k], t, frac=f) - d["onset_ms"][k]
                          for k in range(len(ep))])
            ok = np.isfinite(e)
            e = e[ok]
            rows.append([f"{sfreq:g}", f"{100 * f:g}%", f"{ok.sum()}/{len(ok)}",
                         f"{np.median(np.abs(e)):.2f}", f"{np.percentile(np.abs(e), 90):.2f}",
                         f"{np.median(e):+.2f}", f"{100 * np.mean(e > 1.0):.1f}",
                         f"{100 * np.mean(e < -EARLY_MS):.1f}"])
    print(f"visual-start proxy on synthetic MEPs (true onsets known; {n_epochs} epochs per rate, "
          "all kinds of trouble of benchmarks/onsets.py):")
    print_table(["Hz", "anchor", "defined", "med |err| ms", "p90 |err| ms", "med err ms", "% >1 ms late",
                 f"% >{EARLY_MS:g} ms early"], rows)


# -- the data -------------------------------------------------------------------------------

def dimep():
    """The committed traces: (epochs µV (5, 2000), 1000 Hz, tmin -1.0 s)."""
    return np.load(DIMEP), 1000.0, -1.0


def _held_rate(x):
    """(hold, phase): the samples of ``x`` change only every ``hold`` samples, at ``phase``."""
    changes = np.flatnonzero(np.diff(x) != 0) + 1
    if changes.size < 10:
        return 1, 0
    hold = int(np.bincount(np.diff(changes)).argmax())
    if hold <= 1:
        return 1, 0
    phase = int(np.bincount(changes % hold, minlength=hold).argmax())
    return hold, phase


def mourao(folder, *, pre_s=0.3, post_s=0.1, stored_hz=10000.0):
    """Epochs of the single-pulse input-output recordings; their continuous EMG; the same
    epochs at the stored (held) rate. The stimulus is the trigger's edge away from its idle
    level (the artifact follows 0.3-0.5 ms later); recordings without trigger edges are
    skipped."""
    from scipy.io import loadmat

    files = sorted(Path(folder).glob("*INPUTOUTPUT*.mat"))
    out = dict(epochs=[], tmin_s=[], file=[], held=[], continuous=[], skipped=[])
    sfreq = None
    for f in files:
        acq = loadmat(f, squeeze_me=True, struct_as_record=False)["acq_data"]
        emg_uv = np.asarray(acq.data[:, 0], dtype=np.float64) * 1000.0  # mV -> µV
        trig = np.asarray(acq.data[:, 1], dtype=np.float64)
        idle_high = np.median(trig) > 2.5
        active = (trig < 2.5) if idle_high else (trig > 2.5)
        edges = np.flatnonzero(np.diff(active.astype(np.int8)) == 1) + 1
        if edges.size == 0:
            out["skipped"].append(f.name)
            continue
        hold, phase = _held_rate(emg_uv)
        sfreq = stored_hz / hold
        x = emg_uv[phase::hold]
        out["continuous"].append((f.name, x))
        n = int(round((pre_s + post_s) * sfreq))
        n_held = int(round((pre_s + post_s) * stored_hz))
        for e in edges:
            j0 = int(np.ceil((e - pre_s * stored_hz - phase) / hold))
            if j0 < 0 or j0 + n > x.size or e + n_held > emg_uv.size:
                continue
            out["epochs"].append(x[j0:j0 + n])
            out["tmin_s"].append((phase + hold * j0 - e) / stored_hz)
            out["file"].append(f.name)
            a = e - int(round(pre_s * stored_hz))
            out["held"].append(emg_uv[a:a + n_held])
    return out, sfreq


# -- main -----------------------------------------------------------------------------------

def main(argv=None) -> int:
    from mepkit.dsp.mains import detect_line_freq, detect_line_freq_epochs
    from mepkit.dsp.features import measure_epochs
    from mepkit.params import Params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mourao-dir", default=os.environ.get("MEPKIT_MOURAO_DIR"),
                    help="folder 'TMS-EMG Data' of marianamourao-37/TMS-EMG-Project (not "
                         "redistributable: read locally only)")
    ap.add_argument("--synthetic-epochs", type=int, default=400)
    ap.add_argument("--response-window-ms", type=float, nargs=2, default=None,
                    metavar=("START", "STOP"), help="measure with this response window instead "
                    "of the default (a sensitivity check; the default is not changed)")
    args = ap.parse_args(argv)
    params = Params() if args.response_window_ms is None else Params(
        response_window_ms=tuple(args.response_window_ms))

    proxy_on_synthetic(args.synthetic_epochs)

    ep, fs, tmin = dimep()
    decided = detect_line_freq_epochs(ep[:, None, :], fs, tmin * 1000.0)
    rows = [[k + 1, _fmt(spectrum_line_ratio(ep[k, :1000], fs, 50.0), ".1f"),
             _fmt(spectrum_line_ratio(ep[k, :1000], fs, 60.0), ".1f"),
             detect_line_freq(ep[k, :1000, None], fs).line_freq_hz] for k in range(len(ep))]
    print(f"\n== tool-dimep examples (committed): mains from the epochs: {decided}; "
          "per trace, the 1 s before the pulse:")
    print_table(["trace", "spectrum 50 Hz", "spectrum 60 Hz", "mepkit"], rows)
    report_epochs("tool-dimep examples (contracted muscle)", ep, fs, tmin, decided, params)

    if not args.mourao_dir:
        print("\nMourao recordings: skipped (give --mourao-dir or MEPKIT_MOURAO_DIR; the data "
              "have no licence and are not kept in mepkit)")
        return 0
    data, sfreq = mourao(args.mourao_dir)
    if not data["epochs"]:
        print(f"\nMourao recordings: no *INPUTOUTPUT*.mat with triggers in {args.mourao_dir}")
        return 0
    epochs = np.array(data["epochs"])
    tmin_s = np.array(data["tmin_s"])
    rows = []
    for name, x in data["continuous"]:
        rows.append([name.split("_INPUTOUTPUT")[0], f"{x.size / sfreq:.0f}",
                     _fmt(spectrum_line_ratio(x, sfreq, 50.0), ".0f"),
                     _fmt(spectrum_line_ratio(x, sfreq, 60.0), ".1f"),
                     detect_line_freq(x[:, None], sfreq).line_freq_hz])
    decided = detect_line_freq_epochs(epochs[:, None, :], sfreq, tmin_s * 1000.0)
    print(f"\n== Mourao input-output recordings ({len(data['continuous'])} used, skipped "
          f"without triggers: {data['skipped']}): mains of the whole recordings, and {decided} "
          "from the epochs' pre-stimulus samples:")
    print_table(["recording", "s", "spectrum 50 Hz", "spectrum 60 Hz", "mepkit"], rows)
    report_epochs("Mourao input-output recordings", epochs, sfreq, tmin_s, decided, params)

    held = np.array(data["held"])
    r = measure_epochs(held[:, None, :], 10000.0, Params(), tmin_s=-0.3)
    codes = np.bincount(r["reject_code"][:, 0], minlength=6)
    print(f"\nthe same epochs at the stored 10 kHz (each sample held 4 times): reject codes "
          f"{codes[:5].tolist()} (3 = clipped: {codes[3]} of {len(held)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
