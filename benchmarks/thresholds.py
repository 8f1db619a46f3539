"""Threshold hunters on a simulated population: pulses used, error, interval coverage.

Every method of `mepkit.make_hunter` hunts the resting motor threshold of the same
``--subjects`` virtual subjects (`mepkit.sim.subject.VirtualSubject`, one FDI each),
drawn from a population:

* threshold uniform 30-80 %MSO;
* Boltzmann slope log-normal around 6 %MSO (log-SD 0.25, clipped to 3.5-11);
* trial-to-trial SD of ln(amplitude) uniform 0.4-0.75;
* plateau log-normal around 2 mV (log-SD 0.5, clipped to 0.3-8 mV).

The amplitude a hunter sees is what mepkit measures on a resting muscle (4 µV RMS
background): the peak-to-peak of MEP plus background, about ``max(A + 9.6 µV, N)`` with
``N`` ~ 18.6 µV the background's own peak-to-peak (see `measured`). Error = estimate -
true threshold of the MEP itself (``VirtualSubject.true_rmt``: the intensity where the
median MEP is 50 µV). Methods that count measured amplitudes >= 50 µV find the threshold
of the *measured* peak-to-peak, which the background lowers by about 1 %MSO (column
"bias").

A second table runs every method on subjects off the population (and off the Bayesian
hunter's prior): shallow and steep curves, large variability, thresholds near 100 %MSO,
MEPs hardly above the criterion, and no MEPs at all.

Floors (exit status 1 when one is missed):

* ``bayes``: median |error| <= 1 %MSO, median pulses <= 10, 90 % intervals cover the true
  threshold in 85-95 % of subjects;
* ``ml-pest``: median |error| <= 3 %MSO with a median of <= 20 pulses (the literature
  reports ~17-20);
* every method: a threshold for >= 99 % of the population, and for subjects without
  MEPs no number, within the method's ``max_pulses``.

Writes ``out/thresholds.png`` (|error| against pulses, per method) unless ``--no-figure``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import print_table  # noqa: E402

from mepkit.protocols.threshold import METHODS, make_hunter  # noqa: E402
from mepkit.sim.subject import (  # noqa: E402
    EmgSettings,
    HemisphereModel,
    MuscleModel,
    VirtualSubject,
)

ROOT = Path(__file__).resolve().parent.parent
NOISE_RMS_UV = EmgSettings().noise_rms_uv


@dataclass(frozen=True)
class Population:
    name: str
    threshold: tuple[float, float] = (30.0, 80.0)  # uniform
    slope: tuple[float, float, float, float] = (6.0, 0.25, 3.5, 11.0)  # median, log-SD, clip
    sigma: tuple[float, float] = (0.4, 0.75)  # uniform
    plateau: tuple[float, float, float, float] = (2000.0, 0.5, 300.0, 8000.0)
    responsive: bool = True

    def draw(self, rng: np.random.Generator, seed: int) -> VirtualSubject:
        t = rng.uniform(*self.threshold)
        s = float(np.clip(self.slope[0] * math.exp(rng.normal(0, self.slope[1])),
                          *self.slope[2:]))
        sig = rng.uniform(*self.sigma)
        m = float(np.clip(self.plateau[0] * math.exp(rng.normal(0, self.plateau[1])),
                          *self.plateau[2:]))
        if not self.responsive:
            t, m = math.inf, 0.0
        muscle = MuscleModel(rmt_pct_mso=t, mep_max_uv=m, slope_pct_mso=s, sigma=sig)
        h = HemisphereModel(muscles={"FDI": muscle})
        return VirtualSubject({"left": h, "right": h}, seed=seed, name=self.name)


MAIN = Population("population")
OFF_PRIOR = [
    Population("shallow (slope 11-16)", slope=(13.0, 0.15, 11.0, 16.0)),
    Population("steep (slope 1.5-3)", slope=(2.2, 0.2, 1.5, 3.0)),
    Population("variable (SD 0.8-1.0)", sigma=(0.8, 1.0)),
    Population("threshold 85-97", threshold=(85.0, 97.0)),
    Population("small MEPs (max 70-150 µV)", plateau=(100.0, 0.3, 70.0, 150.0)),
    Population("no MEPs", responsive=False),
]


def measured(amplitude_uv: float, rng: np.random.Generator) -> float:
    """Peak-to-peak of MEP plus resting background, as mepkit measures it.

    Measured with `mepkit.analyze_epochs` on the virtual subject's EMG (4 µV RMS noise,
    mains, drift, 5 mV artifact): the background alone gives 18.6 µV (10-90 %:
    16.6-21.6), an MEP of 20-100 µV comes out 9-11 µV larger (the noise adds to its
    peak and trough), one of 300 µV ~6 µV larger.
    """
    background = 4.65 * NOISE_RMS_UV * math.exp(0.08 * rng.normal())
    added = max(0.0, NOISE_RMS_UV * (2.4 + 0.6 * rng.normal()))
    return max(amplitude_uv + added, background) if amplitude_uv > 0 else background


def hunt(method: str, pop: Population, n: int, seed: int, *, start: int = 0,
         **options) -> dict[str, np.ndarray]:
    """Run ``method`` (with ``options``) on subjects ``start .. start + n - 1`` of ``pop``.

    Subject ``i`` and its measurement noise are drawn from their own seeded streams, so
    the results do not depend on how the subjects are split between processes.
    """
    out = {k: np.full(n, np.nan) for k in ("truth", "estimate", "lo", "hi", "pulses")}
    out["found"] = np.zeros(n, bool)
    out["capped"] = np.zeros(n, bool)
    key = zlib.crc32(pop.name.encode())
    for j in range(n):
        i = start + j
        rng = np.random.default_rng([seed, key, i, 0])
        meas = np.random.default_rng([seed, key, i, 1])
        subject = pop.draw(rng, seed=i)
        hunter = make_hunter(method, **options)
        while not hunter.done:
            x = hunter.next_intensity()
            a = subject.respond(x, hemisphere="left").amplitude_uv[0]
            hunter.observe(x, measured(a, meas))
        e = hunter.estimate
        out["truth"][j] = subject.true_rmt("left")
        out["estimate"][j] = e.threshold_pct_mso
        out["lo"][j], out["hi"][j] = e.ci_low_pct_mso, e.ci_high_pct_mso
        out["pulses"][j] = e.n_pulses
        out["found"][j] = e.found
        out["capped"][j] = hunter.stopped_at_limit
    out["interval"] = e.interval
    out["max_pulses"] = hunter.max_pulses
    return out


def hunt_many(method: str, pop: Population, n: int, seed: int, pool=None,
              **options) -> dict[str, np.ndarray]:
    """`hunt` over ``n`` subjects, split into chunks over ``pool`` (an executor) if given."""
    if pool is None:
        return hunt(method, pop, n, seed, **options)
    size = max(1, -(-n // 16))
    parts = [pool.submit(hunt, method, pop, min(size, n - k), seed, start=k, **options)
             for k in range(0, n, size)]
    rs = [p.result() for p in parts]
    out = {k: np.concatenate([r[k] for r in rs]) for k in rs[0] if isinstance(rs[0][k], np.ndarray)}
    out["interval"], out["max_pulses"] = rs[0]["interval"], rs[0]["max_pulses"]
    return out


def summary(r: dict) -> dict[str, float]:
    err = r["estimate"] - r["truth"]
    ae = np.abs(err[r["found"]])
    covered = (r["lo"] <= r["truth"]) & (r["truth"] <= r["hi"])
    nan = math.nan
    return {
        "pulses_median": float(np.median(r["pulses"])),
        "pulses_p90": float(np.percentile(r["pulses"], 90)),
        "abs_error_median": float(np.median(ae)) if ae.size else nan,
        "abs_error_p90": float(np.percentile(ae, 90)) if ae.size else nan,
        "bias": float(np.mean(err[r["found"]])) if ae.size else nan,
        "coverage": float(np.mean(covered[r["found"]])) if ae.size else nan,
        "found": float(np.mean(r["found"])),
        "capped": float(np.mean(r["capped"])),
    }


def check_floors(method: str, s: dict[str, float]) -> list[str]:
    missed = []
    if s["found"] < 0.99:
        missed.append(f"{method}: a threshold for {100 * s['found']:.1f} % of subjects (< 99 %)")
    if method == "bayes":
        if not s["abs_error_median"] <= 1.0:
            missed.append(f"bayes: median |error| {s['abs_error_median']:.2f} > 1 %MSO")
        if not s["pulses_median"] <= 10:
            missed.append(f"bayes: median pulses {s['pulses_median']:g} > 10")
        if not 0.85 <= s["coverage"] <= 0.95:
            missed.append(f"bayes: 90 % interval coverage {s['coverage']:.3f} outside 0.85-0.95")
    if method == "ml-pest":
        if not s["abs_error_median"] <= 3.0:
            missed.append(f"ml-pest: median |error| {s['abs_error_median']:.2f} > 3 %MSO")
        if not s["pulses_median"] <= 20:
            missed.append(f"ml-pest: median pulses {s['pulses_median']:g} > 20")
    return missed


def figure(results: dict[str, dict], path: Path) -> None:
    """|error| against pulses: every subject (dots) and each method's medians (with p90)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    rng = np.random.default_rng(0)
    for k, (method, r) in enumerate(results.items()):
        color = f"C{k}"
        ok = r["found"]
        err = np.abs(r["estimate"] - r["truth"])[ok]
        pulses = r["pulses"][ok] * np.exp(rng.uniform(-0.04, 0.04, ok.sum()))  # jitter
        ax.scatter(pulses, err, s=3, alpha=0.25, lw=0, color=color)
        mp, me = np.median(r["pulses"]), np.median(err)
        ax.errorbar(mp, me, xerr=[[0], [np.percentile(r["pulses"], 90) - mp]],
                    yerr=[[0], [np.percentile(err, 90) - me]], fmt="o", ms=7, color=color,
                    mec="k", capsize=3, label=f"{method}: {mp:g} pulses, |err| {me:.2f}")
    ax.set_xscale("log")
    ax.set_xticks([3, 5, 10, 20, 50, 100])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_ylim(0, 6)
    ax.set_xlabel("pulses (log scale)")
    ax.set_ylabel("|estimate - true threshold| (%MSO)")
    n = len(next(iter(results.values()))["pulses"])
    ax.set_title(f"Threshold hunting, {n} simulated subjects per method\n"
                 "dots: subjects; markers: medians, bars up to the 90th percentiles", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=1000, help="subjects per method")
    ap.add_argument("--off-prior", type=int, default=100,
                    help="subjects per off-population group (0: skip)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--figure", type=Path, default=ROOT / "out" / "thresholds.png")
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: one per CPU)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
    try:
        missed = _run(args, pool)
    finally:
        if pool is not None:
            pool.shutdown()
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF,
              resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))
    print(f"total {time.perf_counter() - t_start:.1f} s with {args.jobs} process(es), "
          f"{cpu:.0f} s of CPU")
    if missed:
        print("\nFLOORS MISSED:\n  " + "\n  ".join(missed))
        return 1
    print("\nall floors met")
    return 0


