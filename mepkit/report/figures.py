"""Figures of the session report (matplotlib, Agg backend, imported on first use).

Each function takes plain data (arrays, trial tables, the dicts stored in records) and
returns a matplotlib ``Figure``; :func:`render_figure` turns one into PNG or SVG bytes.
Map figures are in :mod:`mepkit.report.maps`.

* :func:`plot_background` — background EMG (pre-stimulus RMS) of every trial over time,
  rejected trials marked, gaps and outages drawn.
* :func:`plot_overlays` — MEP traces overlaid, one panel per condition and channel.
* :func:`plot_hunt` — a threshold hunt: intensity per pulse, MEP or not, the estimate and
  its interval.
* :func:`plot_threshold_trials` — amplitude against intensity with the threshold from
  trials and its interval.
* :func:`plot_recruitment` — recruitment curves: amplitudes and the fitted Boltzmann curve.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any, Sequence

import numpy as np

from mepkit.report.maps import _pyplot

__all__ = ["plot_background", "plot_overlays", "plot_hunt", "plot_threshold_trials",
           "plot_recruitment", "render_figure", "close_figure"]

#: Most panels a multi-panel figure draws (the rest are listed in the report's tables).
MAX_PANELS = 12


def render_figure(fig: Any, fmt: str = "png", *, dpi: int = 100) -> bytes:
    """The figure as ``png`` or ``svg`` bytes."""
    buf = io.BytesIO()
    # a figure with a layout engine is laid out already: "tight" would only add a draw
    tight = "tight" if fig.get_layout_engine() is None else None
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches=tight,
                metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def close_figure(fig: Any) -> None:
    """Free the figure's memory (pyplot keeps every figure until closed)."""
    _pyplot().close(fig)


def _log_y(ax: Any) -> None:
    """A log y axis with plain numbers on the decades and no minor labels (mathtext tick
    labels cost most of a figure's drawing time)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _grid(n: int, ncols: int = 3, w: float = 3.6, h: float = 2.8):
    plt = _pyplot()
    ncols = max(1, min(ncols, n))
    nrows = int(math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False,
                             constrained_layout=True)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_background(table: Any, *, events: Any = None, limit_uv: float | None = None,
                    t0_s: float | None = None) -> Any:
    """Background EMG (pre-stimulus RMS, µV) of every trial against time, per channel.

    Parameters
    ----------
    table : pandas.DataFrame
        Trial table with ``stim_time_s``, ``channel``, ``background_rms_uv``, ``rejected``
        (and ``reject_reason``).
    events : pandas.DataFrame, optional
        Record events (``time_s``, ``kind``): gaps and outages are drawn as lines.
    limit_uv : float, optional
        The rejection limit (``Params.background_limit_uv``), drawn dashed.
    t0_s : float, optional
        Time zero of the x axis (default: the first trial).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 3.6), constrained_layout=True)
    t = np.asarray(table["stim_time_s"], float)
    t0 = float(np.nanmin(t)) if t0_s is None and t.size else float(t0_s or 0.0)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    rej_all = np.asarray(table["rejected"], bool)
    for k, ch in enumerate(dict.fromkeys(table["channel"].astype(str))):
        sel = (table["channel"].astype(str) == ch).to_numpy()
        x = t[sel] - t0
        y = np.asarray(table["background_rms_uv"], float)[sel]
        rej = rej_all[sel]
        c = colors[k % len(colors)]
        ax.plot(x[~rej], y[~rej], "o", ms=3.5, color=c, label=ch)
        if rej.any():
            ax.plot(x[rej], y[rej], "x", ms=6, mew=1.6, color=c)
    if rej_all.any():
        ax.plot([], [], "x", color="0.3", label="rejected trial")
    if limit_uv is not None:
        ax.axhline(limit_uv, color="tab:red", ls="--", lw=1,
                   label=f"rejection limit {limit_uv:g} µV")
    if events is not None and len(events):
        for kind, style in (("gap", ":"), ("outage", "-")):
            ev = events[events["kind"].astype(str) == kind]
            for i, te in enumerate(np.asarray(ev["time_s"], float)):
                ax.axvline(te - t0, color="0.45", ls=style, lw=1.2,
                           label=kind if i == 0 else None)
    ax.set_xlabel("time since first trial (s)")
    ax.set_ylabel("background RMS (µV)")
    if np.any(np.asarray(table["background_rms_uv"], float) > 0):
        _log_y(ax)
    ax.set_title("Background EMG per trial", fontsize=10)
    ax.legend(fontsize=7, ncol=4, loc="upper left", framealpha=0.8)
    return fig


