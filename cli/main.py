"""The ``mepkit`` command: a thin front end over the library.

Each subcommand lives in its own module of this package with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``. Modules import the heavy
parts of mepkit (numba, h5py, pylsl) inside ``run`` so ``mepkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mepkit.errors import MepkitError
from mepkit.errors import UsageError as UserError  # one class, also when run with -m

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ("analyze", "info", "convert", "simulate", "record", "threshold", "recruitment",
            "map", "hotspot", "excitability", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mepkit",
        description="Measure motor evoked potentials from EMG during TMS, live and in batch.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mepkit_cli.{name}")
        except Exception as exc:  # noqa: BLE001 - shown, never dropped silently
            why = f"{type(exc).__name__}: {exc}"
            p = sub.add_parser(name, help=f"UNAVAILABLE ({why})", add_help=False)
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(unavailable=why)
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(f"mepkit {version('mepkit')}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "unavailable", None):
        print(f"mepkit {args.command}: error: this command cannot be loaded "
              f"({args.unavailable}); the installation is broken", file=sys.stderr)
        return 1
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="mepkit: %(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    if args.verbose < 2:  # Dask's own chatter (cluster start/stop, comm teardown)
        for name in ("distributed", "tornado", "bokeh"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    module = importlib.import_module(f"mepkit_cli.{args.command}")
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"mepkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MepkitError as exc:
        print(f"mepkit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mepkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
