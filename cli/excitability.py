"""``mepkit excitability``: thresholds, recruitment curves and the balance between hemispheres."""

from __future__ import annotations

import argparse
import math
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
    p.add_argument("--emg-stream", metavar="NAME", help="EMG stream (default: type EMG)")
    p.add_argument("--marker-stream", metavar="NAME", help="marker stream (default: type Markers)")
    add_param_options(p)
    p.set_defaults(func=run)


def _fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def _ci(ci, digits=1) -> str:
    if not ci:
        return ""
    lo = _fmt(ci[0], digits)
    hi = _fmt(ci[1], digits) if math.isfinite(ci[1]) else "inf"
    return f"[{lo}, {hi}]"


def _quantity(q, digits=2) -> str:
    if q.value is not None:
        return f"{q.value:.{digits}f} {_ci(q.ci, digits)}"
    if q.lower_bound is not None:
        return f"> {q.lower_bound:.{digits}f}"
    if q.upper_bound is not None:
        return f"< {q.upper_bound:.{digits}f}"
    return "-"


def print_result(res, out=sys.stdout) -> None:
    """A readable summary of a :class:`~mepkit.analysis.HemisphericExcitability`."""
    lvl = res.settings["ci_level"]
    print(f"Per hemisphere and channel (intervals {lvl * 100:g} %):", file=out)
    head = (f"  {'hemisphere':<10} {'channel':<10} {'trials':>6}  {'RMT %MSO':<22} "
            f"{'MEPmax uV':<24} {'I50 %MSO':<20} {'slope %MSO':<16}")
    print(head, file=out)
    for h, chans in res.sides.items():
        for ch, s in chans.items():
            r, f = s.rmt, s.recruitment
            rmt = (f"{_fmt(r.threshold_pct_mso)} {_ci(r.ci)}" if r.ok else
                   (f"> {r.lower_bound_pct_mso:g}" if r.lower_bound_pct_mso is not None else
                    f"< {r.upper_bound_pct_mso:g}" if r.upper_bound_pct_mso is not None else "-"))
            if f.ok:
                mx = f"{_fmt(f.mep_max_uv, 0)} {_ci(f.mep_max_uv_ci, 0)}"
                i50 = f"{_fmt(f.i50_pct_mso)} {_ci(f.i50_pct_mso_ci)}"
                sl = f"{_fmt(f.slope_pct_mso)} {_ci(f.slope_pct_mso_ci)}"
            else:
                mx = i50 = sl = "-"
            print(f"  {h:<10} {ch:<10} {s.x.size:>6}  {rmt:<22} {mx:<24} {i50:<20} {sl:<16}",
                  file=out)
            same = r.status == "no_mep" and f.status == "no_mep"  # one message says it
            for msg in ([r.message] if r.message else []) \
                    + ([f.message] if f.message and not same else []) \
                    + list(r.notes) + list(f.notes):
                print(f"      {ch}: {msg}", file=out)
    role = "affected / unaffected" if res.affected_given else f"{res.affected} / {res.unaffected}"
    print(f"\nRatios ({role}):", file=out)
    for m, e in res.muscles.items():
        print(f"  {m} ({', '.join(f'{h} {c}' for h, c in e['channels'].items())})", file=out)
        if "rmt_ratio" not in e:
            continue
        rows = [("RMT ratio", e["rmt_ratio"]),
                (f"MEP ratio at {res.settings['matched_pct_rmt']:g} % RMT",
                 e["mep_ratio"]["same_pct_rmt"])]
        i0 = e["mep_ratio"]["same_pct_mso"].details.get("intensity_pct_mso")
        rows.append((f"MEP ratio at {_fmt(i0)} %MSO", e["mep_ratio"]["same_pct_mso"]))
        rows.append(("laterality index, MEP (U-A)/(U+A)", e["laterality_index"]["mep"]))
        rows.append(("laterality index, RMT (A-U)/(A+U)", e["laterality_index"]["rmt"]))
        for name, q in rows:
            print(f"    {name:<36} {_quantity(q)}", file=out)
            if q.message:
                print(f"      {q.message}", file=out)
    if res.ihi:
        print("\nInterhemispheric inhibition (conditioned / test-alone MEP):", file=out)
        for h, chans in res.ihi.items():
            for ch, conds in chans.items():
                for cond, q in conds.items():
                    print(f"  test {h:<6} {ch:<10} {cond:<12} {_quantity(q)}", file=out)
                    if q.message:
                        print(f"      {q.message}", file=out)
    for note in res.notes:
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
