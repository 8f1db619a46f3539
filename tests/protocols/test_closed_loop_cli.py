"""``mepkit threshold`` / ``mepkit recruitment`` end to end (subprocess, real liblsl)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

pytest.importorskip("pylsl")

from mepkit.records import open_record  # noqa: E402
from mepkit.sim.subject import VirtualSubject  # noqa: E402
from mepkit_cli.main import main  # noqa: E402

pytestmark = pytest.mark.timeout(90)

FAST = ["--interval", "0.4", "--jitter", "0.25", "--relax", "0.2"]


def cli(*args, stdin=None, timeout=75):
    return subprocess.run([sys.executable, "-m", "mepkit_cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_threshold_simulate_end_to_end(tmp_path):
    out = tmp_path / "rmt.h5"
    res = cli("threshold", "--simulate", "--method", "bayes", "--seed", "1", "--max-pulses",
              "14", "-o", str(out), *FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("pulse ")]
    assert lines and lines[0].startswith("pulse   1")
    assert f"record: {out}" in res.stdout
    with open_record(out) as rec:
        assert rec.closed_cleanly
        steps = [s.data for s in rec.protocol_steps]
        assert len(steps) == len(lines) <= 14
        assert all(s["channel"] == "FDI_R" and s["hemisphere"] == "left" for s in steps)
        trials = set(rec.trials["trial"])
        assert all(s["trial"] in trials for s in steps)
        (name, result), = rec.protocol_results.items()
        assert name == "bayes" and result["n_pulses"] == len(steps)
        assert result["runner"]["min_interval_s"] == 0.4
    est = result["estimate"]
    true_rmt = VirtualSubject.from_preset("healthy", seed=1).true_rmt("left")
    assert est["found"] and abs(est["threshold_pct_mso"] - true_rmt) < 8.0, (est, true_rmt)


def test_threshold_manual_stimulator_prompts_and_stops_on_q(tmp_path):
    """The operator confirms two pulses and quits. Nothing fires the (virtual) device, so
    no trial comes: both steps are rejected with a note; 'q' ends the run cleanly."""
    from mepkit.sim.outlet import SimulatedAmplifier

    sid = f"manual-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "manual.h5"
    with SimulatedAmplifier(name=f"{sid}-emg", source_id=sid, channels=["FDI_R"]) as amp:
        res = cli("threshold", "--method", "ml-pest", "--stimulator", "manual", "--emg",
                  amp.name, "--markers", amp.marker_name, "--source-id", sid,
                  "--marker-source-id", amp.marker_source_id, "--trial-timeout", "0.3",
                  "-o", str(out), *FAST, stdin="\n\nq\n")
    assert res.returncode == 1, res.stderr[-3000:]
    assert res.stderr.count("Set ") == 3 and "%MSO, left hemisphere" in res.stderr
    assert "stopped: stimulator: operator aborted" in res.stdout
    with open_record(out) as rec:
        steps = [s.data for s in rec.protocol_steps]
        assert len(steps) == 2
        assert all(s["rejected"] and "no trial within 0.3 s" in s["note"] for s in steps)
        assert steps[0]["intensity_pct_mso"] == steps[1]["intensity_pct_mso"]  # offered again
        assert rec.protocol_results["ml-pest"]["reason"].startswith("stimulator: operator")


def test_recruitment_simulate_end_to_end(tmp_path):
    out = tmp_path / "io.h5"
    subject = VirtualSubject.from_preset("healthy", seed=2)
    rmt = round(subject.true_rmt("right"))
    res = cli("recruitment", "--simulate", "--hemisphere", "right", "--seed", "2", "--rmt",
              str(rmt), "--levels", "90", "140", "--per-level", "3", "-o", str(out), *FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "finished" in res.stdout and f"record: {out}" in res.stdout
    with open_record(out) as rec:
        steps = [s.data for s in rec.protocol_steps]
        result = rec.protocol_results["recruitment"]
    assert all(s["channel"] == "FDI_L" and s["hemisphere"] == "right" for s in steps)
    counted = [s for s in steps if s["counted"]]
    lo, hi = round(0.9 * rmt), round(1.4 * rmt)
    assert sorted(s["intensity_pct_mso"] for s in counted) == [lo] * 3 + [hi] * 3
    # each block holds both levels once
    blocks = [sorted(s["intensity_pct_mso"] for s in counted[i:i + 2]) for i in (0, 2, 4)]
    assert blocks == [[lo, hi]] * 3
    levels = {lv["intensity_pct_mso"]: lv for lv in result["estimate"]["levels"]}
    assert levels[hi]["median_uv"] > levels[lo]["median_uv"]  # the curve rises
    assert result["complete"] is True and result["n_pulses"] == len(steps)
    assert f"{hi:>6g}" in res.stdout  # the per-level table


@pytest.mark.parametrize("argv, message", [
    (["--simulate", "--stimulator", "manual"], "contradicts"),
    (["--stimulator", "simulated", "--emg", "E", "--markers", "M"], "add --simulate"),
    (["--markers", "M"], "no EMG stream"),
    (["--emg", "E"], "no source of pulses"),
    (["--simulate", "--emg", "E"], "makes its own streams"),
    (["--simulate", "--interval", "-1"], "--interval must be >= 0"),
])
def test_threshold_contradictory_options(tmp_path, capsys, argv, message):
    rc = main(["threshold", "-o", str(tmp_path / "x.h5"), *argv])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
