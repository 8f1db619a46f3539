"""mepkit: motor evoked potentials from EMG during TMS, live and in batch.

Heavy parts (numba kernels, h5py, pylsl, pandas) load on first use, so
``import mepkit`` and ``mepkit --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

from mepkit.params import TRIAL_COLUMNS, Params

__all__ = [
    "Params", "TRIAL_COLUMNS", "Pipeline", "Trial", "analyze_epochs", "analyze_recording",
    "analyze_file", "read_xdf", "open_record", "LiveSession", "make_hunter",
    "RecruitmentProtocol", "estimate_threshold", "estimate_thresholds", "fit_recruitment",
    "fit_recruitment_curves", "hemispheric_excitability", "map_metrics", "make_hotspot_search",
    "__version__",
]

try:
    from importlib.metadata import version as _version

    __version__ = _version("mepkit")
except Exception:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

_LAZY = {
    "Pipeline": "mepkit.pipeline",
    "Trial": "mepkit.pipeline",
    "analyze_epochs": "mepkit.analyze",
    "analyze_recording": "mepkit.analyze",
    "analyze_file": "mepkit.batch",
    "read_xdf": "mepkit.sources.xdf",
    "open_record": "mepkit.records",
    "LiveSession": "mepkit.live",
    "make_hunter": "mepkit.protocols.threshold",
    "RecruitmentProtocol": "mepkit.protocols.recruitment",
    "estimate_threshold": "mepkit.analysis",
    "estimate_thresholds": "mepkit.analysis",
    "fit_recruitment": "mepkit.analysis",
    "fit_recruitment_curves": "mepkit.analysis",
    "hemispheric_excitability": "mepkit.analysis",
    "map_metrics": "mepkit.analysis.maps",
    "make_hotspot_search": "mepkit.protocols.mapping",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mepkit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
