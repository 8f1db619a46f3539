"""Simulation: synthetic EMG, the virtual subject, stimulators and LSL outlets.

Importing this package loads numpy only; pylsl is imported when an outlet starts.
"""

from mepkit.sim.emg import EmgSynth
from mepkit.sim.outlet import SimulatedAmplifier
from mepkit.sim.stimulator import (
    ManualStimulator,
    Pulse,
    SimulatedStimulator,
    Stimulator,
    StimulatorError,
)
from mepkit.sim.subject import EmgSettings, Response, VirtualSubject

__all__ = [
    "EmgSynth",
    "EmgSettings",
    "ManualStimulator",
    "Pulse",
    "Response",
    "SimulatedAmplifier",
    "SimulatedStimulator",
    "Stimulator",
    "StimulatorError",
    "VirtualSubject",
]
