"""``mepkit analyze``: measure every MEP in XDF recordings and mepkit records."""

from __future__ import annotations

import argparse
import sys

from mepkit_cli._common import add_param_options, add_trigger_options, param_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze", help="measure MEPs in XDF files or mepkit records",
        description="Measure every MEP in LabRecorder XDF files and mepkit records. One row per "
                    "trial and EMG channel.")
    p.add_argument("files", nargs="+", metavar="FILE", help="XDF files or mepkit records (.h5)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write the table here (.csv or .parquet); default: print it")
    p.add_argument("--emg-stream", metavar="NAME", help="EMG stream (default: type EMG)")
    p.add_argument("--marker-stream", metavar="NAME", help="marker stream (default: type Markers)")
    add_trigger_options(p)
    add_param_options(p)
    g = p.add_argument_group("batch")
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="analyse files in parallel on a local Dask cluster of N processes")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="send the work to a running Dask distributed scheduler")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _progress(total: int, enabled: bool):
    state = {"done": 0, "failed": 0}

    def update(result) -> None:
        state["done"] += 1
        if result.error:
            state["failed"] += 1
            print(f"mepkit analyze: error: {result.error}", file=sys.stderr, flush=True)
        for w in result.warnings:
            print(f"mepkit analyze: warning: {w}", file=sys.stderr, flush=True)
        if enabled:
            width = 30
            filled = int(width * state["done"] / total)
            bar = "#" * filled + "-" * (width - filled)
            end = "\n" if state["done"] == total else ""
            print(f"\r[{bar}] {state['done']}/{total} files, {state['failed']} failed",
                  end=end, file=sys.stderr, flush=True)

    return update


def print_table(frame, out=sys.stdout) -> None:
    """A readable trial table for the terminal."""
    if frame.empty:
        print("no trials", file=out)
        return
    cols = ["trial", "channel", "stim_time_s", "intensity_pct_mso", "amplitude_uv", "latency_ms",
            "background_rms_uv", "detected", "reject_reason"]
    if frame["file"].nunique() > 1:
        cols = ["file"] + cols
    text = frame[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}",
                                 na_rep="-")
    print(text, file=out)
    n_trials = frame[["file", "trial"]].drop_duplicates().shape[0]
    print(f"\n{n_trials} trials x {frame['channel'].nunique()} channels: "
          f"{int(frame['detected'].sum())} rows with an MEP, "
          f"{int(frame['rejected'].sum())} rejected", file=out)


def run(args: argparse.Namespace) -> int:
    from mepkit.batch import analyze_files
    from mepkit_cli.main import UserError

    # records are measured with their own parameters unless options say otherwise
    params, overrides = param_options(args)
    out = args.output
    if out and not out.lower().endswith((".csv", ".parquet")):
        raise UserError(f"{out}: output must end in .csv or .parquet")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    options = dict(
        emg_stream=args.emg_stream, marker_stream=args.marker_stream,
        trigger_channel=args.trigger_channel, artifact_triggers=args.artifact_triggers,
        marker_filter=args.marker_filter, unit=args.unit, **overrides)
    if args.marker_filter:
        import re

        try:
            re.compile(args.marker_filter)
        except re.error as exc:
            raise UserError(f"--marker-filter {args.marker_filter!r} is not a valid regex: {exc}")
    show = not args.no_progress and len(args.files) > 1 and sys.stderr.isatty()
    results = analyze_files(args.files, params, jobs=args.jobs, scheduler=args.scheduler,
                            progress=_progress(len(args.files), show), **options)
    frames = [r.frame for r in results if r.frame is not None]
    failed = [r for r in results if r.error]
    if frames:
        import pandas as pd

        table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if out:
            write_table(table, out)
            print(f"{len(table)} rows from {len(frames)} file(s) written to {out}", file=sys.stderr)
        else:
            print_table(table)
    if failed:
        print(f"mepkit analyze: {len(failed)} of {len(results)} file(s) failed", file=sys.stderr)
        return 1
    return 0


def write_table(table, path: str) -> None:
    """CSV (booleans as true/false) or Parquet, by extension."""
    from mepkit_cli.main import UserError

    try:
        if path.lower().endswith(".parquet"):
            try:
                table.to_parquet(path, index=False)
            except ImportError:
                raise UserError("writing Parquet needs pyarrow: pip install 'mepkit[parquet]'") from None
        else:
            frame = table.copy()
            for c in ("detected", "rejected"):
                frame[c] = frame[c].map({True: "true", False: "false"})
            frame.to_csv(path, index=False)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
