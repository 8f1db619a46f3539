"""``mepkit report FILE -o report.html``: one self-contained HTML report of a session."""

from __future__ import annotations

import argparse
import sys

from mepkit_cli._common import add_param_options, param_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML report of a record or an XDF recording",
        description="Write one HTML file (figures embedded, nothing loaded from the network) "
                    "with the session and subject, data quality, MEP overlays, threshold "
                    "hunts, recruitment curves, maps, the hemispheric excitability table and "
                    "the parameters used. Sections the file has no data for say so. "
                    "Details: docs/report.md.")
    p.add_argument("file", metavar="FILE", help="a mepkit record (.h5) or an XDF file")
    p.add_argument("-o", "--output", required=True, metavar="HTML", help="the report to write")
    p.add_argument("--figures", metavar="DIR",
                   help="also write each figure as PNG and SVG into DIR")
    p.add_argument("--title", help="title of the report (default: the file name)")
    p.add_argument("--affected", choices=("left", "right"),
                   help="lesioned hemisphere for the excitability ratios (default: the "
                        "record's subject field lesioned_hemisphere, else left / right)")
    p.add_argument("--n-boot", type=int, default=1000, metavar="N",
                   help="bootstrap resamples of ratio and map intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--criterion", type=float, default=50.0, metavar="UV",
                   help="MEP criterion of thresholds (default 50 uV)")
    p.add_argument("--floor", type=float, default=30.0, metavar="UV",
                   help="amplitudes below this are no measurable MEP in curves (default 30 uV)")
    p.add_argument("--emg-stream", metavar="NAME", help="EMG stream (default: type EMG)")
    p.add_argument("--marker-stream", metavar="NAME", help="marker stream (default: type Markers)")
    add_param_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mepkit.params import Params
    from mepkit.report.html import write_report
    from mepkit_cli.main import UserError

    if args.n_boot < 50:
        raise UserError(f"--n-boot must be >= 50, got {args.n_boot}")
    base, changes = param_options(args)
    params = None
    if base is not None or changes:
        params = (base or Params()).replace(**changes) if changes else base
    report = write_report(args.file, args.output, figures_dir=args.figures, params=params,
                          emg_stream=args.emg_stream, marker_stream=args.marker_stream,
                          affected=args.affected, n_boot=args.n_boot, seed=args.seed,
                          criterion_uv=args.criterion, floor_uv=args.floor, title=args.title)
    absent = [s.title for s in report.sections if s.absent and not s.figures]
    print(f"report written to {args.output} ({len(report.figures)} figures"
          + (f"; without data: {', '.join(absent)}" if absent else "") + ")")
    if args.figures:
        print(f"figures (PNG and SVG) in {args.figures}")
    for w in report.warnings:
        print(f"mepkit report: warning: {w}", file=sys.stderr)
    return 0
