"""``mepkit hotspot``: find the motor hotspot live in few pulses, closed loop (docs/live.md)."""

from __future__ import annotations

import argparse
import math

from mepkit_cli._closed_loop import add_closed_loop_options, run_closed_loop
from mepkit_cli._spatial import (add_intensity_options, check_output_figure, resolve_intensity,
                                 say)

#: The default search area (mm): ±20 mm around the expected hotspot (docs/methods.md).
BOUNDS_MM = (-20.0, 20.0, -20.0, 20.0)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "hotspot", help="find the motor hotspot live in few pulses (model-based search)",
        description="Search the area --bounds for the position of the largest MEPs: a "
                    "Gaussian process of the amplitudes so far proposes each next coil "
                    "position (and raises the intensity when nothing answers). With a manual "
                    "stimulator you are told where to put the coil (x/y mm) and the "
                    "intensity. The estimate (position, uncertainty, pulses used) goes to "
                    "the record. --simulate runs against the virtual subject over LSL, with "
                    "a neuronavigation stream giving the coil positions.")
    p.add_argument("--bounds", type=float, nargs=4, metavar=("X0", "X1", "Y0", "Y1"),
                   default=None, help="search area in mm (default -20 20 -20 20: ±20 mm "
                                      "around the expected hotspot at 0, 0)")
    p.add_argument("--min-pulses", type=int, default=None, metavar="N",
                   help="never stop before N counted pulses (default 12)")
    p.add_argument("--target-mm", type=float, default=None, metavar="MM",
                   help="stop once the hotspot's uncertainty is below MM (default 1.5)")
    p.add_argument("--fixed-intensity", action="store_true",
                   help="never raise the intensity when the opening positions give no MEP")
    add_intensity_options(p)
    add_closed_loop_options(p)
    p.set_defaults(func=run)


def describe(estimate) -> str:
    if estimate is None:
        return "no estimate yet"
    hx, hy = estimate.hotspot_mm
    unc = "-" if not math.isfinite(estimate.uncertainty_mm) else f"{estimate.uncertainty_mm:.1f}"
    return f"hotspot ({hx:.1f}, {hy:.1f}) mm ± {unc} mm at {estimate.intensity_pct_mso:g} %MSO"


def report_hotspot(result, protocol, args) -> None:
    est = result.estimate
    if est is None:
        print("no hotspot estimate: no pulse was counted")
        return
    hx, hy = est.hotspot_mm
    print(f"hotspot: ({hx:.1f}, {hy:.1f}) mm, uncertainty {est.uncertainty_mm:.1f} mm RMS, "
          f"95 % within {est.radius95_mm:.1f} mm; peak {est.peak_amplitude_uv:.0f} µV at "
          f"{est.intensity_pct_mso:g} %MSO; {est.n_pulses} pulses ({est.n_counted} counted); "
          f"{'converged' if est.converged else 'not converged'}")
    subject = getattr(args, "virtual_subject", None)
    if subject is not None:
        tx, ty = subject.hotspot(args.hemisphere, (args.channel or "FDI").split("_")[0])
        print(f"  virtual subject: true hotspot ({tx:.1f}, {ty:.1f}) mm; estimate off by "
              f"{math.hypot(hx - tx, hy - ty):.1f} mm")
    if args.figure:
        _figure(result, est, args)


def _figure(result, est, args) -> None:
    """The amplitudes where the coil was, interpolated, with the estimate marked."""
    from mepkit.analysis.maps import MapError, map_metrics
    from mepkit.report.maps import plot_map

    rows = [s for s in result.steps if s["counted"] and s.get("x_mm") is not None
            and s.get("amplitude_uv") is not None
            and s["intensity_pct_mso"] == est.intensity_pct_mso]
    try:
        m = map_metrics([r["x_mm"] for r in rows], [r["y_mm"] for r in rows],
                        [r["amplitude_uv"] for r in rows], method="interpolated", n_boot=0)
    except (MapError, ValueError) as exc:
        print(f"no figure: {exc}")
        return
    fig = plot_map(m, title=f"hotspot search: {args.output}")
    ax = fig.axes[0]
    ax.plot([est.hotspot_mm[0]], [est.hotspot_mm[1]], marker="*", ms=16, color="red",
            ls="none", label="search estimate")
    if math.isfinite(est.radius95_mm):
        import matplotlib.patches as mp

        ax.add_patch(mp.Circle(est.hotspot_mm, est.radius95_mm, fill=False, color="red",
                               ls="--", label="95 %"))
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(args.figure, dpi=120, bbox_inches="tight")
    print(f"figure: {args.figure}")


def run(args: argparse.Namespace) -> int:
    from mepkit_cli.main import UserError

    check_output_figure(args)
    x0, x1, y0, y1 = BOUNDS_MM if args.bounds is None else args.bounds
    if not (all(math.isfinite(v) for v in (x0, x1, y0, y1)) and x0 < x1 and y0 < y1):
        raise UserError(f"--bounds must be X0 X1 Y0 Y1 (mm) with X0 < X1 and Y0 < Y1, got "
                        f"{' '.join(f'{v:g}' for v in (x0, x1, y0, y1))}")

    def make(params):
        from mepkit.protocols.mapping import make_hotspot_search

        intensity, how = resolve_intensity(args, args.virtual_subject)
        say(f"mepkit hotspot: search over x {x0:g}..{x1:g} mm, y {y0:g}..{y1:g} mm from "
            f"{intensity:g} %MSO ({how})")
        options = {"intensity_pct_mso": intensity, "hemisphere": args.hemisphere,
                   "seed": args.seed, "adapt_intensity": not args.fixed_intensity}
        if args.max_pulses is not None:
            options["max_pulses"] = args.max_pulses
            options["min_pulses"] = min(args.max_pulses, 12 if args.min_pulses is None
                                        else args.min_pulses)
        elif args.min_pulses is not None:
            options["min_pulses"] = args.min_pulses
        if args.target_mm is not None:
            options["target_mm"] = args.target_mm
        return make_hotspot_search(((x0, x1), (y0, y1)), **options)

    return run_closed_loop(args, make, "hotspot", describe=describe, navigation=True,
                           report=lambda result, proto: report_hotspot(result, proto, args))
