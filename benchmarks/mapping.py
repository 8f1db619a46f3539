"""Hotspot search vs an exhaustive grid map, over many simulated subjects (offline).

Each subject is a healthy virtual subject (``mepkit.sim.subject``, FDI of the left
hemisphere) whose hotspot is moved to a uniform position within ±15 mm of the search's
centre and whose map width (``map_sd_mm``) is drawn from 10-20 mm (the presets use 10 and 15). Both methods stimulate
at 115 % of the hotspot's resting motor threshold:

* ``hotspot search``: ``mepkit.make_hotspot_search`` over ±20 mm around the centre, run
  until it is done (its pulses counted);
* ``grid 7x7 x5``: an exhaustive 7 × 7 grid at 10 mm with 5 pulses per site (245
  pulses); its hotspot is the site of the largest mean, its CoG the amplitude-weighted
  mean position (``mepkit.map_metrics``).

Error: distance (mm) from the true hotspot. Floor (issue 11): hotspot search median
error <= 3 mm, 90th percentile <= 5 mm, median pulses <= 20. Exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import os
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

# one BLAS thread: the GP's matrices are small, and threads only fight on a shared machine
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import print_table  # noqa: E402

FLOOR_MEDIAN_MM = 3.0
FLOOR_P90_MM = 5.0
FLOOR_MEDIAN_PULSES = 20
HOTSPOT_RANGE_MM = 15.0
MAP_SD_RANGE_MM = (10.0, 20.0)
INTENSITY_FACTOR = 1.15


def make_subject(k: int):
    """Subject ``k``: a healthy preset with its FDI hotspot and map width redrawn."""
    from mepkit.sim.subject import HemisphereModel, VirtualSubject

    base = VirtualSubject.from_preset("healthy", seed=k, muscles=("FDI",))
    rng = np.random.default_rng([k, 77])
    hx, hy = rng.uniform(-HOTSPOT_RANGE_MM, HOTSPOT_RANGE_MM, 2)
    sd = float(rng.uniform(*MAP_SD_RANGE_MM))
    hemis = {}
    for h, hm in base.hemispheres.items():
        fdi = replace(hm.muscles["FDI"], hotspot_x_mm=float(hx), hotspot_y_mm=float(hy))
        hemis[h] = HemisphereModel(muscles={"FDI": fdi}, map_sd_mm=sd, rho=hm.rho)
    return VirtualSubject(hemis, seed=k, name=f"bench-{k}"), (float(hx), float(hy)), sd


def run_search(subject, intensity: float, seed: int):
    import mepkit

    search = mepkit.make_hotspot_search(bounds_mm=((-20.0, 20.0), (-20.0, 20.0)),
                                        intensity_pct_mso=intensity, seed=seed)
    while not search.done:
        x, y = search.next_position()
        r = subject.respond(search.intensity_pct_mso, hemisphere="left", x_mm=x, y_mm=y)
        search.observe(x, y, float(r.amplitude_uv[0]))
    return search.estimate


def run_grid(subject, intensity: float):
    import mepkit
    from mepkit.analysis.grids import parse_grid

    g = parse_grid("7x7@10")
    x = np.repeat(g.x_mm, 5)
    y = np.repeat(g.y_mm, 5)
    a = np.array([subject.respond(intensity, hemisphere="left", x_mm=xi, y_mm=yi).amplitude_uv[0]
                  for xi, yi in zip(x, y)])
    return mepkit.map_metrics(x, y, a, grid=g, n_boot=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=200)
    ap.add_argument("--no-grid", action="store_true", help="skip the exhaustive grid")
    args = ap.parse_args(argv)

    rows = []
    t0 = time.perf_counter()
    err_s, pulses_s, err_g, err_c, unc_s = [], [], [], [], []
    for k in range(args.subjects):
        subject, (hx, hy), _ = make_subject(k)
        intensity = min(INTENSITY_FACTOR * subject.true_rmt("left"), 100.0)
        est = run_search(subject, intensity, seed=k)
        err_s.append(math.hypot(est.hotspot_mm[0] - hx, est.hotspot_mm[1] - hy))
        pulses_s.append(est.n_pulses)
        unc_s.append(est.uncertainty_mm)
        if not args.no_grid:
            m = run_grid(subject, intensity)
            err_g.append(math.hypot(m.hotspot_mm[0] - hx, m.hotspot_mm[1] - hy))
            err_c.append(math.hypot(m.cog_mm[0] - hx, m.cog_mm[1] - hy))
    elapsed = time.perf_counter() - t0

    def row(name, err, pulses):
        e = np.asarray(err, float)
        p = np.asarray(pulses, float)
        return [name, len(e), f"{np.median(p):.0f}", f"{np.percentile(p, 90):.0f}",
                f"{np.median(e):.2f}", f"{np.percentile(e, 90):.2f}", f"{np.max(e):.1f}",
                f"{np.mean(e <= 3.0) * 100:.0f}%"]

    rows.append(row("hotspot search (GP-UCB)", err_s, pulses_s))
    if not args.no_grid:
        rows.append(row("grid 7x7 x5: max site", err_g, [245] * len(err_g)))
        rows.append(row("grid 7x7 x5: CoG", err_c, [245] * len(err_c)))
    print(f"{args.subjects} simulated subjects: hotspot within ±{HOTSPOT_RANGE_MM:g} mm of the "
          f"centre, map SD {MAP_SD_RANGE_MM[0]:g}-{MAP_SD_RANGE_MM[1]:g} mm, "
          f"{INTENSITY_FACTOR * 100:.0f} % RMT ({elapsed:.1f} s)")
    print_table(["method", "subjects", "pulses med", "pulses p90", "error med mm",
                 "error p90 mm", "error max mm", "<= 3 mm"], rows)
    u = np.asarray(unc_s)
    e = np.asarray(err_s)
    fin = np.isfinite(u)
    if fin.any():
        print(f"search uncertainty_mm: median {np.median(u[fin]):.2f}; error <= 2 x uncertainty "
              f"in {np.mean(e[fin] <= 2 * u[fin]) * 100:.0f}% of subjects")
    med_e, p90_e, med_p = np.median(e), np.percentile(e, 90), np.median(pulses_s)
    ok = med_e <= FLOOR_MEDIAN_MM and p90_e <= FLOOR_P90_MM and med_p <= FLOOR_MEDIAN_PULSES
    print(f"floor: median error <= {FLOOR_MEDIAN_MM:g} mm ({med_e:.2f}), p90 <= "
          f"{FLOOR_P90_MM:g} mm ({p90_e:.2f}), median pulses <= {FLOOR_MEDIAN_PULSES} "
          f"({med_p:.0f}): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
