"""What ``mepkit map`` and ``mepkit hotspot`` share: the intensity options and the
coil-position display (docs/live.md, "Mapping and hotspot sessions")."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

#: Maps are recorded at 110-120 % RMT (Rossini et al. 2015); mepkit's default is the
#: upper end, where the map's edge sites still answer (docs/methods.md, "Motor maps").
PCT_RMT = 120.0


def add_intensity_options(p: argparse.ArgumentParser) -> None:
    """``--intensity N`` or ``--pct-rmt P --rmt N``."""
    g = p.add_argument_group("intensity (one of)")
    g.add_argument("--intensity", type=float, metavar="PCT_MSO",
                   help="stimulus intensity in %%MSO")
    g.add_argument("--rmt", type=float, metavar="PCT_MSO",
                   help="resting motor threshold (%%MSO); the intensity is --pct-rmt of it")
    g.add_argument("--pct-rmt", type=float, metavar="P",
                   help=f"intensity in %% of --rmt (default {PCT_RMT:g}; with --simulate and "
                        f"no --rmt, of the virtual subject's true RMT)")
    p.add_argument("--figure", metavar="FILE.png", help="save a figure of the result")


def resolve_intensity(args: argparse.Namespace, subject: Any = None) -> tuple[float, str]:
    """The intensity (%MSO) and how it was chosen, from the options (checked)."""
    from mepkit_cli.main import UserError

    if args.intensity is not None and (args.rmt is not None or args.pct_rmt is not None):
        raise UserError("give either --intensity or --pct-rmt/--rmt, not both")
    if args.intensity is not None:
        value, how = args.intensity, "--intensity"
    else:
        pct = PCT_RMT if args.pct_rmt is None else args.pct_rmt
        if not (math.isfinite(pct) and pct > 0):
            raise UserError(f"--pct-rmt must be > 0 %, got {args.pct_rmt}")
        if args.rmt is not None:
            if not (math.isfinite(args.rmt) and 0 < args.rmt <= 100):
                raise UserError(f"--rmt must be within (0, 100] %MSO, got {args.rmt}")
            rmt, src = args.rmt, "--rmt"
        elif subject is not None:
            muscle = (args.channel or "FDI").split("_")[0]
            try:
                rmt = subject.true_rmt(args.hemisphere, muscle)
            except (KeyError, ValueError):
                rmt = subject.true_rmt(args.hemisphere)
            src = "the virtual subject's true RMT"
            if not math.isfinite(rmt):
                raise UserError("the virtual subject's target muscle gives no MEPs on this "
                                "hemisphere; give --intensity")
        else:
            raise UserError("no intensity: give --intensity PCT_MSO, or --rmt PCT_MSO "
                            f"(and --pct-rmt P, default {PCT_RMT:g})")
        value = round(pct / 100.0 * rmt, 1)
        how = f"{pct:g} % of {rmt:.1f} %MSO ({src})"
    if not (math.isfinite(value) and 0 < value <= 100):
        raise UserError(f"the intensity must be within (0, 100] %MSO, got {value:g} ({how})")
    return float(value), how


def check_output_figure(args: argparse.Namespace) -> None:
    from mepkit_cli.main import UserError

    if args.figure and not args.figure.lower().endswith((".png", ".pdf", ".svg")):
        raise UserError(f"--figure {args.figure}: must end in .png, .pdf or .svg")


def fmt_interval(ci: dict[str, Any], key: str, unit: str) -> str:
    lo_hi = ci.get(key)
    if not lo_hi or not all(math.isfinite(v) for v in lo_hi):
        return ""
    return f" [{lo_hi[0]:.1f}, {lo_hi[1]:.1f}]{unit}"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