def plot_overlays(times_ms: np.ndarray, panels: Sequence[dict[str, Any]], *,
                  response_window_ms: tuple[float, float],
                  artifact_window_ms: tuple[float, float], ncols: int = 3) -> Any:
    """MEP traces overlaid: one panel per condition and channel.

    Parameters
    ----------
    times_ms : ndarray (n_samples,)
        Time of each sample from the stimulus.
    panels : sequence of dict
        ``title``; ``traces_uv`` (n_trials, n_samples), NaN where not drawn;
        ``rejected`` (n_trials,) bool; ``intensity_pct_mso`` (n_trials,) (NaN: unknown).
    response_window_ms, artifact_window_ms : (float, float)
        Shaded: the response window (light green) and the blanked artifact (grey).
    """
    plt = _pyplot()
    fig, axes = _grid(len(panels), ncols)
    cmap = plt.get_cmap("viridis")
    inten = np.concatenate([np.asarray(p["intensity_pct_mso"], float) for p in panels]) \
        if panels else np.zeros(0)
    fin = inten[np.isfinite(inten)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    for ax, p in zip(axes, panels):
        tr = np.asarray(p["traces_uv"], float)
        rej = np.asarray(p["rejected"], bool)
        xs = np.asarray(p["intensity_pct_mso"], float)
        ax.axvspan(*response_window_ms, color="tab:green", alpha=0.08, lw=0)
        ax.axvspan(*artifact_window_ms, color="0.5", alpha=0.25, lw=0)
        for k in range(tr.shape[0]):
            if rej[k]:
                ax.plot(times_ms, tr[k], color="tab:red", lw=0.5, alpha=0.5, ls=":")
            else:
                c = cmap((xs[k] - lo) / (hi - lo)) if math.isfinite(xs[k]) and hi > lo \
                    else "tab:blue"
                ax.plot(times_ms, tr[k], color=c, lw=0.6, alpha=0.7)
        ok = tr[~rej]
        if ok.shape[0] > 1:
            with warnings.catch_warnings():  # the blanked artifact: all-NaN columns
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.plot(times_ms, np.nanmean(ok, axis=0), color="k", lw=1.2)
        finite = tr[np.isfinite(tr)]
        if finite.size:
            top = float(np.nanpercentile(np.abs(finite), 99.5)) * 1.1 or 1.0
            ax.set_ylim(-top, top)
        n_rej = int(rej.sum())
        ax.set_title(f"{_wrap(p['title'])}\n{tr.shape[0]} trials" + (f", {n_rej} rejected" if n_rej
                                                                else ""), fontsize=8)
        ax.set_xlabel("time from stimulus (ms)", fontsize=8)
        ax.set_ylabel("EMG (µV)", fontsize=8)
        ax.tick_params(labelsize=7)
    if fin.size and hi > lo:
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
        fig.colorbar(sm, ax=list(axes), label="intensity (%MSO)", shrink=0.8)
    return fig


def plot_hunt(steps: Sequence[dict[str, Any]], estimate: dict[str, Any] | None, *,
              criterion_uv: float, title: str = "") -> Any:
    """A threshold hunt: intensity of each pulse, MEP (filled) or not (hollow), pulses that
    did not count (x), the final estimate (line) and its interval (band).

    Parameters
    ----------
    steps : sequence of dict
        The stored steps (``intensity_pct_mso``, ``amplitude_uv``, ``counted``).
    estimate : dict, optional
        The stored estimate (``threshold_pct_mso``, ``ci_low_pct_mso``, ``ci_high_pct_mso``).
    criterion_uv : float
        Amplitude that counts as an MEP.
    """
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7.5, 5.0), sharex=True,
                                  gridspec_kw={"height_ratios": [2, 1]}, constrained_layout=True)
    n = np.arange(1, len(steps) + 1)
    x = np.array([_num(s.get("intensity_pct_mso")) for s in steps])
    a = np.array([_num(s.get("amplitude_uv")) for s in steps])
    counted = np.array([bool(s.get("counted", True)) for s in steps], bool)
    hit = counted & (a >= criterion_uv)
    miss = counted & ~hit
    est = estimate or {}
    thr = _num(est.get("threshold_pct_mso"))
    lo, hi = _num(est.get("ci_low_pct_mso")), _num(est.get("ci_high_pct_mso"))
    if math.isfinite(lo) and math.isfinite(hi):
        lvl = est.get("ci_level")
        what = est.get("interval") or "interval"
        lab = (f"{float(lvl) * 100:g} % {what}" if isinstance(lvl, (int, float)) else what)
        ax.axhspan(lo, hi, color="tab:orange", alpha=0.2, lw=0,
                   label=f"{lab} {lo:.1f}–{hi:.1f} %MSO")
    if math.isfinite(thr):
        ax.axhline(thr, color="tab:orange", lw=1.8, label=f"threshold {thr:.1f} %MSO")
    ax.plot(n, x, color="0.6", lw=0.8, zorder=1)
    ax.plot(n[hit], x[hit], "o", color="k", ms=6, label=f"MEP ≥ {criterion_uv:g} µV", zorder=3)
    ax.plot(n[miss], x[miss], "o", mfc="white", mec="k", ms=6, label="no MEP", zorder=3)
    if (~counted).any():
        ax.plot(n[~counted], x[~counted], "x", color="tab:red", ms=7, mew=1.5,
                label="not counted (rejected)", zorder=3)
    ax.set_ylabel("intensity (%MSO)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    shown = np.where(np.isfinite(a) & (a > 0), a, np.nan)
    ax2.plot(n[counted], shown[counted], "o", color="tab:blue", ms=4)
    if (~counted).any():
        ax2.plot(n[~counted], shown[~counted], "x", color="tab:red", ms=6)
    ax2.axhline(criterion_uv, color="k", ls="--", lw=0.8)
    if np.isfinite(shown).any():
        _log_y(ax2)
    ax2.set_ylabel("amplitude (µV)")
    ax2.set_xlabel("pulse")
    return fig


def plot_threshold_trials(groups: Sequence[dict[str, Any]], *, criterion_uv: float,
                          ncols: int = 3) -> Any:
    """Amplitude against intensity per group, with the threshold from the trials.

    Parameters
    ----------
    groups : sequence of dict
        ``title``, ``intensity_pct_mso``, ``amplitude_uv``, ``rejected`` (arrays) and
        ``estimate`` (:class:`mepkit.analysis.ThresholdEstimate`).
    """
    fig, axes = _grid(len(groups), ncols)
    for ax, g in zip(axes, groups):
        x, a, rej = _xar(g)
        est = g["estimate"]
        _scatter_amplitudes(ax, x, a, rej, criterion_uv)
        if est.ci is not None and math.isfinite(est.ci[0]):
            hi = est.ci[1] if math.isfinite(est.ci[1]) else 100.0
            ax.axvspan(est.ci[0], hi, color="tab:orange", alpha=0.2, lw=0)
        if est.threshold_pct_mso is not None:
            ax.axvline(est.threshold_pct_mso, color="tab:orange", lw=1.8)
            sub = f"RMT {est.threshold_pct_mso:.1f} %MSO" + (
                f" [{est.ci[0]:.1f}, {_hi(est.ci[1])}]" if est.ci else "")
        else:
            sub = est.message or est.status
        ax.set_title(f"{_wrap(g['title'])}\n{_wrap(sub)}", fontsize=8)
    return fig


def plot_recruitment(groups: Sequence[dict[str, Any]], *, floor_uv: float,
                     ncols: int = 3) -> Any:
    """Recruitment curves: amplitudes of each group and the fitted Boltzmann curve.

    Parameters
    ----------
    groups : sequence of dict
        ``title``, ``intensity_pct_mso``, ``amplitude_uv``, ``rejected`` (arrays) and
        ``fit`` (:class:`mepkit.analysis.RecruitmentFit`).
    floor_uv : float
        Amplitudes below this count as no measurable MEP (drawn at the floor).
    """
    fig, axes = _grid(len(groups), ncols)
    for ax, g in zip(axes, groups):
        x, a, rej = _xar(g)
        fit = g["fit"]
        _scatter_amplitudes(ax, x, a, rej, None, floor_uv=floor_uv)
        if fit.ok:
            xs = np.linspace(np.nanmin(x), np.nanmax(x), 200) if np.isfinite(x).any() \
                else np.linspace(0, 100, 200)
            ax.plot(xs, np.maximum(fit.predict(xs), floor_uv * 0.5), color="tab:orange", lw=1.8,
                    label="Boltzmann fit (median)")
            if fit.i50_pct_mso_ci is not None:
                lo, hi = fit.i50_pct_mso_ci  # drawn within the intensities tested
                ax.axvspan(max(lo, xs[0]), min(hi, xs[-1]), color="tab:orange", alpha=0.15,
                           lw=0, label="I50 interval (within the range tested)")
            sub = (f"MEPmax {fit.mep_max_uv:.0f} µV, I50 {fit.i50_pct_mso:.1f}, "
                   f"slope {fit.slope_pct_mso:.1f} %MSO")
            ax.legend(fontsize=6, loc="upper left")
        else:
            sub = fit.message or fit.status
        ax.set_title(f"{_wrap(g['title'])}\n{_wrap(sub)}", fontsize=8)
    return fig


# ---------------------------------------------------------------------- helpers
def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _wrap(text: str, width: int = 48) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def _hi(v: float) -> str:
    return f"{v:.1f}" if math.isfinite(v) else "∞"


def _xar(g: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.asarray(g["intensity_pct_mso"], float), np.asarray(g["amplitude_uv"], float),
            np.asarray(g["rejected"], bool))


def _scatter_amplitudes(ax: Any, x: np.ndarray, a: np.ndarray, rej: np.ndarray,
                        criterion_uv: float | None, *, floor_uv: float = 10.0) -> None:
    """Amplitudes on a log axis; zero (no MEP) drawn at half the floor."""
    shown = np.where(np.isfinite(a), np.maximum(a, floor_uv * 0.5), np.nan)
    ax.plot(x[~rej], shown[~rej], "o", ms=3.5, color="tab:blue", alpha=0.8)
    if rej.any():
        ax.plot(x[rej], shown[rej], "x", ms=5, color="tab:red", label="rejected")
    if criterion_uv is not None:
        ax.axhline(criterion_uv, color="k", ls="--", lw=0.8)
    if np.isfinite(shown).any():
        _log_y(ax)
    ax.set_xlabel("intensity (%MSO)", fontsize=8)
    ax.set_ylabel("amplitude (µV)", fontsize=8)
    ax.tick_params(labelsize=7)
