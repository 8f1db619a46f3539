"""``mepkit recruitment``: record a recruitment (input-output) curve live (docs/live.md)."""

from __future__ import annotations

import argparse

from mepkit_cli._closed_loop import add_closed_loop_options, run_closed_loop


def add_parser(sub) -> None:
    p = sub.add_parser(
        "recruitment", help="record a recruitment (input-output) curve live, in random blocks",
        description="Fire every level of a recruitment curve (default 90-150 %% of the resting "
                    "motor threshold in 10 %% steps) --per-level times, in seeded random "
                    "blocks, each pulse once the target muscle is relaxed and the minimum "
                    "interval has passed. Rejected trials are repeated. Every step and the "
                    "per-level results go to the record. --simulate runs against the virtual "
                    "subject over LSL.")
    p.add_argument("--rmt", type=float, required=True, metavar="PCT_MSO",
                   help="resting motor threshold (%%MSO) the levels are relative to")
    p.add_argument("--levels", type=float, nargs="+", metavar="PCT_RMT",
                   help="levels in %% RMT (default 90 100 110 120 130 140 150)")
    p.add_argument("--per-level", type=int, default=10, metavar="N",
                   help="trials per level = number of blocks (default 10)")
    add_closed_loop_options(p)
    p.set_defaults(func=run)


def describe(estimate) -> str:
    """One line: how far the curve is, and the median MEP per level so far."""
    if estimate is None:
        return "no trials yet"
    parts = []
    for lv in estimate.levels:
        med = "-" if lv.n == 0 else f"{lv.median_uv:.0f}"
        parts.append(f"{lv.intensity_pct_mso:g}:{med}")
    return f"{estimate.n_counted} counted; median µV per %MSO " + " ".join(parts)


def run(args: argparse.Namespace) -> int:
    def make(params):
        from mepkit.protocols.recruitment import RecruitmentProtocol

        options = {"n_per_level": args.per_level, "seed": args.seed,
                   "hemisphere": args.hemisphere}
        if args.levels:
            options["levels_pct_rmt"] = tuple(args.levels)
        if args.max_pulses is not None:
            options["max_pulses"] = args.max_pulses
        return RecruitmentProtocol(args.rmt, **options)

    return run_closed_loop(args, make, "recruitment", describe=describe)
