"""What ``mepkit threshold`` and ``mepkit recruitment`` share: streams, the virtual
subject, the stimulator, the runner and the progress display."""

from __future__ import annotations

import argparse
import math
import sys
import uuid
from typing import Any, Callable

from mepkit_cli._common import add_param_options, add_view_options, params_from_args, start_view

MUSCLES = ("FDI", "APB", "ADM")


def add_closed_loop_options(p: argparse.ArgumentParser) -> None:
    """Streams, stimulator, virtual subject, target, spacing and gating options."""
    g = p.add_argument_group("streams and record")
    g.add_argument("--emg", metavar="NAME", help="EMG stream name")
    g.add_argument("--markers", metavar="NAME", help="marker stream name (one marker per pulse, "
                   "from the stimulator or its software)")
    g.add_argument("--trigger-channel", metavar="LABEL",
                   help="a TTL channel of the EMG stream instead of markers")
    g.add_argument("--source-id", metavar="ID", help="source_id of the EMG stream")
    g.add_argument("--marker-source-id", metavar="ID", help="source_id of the marker stream")
    g.add_argument("--emg-type", default="EMG", metavar="TYPE",
                   help="required type of the EMG stream (default EMG; 'any' accepts any)")
    g.add_argument("--unit", metavar="UNIT", help="unit of the EMG samples (V, mV, uV)")
    add_position_options(g)
    g.add_argument("-o", "--output", metavar="FILE.h5", required=True, help="the record to write")
    g.add_argument("--overwrite", action="store_true", help="replace an existing record")
    g.add_argument("--subject", metavar="ID", help="subject identifier stored in the record")
    g.add_argument("--session", metavar="ID", help="session identifier stored in the record")
    g.add_argument("--resolve-timeout", type=float, default=5.0, metavar="S",
                   help="how long to look for each stream (default 5 s)")
    g = p.add_argument_group("stimulator")
    g.add_argument("--stimulator", choices=("simulated", "manual"),
                   help="'manual': you are told the intensity to set, fire, and press Enter "
                        "(default); 'simulated': the virtual subject's stimulator (--simulate)")
    g.add_argument("--simulate", action="store_true",
                   help="run against the virtual subject, started in this process and read "
                        "over LSL like a real amplifier; the stimulator is the simulated one")
    g.add_argument("--preset", default="healthy",
                   choices=("healthy", "stroke-mild", "stroke-severe"),
                   help="virtual subject (--simulate; default healthy)")
    g.add_argument("--lesioned", default="right", choices=("left", "right"),
                   help="lesioned hemisphere of the stroke presets (default right)")
    g = p.add_argument_group("target and timing (defaults and sources: docs/methods.md)")
    g.add_argument("--channel", metavar="LABEL",
                   help="the target muscle's channel (default: FDI of the stimulated "
                        "hemisphere's hand with --simulate, else the first channel)")
    g.add_argument("--hemisphere", default="left", choices=("left", "right"),
                   help="stimulated hemisphere (default left)")
    g.add_argument("--interval", type=float, default=None, metavar="S",
                   help="shortest time between pulses (default 5 s)")
    g.add_argument("--jitter", type=float, default=None, metavar="FRACTION",
                   help="intervals are drawn from [S, S * (1 + FRACTION)] (default 0.2)")
    g.add_argument("--relax", type=float, default=None, metavar="S",
                   help="the target muscle must have been relaxed this long before a pulse "
                        "(default 0.5 s)")
    g.add_argument("--no-gate", action="store_true",
                   help="fire without waiting for the muscle to relax")
    g.add_argument("--trial-timeout", type=float, default=None, metavar="S",
                   help="a pulse whose trial has not come after S s is rejected (default 3)")
    g.add_argument("--max-pulses", type=int, metavar="N", help="stop after N pulses")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the interval jitter and of the virtual subject (default 0)")
    add_view_options(p)
    add_param_options(p)


