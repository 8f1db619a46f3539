"""``mepkit threshold``: hunt a motor threshold live, closed loop (docs/live.md)."""

from __future__ import annotations

import argparse

from mepkit_cli._closed_loop import add_closed_loop_options, run_closed_loop

#: The hunters of `mepkit.make_hunter` (listed here so ``--help`` imports nothing heavy).
METHODS = ("bayes", "ml-pest", "mills-nithi", "rossini-rothwell")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "threshold", help="hunt the motor threshold live: pulses chosen from the MEPs so far",
        description="Find the resting (or --active) motor threshold closed loop: each pulse's "
                    "intensity is chosen from the MEPs measured so far; a pulse fires only "
                    "once the target muscle is relaxed and the minimum interval has passed. "
                    "Every step and the estimate go to the record. --simulate runs against "
                    "the virtual subject over LSL.")
    p.add_argument("--method", default="bayes", choices=METHODS,
                   help="hunting method (default bayes; procedures and sources: "
                        "docs/methods.md)")
    p.add_argument("--active", action="store_true",
                   help="active motor threshold (criterion about 200 µV during a slight "
                        "contraction): pulses fire while the target muscle contracts")
    add_closed_loop_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def make(params):
        from mepkit.protocols.threshold import make_hunter

        options = {"active": args.active, "hemisphere": args.hemisphere}
        if args.max_pulses is not None:
            options["max_pulses"] = args.max_pulses
        return make_hunter(args.method, **options)

    return run_closed_loop(args, make, "threshold", active=args.active)
