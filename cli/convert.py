"""``mepkit convert``: a LabRecorder XDF file to a mepkit record."""

from __future__ import annotations

import argparse

from mepkit_cli._common import add_param_options, add_trigger_options, params_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="turn an XDF recording into a mepkit record (.h5)",
                       description="Convert a LabRecorder XDF file into a mepkit HDF5 record: "
                                   "raw EMG, markers, parameters and the measured trials.")
    p.add_argument("input", metavar="IN.xdf")
    p.add_argument("output", metavar="OUT.h5")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.h5 if it exists")
    p.add_argument("--emg-stream", metavar="NAME", help="EMG stream (default: type EMG)")
    p.add_argument("--marker-stream", metavar="NAME", help="marker stream (default: type Markers)")
    p.add_argument("--subject", metavar="ID", help="subject identifier to store")
    add_trigger_options(p)
    add_param_options(p)


def run(args: argparse.Namespace) -> int:
    import os

    from mepkit.batch import AnalyzeOptions
    from mepkit.convert import convert_xdf
    from mepkit_cli.main import UserError

    if os.path.exists(args.output) and not args.overwrite:
        raise UserError(f"{args.output}: file exists; pass --overwrite to replace it")
    params = params_from_args(args)
    options = AnalyzeOptions(emg_stream=args.emg_stream, marker_stream=args.marker_stream,
                             trigger_channel=args.trigger_channel,
                             artifact_triggers=args.artifact_triggers,
                             marker_filter=args.marker_filter, unit=args.unit)
    subject = {"identifier": args.subject} if args.subject else None
    summary = convert_xdf(args.input, args.output, params=params, options=options,
                          overwrite=args.overwrite, subject=subject)
    print(f"{args.output}: {summary['samples']} samples x {summary['channels']} channels, "
          f"{summary['markers']} markers, {summary['trials']} trials")
    return 0
