"""``mepkit info FILE...``: summarise session records."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="summarise session records (.h5)",
                              description="Print a summary of each mepkit session record: "
                                          "format, streams, markers, trials, warnings.")
    p.add_argument("files", nargs="+", metavar="FILE", help="record file(s)")


def run(args: argparse.Namespace) -> int:
    from mepkit.errors import MepkitError
    from mepkit.records import format_info, open_record

    status = 0
    for i, path in enumerate(args.files):
        try:
            with open_record(path) as record:
                text = format_info(record)
        except (MepkitError, OSError) as exc:
            msg = str(exc)
            if msg.startswith(f"{path}: "):
                msg = msg[len(path) + 2:]
            print(f"mepkit info: error: {path}: {msg}", file=sys.stderr)
            status = 1
            continue
        if i:
            print()
        print(text)
    return status
