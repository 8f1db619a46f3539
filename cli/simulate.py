"""``mepkit simulate``: publish a virtual subject's EMG and markers over LSL in real time.

With ``--auto-pulses`` the simulated stimulator fires by itself.  Otherwise
commands are read from standard input, one per line:

``fire INTENSITY [x=MM] [y=MM] [hemisphere=left|right] [site=..] [condition=..] [label=..]``
    fire one pulse;
``auto on|off``
    start/stop automatic pulses (``--intensity``, ``--isi``, ``--hemisphere``);
``contract R|L SECONDS``
    the subject contracts that hand voluntarily (background EMG rises; its MEPs are
    facilitated meanwhile);
``quit``
    stop.

End of input stops reading commands but not the streams (so ``mepkit simulate
&`` keeps running); ``--duration`` or Ctrl-C ends it.  One line per pulse goes
to standard output: LSL time, intensity, hemisphere and the true amplitudes.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="publish a virtual subject's EMG and TMS markers over LSL",
        description="Publish the EMG of a virtual TMS subject and a JSON marker stream over "
                    "LSL in real time. Pulses fire automatically (--auto-pulses) or on "
                    "commands read from stdin: 'fire 55', 'fire 55 x=10 y=-5 hemisphere=right', "
                    "'auto on', 'auto off', 'contract R 1.5', 'quit'. See docs/virtual-subject.md.")
    p.add_argument("--preset", default="healthy",
                   choices=("healthy", "stroke-mild", "stroke-severe"), help="subject (default healthy)")
    p.add_argument("--lesioned", default="right", choices=("left", "right"),
                   help="lesioned hemisphere of the stroke presets (default right)")
    p.add_argument("--seed", type=int, default=0, help="subject and noise seed (default 0)")
    p.add_argument("--rate", type=float, default=5000.0, metavar="HZ",
                   help="sampling rate (default 5000)")
    p.add_argument("--channels", metavar="N|LABELS",
                   help="number of EMG channels (extra ones are noise only) or comma-separated "
                        "labels, e.g. FDI_R,APB_R (default: all six hand muscles)")
    p.add_argument("--name", default="mepkit-virtual-emg", help="EMG stream name")
    p.add_argument("--source-id", help="EMG stream source_id (default random); markers get "
                                       "'<source-id>-markers'")
    p.add_argument("--auto-pulses", action="store_true", help="fire pulses by itself")
    p.add_argument("--isi", nargs=2, type=float, default=(4.0, 6.0), metavar=("MIN", "MAX"),
                   help="interval between automatic pulses in s (default 4 6)")
    p.add_argument("--intensity", nargs=2, type=float, default=(30.0, 80.0),
                   metavar=("MIN", "MAX"), help="automatic pulse intensities, %%MSO (default 30 80)")
    p.add_argument("--hemisphere", default="left", choices=("left", "right", "both"),
                   help="hemisphere of automatic pulses (default left)")
    p.add_argument("--ttl", action="store_true", help="add a TTL channel TRIG to the EMG stream")
    p.add_argument("--no-markers", action="store_true", help="no marker stream")
    p.add_argument("--marker-delay", type=float, default=0.0, metavar="S",
                   help="push markers this late (time stamps stay exact)")
    p.add_argument("--chunk-ms", type=float, default=1.0, metavar="MS",
                   help="samples per push, in ms (default 1)")
    p.add_argument("--stamps", default="push", choices=("push", "ideal"),
                   help="push: chunks without time stamps, stamped by liblsl at the push, as "
                        "real amplifier apps do (default); ideal: every sample stamped with "
                        "its true time")
    p.add_argument("--drift-ppm", type=float, default=0.0, metavar="PPM",
                   help="the amplifier's clock runs this much fast (negative: slow)")
    p.add_argument("--stall-every", type=float, metavar="S",
                   help="the app stalls now and then, on average every S seconds")
    p.add_argument("--stall-ms", nargs=2, type=float, default=(3.0, 15.0), metavar=("MIN", "MAX"),
                   help="stall durations, ms (default 3 15)")
    p.add_argument("--line-freq", type=float, default=50.0, metavar="HZ",
                   help="mains frequency, 50 or 60 (0: no mains)")
    p.add_argument("--contractions", type=float, default=0.0, metavar="PER_MIN",
                   help="voluntary contraction episodes per minute (default 0)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds "
                                                                "(default: until Ctrl-C or 'quit')")


def _parse_fire(words: list[str]) -> tuple[float, dict]:
    from mepkit_cli.main import UserError

    if not words:
        raise UserError("fire needs an intensity, e.g. 'fire 55'")
    try:
        intensity = float(words[0].rstrip("%"))
    except ValueError:
        raise UserError(f"not an intensity: {words[0]!r}") from None
    kw: dict = {}
    for w in words[1:]:
        key, sep, value = w.partition("=")
        if not sep:
            raise UserError(f"expected key=value, got {w!r}")
        if key in ("x", "y", "x_mm", "y_mm"):
            try:
                kw[key[0] + "_mm"] = float(value)
            except ValueError:
                raise UserError(f"{key} must be a number in mm, got {value!r}") from None
        elif key in ("hemisphere", "site", "condition", "label"):
            kw[key] = value
        else:
            raise UserError(f"unknown key {key!r} (x, y, hemisphere, site, condition, label)")
    return intensity, kw


def _format_pulse(i, p, labels) -> str:
    amps = p.truth["amplitude_uv"]
    parts = " ".join(f"{c}={a:.0f}" for c, a in zip(labels, amps))
    where = "" if p.x_mm is None and p.y_mm is None else f" x={p.x_mm} y={p.y_mm}"
    return (f"pulse {i + 1:4d}  t={p.time_s:.4f} s  "
            f"{p.intensity_pct_mso:5.1f} %MSO  {p.hemisphere:5s}{where}  true uV: {parts}")


def run(args: argparse.Namespace) -> int:
    import queue
    import threading
    import time
    from dataclasses import replace

    from mepkit.sim.outlet import SimulatedAmplifier
    from mepkit.sim.subject import EmgSettings, VirtualSubject
    from mepkit_cli.main import UserError

    if args.rate <= 0:
        raise UserError(f"--rate must be positive, got {args.rate}")
    if args.line_freq < 0:
        raise UserError(f"--line-freq must be 50, 60 or 0, got {args.line_freq}")
    lo, hi = args.intensity
    if not (0 <= lo <= hi <= 100):
        raise UserError(f"--intensity needs 0 <= MIN <= MAX <= 100, got {lo} {hi}")
    a, b = args.isi
    if not (0 < a <= b):
        raise UserError(f"--isi needs 0 < MIN <= MAX, got {a} {b}")
    if args.duration is not None and args.duration <= 0:
        raise UserError(f"--duration must be positive, got {args.duration}")
    if not args.chunk_ms > 0:
        raise UserError(f"--chunk-ms must be positive, got {args.chunk_ms}")
    emg = EmgSettings()
    emg = replace(emg, line_freq_hz=args.line_freq or 50.0,
                  line_amplitude_uv=emg.line_amplitude_uv if args.line_freq else 0.0,
                  contraction_rate_per_min=max(0.0, args.contractions))
    subject = VirtualSubject.from_preset(args.preset, seed=args.seed,
                                         lesioned_hemisphere=args.lesioned, emg=emg)
    n_channels = labels = None
    if args.channels:
        if args.channels.strip().isdigit():
            n_channels = int(args.channels)
            if n_channels < 1:
                raise UserError("--channels must be at least 1")
        else:
            labels = [c.strip() for c in args.channels.split(",") if c.strip()]
    try:
        amp = SimulatedAmplifier(subject, sfreq_hz=args.rate, n_channels=n_channels,
                                 channels=labels, name=args.name, source_id=args.source_id,
                                 markers=not args.no_markers, ttl=args.ttl,
                                 marker_delay_s=args.marker_delay, seed=args.seed,
                                 chunk_ms=args.chunk_ms, stamps=args.stamps,
                                 drift_ppm=args.drift_ppm, stall_every_s=args.stall_every,
                                 stall_ms=tuple(args.stall_ms))
    except ValueError as exc:
        raise UserError(str(exc)) from None

    def auto_on() -> None:
        amp.auto_pulses((lo, hi), (a, b), args.hemisphere)

    print(f"publishing {amp.name!r} (source_id {amp.source_id}, {args.rate:g} Hz, "
          f"channels {','.join(amp.channels)})"
          + ("" if args.no_markers else f" and {amp.marker_name!r} (source_id {amp.marker_source_id})"),
          flush=True)
    print(f"subject: {subject!r}", flush=True)
    commands: queue.Queue = queue.Queue()
    if args.auto_pulses:
        auto_on()
    else:
        print("commands: fire INTENSITY [x=MM y=MM hemisphere=left|right], auto on|off, "
              "contract R|L SECONDS, quit",
              flush=True)

        def read_stdin() -> None:
            for line in sys.stdin:
                commands.put(line)
            commands.put(None)

        threading.Thread(target=read_stdin, daemon=True).start()

    deadline = None if args.duration is None else time.monotonic() + args.duration
    printed = 0
    reading = not args.auto_pulses
    try:
        with amp:
            while deadline is None or time.monotonic() < deadline:
                pulses = amp.pulses
                for i in range(printed, len(pulses)):
                    print(_format_pulse(i, pulses[i], amp.emg_channels), flush=True)
                printed = len(pulses)
                if not reading:
                    time.sleep(0.05)
                    continue
                try:
                    line = commands.get(timeout=0.05)
                except queue.Empty:
                    continue
                if line is None:
                    reading = False
                    continue
                words = line.split()
                if not words or words[0].startswith("#"):
                    continue
                cmd = words[0].lower()
                try:
                    if cmd in ("quit", "exit", "q"):
                        break
                    if cmd == "fire":
                        intensity, kw = _parse_fire(words[1:])
                        amp.fire(intensity, **kw)
                    elif cmd == "auto" and len(words) == 2 and words[1] in ("on", "off"):
                        auto_on() if words[1] == "on" else amp.stop_auto_pulses()
                    elif cmd == "contract" and len(words) == 3:
                        try:
                            seconds = float(words[2])
                        except ValueError:
                            raise UserError(f"contract needs seconds, e.g. 'contract R 1.5', "
                                            f"got {words[2]!r}") from None
                        amp.contract(seconds, words[1].upper())
                    else:
                        raise UserError(f"unknown command {line.strip()!r} "
                                        "(fire INTENSITY [x= y= hemisphere=], auto on|off, "
                                        "contract R|L SECONDS, quit)")
                except (UserError, ValueError) as exc:
                    print(f"mepkit simulate: {exc}", file=sys.stderr, flush=True)
            pulses = amp.pulses
            if pulses:  # let the last response reach the stream before stopping
                amp.wait_pushed(pulses[-1], timeout=1.0)
                end = pulses[-1].sample_index + int(0.1 * args.rate)
                t_end = time.monotonic() + 1.0
                while amp.n_pushed < end and time.monotonic() < t_end:
                    time.sleep(0.005)
            for i in range(printed, len(pulses)):
                print(_format_pulse(i, pulses[i], amp.emg_channels), flush=True)
    except KeyboardInterrupt:
        pass
    stats = amp.timing_stats()
    if stats.get("n_pushes"):
        print(f"stopped after {amp.n_pushed / args.rate:.1f} s, {len(amp.pulses)} pulses; "
              f"push lag mean {stats['mean_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms", flush=True)
    return 0
