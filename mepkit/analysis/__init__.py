"""Analysis of trial tables: thresholds, recruitment curves, hemispheric excitability, maps.

Functions take arrays (one value per trial) or a trial table (a pandas DataFrame with the
columns of ``mepkit.TRIAL_COLUMNS``). Definitions, defaults and sources: ``docs/methods.md``.
"""

from mepkit.analysis._checks import AnalysisError
from mepkit.analysis.excitability import (HemisphericExcitability, Quantity,
                                          hemispheric_excitability, split_channel)
from mepkit.analysis.recruitment import (RecruitmentFit, boltzmann, fit_recruitment,
                                         fit_recruitment_curves)
from mepkit.analysis.thresholds import ThresholdEstimate, estimate_threshold, estimate_thresholds

__all__ = [
    "AnalysisError", "HemisphericExcitability", "Quantity", "RecruitmentFit",
    "ThresholdEstimate", "boltzmann", "estimate_threshold", "estimate_thresholds",
    "fit_recruitment", "fit_recruitment_curves", "hemispheric_excitability", "split_channel",
]
