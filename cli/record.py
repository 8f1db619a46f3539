"""``mepkit record``: measure MEPs live from LSL and write the session record."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from mepkit_cli._common import (add_param_options, add_trigger_options, add_view_options,
                                mains_line, params_from_args, start_view)

#: Seconds between status lines when stderr is not a terminal.
STATUS_EVERY_S = 5.0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "record", help="measure MEPs live from LSL streams and record the session",
        description="Resolve an EMG stream (and a marker stream) on the lab network, measure "
                    "every MEP as it happens and write everything to an HDF5 record. Runs "
                    "until Ctrl-C (or --duration); the record is closed cleanly either way.")
    p.add_argument("--emg", metavar="NAME", help="EMG stream name (default: the stream of "
                   "type --emg-type)")
    p.add_argument("--markers", metavar="NAME", help="marker stream name (one marker per pulse)")
    p.add_argument("-o", "--output", metavar="FILE.h5", required=True, help="the record to write")
    p.add_argument("--emg-type", default="EMG", metavar="TYPE",
                   help="required type of the EMG stream (default EMG; 'any' accepts any)")
    p.add_argument("--source-id", metavar="ID", help="source_id of the EMG stream")
    p.add_argument("--marker-source-id", metavar="ID", help="source_id of the marker stream")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--overwrite", action="store_true", help="replace an existing record")
    p.add_argument("--subject", metavar="ID", help="subject identifier stored in the record")
    p.add_argument("--session", metavar="ID", help="session identifier stored in the record")
    p.add_argument("--resolve-timeout", type=float, default=5.0, metavar="S",
                   help="how long to look for each stream (default 5 s)")
    p.add_argument("--quiet", action="store_true", help="no trial table, only the summary")
    from mepkit_cli._closed_loop import add_position_options

    add_position_options(p)
    add_trigger_options(p)
    add_view_options(p)
    add_param_options(p)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------- table
class TrialTable:
    """Prints one line per trial: time, intensity, per channel amplitude/latency/flag."""

    def __init__(self, channels, t0_s: float, out=sys.stdout) -> None:
        self.channels = list(channels)
        self.t0_s = t0_s
        self.out = out
        self.width = max(14, max(len(c) for c in self.channels) + 1)

    def header(self) -> None:
        cells = "".join(f"{c[:self.width - 1]:>{self.width}}" for c in self.channels)
        print(f"{'trial':>5} {'time s':>8} {'%MSO':>5}{cells} {'bg µV':>6}", file=self.out)
        print(f"{'':>20}" + "".join(f"{'µV   ms':>{self.width}}" for _ in self.channels)
              + "   (+ MEP, - none, R rejected)", file=self.out)

    def row(self, trial) -> None:
        cells = []
        for c in range(len(self.channels)):
            amp, lat = trial.amplitude_uv[c], trial.latency_ms[c]
            if trial.reject_reason[c]:
                flag = "R"
            else:
                flag = "+" if trial.detected[c] else "-"
            a = f"{amp:.0f}" if math.isfinite(amp) else "-"
            l_ = f"{lat:.1f}" if math.isfinite(lat) else "-"
            cells.append(f"{a + ' ' + l_ + ' ' + flag:>{self.width}}")
        bg = trial.background_rms_uv
        bgs = f"{max(bg):.1f}" if len(bg) and all(math.isfinite(v) for v in bg) else "-"
        inten = trial.stim.intensity_pct_mso
        it = f"{inten:.0f}" if math.isfinite(inten) else "-"
        reasons = sorted({r for r in trial.reject_reason if r})
        tail = f"  rejected: {','.join(reasons)}" if reasons else ""
        print(f"{trial.index:>5} {trial.stim_time_s - self.t0_s:>8.2f} {it:>5}{''.join(cells)} "
              f"{bgs:>6}{tail}", file=self.out, flush=True)


def _summary(session, wall_s: float, cpu_s: float, out=sys.stdout) -> None:
    import numpy as np

    st = session.status
    lat = session.latencies_s * 1e3
    lat = lat[np.isfinite(lat)]
    print(f"\n{st.trials} trials: {st.detected} with an MEP, {st.rejected} rejected", file=out)
    print(f"samples {st.samples}, dropped {st.drops} in {st.gaps} gap(s), "
          f"outages {st.outages}, markers {st.markers}", file=out)
    if st.positions or st.positions_missing:
        print(f"coil positions {st.positions}; {st.positions_missing} trial(s) without one "
              f"(the position stream lagged or stopped)", file=out)
    if lat.size:
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"result latency (available - last sample): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
              f"max {lat.max():.2f} ms (n={lat.size})", file=out)
    else:
        print("result latency: no trials", file=out)
    if wall_s > 0:
        print(f"cpu load {100.0 * cpu_s / wall_s:.1f} % over {wall_s:.1f} s", file=out)
    if session.record_path:
        print(f"record: {session.record_path}", file=out)
    out.flush()


def run(args: argparse.Namespace) -> int:
    import signal

    from mepkit.live import LiveSession
    from mepkit_cli.main import UserError

    params = params_from_args(args)
    if not (args.markers or args.marker_source_id or args.trigger_channel
            or args.artifact_triggers):
        raise UserError("no source of pulses: give --markers NAME, --trigger-channel LABEL or "
                        "--artifact-triggers")
    if args.duration is not None and not args.duration > 0:
        raise UserError(f"--duration must be > 0, got {args.duration}")
    if not args.output.lower().endswith((".h5", ".hdf5")):
        raise UserError(f"{args.output}: the record must end in .h5")
    if args.marker_filter:
        import re

        try:
            re.compile(args.marker_filter)
        except re.error as exc:
            raise UserError(f"--marker-filter {args.marker_filter!r} is not a valid regex: {exc}")
    from mepkit_cli._closed_loop import position_session_options

    position_opts = position_session_options(args)
    emg_type = None if (args.emg_type or "").lower() == "any" else args.emg_type
    try:
        session = LiveSession(
            emg=args.emg, markers=args.markers, trigger_channel=args.trigger_channel, params=params,
            record_path=args.output, subject=args.subject, session=args.session,
            overwrite=args.overwrite, emg_type=emg_type, source_id=args.source_id,
            marker_source_id=args.marker_source_id, unit=args.unit,
            marker_filter=args.marker_filter, artifact_triggers=args.artifact_triggers,
            resolve_timeout_s=args.resolve_timeout, **position_opts)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    # the page's port is taken before anything is measured: a port in use is a clean error
    view = start_view(args, session, title=f"mepkit record: {os.path.basename(args.output)}")

    class _Stop(Exception):
        pass

    def on_term(signum, frame):
        raise _Stop()

    old_term = signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C must stop the recording even when the parent started us with SIGINT ignored
    # (an ignored signal is inherited across exec, and Python then keeps it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cpu0, wall0 = time.process_time(), time.monotonic()
    tty = sys.stderr.isatty()
    interrupted = False
    try:
        try:
            session.start()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        print(f"recording {session.emg.meta.describe()}"
              + (f" with markers {session.marker_inlet.meta.name!r}"
                 if session.marker_inlet else "")
              + f" to {args.output}" + ("" if args.duration is None else
                                        f" for {args.duration:g} s")
              + "; Ctrl-C stops", file=sys.stderr, flush=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        steady = False  # the load is counted from when the kernels are loaded
        n_mains = 0
        if params.line_freq_hz != "auto":
            print(mains_line(params.line_freq_hz, "set"), file=sys.stderr, flush=True)
        table = None
        deadline = None if args.duration is None else time.monotonic() + args.duration
        next_status = time.monotonic() + (0.5 if tty else STATUS_EVERY_S)
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = 0.25 if deadline is None else max(0.0, min(0.25, deadline - now))
            trial = session.next_trial(timeout=wait)
            if not steady and session.measuring:
                cpu0, wall0, steady = time.process_time(), time.monotonic(), True
            decisions = session.mains_decisions
            for d in decisions[n_mains:]:
                if tty:
                    print("\r\033[K", end="", file=sys.stderr)
                print(mains_line(d.line_freq_hz, "detected"), file=sys.stderr, flush=True)
            n_mains = len(decisions)
            if trial is not None and not args.quiet:
                if table is None:
                    t0 = session.emg.first_timestamp_s or trial.stim_time_s
                    table = TrialTable(trial.channels, t0)
                    if tty:
                        print("\r\033[K", end="", file=sys.stderr)
                    table.header()
                elif tty:
                    print("\r\033[K", end="", file=sys.stderr)
                table.row(trial)
            if trial is None and not session.running:
                break
            if time.monotonic() >= next_status:
                line = session.status.line()
                if tty:
                    print("\r\033[K" + line[:200], end="", file=sys.stderr, flush=True)
                    next_status = time.monotonic() + 0.5
                else:
                    print(line, file=sys.stderr, flush=True)
                    next_status = time.monotonic() + STATUS_EVERY_S
    except (KeyboardInterrupt, _Stop):
        interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the close
    except Exception as exc:  # the acquisition thread's error, raised again here
        if exc is not session.error:
            raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        session.stop()
        if view is not None:
            view.stop()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if tty:
            print("\r\033[K", end="", file=sys.stderr)
    if interrupted:
        print("mepkit record: stopped; record closed", file=sys.stderr)
    _summary(session, time.monotonic() - wall0, time.process_time() - cpu0)
    if view is not None:
        print(f"live view: {view.n_trials} trials shown, {view.n_requests} requests served",
              file=sys.stderr, flush=True)
    if session.error is not None:
        from mepkit.live import one_line

        print(f"mepkit record: error: the session stopped early ({one_line(session.error)}); "
              f"the record {args.output} keeps everything written until then",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        # after a failed write (a full disk) libhdf5 crashes when the interpreter shuts
        # down; everything is closed and said, so end here with the error status
        os._exit(1)
    return 0
