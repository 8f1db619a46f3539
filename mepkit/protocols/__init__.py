"""Protocols: state machines that propose stimuli and estimate from their results.

See `mepkit.protocols.base` for the shape every protocol has. Threshold hunters:
`make_hunter` (`mepkit.protocols.threshold`); recruitment curves: `RecruitmentProtocol`.
"""

from mepkit.protocols.base import (
    MAX_PCT_MSO,
    IntensityProtocol,
    Protocol,
    ProtocolError,
    Step,
    Stimulus,
    check_intensity,
    check_number,
)
from mepkit.protocols.recruitment import RecruitmentEstimate, RecruitmentProtocol
from mepkit.protocols.threshold import (
    METHODS,
    ThresholdEstimate,
    ThresholdHunter,
    make_hunter,
)

__all__ = [
    "MAX_PCT_MSO", "IntensityProtocol", "Protocol", "ProtocolError", "Step", "Stimulus",
    "check_intensity", "check_number", "METHODS", "ThresholdEstimate", "ThresholdHunter",
    "make_hunter", "RecruitmentEstimate", "RecruitmentProtocol",
]