def add_position_options(g: Any) -> None:
    """``--positions NAME``, ``--positions-source-id``, ``--position-max-age`` (also used by
    ``mepkit record``)."""
    g.add_argument("--positions", metavar="NAME",
                   help="neuronavigation stream of coil positions (channels x_mm, y_mm, "
                        "z_mm): trials whose marker has no position get the one at their "
                        "pulse; recorded raw")
    g.add_argument("--positions-source-id", metavar="ID",
                   help="source_id of the position stream")
    g.add_argument("--position-max-age", type=float, metavar="S",
                   help="a position sample older than S at the pulse is not used (default "
                        "0.25 s; docs/methods.md)")


def position_session_options(args: argparse.Namespace) -> dict[str, Any]:
    """The LiveSession keywords of the position options (checked)."""
    from mepkit_cli.main import UserError

    age = args.position_max_age
    if age is not None and not (math.isfinite(age) and age > 0):
        raise UserError(f"--position-max-age must be > 0 s, got {age}")
    return {"positions": args.positions, "positions_source_id": args.positions_source_id,
            "position_max_age_s": age}


def _hand(hemisphere: str) -> str:
    return "R" if hemisphere == "left" else "L"


def _check(args: argparse.Namespace) -> None:
    from mepkit_cli.main import UserError

    if args.simulate:
        if args.stimulator == "manual":
            raise UserError("--simulate fires the virtual subject's own stimulator; "
                            "--stimulator manual contradicts it (leave --stimulator out)")
        if args.emg or args.markers or args.source_id or args.marker_source_id \
                or args.trigger_channel or args.positions or args.positions_source_id:
            raise UserError("--simulate makes its own streams; do not give --emg, --markers, "
                            "--positions, --source-id, --marker-source-id or "
                            "--trigger-channel with it")
        args.stimulator = "simulated"
    else:
        if args.stimulator == "simulated":
            raise UserError("--stimulator simulated needs the virtual subject: add --simulate")
        args.stimulator = args.stimulator or "manual"
        if not (args.emg or args.source_id):
            raise UserError("no EMG stream: give --emg NAME (or --source-id), or --simulate")
        if not (args.markers or args.marker_source_id or args.trigger_channel):
            raise UserError("no source of pulses: give --markers NAME (the stimulator's "
                            "markers) or --trigger-channel LABEL, or --simulate")
    if not args.output.lower().endswith((".h5", ".hdf5")):
        raise UserError(f"{args.output}: the record must end in .h5")
    for opt in ("interval", "relax", "trial_timeout", "jitter"):
        value = getattr(args, opt)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"--{opt.replace('_', '-')} must be >= 0, got {value}")
    if args.trial_timeout is not None and args.trial_timeout <= 0:
        raise UserError(f"--trial-timeout must be > 0, got {args.trial_timeout}")
    if args.max_pulses is not None and args.max_pulses < 1:
        raise UserError(f"--max-pulses must be >= 1, got {args.max_pulses}")


def _describe_estimate(estimate: Any) -> str:
    if estimate is None:
        return "no estimate yet"
    message = getattr(estimate, "message", "")
    if message:
        return str(message)
    d = estimate.as_dict()
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in d.items() if not isinstance(v, (dict, list)))


