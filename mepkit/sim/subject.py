"""A virtual TMS subject: who answers each pulse with MEPs of known size.

The model (the full description, with the numbers of each preset, is in
``docs/virtual-subject.md``):

* Two hemispheres, ``'left'`` and ``'right'``; each drives the hand on the other
  side.  Three hand muscles per hand (FDI, APB, ADM), so the channels are
  ``FDI_R, APB_R, ADM_R`` (left hemisphere) and ``FDI_L, APB_L, ADM_L``.
* **Recruitment.** With the coil on a muscle's hotspot the median MEP at
  intensity ``I`` (%MSO) is a Boltzmann sigmoid
  ``m(I) = mep_max_uv / (1 + exp((I50 - I) / slope_pct_mso))`` whose midpoint
  ``I50 = rmt + slope * ln(mep_max_uv / 50 - 1)`` puts the median at exactly
  50 µV at the resting motor threshold ``rmt_pct_mso``.
* **Variability.** Trial amplitudes are log-normal around that median:
  ``A = m(I) * exp(sigma * z)``, ``z ~ N(0, 1)``, so the SD in µV grows in
  proportion to the amplitude (coefficient of variation
  ``sqrt(exp(sigma**2) - 1)``).  ``z`` is partly shared by the muscles of one
  hemisphere (correlation ``rho``: cortical excitability fluctuates for all of
  them).  Hence ``P(A >= 50 µV) = Phi(ln(m(I) / 50) / sigma)``, which is 0.5 at
  the RMT: the RMT definition of the clinic (50 µV in half of the trials)
  holds exactly.  Amplitudes below ``floor_uv`` (10 µV) are not an MEP: 0.
* **Latency.** Onset ``latency_ms`` (FDI ~22 ms) shortened by up to
  ``latency_shift_ms`` as the MEP grows, plus Gaussian jitter of
  ``latency_sd_ms`` (1 ms) per trial.
* **Motor map.** The coil at ``(x_mm, y_mm)`` at distance ``d`` from a
  muscle's hotspot delivers the effective intensity ``I * exp(-d**2 / (2 *
  map_sd_mm**2))`` to it, so the threshold there is ``rmt / w(d)``: distance
  raises the threshold, and maps grow with intensity.
* **Background EMG** (noise, mains, drift, artifact, voluntary contraction
  episodes) is described by :class:`EmgSettings` and rendered by
  :class:`mepkit.sim.emg.EmgSynth` (see :meth:`VirtualSubject.make_emg_synth`).
* **Voluntary contraction facilitates.** A pulse given while the target hand
  contracts (``activation`` from 0 at rest to 1 at the episode's plateau) meets a
  threshold lowered to ``active_threshold_ratio`` (0.8) × RMT at full activation —
  the active motor threshold — so the same intensity gives larger MEPs, and their
  onset comes up to ``active_latency_shift_ms`` (2 ms) earlier.

Presets: ``healthy``, ``stroke-mild`` (lesioned hemisphere: RMT +15 %MSO, smaller
MEPs, a smaller map, 2 ms later; the other hemisphere slightly disinhibited) and
``stroke-severe`` (no MEPs at all from the lesioned hemisphere).

Pure numpy.  :meth:`VirtualSubject.respond` takes ~20 µs, so thousands of
simulated sessions run offline in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "HEMISPHERES",
    "MUSCLES",
    "PRESETS",
    "MEP_CRITERION_UV",
    "MuscleModel",
    "HemisphereModel",
    "EmgSettings",
    "Response",
    "VirtualSubject",
    "channel_label",
]

HEMISPHERES = ("left", "right")
MUSCLES = ("FDI", "APB", "ADM")
PRESETS = ("healthy", "stroke-mild", "stroke-severe")
#: The peak-to-peak amplitude that defines the motor threshold (µV).
MEP_CRITERION_UV = 50.0
_HAND = {"left": "R", "right": "L"}  # a hemisphere drives the opposite hand


def channel_label(hemisphere: str, muscle: str) -> str:
    """The EMG channel of ``muscle`` on the hand driven by ``hemisphere``.

    Examples
    --------
    >>> channel_label("left", "FDI"), channel_label("right", "ADM")
    ('FDI_R', 'ADM_L')
    """
    return f"{muscle}_{_HAND[_check_hemisphere(hemisphere)]}"


def _check_hemisphere(hemisphere: str) -> str:
    if hemisphere not in HEMISPHERES:
        raise ValueError(f"hemisphere must be one of {HEMISPHERES}, got {hemisphere!r}")
    return hemisphere


@dataclass(frozen=True)
class MuscleModel:
    """Excitability of one muscle's representation in one hemisphere.

    Parameters
    ----------
    rmt_pct_mso : float
        Resting motor threshold at the hotspot: the intensity where the median
        MEP is 50 µV (``P(MEP >= 50 µV) = 0.5``).  ``math.inf`` means no MEPs.
    mep_max_uv : float
        Plateau of the recruitment curve (median MEP at saturation), > 50.
    slope_pct_mso : float
        Boltzmann slope parameter (%MSO per e-fold).
    sigma : float
        SD of ``ln(amplitude)`` from trial to trial.
    latency_ms : float
        Onset latency of a mid-sized MEP.
    latency_sd_ms : float
        Trial-to-trial onset jitter (SD).
    latency_shift_ms : float
        Latency shortens by this much from the smallest to the largest MEPs.
    hotspot_x_mm, hotspot_y_mm : float
        Position of the optimal coil site for this muscle.
    """

    rmt_pct_mso: float
    mep_max_uv: float = 3000.0
    slope_pct_mso: float = 6.0
    sigma: float = 0.55
    latency_ms: float = 22.0
    latency_sd_ms: float = 1.0
    latency_shift_ms: float = 1.0
    hotspot_x_mm: float = 0.0
    hotspot_y_mm: float = 0.0

    @property
    def responsive(self) -> bool:
        return math.isfinite(self.rmt_pct_mso) and self.mep_max_uv > MEP_CRITERION_UV

    @property
    def i50_pct_mso(self) -> float:
        """Midpoint of the Boltzmann curve (where the median is half of ``mep_max_uv``)."""
        if not self.responsive:
            return math.inf
        return self.rmt_pct_mso + self.slope_pct_mso * math.log(
            self.mep_max_uv / MEP_CRITERION_UV - 1.0)


@dataclass(frozen=True)
class HemisphereModel:
    """One hemisphere: its muscles (by name) and the width of its motor map."""

    muscles: dict[str, MuscleModel]
    map_sd_mm: float = 15.0
    #: Correlation of trial-to-trial log-amplitude fluctuations between its muscles.
    rho: float = 0.5


@dataclass(frozen=True)
class EmgSettings:
    """Background EMG and recording conditions (the :class:`EmgSynth` settings).

    ``contraction_rate_per_min`` > 0 makes the subject contract voluntarily now
    and then (Poisson episodes of ``contraction_duration_s`` (min, max) at
    ``contraction_rms_uv`` on one hand); the simulated amplifier schedules them.
    """

    noise_rms_uv: float = 4.0
    line_freq_hz: float = 50.0
    line_amplitude_uv: float = 30.0
    drift_amplitude_uv: float = 100.0
    artifact_amplitude_uv: float = 5000.0
    artifact_tau_ms: float = 1.0
    mep_duration_ms: float = 20.0
    contraction_rate_per_min: float = 0.0
    contraction_rms_uv: float = 60.0
    contraction_duration_s: tuple[float, float] = (0.5, 2.0)


@dataclass
class Response:
    """One trial's ground truth, one value per channel of :attr:`VirtualSubject.channels`.

    Attributes
    ----------
    amplitude_uv : ndarray (n_channels,)
        Peak-to-peak MEP amplitude; 0 where there is no MEP.
    latency_ms : ndarray (n_channels,)
        Onset latency; NaN where there is no MEP.
    expected_amplitude_uv : ndarray (n_channels,)
        Noise-free median amplitude at this intensity and position.
    p_mep : ndarray (n_channels,)
        Probability that the amplitude is >= 50 µV.
    """

    trial: int
    intensity_pct_mso: float
    hemisphere: str
    x_mm: float
    y_mm: float
    channels: tuple[str, ...]
    amplitude_uv: np.ndarray
    latency_ms: np.ndarray
    expected_amplitude_uv: np.ndarray
    p_mep: np.ndarray
    #: Voluntary activation of the target hand at the pulse (0 at rest, 1 at full).
    activation: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial, "intensity_pct_mso": self.intensity_pct_mso,
            "hemisphere": self.hemisphere, "x_mm": self.x_mm, "y_mm": self.y_mm,
            "channels": list(self.channels),
            "amplitude_uv": self.amplitude_uv.tolist(),
            "latency_ms": self.latency_ms.tolist(),
            "expected_amplitude_uv": self.expected_amplitude_uv.tolist(),
            "p_mep": self.p_mep.tolist(),
            "activation": self.activation,
        }


_SQRT2 = math.sqrt(2.0)
_erf = np.frompyfunc(math.erf, 1, 1)


def _phi(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(z / _SQRT2).astype(float))


class VirtualSubject:
    """A seeded model person answering TMS pulses with MEPs (see the module doc).

    Parameters
    ----------
    hemispheres : dict
        ``{'left': HemisphereModel, 'right': HemisphereModel}``; both must list
        the same muscles.
    emg : EmgSettings, optional
        Background EMG and recording conditions.
    seed : int
        Seed of the trial-to-trial randomness (and of nothing else).
    floor_uv : float
        Amplitudes below this are no MEP (reported as 0).
    name : str
        Description (the preset's name).
    active_threshold_ratio : float
        Active / resting motor threshold at full voluntary activation (0 < r <= 1).
    active_latency_shift_ms : float
        How much earlier MEP onsets come at full voluntary activation.

    Examples
    --------
    >>> s = VirtualSubject.from_preset("healthy", seed=1)
    >>> r = s.respond(60, hemisphere="left")
    >>> r.channels[:3], r.amplitude_uv.shape
    (('FDI_R', 'APB_R', 'ADM_R'), (6,))
    """

    def __init__(
        self,
        hemispheres: dict[str, HemisphereModel],
        *,
        emg: EmgSettings | None = None,
        seed: int = 0,
        floor_uv: float = 10.0,
        name: str = "custom",
        lesioned_hemisphere: str | None = None,
        active_threshold_ratio: float = 0.8,
        active_latency_shift_ms: float = 2.0,
    ) -> None:
        if not 0.0 < float(active_threshold_ratio) <= 1.0:
            raise ValueError(f"active_threshold_ratio must be in (0, 1], got "
                             f"{active_threshold_ratio!r}")
        if not float(active_latency_shift_ms) >= 0.0:
            raise ValueError(f"active_latency_shift_ms must be >= 0, got "
                             f"{active_latency_shift_ms!r}")
        self.active_threshold_ratio = float(active_threshold_ratio)
        self.active_latency_shift_ms = float(active_latency_shift_ms)
        if set(hemispheres) != set(HEMISPHERES):
            raise ValueError(f"hemispheres must have the keys {HEMISPHERES}, got {sorted(hemispheres)}")
        muscles = tuple(hemispheres["left"].muscles)
        if tuple(hemispheres["right"].muscles) != muscles or not muscles:
            raise ValueError("both hemispheres must model the same (non-empty) muscles")
        self.hemispheres = dict(hemispheres)
        self.muscles = muscles
        self.emg = emg if emg is not None else EmgSettings()
        self.seed = int(seed)
        self.floor_uv = float(floor_uv)
        self.name = name
        self.lesioned_hemisphere = lesioned_hemisphere
        self.channels: tuple[str, ...] = tuple(
            channel_label(h, m) for h in HEMISPHERES for m in muscles)
        self._rng = np.random.default_rng([self.seed, 1])
        self._n_trials = 0
        n_m = len(muscles)
        # Per hemisphere: parameter vectors over its muscles, for a fast respond().
        self._vec: dict[str, dict[str, Any]] = {}
        for hi, h in enumerate(HEMISPHERES):
            hm = self.hemispheres[h]
            ms = [hm.muscles[m] for m in muscles]
            resp = np.array([m.responsive for m in ms])
            self._vec[h] = {
                "slice": slice(hi * n_m, (hi + 1) * n_m),
                "responsive": resp,
                "mep_max": np.array([m.mep_max_uv if m.responsive else 0.0 for m in ms]),
                "i50": np.array([m.i50_pct_mso if m.responsive else 0.0 for m in ms]),
                "slope": np.array([m.slope_pct_mso for m in ms]),
                "sigma": np.array([m.sigma for m in ms]),
                "lat": np.array([m.latency_ms for m in ms]),
                "lat_sd": np.array([m.latency_sd_ms for m in ms]),
                "lat_shift": np.array([m.latency_shift_ms for m in ms]),
                "hx": np.array([m.hotspot_x_mm for m in ms]),
                "hy": np.array([m.hotspot_y_mm for m in ms]),
                "inv2s2": 1.0 / (2.0 * hm.map_sd_mm ** 2),
                "a": math.sqrt(hm.rho),
                "b": math.sqrt(1.0 - hm.rho),
            }

    # ------------------------------------------------------------ presets
    @classmethod
    def from_preset(
        cls,
        name: str = "healthy",
        seed: int = 0,
        lesioned_hemisphere: str = "right",
        *,
        muscles: tuple[str, ...] = MUSCLES,
        emg: EmgSettings | None = None,
    ) -> "VirtualSubject":
        """A subject from a preset, with seeded individual differences.

        Parameters
        ----------
        name : {'healthy', 'stroke-mild', 'stroke-severe'}
        seed : int
            Draws the individual parameters (RMTs, curve sizes, hotspots) and
            seeds the trial-to-trial randomness.
        lesioned_hemisphere : {'left', 'right'}
            The hemisphere the stroke presets lesion (ignored for 'healthy').
        muscles : tuple of str
            Muscles per hand, a subset of ``('FDI', 'APB', 'ADM')``.
        emg : EmgSettings, optional
            Background EMG settings (default :class:`EmgSettings`).
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
        _check_hemisphere(lesioned_hemisphere)
        bad = [m for m in muscles if m not in _MUSCLE_BASE]
        if bad or not muscles:
            raise ValueError(f"muscles must be a non-empty subset of {MUSCLES}, got {muscles!r}")
        rng = np.random.default_rng([int(seed), 0])
        base_rmt = float(np.clip(rng.normal(45.0, 5.0), 35.0, 58.0))
        size = float(np.exp(rng.normal(0.0, 0.25)))
        hemis: dict[str, HemisphereModel] = {}
        for h in HEMISPHERES:
            h_rmt = base_rmt + float(np.clip(rng.normal(0.0, 2.0), -4.0, 4.0))
            h_size = size * float(np.exp(rng.normal(0.0, 0.1)))
            hx, hy = rng.uniform(-5.0, 5.0, 2)
            lesioned = name != "healthy" and h == lesioned_hemisphere
            contra = name != "healthy" and h != lesioned_hemisphere
            ms = {}
            for m in muscles:
                b = _MUSCLE_BASE[m]
                model = MuscleModel(
                    rmt_pct_mso=h_rmt + b["d_rmt"] + float(rng.normal(0.0, 1.0)),
                    mep_max_uv=b["mep_max"] * h_size,
                    slope_pct_mso=float(np.clip(rng.normal(6.0, 0.8), 4.0, 8.5)),
                    latency_ms=b["lat"] + float(rng.normal(0.0, 0.5)),
                    hotspot_x_mm=float(hx + b["dx"] + rng.normal(0.0, 1.0)),
                    hotspot_y_mm=float(hy + b["dy"] + rng.normal(0.0, 1.0)),
                )
                if lesioned and name == "stroke-mild":
                    model = replace(model, rmt_pct_mso=model.rmt_pct_mso + 15.0,
                                    mep_max_uv=model.mep_max_uv * 0.4,
                                    latency_ms=model.latency_ms + 2.0, sigma=0.65)
                elif lesioned and name == "stroke-severe":
                    model = replace(model, rmt_pct_mso=math.inf, mep_max_uv=0.0)
                elif contra:  # released from interhemispheric inhibition
                    d = 3.0 if name == "stroke-mild" else 5.0
                    model = replace(model, rmt_pct_mso=model.rmt_pct_mso - d)
                ms[m] = model
            map_sd = 10.0 if (lesioned and name == "stroke-mild") else 15.0
            hemis[h] = HemisphereModel(muscles=ms, map_sd_mm=map_sd)
        return cls(hemis, emg=emg, seed=seed, name=name,
                   lesioned_hemisphere=None if name == "healthy" else lesioned_hemisphere)

    # ------------------------------------------------------------ truth
    def muscle(self, hemisphere: str, muscle: str) -> MuscleModel:
        """The model of ``muscle`` in ``hemisphere``."""
        try:
            return self.hemispheres[_check_hemisphere(hemisphere)].muscles[muscle]
        except KeyError:
            raise ValueError(f"muscle must be one of {self.muscles}, got {muscle!r}") from None

    def hotspot(self, hemisphere: str, muscle: str = "FDI") -> tuple[float, float]:
        """Optimal coil position ``(x_mm, y_mm)`` for ``muscle``."""
        m = self.muscle(hemisphere, muscle)
        return (m.hotspot_x_mm, m.hotspot_y_mm)

    def _target(self, hemisphere: str) -> str:
        return "FDI" if "FDI" in self.muscles else self.muscles[0]

    def true_rmt(self, hemisphere: str, muscle: str = "FDI", *,
                 x_mm: float | None = None, y_mm: float | None = None,
                 activation: float = 0.0) -> float:
        """The resting motor threshold (%MSO) of ``muscle`` from ``hemisphere``.

        At the muscle's own hotspot unless a coil position is given; there it
        is ``rmt / w(d)``.  ``math.inf`` when the muscle gives no MEPs.  May
        exceed 100 (unreachable).  With ``activation`` > 0, the threshold during
        that much voluntary contraction (1: the active motor threshold).
        """
        m = self.muscle(hemisphere, muscle)
        if not m.responsive:
            return math.inf
        rmt = m.rmt_pct_mso * self._active_factor(activation)
        if x_mm is None and y_mm is None:
            return rmt
        x = m.hotspot_x_mm if x_mm is None else float(x_mm)
        y = m.hotspot_y_mm if y_mm is None else float(y_mm)
        d2 = (x - m.hotspot_x_mm) ** 2 + (y - m.hotspot_y_mm) ** 2
        log_w = -d2 * self._vec[hemisphere]["inv2s2"]
        return rmt * math.exp(-log_w) if log_w > -700 else math.inf

    def _active_factor(self, activation: float) -> float:
        """Threshold multiplier at this voluntary activation (1 at rest)."""
        a = float(activation)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"activation must be within 0..1, got {activation!r}")
        return 1.0 - a * (1.0 - self.active_threshold_ratio)

    def expected_amplitude(self, intensity_pct_mso: float, *, hemisphere: str, muscle: str = "FDI",
                           x_mm: float | None = None, y_mm: float | None = None,
                           activation: float = 0.0) -> float:
        """Noise-free median MEP (µV) of one muscle."""
        med, _ = self._median(float(intensity_pct_mso), hemisphere, x_mm, y_mm, activation)
        return float(med[self.muscles.index(muscle)])

    def p_mep(self, intensity_pct_mso: float, *, hemisphere: str, muscle: str = "FDI",
              x_mm: float | None = None, y_mm: float | None = None,
              activation: float = 0.0) -> float:
        """Probability of an MEP >= 50 µV in one muscle."""
        med, _ = self._median(float(intensity_pct_mso), hemisphere, x_mm, y_mm, activation)
        i = self.muscles.index(muscle)
        return float(self._p(med, self._vec[hemisphere]["sigma"])[i])

    # ------------------------------------------------------------ trials
    def _median(self, intensity: float, hemisphere: str, x_mm, y_mm, activation: float = 0.0):
        v = self._vec[_check_hemisphere(hemisphere)]
        i = self.muscles.index(self._target(hemisphere))
        x = float(v["hx"][i]) if x_mm is None else float(x_mm)
        y = float(v["hy"][i]) if y_mm is None else float(y_mm)
        d2 = (x - v["hx"]) ** 2 + (y - v["hy"]) ** 2
        i_eff = intensity * np.exp(-d2 * v["inv2s2"])
        if activation:
            i_eff = i_eff / self._active_factor(activation)
        z = np.clip((v["i50"] - i_eff) / v["slope"], -700.0, 700.0)
        med = np.where(v["responsive"], v["mep_max"] / (1.0 + np.exp(z)), 0.0)
        return med, (x, y)

    @staticmethod
    def _p(med: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            z = np.log(med / MEP_CRITERION_UV) / sigma
        return np.where(med > 0, _phi(np.nan_to_num(z, neginf=-40.0)), 0.0)

    def respond(self, intensity_pct_mso: float, *, hemisphere: str,
                x_mm: float | None = None, y_mm: float | None = None,
                activation: float = 0.0) -> Response:
        """Draw one trial: the MEPs a pulse gives on every channel.

        Parameters
        ----------
        intensity_pct_mso : float
            Stimulator output, 0 to 100 %MSO.
        hemisphere : {'left', 'right'}
            Stimulated hemisphere; only the opposite hand's channels respond.
        x_mm, y_mm : float, optional
            Coil position; ``None`` puts it on the FDI hotspot of that
            hemisphere (one missing coordinate is taken from the hotspot).
        activation : float
            Voluntary activation of the target hand (0 at rest, 1 at the plateau
            of a contraction): lowers the threshold and shortens the latency.

        Returns
        -------
        Response
            Amplitudes, latencies and the noise-free truth, per channel.
        """
        intensity = float(intensity_pct_mso)
        if not (0.0 <= intensity <= 100.0):
            raise ValueError(f"intensity_pct_mso must be within 0..100 %MSO, got {intensity_pct_mso!r}")
        v = self._vec[_check_hemisphere(hemisphere)]
        med, (x, y) = self._median(intensity, hemisphere, x_mm, y_mm, activation)
        n_m = med.size
        z = self._rng.standard_normal(n_m + 1)
        zm = v["a"] * z[0] + v["b"] * z[1:]
        amp = med * np.exp(v["sigma"] * zm)
        mep = amp >= self.floor_uv
        frac = np.divide(med, v["mep_max"], out=np.zeros(n_m), where=v["mep_max"] > 0)
        lat = (v["lat"] + v["lat_shift"] * (0.5 - frac) - self.active_latency_shift_ms * activation
               + v["lat_sd"] * self._rng.standard_normal(n_m))
        n = len(self.channels)
        out_amp = np.zeros(n)
        out_lat = np.full(n, np.nan)
        out_med = np.zeros(n)
        out_p = np.zeros(n)
        s = v["slice"]
        out_amp[s] = np.where(mep, amp, 0.0)
        out_lat[s] = np.where(mep, np.maximum(lat, 5.0), np.nan)
        out_med[s] = med
        out_p[s] = self._p(med, v["sigma"])
        trial = self._n_trials
        self._n_trials += 1
        return Response(trial, intensity, hemisphere, x, y, self.channels,
                        out_amp, out_lat, out_med, out_p, float(activation))

    # ------------------------------------------------------------ EMG
    def make_emg_synth(self, sfreq_hz: float, n_channels: int | None = None, *, seed: int = 0):
        """An :class:`~mepkit.sim.emg.EmgSynth` with this subject's background EMG."""
        from mepkit.sim.emg import EmgSynth

        e = self.emg
        return EmgSynth(
            sfreq_hz, len(self.channels) if n_channels is None else n_channels, seed=seed,
            noise_rms_uv=e.noise_rms_uv, line_freq_hz=e.line_freq_hz,
            line_amplitude_uv=e.line_amplitude_uv, drift_amplitude_uv=e.drift_amplitude_uv,
            artifact_amplitude_uv=e.artifact_amplitude_uv, artifact_tau_ms=e.artifact_tau_ms,
            mep_duration_ms=e.mep_duration_ms)

    def describe(self) -> dict[str, Any]:
        """All parameters as a plain dict (for records and reports)."""
        out: dict[str, Any] = {"name": self.name, "seed": self.seed, "floor_uv": self.floor_uv,
                               "lesioned_hemisphere": self.lesioned_hemisphere,
                               "active_threshold_ratio": self.active_threshold_ratio,
                               "active_latency_shift_ms": self.active_latency_shift_ms,
                               "channels": list(self.channels), "emg": vars(self.emg).copy()}
        for h in HEMISPHERES:
            hm = self.hemispheres[h]
            out[h] = {"map_sd_mm": hm.map_sd_mm, "rho": hm.rho,
                      "muscles": {m: vars(mm).copy() for m, mm in hm.muscles.items()}}
        return out

    def __repr__(self) -> str:
        rmts = ", ".join(f"{h} FDI RMT {self.true_rmt(h, self._target(h)):.1f}" for h in HEMISPHERES)
        return f"VirtualSubject({self.name!r}, seed={self.seed}: {rmts})"


#: Per-muscle baselines of the presets: RMT offset from FDI, plateau (µV),
#: latency (ms) and hotspot offset from the hemisphere's hand-knob centre (mm).
_MUSCLE_BASE = {
    "FDI": {"d_rmt": 0.0, "mep_max": 3000.0, "lat": 22.0, "dx": 0.0, "dy": 0.0},
    "APB": {"d_rmt": 3.0, "mep_max": 2000.0, "lat": 23.0, "dx": 4.0, "dy": 3.0},
    "ADM": {"d_rmt": 6.0, "mep_max": 1500.0, "lat": 22.5, "dx": -5.0, "dy": 4.0},
}