def _run(args: argparse.Namespace, pool) -> list[str]:
    """Both tables (and the figure); the floors missed."""
    results, rows, missed = {}, [], []
    for method in args.methods:
        t0 = time.perf_counter()
        r = hunt_many(method, MAIN, args.subjects, args.seed, pool)
        dt = time.perf_counter() - t0
        s = summary(r)
        results[method] = r
        missed += check_floors(method, s)
        cov = f"{100 * s['coverage']:.1f}" + (" (bracket)" if r["interval"] == "bracket" else "")
        rows.append([method, f"{s['pulses_median']:g}", f"{s['pulses_p90']:g}",
                     f"{s['abs_error_median']:.2f}", f"{s['abs_error_p90']:.2f}",
                     f"{s['bias']:+.2f}", cov, f"{100 * s['found']:.1f}", f"{dt:.1f}"])
    print(f"Resting motor threshold, {args.subjects} simulated subjects per method "
          f"(thresholds 30-80 %MSO), seed {args.seed}")
    print_table(["method", "pulses med", "p90", "|err| med", "|err| p90", "bias", "cover %",
                 "found %", "time s"], rows)

    if args.off_prior > 0:
        print(f"\nOff the population (and the Bayesian prior), {args.off_prior} subjects per "
              "group: median pulses / median |error| (%MSO) / coverage % / found %")
        head = ["group"] + list(args.methods)
        orows = []
        for pop in OFF_PRIOR:
            row = [pop.name]
            for method in args.methods:
                r = hunt_many(method, pop, args.off_prior, args.seed, pool)
                s = summary(r)
                if pop.responsive:
                    row.append(f"{s['pulses_median']:g} / {s['abs_error_median']:.2f} / "
                               f"{100 * s['coverage']:.0f} / {100 * s['found']:.0f}")
                else:
                    ok = (not r["found"].any()) and np.all(r["pulses"] <= r["max_pulses"])
                    if not ok:
                        missed.append(f"{method}: a subject without MEPs got a number or "
                                      "exceeded max_pulses")
                    row.append(f"{s['pulses_median']:g} pulses, "
                               f"{'no number' if not r['found'].any() else 'NUMBER GIVEN'}")
            orows.append(row)
        print_table(head, orows)

    if not args.no_figure:
        figure(results, args.figure)
        print(f"\nfigure: {args.figure}")
    return missed


if __name__ == "__main__":
    sys.exit(main())
