"""Options shared by several subcommands."""

from __future__ import annotations

import argparse


def add_param_options(p: argparse.ArgumentParser) -> None:
    """Options for the main measurement parameters (defaults: docs/methods.md)."""
    g = p.add_argument_group("measurement (defaults and sources: docs/methods.md)")
    g.add_argument("--params", metavar="JSON", help="a JSON file of parameters (as stored in records)")
    g.add_argument("--response-window", nargs=2, type=float, metavar=("START_MS", "STOP_MS"))
    g.add_argument("--background-window", nargs=2, type=float, metavar=("START_MS", "STOP_MS"))
    g.add_argument("--artifact-window", nargs=2, type=float, metavar=("START_MS", "STOP_MS"))
    g.add_argument("--detection-threshold", type=float, metavar="UV",
                   help="peak-to-peak amplitude that counts as an MEP (default 50 uV)")
    g.add_argument("--background-limit", type=float, metavar="UV",
                   help="reject trials whose pre-stimulus RMS exceeds this (default 20 uV)")
    g.add_argument("--line-freq", metavar="50|60|none|auto",
                   help="mains frequency removed from each epoch: 50, 60, none (0 too), or "
                        "auto (default: found from the data)")
    g.add_argument("--lowpass", type=float, metavar="HZ", help="epoch low-pass (0 disables)")


def params_from_args(args: argparse.Namespace):
    """Build Params from ``--params`` plus the single-field options."""
    from mepkit.params import Params
    from mepkit_cli.main import UserError

    base, changes = param_options(args)
    try:
        return (base or Params()).replace(**changes) if changes else (base or Params())
    except ValueError as exc:
        raise UserError(str(exc)) from None


def param_options(args: argparse.Namespace):
    """``(Params from --params or None, {field: value} of the single-field options)``."""
    import json

    from mepkit.params import Params
    from mepkit_cli.main import UserError

    base = None
    if getattr(args, "params", None):
        try:
            with open(args.params, encoding="utf-8") as f:
                base = Params.from_dict(json.load(f))
        except OSError as exc:
            raise UserError(f"{args.params}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"{args.params}: bad parameters: {exc}") from None
    changes = {}
    for opt, field in (("response_window", "response_window_ms"),
                       ("background_window", "background_window_ms"),
                       ("artifact_window", "artifact_window_ms"),
                       ("detection_threshold", "detection_threshold_uv"),
                       ("background_limit", "background_limit_uv")):
        value = getattr(args, opt, None)
        if value is not None:
            changes[field] = value
    if getattr(args, "line_freq", None) is not None:
        text = str(args.line_freq).strip().lower()
        if text in ("none", "0", "0.0", "off"):
            changes["line_freq_hz"] = None
        elif text == "auto":
            changes["line_freq_hz"] = "auto"
        else:
            try:
                changes["line_freq_hz"] = float(text)
            except ValueError:
                raise UserError(f"--line-freq must be 50, 60, none or auto, got "
                                f"{args.line_freq!r}") from None
    if getattr(args, "lowpass", None) is not None:
        changes["lowpass_hz"] = args.lowpass or None
    try:
        (base or Params()).replace(**changes)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return base, changes


def mains_line(line_freq_hz, source: str) -> str:
    """The line printed about the mains: ``mains: 60 Hz (detected)``."""
    from mepkit.dsp.mains import describe

    return describe(line_freq_hz, source)


def add_trigger_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pulses")
    g.add_argument("--trigger-channel", metavar="LABEL",
                   help="a TTL channel in the EMG stream (label or index): rising edges are pulses")
    g.add_argument("--artifact-triggers", action="store_true",
                   help="find pulses from the stimulus artifact")
    g.add_argument("--marker-filter", metavar="REGEX",
                   help="only markers matching REGEX are pulses")
    g.add_argument("--unit", metavar="UNIT", help="unit of the EMG samples (V, mV, uV): "
                   "overrides the stream metadata")


def add_view_options(p: argparse.ArgumentParser) -> None:
    """``--view``, ``--view-port``, ``--view-host``: the live page of the session."""
    from mepkit.view import DEFAULT_HOST, DEFAULT_PORT  # light: no numpy work at import

    g = p.add_argument_group("live view (docs/live.md)")
    g.add_argument("--view", action="store_true",
                   help="serve a live page of the session (traces, amplitudes, estimate, map)")
    g.add_argument("--view-port", type=int, default=DEFAULT_PORT, metavar="N",
                   help=f"port of the live page (default {DEFAULT_PORT}; 0 picks a free one)")
    g.add_argument("--view-host", default=DEFAULT_HOST, metavar="ADDR",
                   help=f"address to serve on (default {DEFAULT_HOST}: this machine only; "
                        f"0.0.0.0 makes it reachable from the network)")


def start_view(args: argparse.Namespace, session, *, protocol=None, channels=None,
               title: str = "mepkit live"):
    """Start the live view when ``--view`` was given (before the session starts), else None.

    A port in use raises `UsageError` (one line) before anything is measured.
    """
    import sys

    if not getattr(args, "view", False):
        return None
    from mepkit.view import LiveView

    view = LiveView(session, protocol=protocol, channels=channels, host=args.view_host,
                    port=args.view_port, title=title).start()
    print(f"live view: {view.url}", file=sys.stderr, flush=True)
    return view
