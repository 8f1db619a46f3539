"""Hunters fed the way a session feeds them: amplitudes measured by mepkit from simulated EMG.

Each pulse of the virtual subject is rendered into continuous EMG (mains, drift, a
5 mV stimulus artifact, noise), cut into an epoch and measured with
`mepkit.analyze_epochs`; the measured peak-to-peak and the trial's rejection (a
voluntary contraction before some pulses) go to the hunter.

The background adds ~9.6 µV to a small MEP's measured peak-to-peak (4 µV RMS noise).
Counting methods find the threshold of the measured amplitude, where the MEP itself is
~40 µV; the Bayesian hunter models the background and finds that of the MEP (50 µV).
"""

from __future__ import annotations

import numpy as np
import pytest

from mepkit.analyze import analyze_epochs
from mepkit.protocols import make_hunter
from mepkit.sim.subject import VirtualSubject

FS = 5000.0
PRE_S, POST_S = 0.2, 0.1


def hunt_on_emg(method: str, seed: int, contract_every: int = 0):
    s = VirtualSubject.from_preset("healthy", seed=seed)
    synth = s.make_emg_synth(FS, seed=seed)
    ch = s.channels.index("FDI_R")  # the left hemisphere's FDI
    hunter = make_hunter(method, hemisphere="left")
    k = 0
    while not hunter.done:
        x = hunter.next_intensity()
        k += 1
        start = synth.position
        pulse = start + int(PRE_S * FS)
        if contract_every and k % contract_every == 0:  # not relaxed: must be rejected
            synth.add_contraction(start, pulse + int(0.05 * FS), 60.0, channels=[ch])
        r = s.respond(x, hemisphere="left")
        synth.add_pulse(pulse, r.amplitude_uv, r.latency_ms)
        data = synth.generate(int((PRE_S + POST_S) * FS))
        table = analyze_epochs(data.T[None], FS, -PRE_S, list(s.channels))
        row = table[table["channel"] == "FDI_R"].iloc[0]
        hunter.observe(x, float(row["amplitude_uv"]), rejected=bool(row["rejected"]))
        if contract_every and k % contract_every == 0:
            assert row["rejected"] and row["reject_reason"] == "background"
    return hunter, s


@pytest.mark.parametrize("method, median_mep_uv", [("bayes", 50.0), ("ml-pest", 50.0 - 9.6)])
def test_hunt_on_measured_emg(method, median_mep_uv, intensity_for_median):
    errors = []
    for seed in range(3):
        hunter, s = hunt_on_emg(method, seed, contract_every=4)
        truth = intensity_for_median(s, median_mep_uv)
        if median_mep_uv == 50.0:
            assert truth == pytest.approx(s.true_rmt("left"), abs=1e-6)
        e = hunter.estimate
        assert e.found, e.message
        assert e.n_pulses > e.n_counted  # the contracted trials did not count
        assert all(not st.counted for st in hunter.steps[3::4])
        errors.append(e.threshold_pct_mso - truth)
    assert np.median(np.abs(errors)) <= 1.5, errors
