"""``mepkit demo``: a live session against the virtual subject, end to end.

Starts the virtual subject over LSL (``mepkit simulate --auto-pulses`` in a child
process), records it with ``mepkit record`` for ``--duration`` seconds, prints the
summary and where the record is. Without the simulator (or without LSL) it falls
back to ``mepkit analyze`` on the bundled sample recording.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_XDF = ROOT / "sample_data" / "sample_session.xdf"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="record a live session of the virtual subject (about a minute)",
        description="Publish the virtual subject's EMG and TMS markers over LSL, record them "
                    "live with 'mepkit record' and show the trials, the summary and the record.")
    p.add_argument("--duration", type=float, default=60.0, metavar="S",
                   help="seconds of recording (default 60)")
    p.add_argument("--quick", action="store_true", help="a 6 s session (for tests)")
    p.add_argument("--isi", nargs=2, type=float, default=(1.5, 2.5), metavar=("MIN", "MAX"),
                   help="seconds between pulses (default 1.5 2.5)")
    p.add_argument("-o", "--output", metavar="FILE.h5",
                   help="the record (default out/demo-<time>.h5)")
    p.add_argument("--offline", action="store_true",
                   help="skip LSL: analyse the sample recording instead")
    p.set_defaults(func=run)


def _simulator_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("mepkit.sim.outlet", "mepkit_cli.simulate"))


def _offline(reason: str) -> int:
    from mepkit_cli.main import build_parser

    print(f"mepkit demo: {reason}; analysing the sample recording instead\n", file=sys.stderr)
    if not SAMPLE_XDF.exists():
        print(f"mepkit demo: {SAMPLE_XDF} is missing too", file=sys.stderr)
        return 1
    from mepkit_cli import analyze

    args = build_parser().parse_args(["analyze", str(SAMPLE_XDF), "--no-progress"])
    return analyze.run(args)


def run(args: argparse.Namespace) -> int:
    import subprocess
    import time
    import uuid

    from mepkit_cli.main import UserError, build_parser

    duration = 6.0 if args.quick else args.duration
    if not duration > 0:
        raise UserError(f"--duration must be > 0, got {duration}")
    if args.offline:
        return _offline("--offline")
    if not _simulator_available():
        return _offline("the virtual subject (mepkit simulate) is not available")
    isi = (0.4, 0.6) if args.quick else tuple(args.isi)
    out = Path(args.output) if args.output else (
        Path("out") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.h5")
    out.parent.mkdir(parents=True, exist_ok=True)
    sid = f"mepkit-demo-{uuid.uuid4().hex[:8]}"
    name = f"mepkit-demo-emg-{sid[-8:]}"
    sim_cmd = [sys.executable, "-m", "mepkit_cli.main", "simulate", "--auto-pulses",
               "--isi", str(isi[0]), str(isi[1]), "--channels", "FDI_R,APB_R,ADM_R",
               "--name", name, "--source-id", sid, "--duration", str(duration + 30)]
    print(f"mepkit demo: starting the virtual subject over LSL ({name}, source_id {sid})",
          file=sys.stderr, flush=True)
    sim = subprocess.Popen(sim_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    try:
        time.sleep(0.5)
        if sim.poll() is not None:
            err = sim.stderr.read() if sim.stderr else ""
            return _offline(f"the virtual subject did not start ({err.strip()[-300:]})")
        rec_args = build_parser().parse_args([
            "record", "--emg", name, "--markers", f"{name}-markers", "--source-id", sid,
            "--marker-source-id", f"{sid}-markers", "-o", str(out), "--overwrite",
            "--duration", str(duration), "--subject", "virtual-healthy",
            "--session", "demo"])
        from mepkit_cli import record

        rc = record.run(rec_args)
    finally:
        if sim.poll() is None:
            sim.terminate()
            try:
                sim.wait(5)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
    if rc == 0 and out.exists():
        from mepkit.records import format_info, open_record

        with open_record(out) as r:
            print("\n" + format_info(r))
        print(f"\nthe record is {out} — try: mepkit info {out}; mepkit analyze {out}")
    return rc
