"""Live sessions on outlets that push like amplifier apps: chunks without time stamps
(liblsl stamps each at the push), 1-50 ms chunks, stalls, clock drift; real liblsl over
loopback. No false gaps, no false rejections, each stimulus on its sample (within one),
and the record's reanalysis gives the live trial rows exactly."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pandas as pd
import pytest

pylsl = pytest.importorskip("pylsl")

from live_outlet import new_source_id, wait_until  # noqa: E402

from mepkit.batch import analyze_file  # noqa: E402
from mepkit.live import LiveSession  # noqa: E402
from mepkit.params import TRIAL_COLUMNS  # noqa: E402
from mepkit.records import open_record  # noqa: E402
from mepkit.sim.outlet import SimulatedAmplifier  # noqa: E402
from mepkit.sim.subject import VirtualSubject  # noqa: E402
from mepkit.sources.clock import clock_times  # noqa: E402

pytestmark = pytest.mark.timeout(90)
FS = 5000.0


def onset_sample(x: np.ndarray, k: int) -> int:
    """The stimulus artifact's first sample near ``k`` (a multi-mV jump)."""
    base = np.median(x[k - 12:k - 2], axis=0)
    return int(np.argmax(np.abs(x[k - 12:k + 12] - base).max(axis=1) > 1000)) + k - 12


def assert_reanalysis_gives_live_rows(rec_path) -> None:
    """`mepkit analyze` on the record (its stored parameters and clock mapping) gives
    exactly the trial rows the live session stored."""
    with open_record(rec_path) as r:
        stored, params = r.trials, r.params
    again = analyze_file(str(rec_path), params)
    cols = [c for c in TRIAL_COLUMNS if c != "file"]
    pd.testing.assert_frame_equal(stored[cols].reset_index(drop=True),
                                  again[cols].reset_index(drop=True), check_dtype=False)


@contextlib.contextmanager
def session_on(amp, rec_path):
    """A live session on the amplifier's streams, recording, once samples flow."""
    with LiveSession(emg=amp.name, markers=amp.marker_name, source_id=amp.source_id,
                     marker_source_id=amp.marker_source_id, record_path=rec_path) as s:
        wait_until(lambda: s.emg.n_samples > 0 and amp._marker_outlet.have_consumers(),
                   20, "the session to receive samples")
        yield s


@pytest.mark.parametrize("chunk_ms, drift_ppm, stall_every_s", [
    (1.0, 100.0, 0.5), (4.0, -100.0, 0.5), (20.0, 60.0, 0.5), (50.0, -60.0, 0.7)])
def test_live_session_on_stamps_made_on_push(tmp_path, chunk_ms, drift_ppm, stall_every_s):
    sid = new_source_id("clock")
    name = f"clock-{sid[-8:]}"
    rec_path = tmp_path / "s.h5"
    subject = VirtualSubject.from_preset("healthy", seed=4)
    amp = SimulatedAmplifier(subject, sfreq_hz=FS, channels=["FDI_R", "APB_R"], name=name,
                             source_id=sid, chunk_ms=chunk_ms, drift_ppm=drift_ppm,
                             stall_every_s=stall_every_s, stall_ms=(3.0, 15.0), seed=5)
    try:
        with session_on(amp, rec_path) as s:
            # a few seconds in: the clock's warm-up, and enough pushes for the envelope (20
            # a second with 50 ms chunks)
            first = amp.n_pushed + int(2.0 * FS)
            for i in range(12):
                amp.fire(60.0 + i, hemisphere="left",
                         at_s=amp.time_of_sample(first + i * int(0.25 * FS)))
            last = amp.pulses[-1]
            wait_until(lambda: amp.n_pushed > last.sample_index + 0.4 * FS, 30,
                       "the last response to be pushed")
            wait_until(lambda: s.status.trials >= 12, 10, "12 trials")
            status = s.status
            live = list(s.trials(timeout=0.2))
        assert amp.n_stalls >= 2
    finally:
        amp.stop()
    assert status.gaps == 0 and status.drops == 0
    assert len(live) == 12
    assert all(r == "" for t in live for r in t.reject_reason), [t.reject_reason for t in live]
    with open_record(rec_path) as r:
        assert "gap" not in set(r.events["kind"]) and "clock_reset" not in set(r.events["kind"])
        st = r.streams[name]
        data, ts = st.read()
        assert st.clock_rows is not None
        times = clock_times(st.clock_rows, 0, st.n_samples)
        assert np.all(np.diff(times) > 0)
        # each stimulus on its sample: the first sample at or after the marker, on the
        # fitted clock, is where the artifact starts (within one sample)
        x = np.asarray(data, dtype=float)
        off = [onset_sample(x, k) - k for k in np.searchsorted(times, [p.time_s for p in
                                                                        amp.pulses])]
        assert max(abs(o) for o in off) <= 1, off
    assert_reanalysis_gives_live_rows(rec_path)


def test_live_loss_is_a_gap_and_reanalysis_agrees(tmp_path):
    """Samples really lost between the amplifier and the app (the app goes on with later
    ones): one gap, its trial rejected, the others measured, reanalysis identical."""
    sid = new_source_id("clockloss")
    name = f"loss-{sid[-8:]}"
    rec_path = tmp_path / "l.h5"
    subject = VirtualSubject.from_preset("healthy", seed=6)
    amp = SimulatedAmplifier(subject, sfreq_hz=FS, channels=["FDI_R"], name=name,
                             source_id=sid, chunk_ms=4.0, stall_every_s=0.5, seed=7)
    try:
        with session_on(amp, rec_path) as s:
            first = amp.n_pushed + int(1.0 * FS)
            for i in range(8):
                amp.fire(65.0, hemisphere="left",
                         at_s=amp.time_of_sample(first + i * int(0.3 * FS)))
            lose_at = amp.pulses[3].sample_index - int(0.06 * FS)  # in pulse 3's background
            amp.drop_samples(lose_at, int(0.05 * FS))
            last = amp.pulses[-1]
            wait_until(lambda: amp.n_pushed > last.sample_index + 0.5 * FS, 30,
                       "the last response to be pushed")
            wait_until(lambda: s.status.trials >= 8, 10, "8 trials")
            status = s.status
        time.sleep(0.1)
    finally:
        amp.stop()
    assert status.gaps == 1 and abs(status.drops - 250) <= 2
    with open_record(rec_path) as r:
        t = r.trials.groupby("trial")["reject_reason"].first().tolist()
        assert t[3] == "gap" and t.count("gap") == 1, t
        assert list(r.events["kind"]).count("gap") == 1
    assert_reanalysis_gives_live_rows(rec_path)
