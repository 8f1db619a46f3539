"""``mepkit excitability``: thresholds, recruitment curves and the balance between hemispheres."""

from __future__ import annotations

import argparse
import sys

from mepkit_cli._common import add_param_options, param_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "excitability", help="RMT, recruitment curves and hemispheric ratios from trials",
        description="Per hemisphere and muscle: the resting motor threshold and the recruitment "
                    "curve, and between the hemispheres the RMT ratio, the MEP ratio at matched "
                    "intensity, laterality indices and paired-pulse IHI, each with a 95 %% "
                    "interval. Needs the intensity and hemisphere of every trial (JSON marker "
                    "keys 'intensity' and 'hemisphere'). Definitions: docs/methods.md.")
    p.add_argument("files", nargs="+", metavar="FILE", help="XDF files or mepkit records (.h5)")
    p.add_argument("--affected", choices=("left", "right"),
                   help="the lesioned hemisphere: ratios are affected / unaffected "
                        "(default: left / right)")
    p.add_argument("--json", metavar="OUT", help="write the full result as JSON here")
    p.add_argument("--matched-pct-rmt", type=float, default=120.0, metavar="PCT",
                   help="compare MEPs at this %%RMT of each side (default 120)")
    p.add_argument("--matched-pct-mso", type=float, metavar="PCT",
                   help="compare MEPs at this %%MSO on both sides (default 120 %% of the "
                        "unaffected side's RMT)")
    p.add_argument("--criterion", type=float, default=50.0, metavar="UV",
                   help="MEP criterion of the threshold (default 50 uV)")
    p.add_argument("--floor", type=float, default=30.0, metavar="UV",
                   help="amplitudes below this are no measurable MEP (default 30 uV)")
    p.add_argument("--n-boot", type=int, default=1000, metavar="N",
                   help="bootstrap replicates of the ratio intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--all-sites", action="store_true",
                   help="use every trial; by default a hemisphere mapped at several coil "
                        "positions contributes only the trials at its most used position "
                        "(the hotspot) and those without a position")
    p.add_argument("--emg-stream", metavar="NAME", help="EMG stream (default: type EMG)")
    p.add_argument("--marker-stream", metavar="NAME", help="marker stream (default: type Markers)")
    add_param_options(p)
    p.set_defaults(func=run)


def print_result(res, out=None) -> None:
    """A readable summary of a :class:`~mepkit.analysis.HemisphericExcitability`."""
    from mepkit.analysis.summary import excitability_rows

    out = sys.stdout if out is None else out
    rows = excitability_rows(res)
    print(f"Per hemisphere and channel (intervals {rows.ci_level * 100:g} %):", file=out)
    print(f"  {'hemisphere':<10} {'channel':<10} {'trials':>6}  {'RMT %MSO':<22} "
          f"{'MEPmax uV':<24} {'I50 %MSO':<20} {'slope %MSO':<16}", file=out)
    for h, ch, n, rmt, mx, i50, sl, notes in rows.sides:
        print(f"  {h:<10} {ch:<10} {n:>6}  {rmt:<22} {mx:<24} {i50:<20} {sl:<16}", file=out)
        for msg in notes:
            print(f"      {ch}: {msg}", file=out)
    print(f"\nRatios ({rows.role}):", file=out)
    muscle = None
    for m, chans, name, value, note in rows.ratios:
        if m != muscle:
            print(f"  {m} ({chans})", file=out)
            muscle = m
        if name is None:
            continue
        print(f"    {name:<36} {value}", file=out)
        if note:
            print(f"      {note}", file=out)
    if rows.ihi:
        print("\nInterhemispheric inhibition (conditioned / test-alone MEP):", file=out)
        for h, ch, cond, value, note in rows.ihi:
            print(f"  test {h:<6} {ch:<10} {cond:<12} {value}", file=out)
            if note:
                print(f"      {note}", file=out)
    for note in rows.notes:
        print(f"note: {note}", file=out)


def run(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from mepkit.analysis import hemispheric_excitability
    from mepkit.batch import analyze_files
    from mepkit.errors import MepkitError
    from mepkit_cli.main import UserError

    # records are measured with their own parameters unless options say otherwise
    params, overrides = param_options(args)
    if args.n_boot < 50:
        raise UserError(f"--n-boot must be >= 50, got {args.n_boot}")
    results = analyze_files(args.files, params, emg_stream=args.emg_stream,
                            marker_stream=args.marker_stream, **overrides)
    failed = [r for r in results if r.error]
    for r in results:
        for w in r.warnings:
            print(f"mepkit excitability: warning: {w}", file=sys.stderr)
    if failed:
        for r in failed:
            print(f"mepkit excitability: error: {r.error}", file=sys.stderr)
        raise MepkitError(f"{len(failed)} of {len(results)} file(s) could not be read "
                          f"({', '.join(r.path for r in failed)}); nothing computed")
    frames = [r.frame for r in results if r.frame is not None and len(r.frame)]
    if not frames:
        raise MepkitError(f"no trials in {', '.join(args.files)}")
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if not args.all_sites:
        from mepkit.analysis._table import at_main_site

        table, n_off = at_main_site(table)
        if n_off:
            n_trials = table["trial"].nunique() if "trial" in table else len(table)
            print(f"mepkit excitability: {n_off} rows of trials at other coil positions (maps, "
                  f"hotspot searches) left out; {n_trials} trials used (--all-sites keeps "
                  f"them)", file=sys.stderr)
    try:
        res = hemispheric_excitability(
            table, affected=args.affected, criterion_uv=args.criterion, floor_uv=args.floor,
            matched_pct_rmt=args.matched_pct_rmt, matched_pct_mso=args.matched_pct_mso,
            n_boot=args.n_boot, seed=args.seed)
    except MepkitError as exc:
        if any(f in str(exc) for f in args.files):
            raise
        raise MepkitError(f"{', '.join(args.files)}: {exc}") from None
    print_result(res)
    if args.json:
        data = res.as_dict()
        data["files"] = list(args.files)
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, allow_nan=False)
                f.write("\n")
        except OSError as exc:
            raise UserError(f"{args.json}: cannot write ({exc.strerror})") from None
        print(f"written to {args.json}", file=sys.stderr)
    return 0
