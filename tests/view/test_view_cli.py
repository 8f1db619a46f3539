"""``--view`` on the command line: ``mepkit threshold --simulate --view`` serves the hunt live."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("pylsl")

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_threshold_view_shows_the_hunt_while_it_runs(tmp_path):
    port = _free_port()
    out = tmp_path / "rmt.h5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mepkit_cli.main", "threshold", "--simulate", "--method",
         "bayes", "--seed", "2", "--max-pulses", "8", "--interval", "0.4", "--jitter", "0.25",
         "--relax", "0.2", "-o", str(out), "--view", "--view-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state?since=0",
                                            timeout=5) as r:
                    d = json.load(r)
            except OSError:
                time.sleep(0.2)
                continue
            p = d["protocol"]
            if p and p["n_pulses"] >= 3 and p["estimate"] and len(d["trials"]) >= 3:
                seen = d
                break
            time.sleep(0.3)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert f"live view: http://127.0.0.1:{port}/" in stderr
    assert seen is not None, "the view never showed the hunt with an estimate"
    assert seen["config"]["trace_channels"] == ["FDI_R"]
    assert seen["protocol"]["name"] == "bayes"
    est = seen["protocol"]["estimate"]
    assert "threshold_pct_mso" in est and len(seen["protocol"]["history"]) >= 1
    steps = seen["protocol"]["steps"]
    assert [s["step"] for s in steps] == list(range(len(steps)))
    assert all(0 <= s["intensity_pct_mso"] <= 100 for s in steps)
    # the trials on the page are the hunt's pulses, at the hunt's intensities
    assert [t["intensity_pct_mso"] for t in seen["trials"][:3]] == pytest.approx(
        [s["intensity_pct_mso"] for s in steps[:3]], abs=0.51)