def run_closed_loop(args: argparse.Namespace, make_protocol: Callable[[Any], Any],
                    command: str, active: bool = False,
                    describe: Callable[[Any], str] | None = None,
                    navigation: bool = False,
                    report: Callable[[Any, Any], None] | None = None) -> int:
    """Start the streams (or the virtual subject), run the protocol live, report.

    ``make_protocol(params)`` builds the protocol once the parameters are known (with
    ``--simulate``, ``args.virtual_subject`` is the subject by then);
    ``describe(estimate)`` gives the one-line summary (default: the estimate's
    ``message``, else its scalar fields). ``navigation``: with ``--simulate`` the
    virtual amplifier publishes a neuronavigation stream, its markers carry no
    position, and the session reads the positions from that stream. ``report(result,
    protocol)`` prints what is left to print after the run (maps, figures).
    """
    describe = describe or _describe_estimate
    import signal

    from mepkit.errors import MepkitError
    from mepkit.live import LiveSession
    from mepkit.protocols import runner as rn
    from mepkit.protocols.base import ProtocolError
    from mepkit_cli.main import UserError

    _check(args)
    position_opts = position_session_options(args)
    params = params_from_args(args)
    subject = None
    if args.simulate:
        from mepkit.sim.subject import VirtualSubject

        subject = VirtualSubject.from_preset(args.preset, seed=args.seed,
                                             lesioned_hemisphere=args.lesioned)
    args.virtual_subject = subject
    if active:
        # the background of an active threshold is the contraction itself: trials are not
        # rejected for it, and the gate waits for a contraction instead of relaxation
        gate_limit_uv = params.background_limit_uv
        params = params.replace(background_limit_uv=1e9)
    else:
        gate_limit_uv = None
    try:
        protocol = make_protocol(params)
    except (ProtocolError, ValueError) as exc:
        raise UserError(str(exc)) from None
    amp = None
    channel = args.channel
    emg, markers = args.emg, args.markers
    source_id, marker_source_id = args.source_id, args.marker_source_id
    if args.simulate:
        from mepkit.sim.outlet import SimulatedAmplifier

        hand = _hand(args.hemisphere)
        sid = f"mepkit-{command}-{uuid.uuid4().hex[:8]}"
        amp = SimulatedAmplifier(subject, channels=[f"{m}_{hand}" for m in MUSCLES],
                                 name=f"{sid}-emg", source_id=sid, seed=args.seed,
                                 navigation=navigation, marker_positions=not navigation)
        emg, markers = amp.name, amp.marker_name
        if navigation:
            position_opts["positions"] = amp.navigation_name
            position_opts["positions_source_id"] = amp.navigation_source_id
        source_id, marker_source_id = amp.source_id, amp.marker_source_id
        channel = channel or f"FDI_{hand}"
        if active:  # the subject holds a slight contraction of the target hand throughout,
            # clearly above the rest limit but far below the 200 µV criterion
            amp.contract(24 * 3600.0, hand, rms_uv=1.5 * gate_limit_uv)
        print(f"mepkit {command}: virtual subject {args.preset!r} (seed {args.seed}) on "
              f"{amp.name!r}", file=sys.stderr, flush=True)
    trig = args.trigger_channel
    if trig is not None and trig.isdigit():
        trig = int(trig)
    emg_type = None if (args.emg_type or "").lower() == "any" else args.emg_type
    try:
        session = LiveSession(
            emg=emg, markers=markers, trigger_channel=trig, params=params,
            record_path=args.output, overwrite=args.overwrite, emg_type=emg_type,
            source_id=source_id, marker_source_id=marker_source_id, unit=args.unit,
            resolve_timeout_s=args.resolve_timeout,
            subject=args.subject or (f"virtual-{args.preset}" if args.simulate else None),
            session={"identifier": args.session or command, "protocol": protocol.name},
            **position_opts)
    except ValueError as exc:
        if amp is not None:
            amp.stop()
        raise UserError(str(exc)) from None

    try:  # the page's port is taken before anything is measured
        view = start_view(args, session, protocol=protocol,
                          channels=[channel] if channel else None,
                          title=f"mepkit {command}: {protocol.name}")
    except MepkitError:
        if amp is not None:
            amp.stop()
        raise

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stimulator = None
    try:
        try:
            session.start()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if channel is not None and channel not in session.channels:
            raise UserError(f"--channel {channel!r} is not in the EMG stream; its channels are "
                            f"{', '.join(session.channels)}")
        channel = channel or session.channels[0]
        if view is not None:
            view.channels = [channel]  # before the first pulse
        if args.stimulator == "simulated":
            from mepkit.sim.stimulator import SimulatedStimulator

            stimulator = SimulatedStimulator(amp)
        else:
            from mepkit.sim.stimulator import ManualStimulator

            stimulator = ManualStimulator()
        opts: dict[str, Any] = {"channel": channel, "hemisphere": args.hemisphere,
                                "seed": args.seed, "max_pulses": args.max_pulses,
                                "gate": None if args.no_gate else ("active" if active else "rest"),
                                "gate_limit_uv": gate_limit_uv}
        for opt, key in (("interval", "min_interval_s"), ("jitter", "jitter"),
                         ("relax", "relax_s"), ("trial_timeout", "trial_timeout_s")):
            if getattr(args, opt) is not None:
                opts[key] = getattr(args, opt)
        t0 = session.now_s()

        def on_step(row: dict[str, Any], proto: Any) -> None:
            if view is not None:
                view.update_protocol(proto)  # the estimate, computed in this thread
            amp_uv = row["amplitude_uv"]
            amp_txt = "-" if amp_uv is None else f"{amp_uv:.0f} µV"
            flag = ("rejected: " + (row["reject_reason"] or row["note"])) if not row["counted"] \
                else ""
            try:
                est = describe(proto.estimate)
            except ProtocolError:
                est = "no estimate yet"
            where = ""
            if row.get("proposed_x_mm") is not None:  # a spatial protocol: where the coil was
                x, y = row.get("x_mm"), row.get("y_mm")
                where = (f"{row.get('site') or ''} ({x:.1f}, {y:.1f}) mm  "
                         if x is not None and y is not None else "")
            print(f"pulse {row['step'] + 1:3d}  t {row['pulse_time_s'] - t0:7.1f} s  {where}"
                  f"{row['intensity_pct_mso']:5.1f} %MSO  {row['channel']} {amp_txt:>8}  "
                  f"{flag:<20} | {est}", flush=True)

        def on_wait(level: Any, waited_s: float) -> None:
            if waited_s >= 2.0:
                rms = max(level.rms_uv) if len(level.rms_uv) else float("nan")
                want = "contract" if active else "relax"
                print(f"waiting for the {channel} muscle to {want}: background "
                      f"{rms:.0f} µV (limit {opts.get('gate_limit_uv') or params.background_limit_uv:g} "
                      f"µV), {waited_s:.0f} s", file=sys.stderr, flush=True)

        try:
            runner = rn.ClosedLoopRunner(session, stimulator, protocol, on_step=on_step,
                                         on_wait=on_wait, **opts)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        interval = opts.get("min_interval_s", rn.MIN_INTERVAL_S)
        print(f"mepkit {command}: {protocol.name} on {channel}, {args.hemisphere} hemisphere, "
              f"pulses at least {interval:g} s apart, stimulator {args.stimulator}, record "
              f"{args.output}; Ctrl-C stops", file=sys.stderr, flush=True)
        result = runner.run()
    except MepkitError:
        raise
    finally:
        session.stop()
        if view is not None:
            view.stop()
        if stimulator is not None:
            stimulator.close()
        if amp is not None:
            amp.stop()
    print(f"\n{protocol.name}: {describe(result.estimate)}")
    levels = getattr(result.estimate, "levels", None)
    if levels:  # a recruitment curve: one line per level
        print(f"{'%MSO':>6} {'% RMT':>10} {'n':>3} {'rej':>4} {'median µV':>10} "
              f"{'mean µV':>9} {'MEPs':>5}")
        for lv in levels:
            pct = "/".join(f"{p:g}" for p in lv.pct_rmt)
            med = "-" if lv.n == 0 else f"{lv.median_uv:.0f}"
            mean = "-" if lv.n == 0 else f"{lv.mean_uv:.0f}"
            print(f"{lv.intensity_pct_mso:>6g} {pct:>10} {lv.n:>3} {lv.n_rejected:>4} "
                  f"{med:>10} {mean:>9} {lv.n_meps:>5}")
    if report is not None:
        report(result, protocol)
    print(f"{len(result.steps)} pulses ({sum(bool(s['counted']) for s in result.steps)} counted); "
          f"{'finished' if result.reason == 'done' else 'stopped: ' + result.reason}")
    print(f"record: {args.output}" + ("" if result.saved else " (incomplete: see the errors)"))
    missing = session.status.positions_missing
    if missing:
        print(f"mepkit {command}: {missing} trial(s) without a coil position: the position "
              f"stream lagged or stopped (see the warnings)", file=sys.stderr)
    if session.error is not None:
        from mepkit.live import one_line

        print(f"mepkit {command}: error: the live session failed: {one_line(session.error)}",
              file=sys.stderr)
        return 1
    if result.interrupted:
        return 130
    return 1 if result.error else 0
