"""Motor threshold hunters: the stimulus intensity (%MSO) where half the MEPs reach a criterion.

``hunter = make_hunter(method, **options)`` gives one of

* ``'rossini-rothwell'`` -- IFCN relative frequency: the lowest intensity with MEPs
  >= criterion in at least 5 of 10 trials, approached from above in 1 %MSO steps;
* ``'mills-nithi'`` -- two thresholds: the highest intensity with 0 of 10 MEPs and the
  lowest with 10 of 10; the threshold is their mean;
* ``'ml-pest'`` -- maximum-likelihood PEST (Awiszus 2003) with a fixed relative spread:
  each pulse at the current maximum-likelihood threshold, a fixed number of pulses;
* ``'bayes'`` -- Bayesian adaptive estimation of threshold and slope on a grid
  posterior with a population prior, using the amplitudes through a model of MEP
  variability (`mepkit.protocols.bayes`), stopping on the width of the credible
  interval.

Every hunter works the same way::

    while not hunter.done:
        x = hunter.next_intensity()                 # %MSO, within 0..100
        amp = fire_and_measure(x)                   # peak-to-peak µV (NaN: not measurable)
        hunter.observe(x, amp, rejected=bad_trial)  # rejected/NaN: offered again
    hunter.estimate.as_dict()

The criterion is 50 µV (resting motor threshold) or, with ``active=True``, 200 µV (the
active motor threshold during a slight contraction); ``criterion_uv=`` sets any other.
A hunt is bounded to 0..100 %MSO and by ``max_pulses`` (every pulse fired, rejected ones
included): a subject without MEPs at 100 %MSO ends with "no threshold up to 100 %MSO".
Procedures, defaults and sources: ``docs/methods.md``, "Motor thresholds".
"""

from __future__ import annotations

import inspect
from typing import Any

from mepkit.protocols.base import Protocol, ProtocolError
from mepkit.protocols.bayes import BayesHunter
from mepkit.protocols.hunter import (
    ACTIVE_CRITERION_UV,
    NO_THRESHOLD,
    REST_CRITERION_UV,
    ThresholdEstimate,
    ThresholdHunter,
)
from mepkit.protocols.mlpest import MLPestHunter
from mepkit.protocols.staircase import MillsNithiHunter, RossiniRothwellHunter

__all__ = [
    "METHODS",
    "REST_CRITERION_UV",
    "ACTIVE_CRITERION_UV",
    "NO_THRESHOLD",
    "ThresholdEstimate",
    "ThresholdHunter",
    "RossiniRothwellHunter",
    "MillsNithiHunter",
    "MLPestHunter",
    "BayesHunter",
    "make_hunter",
]

#: Hunter classes by method name.
HUNTERS: dict[str, type[ThresholdHunter]] = {
    "rossini-rothwell": RossiniRothwellHunter,
    "mills-nithi": MillsNithiHunter,
    "ml-pest": MLPestHunter,
    "bayes": BayesHunter,
}
METHODS = tuple(HUNTERS)


def make_hunter(method: str, **options: Any) -> ThresholdHunter:
    """A threshold hunter by name.

    Parameters
    ----------
    method : {'rossini-rothwell', 'mills-nithi', 'ml-pest', 'bayes'}
    **options
        The hunter's options (see each class; every hunter takes ``criterion_uv``,
        ``active``, ``max_pulses``, ``ci_level``, ``hemisphere``, ``site``, ``label``).

    Examples
    --------
    >>> make_hunter("ml-pest", active=True).criterion_uv
    200.0
    >>> make_hunter("rossini-rothwell").next_intensity()
    30.0
    """
    cls = HUNTERS.get(method) if isinstance(method, str) else None
    if cls is None:
        raise ProtocolError(f"unknown threshold method {method!r}; choose one of "
                            f"{', '.join(METHODS)}")
    allowed = _accepted_options(cls)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ProtocolError(f"{method} does not take the option(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(sorted(allowed))}")
    return cls(**options)


def _accepted_options(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is Protocol or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.KEYWORD_ONLY:
                names.add(p.name)
    return names
