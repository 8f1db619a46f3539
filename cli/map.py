"""``mepkit map``: record a motor map on a grid live, closed loop (docs/live.md)."""

from __future__ import annotations

import argparse
import math

from mepkit_cli._closed_loop import add_closed_loop_options, run_closed_loop
from mepkit_cli._spatial import (add_intensity_options, check_output_figure, fmt_interval,
                                 resolve_intensity, say)

ORDERS = ("sites", "pulses", "raster")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "map", help="record a motor map on a grid live (where to put the coil, pulse by pulse)",
        description="Stimulate every site of a grid --per-site times in a seeded random order, "
                    "each pulse once the target muscle is relaxed and the minimum interval "
                    "has passed; with a manual stimulator you are told where to put the coil "
                    "(site and x/y mm) and the intensity. At the end: area, volume, centre "
                    "of gravity and hotspot with bootstrap intervals, in the record and "
                    "printed. --simulate runs against the virtual subject over LSL, with a "
                    "neuronavigation stream giving the coil positions.")
    p.add_argument("--grid", default="7x7", metavar="RxC",
                   help="grid: rows x columns (default 7x7), or a JSON site list")
    p.add_argument("--spacing", type=float, default=None, metavar="MM",
                   help="distance between neighbouring sites (default 10 mm)")
    p.add_argument("--per-site", type=int, default=5, metavar="N",
                   help="counted pulses per site (default 5)")
    p.add_argument("--order", default="sites", choices=ORDERS,
                   help="'sites': each site's pulses together, sites in random order "
                        "(default); 'pulses': rounds over all sites; 'raster': row by row")
    p.add_argument("--n-boot", type=int, default=None, metavar="N",
                   help="bootstrap resamples of the final intervals (default 1000; 0: none)")
    add_intensity_options(p)
    add_closed_loop_options(p)
    p.set_defaults(func=run)


def describe(estimate) -> str:
    """One line: the map so far."""
    if estimate is None:
        return "no map yet"
    m = estimate.metrics
    cog = ", ".join("-" if not math.isfinite(v) else f"{v:.1f}" for v in m.cog_mm[:2])
    return (f"{estimate.n_counted} counted at {m.n_sites} sites; CoG ({cog}) mm; "
            f"hotspot {m.hotspot_site or '-'}")


def report_map(result, protocol, args) -> None:
    """The final map: metrics with intervals, the truth with --simulate, the figure."""
    est = result.estimate
    if est is None:
        print("no map: no pulse was counted")
        return
    m = est.metrics
    ci = m.ci
    print(f"map: {m.summary()}")
    print(f"  area {m.area_mm2:.0f} mm²{fmt_interval(ci, 'area_mm2', ' mm²')}, "
          f"volume {m.volume_uv:.0f} µV{fmt_interval(ci, 'volume_uv', ' µV')}")
    print(f"  CoG x {m.cog_mm[0]:.1f} mm{fmt_interval(ci, 'cog_x_mm', ' mm')}, "
          f"y {m.cog_mm[1]:.1f} mm{fmt_interval(ci, 'cog_y_mm', ' mm')}"
          + (f" ({100 * m.ci_level:.0f} % intervals)" if ci else " (no intervals: the map is "
             "not complete)"))
    hx, hy = m.hotspot_mm[:2]
    print(f"  hotspot {m.hotspot_site or '-'} at ({hx:.1f}, {hy:.1f}) mm, "
          f"mean {m.hotspot_uv:.0f} µV")
    if est.skipped_sites:
        print("  skipped: " + "; ".join(f"{k} ({v})" for k, v in est.skipped_sites.items()))
    for note in m.notes:
        print(f"  note: {note}")
    subject = getattr(args, "virtual_subject", None)
    if subject is not None:
        tx, ty = subject.hotspot(args.hemisphere, _muscle(args))
        print(f"  virtual subject: true hotspot ({tx:.1f}, {ty:.1f}) mm; CoG off by "
              f"{math.hypot(m.cog_mm[0] - tx, m.cog_mm[1] - ty):.1f} mm")
    if args.figure:
        from mepkit.report.maps import plot_map

        plot_map(m, title=f"{protocol.name}: {args.output}", path=args.figure)
        print(f"figure: {args.figure}")


def _muscle(args) -> str:
    return (args.channel or "FDI").split("_")[0]


def run(args: argparse.Namespace) -> int:
    from mepkit_cli.main import UserError

    check_output_figure(args)
    if args.per_site < 1:
        raise UserError(f"--per-site must be >= 1, got {args.per_site}")
    if args.n_boot is not None and args.n_boot < 0:
        raise UserError(f"--n-boot must be >= 0, got {args.n_boot}")
    if args.spacing is not None and not (math.isfinite(args.spacing) and args.spacing > 0):
        raise UserError(f"--spacing must be > 0 mm, got {args.spacing}")
    from mepkit.analysis.grids import GridError, parse_grid
    from mepkit.analysis.maps import N_BOOT

    try:
        grid = parse_grid(args.grid, spacing_mm=args.spacing)
    except GridError as exc:
        raise UserError(f"--grid {args.grid!r}: {exc}") from None

    def make(params):
        from mepkit.protocols.mapping import GridMapping

        intensity, how = resolve_intensity(args, args.virtual_subject)
        say(f"mepkit map: {grid!r}, {args.per_site} per site, {intensity:g} %MSO ({how})")
        options = {"per_site": args.per_site, "order": args.order, "seed": args.seed,
                   "hemisphere": args.hemisphere,
                   "n_boot": N_BOOT if args.n_boot is None else args.n_boot}
        if args.max_pulses is not None:
            options["max_pulses"] = args.max_pulses
        return GridMapping(grid, intensity, **options)

    return run_closed_loop(args, make, "map", describe=describe, navigation=True,
                           report=lambda result, proto: report_map(result, proto, args))
