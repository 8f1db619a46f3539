"""The closed-loop runner against the virtual subject over real liblsl loopback."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("pylsl")

from mepkit.live import LiveSession  # noqa: E402
from mepkit.protocols.base import Protocol, ProtocolError, Stimulus  # noqa: E402
from mepkit.protocols.runner import ClosedLoopRunner  # noqa: E402
from mepkit.records import open_record  # noqa: E402
from mepkit.sim.outlet import SimulatedAmplifier  # noqa: E402
from mepkit.sim.stimulator import SimulatedStimulator, StimulatorError  # noqa: E402
from mepkit.sim.subject import VirtualSubject  # noqa: E402

pytestmark = pytest.mark.timeout(60)

CHANNELS = ("FDI_R", "APB_R", "ADM_R")


# ---------------------------------------------------------------- protocols of the tests
@dataclass
class _Estimate:
    values: dict

    def as_dict(self) -> dict:
        return dict(self.values)


class Bisection(Protocol):
    """A threshold by bisection of 0-100 %MSO: MEP (>= 50 µV) halves downwards, none
    upwards, until the bracket is narrower than ``width``. Each next intensity depends
    on the last amplitude, so it needs the loop closed."""

    name = "bisection"

    def __init__(self, width: float = 1.0, criterion_uv: float = 50.0) -> None:
        super().__init__()
        self.lo, self.hi, self.width, self.criterion_uv = 0.0, 100.0, width, criterion_uv

    def propose(self) -> Stimulus:
        if self.done:
            raise ProtocolError("done")
        return Stimulus(round((self.lo + self.hi) / 2, 3), site="hotspot")

    @property
    def done(self) -> bool:
        return self.hi - self.lo < self.width

    @property
    def estimate(self):
        if not self.n_counted:
            raise ProtocolError("nothing observed")
        return _Estimate({"threshold_pct_mso": (self.lo + self.hi) / 2,
                          "interval_pct_mso": [self.lo, self.hi]})

    def _update(self, stimulus: Stimulus, amplitude_uv: float) -> None:
        if amplitude_uv >= self.criterion_uv:
            self.hi = stimulus.intensity_pct_mso
        else:
            self.lo = stimulus.intensity_pct_mso

    def options(self) -> dict:
        return {"width": self.width, "criterion_uv": self.criterion_uv}


class Fixed(Protocol):
    """Fires a fixed list of intensities (each counted once)."""

    name = "fixed"

    def __init__(self, intensities) -> None:
        super().__init__()
        self.todo = list(intensities)
        self.amps: list[float] = []

    def propose(self) -> Stimulus:
        if self.done:
            raise ProtocolError("done")
        return Stimulus(self.todo[0])

    @property
    def done(self) -> bool:
        return not self.todo

    @property
    def estimate(self):
        if not self.amps:
            raise ProtocolError("nothing observed")
        return _Estimate({"mean_amplitude_uv": float(np.mean(self.amps))})

    def _update(self, stimulus: Stimulus, amplitude_uv: float) -> None:
        self.todo.pop(0)
        self.amps.append(amplitude_uv)


class FailingStimulator(SimulatedStimulator):
    """Refuses its ``fail_at``-th pulse (1-based), like a device that disconnects."""

    def __init__(self, amplifier, fail_at: int) -> None:
        super().__init__(amplifier)
        self.fail_at, self.n = fail_at, 0

    def fire(self, *args, **kw):
        self.n += 1
        if self.n == self.fail_at:
            raise StimulatorError("coil disconnected")
        return super().fire(*args, **kw)


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def rig(tmp_path):
    """The virtual subject over LSL and a live session recording it."""
    sid = f"runner-{uuid.uuid4().hex[:10]}"
    subject = VirtualSubject.from_preset("healthy", seed=3)
    amp = SimulatedAmplifier(subject, channels=CHANNELS, name=f"runner-emg-{sid[-6:]}",
                             source_id=sid, seed=3)
    session = LiveSession(emg=amp.name, markers=amp.marker_name, source_id=sid,
                          marker_source_id=amp.marker_source_id,
                          record_path=tmp_path / "run.h5", subject="virtual")
    try:
        session.start()
        yield amp, session, tmp_path / "run.h5"
    finally:
        session.stop()
        amp.stop()


def fast(**kw):
    """Short spacing and relaxation so a run takes seconds."""
    out = {"min_interval_s": 0.5, "jitter": 0.4, "relax_s": 0.3, "seed": 1}
    out.update(kw)
    return out


# ---------------------------------------------------------------- tests
def test_closed_loop_hunt_end_to_end(rig):
    amp, session, path = rig
    hunt = Bisection(width=1.0)
    seen = []
    result = ClosedLoopRunner(session, SimulatedStimulator(amp), hunt, channel="FDI_R",
                              on_step=lambda row, p: seen.append(row), **fast()).run()
    session.stop()
    assert result.reason == "done" and result.complete and result.saved
    pulses = amp.pulses
    n = len(pulses)
    assert n == len(result.steps) == len(seen) == hunt.n_pulses >= 7
    # the loop was closed: every intensity follows from the amplitudes measured before it
    lo, hi = 0.0, 100.0
    for step, pulse in zip(result.steps, pulses):
        assert step["intensity_pct_mso"] == pytest.approx((lo + hi) / 2, abs=1e-3)
        assert pulse.intensity_pct_mso == pytest.approx(step["intensity_pct_mso"])
        assert step["hemisphere"] == pulse.hemisphere == "left"
        if step["counted"]:
            if step["amplitude_uv"] >= 50:
                hi = step["intensity_pct_mso"]
            else:
                lo = step["intensity_pct_mso"]
    assert result.estimate.values["interval_pct_mso"] == [lo, hi]
    # the amplitudes fed back are the target muscle's measured MEPs of those very pulses
    k = CHANNELS.index("FDI_R")
    for step, pulse in zip(result.steps, pulses):
        assert step["pulse_time_s"] == pytest.approx(pulse.time_s, abs=1e-3)
        true = pulse.truth["amplitude_uv"][k]
        if step["counted"] and true >= 200:
            assert step["amplitude_uv"] == pytest.approx(true, rel=0.1)
        if step["counted"] and true == 0:
            assert step["amplitude_uv"] < 50
    # spacing: never under the minimum, jittered, and not far over it (muscle relaxed)
    gaps = np.diff([p.time_s for p in pulses])
    assert np.all(gaps >= 0.5 - 1e-3), gaps
    assert np.all(gaps <= 0.5 * 1.4 + 0.15), gaps
    assert np.ptp(gaps) > 0.02
    with open_record(path) as rec:
        assert rec.closed_cleanly
        stored = [s.data for s in rec.protocol_steps]
        assert len(stored) == n
        trials = rec.trials
        for row, s in zip(result.steps, stored):
            assert s["intensity_pct_mso"] == row["intensity_pct_mso"]
            assert s["trial"] == row["trial"] >= 0
            assert s["channel"] == "FDI_R"
            t = trials[(trials["trial"] == s["trial"]) & (trials["channel"] == "FDI_R")]
            assert len(t) == 1
            assert t["amplitude_uv"].iloc[0] == pytest.approx(s["amplitude_uv"])
            assert t["intensity_pct_mso"].iloc[0] == pytest.approx(s["intensity_pct_mso"])
        res = rec.protocol_results["bisection"]
        assert res["reason"] == "done" and res["complete"] is True
        assert res["n_pulses"] == n
        assert res["estimate"] == result.estimate.as_dict()
        assert res["options"] == {"width": 1.0, "criterion_uv": 50.0}
        assert res["runner"]["min_interval_s"] == 0.5 and res["runner"]["channel"] == "FDI_R"


def test_no_pulse_while_the_target_muscle_is_contracted(rig):
    amp, session, path = rig
    # the subject contracts the right hand (FDI_R) for 1.5 s from now
    episode = amp.contract(1.5, "R")
    # the gate judges samples that arrived; let the contraction reach the session first
    # (a contraction that begins in the last ms before a pulse only the trial's own
    # background check can catch)
    time.sleep(0.2)
    waits = []
    result = ClosedLoopRunner(session, SimulatedStimulator(amp), Fixed([60.0]),
                              channel="FDI_R", on_wait=lambda lv, s: waits.append(lv),
                              **fast(relax_s=0.3)).run()
    assert result.reason == "done"
    (pulse,) = amp.pulses
    # fired only after the contraction ended and the muscle stayed relaxed for relax_s
    # (the contraction fades out over its last 50 ms: a raised-cosine ramp)
    assert pulse.time_s >= episode["stop_s"] - 0.05 + 0.3
    assert pulse.time_s <= episode["stop_s"] + 0.3 + 0.4
    assert waits and max(np.max(lv.rms_uv) for lv in waits) > 30
    step = result.steps[0]
    assert step["gate_wait_s"] > 1.0
    assert step["gate_rms_uv"] <= session.params.background_limit_uv
    assert step["counted"] and step["reject_reason"] == ""  # a clean, relaxed trial


def test_stimulator_error_stops_cleanly_and_keeps_the_steps(rig):
    amp, session, path = rig
    result = ClosedLoopRunner(session, FailingStimulator(amp, fail_at=3), Bisection(),
                              **fast()).run()
    assert result.reason == "stimulator: coil disconnected" and result.error
    assert not result.complete and len(result.steps) == 2 == len(amp.pulses)
    assert session.running  # the session is the caller's: still recording
    session.stop()
    with open_record(path) as rec:
        assert rec.closed_cleanly
        assert [s.data["intensity_pct_mso"] for s in rec.protocol_steps] == \
            [r["intensity_pct_mso"] for r in result.steps]
        res = rec.protocol_results["bisection"]
        assert res["reason"] == "stimulator: coil disconnected"
        assert res["complete"] is False and res["n_pulses"] == 2
        assert res["estimate"] == result.estimate.as_dict()


def test_lost_stream_stops_the_run(rig):
    amp, session, path = rig

    def on_step(row, protocol):
        if row["step"] == 1:
            amp.stop()  # the amplifier goes away after the second pulse

    result = ClosedLoopRunner(session, SimulatedStimulator(amp), Bisection(), on_step=on_step,
                              stream_timeout_s=1.0, **fast()).run()
    assert result.reason.startswith("EMG stream lost") and result.error
    assert len(result.steps) == 2
    session.stop()
    with open_record(path) as rec:
        assert len(rec.protocol_steps) == 2
        assert rec.protocol_results["bisection"]["reason"] == result.reason


def test_ctrl_c_stops_cleanly(rig):
    amp, session, path = rig

    def on_step(row, protocol):
        if row["step"] == 0:
            raise KeyboardInterrupt

    result = ClosedLoopRunner(session, SimulatedStimulator(amp), Fixed([55, 60, 65]),
                              on_step=on_step, **fast()).run()
    assert result.interrupted and result.reason == "interrupted" and not result.error
    session.stop()
    with open_record(path) as rec:
        assert len(rec.protocol_steps) == 1
        assert rec.protocol_results["fixed"]["reason"] == "interrupted"


def test_a_pulse_without_a_trial_counts_as_rejected(tmp_path):
    """Markers switched off: no trial ever comes; each pulse is a rejected step with a
    note and the protocol offers the same stimulus again."""
    sid = f"runner-{uuid.uuid4().hex[:10]}"
    amp = SimulatedAmplifier(VirtualSubject.from_preset("healthy", seed=2), channels=CHANNELS,
                             name=f"runner-emg-{sid[-6:]}", source_id=sid)
    # the session takes pulses from another (silent) marker stream of its own
    import pylsl

    info = pylsl.StreamInfo(f"silent-{sid}", "Markers", 1, pylsl.IRREGULAR_RATE,
                            pylsl.cf_string, f"silent-{sid}")
    outlet = pylsl.StreamOutlet(info)
    try:
        with LiveSession(emg=amp.name, markers=f"silent-{sid}", source_id=sid,
                         marker_source_id=f"silent-{sid}",
                         record_path=tmp_path / "r.h5") as session:
            result = ClosedLoopRunner(session, SimulatedStimulator(amp), Fixed([50.0]),
                                      max_pulses=2, trial_timeout_s=0.3, **fast()).run()
    finally:
        amp.stop()
        del outlet
    assert result.reason == "max pulses (2) reached"
    assert [s["intensity_pct_mso"] for s in result.steps] == [50.0, 50.0]
    for s in result.steps:
        assert s["rejected"] and not s["counted"] and s["trial"] == -1
        assert s["amplitude_uv"] is None and "no trial within 0.3 s" in s["note"]
    assert result.estimate is None
    with open_record(tmp_path / "r.h5") as rec:
        assert len(rec.protocol_steps) == 2
        assert rec.protocol_results["fixed"]["estimate"] is None


def test_bad_runner_options(rig):
    amp, session, _ = rig
    stim = SimulatedStimulator(amp)
    with pytest.raises(ValueError, match="min_interval_s"):
        ClosedLoopRunner(session, stim, Fixed([50]), min_interval_s=-1)
    with pytest.raises(ValueError, match="gate"):
        ClosedLoopRunner(session, stim, Fixed([50]), gate="sometimes")
    with pytest.raises(ValueError, match="is not measured"):
        ClosedLoopRunner(session, stim, Fixed([50]), channel="BICEPS").run()
    with pytest.raises(TypeError, match="Protocol"):
        ClosedLoopRunner(session, stim, object())
    assert not amp.pulses and not math.isnan(session.now_s())


class Strict(Fixed):
    """Refuses any trial not at the intensity it asked for (as a recruitment schedule)."""

    name = "strict"

    def observe_stimulus(self, stimulus, amplitude_uv, *, rejected=False):
        if stimulus.intensity_pct_mso != self.todo[0]:
            raise ProtocolError(f"asked for {self.todo[0]:g} %MSO, got "
                                f"{stimulus.intensity_pct_mso:g}")
        return super().observe_stimulus(stimulus, amplitude_uv, rejected=rejected)


@pytest.mark.parametrize("protocol", [Fixed, Strict])
def test_manual_stimulator_intensity_actually_used_is_what_counts(tmp_path, protocol):
    """The operator sets 52 %MSO where 50 was asked: the protocol observes 52, the step
    keeps both; a protocol that cannot use it ends the run, the step still stored.
    (Nothing fires the virtual subject, so no trial comes.)"""
    import io

    import pylsl

    from mepkit.sim.stimulator import ManualStimulator

    sid = f"runner-{uuid.uuid4().hex[:10]}"
    amp = SimulatedAmplifier(channels=CHANNELS, name=f"runner-emg-{sid[-6:]}", source_id=sid)
    info = pylsl.StreamInfo(f"silent-{sid}", "Markers", 1, pylsl.IRREGULAR_RATE,
                            pylsl.cf_string, f"silent-{sid}")
    outlet = pylsl.StreamOutlet(info)
    prompts = io.StringIO()
    answers = iter(["52", "q"])
    try:
        with LiveSession(emg=amp.name, markers=f"silent-{sid}", source_id=sid,
                         marker_source_id=f"silent-{sid}",
                         record_path=tmp_path / "m.h5") as session:
            stim = ManualStimulator(input_fn=lambda: next(answers), prompt_stream=prompts)
            result = ClosedLoopRunner(session, stim, protocol([50.0]), hemisphere="right",
                                      trial_timeout_s=0.2, **fast()).run()
    finally:
        amp.stop()
        del outlet
    if protocol is Strict:
        assert result.reason == ("the protocol refused this trial: asked for 50 %MSO, "
                                 "got 52") and result.error
        assert result.steps[0]["note"] == result.reason and not result.steps[0]["counted"]
    else:
        assert result.reason == "stimulator: operator aborted: pulse not fired"
    assert "Set 50 %MSO, right hemisphere" in prompts.getvalue()
    (step,) = result.steps
    assert step["proposed_intensity_pct_mso"] == 50.0 and step["intensity_pct_mso"] == 52.0
    assert step["hemisphere"] == "right" and step["rejected"]
    with open_record(tmp_path / "m.h5") as rec:
        assert rec.protocol_steps[0].data["intensity_pct_mso"] == 52.0


def test_a_session_that_fails_stops_the_run(tmp_path):
    """An error in the acquisition thread (here: the on_trial callback) ends the session
    and closes its record; the run stops cleanly, saying so, with the steps stored before."""
    sid = f"runner-{uuid.uuid4().hex[:10]}"
    amp = SimulatedAmplifier(channels=CHANNELS, name=f"runner-emg-{sid[-6:]}", source_id=sid)

    def on_trial(trial):
        if trial.index == 1:
            raise RuntimeError("display crashed")

    session = LiveSession(emg=amp.name, markers=amp.marker_name, source_id=sid,
                          marker_source_id=amp.marker_source_id, on_trial=on_trial,
                          record_path=tmp_path / "f.h5")
    try:
        session.start()
        result = ClosedLoopRunner(session, SimulatedStimulator(amp), Fixed([60, 61, 62]),
                                  **fast()).run()
    finally:
        session.stop()
        amp.stop()
    assert result.error and not result.complete
    assert result.reason in ("live session stopped: RuntimeError: display crashed",
                             "could not store step 1: append_protocol_step: the record "
                             f"{tmp_path / 'f.h5'} is already closed (the session stopped)")
    assert not result.saved or len(result.steps) == 1
    with open_record(tmp_path / "f.h5") as rec:
        assert [s.data["intensity_pct_mso"] for s in rec.protocol_steps][:1] == [60.0]
