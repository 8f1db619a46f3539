"""Synthetic surface EMG with TMS motor evoked potentials (MEPs).

Everything is in microvolts (µV); times are in ms or s as the names say.

The building blocks are

* :func:`mep_waveform` -- one clean polyphasic MEP whose peak-to-peak
  amplitude is exactly the requested one;
* :func:`stimulus_artifact` -- the TMS pulse artifact (sharp biphasic spike
  followed by an exponential recovery);
* :class:`EmgSynth` -- a streaming, block-by-block generator of continuous
  multi-channel EMG (white amplifier noise, mains interference with
  harmonics, slow baseline drift, voluntary contractions, stimulus artifacts
  and MEPs) with exact ground truth.  Its output does not depend on how the
  samples are split into blocks;
* :func:`synthesize_recording` -- a whole recording in one call;
* :func:`epochs_from_recording` -- cut trials around stimuli;
* :func:`synthesize_onset_epochs` -- epochs with the trouble real MEPs have before their
  onset (artifact decay tails, slow deviations, low-frequency EMG) and true onsets.

Only numpy is used.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "mep_waveform",
    "stimulus_artifact",
    "EmgSynth",
    "synthesize_recording",
    "epochs_from_recording",
    "synthesize_onset_epochs",
    "ONSET_TROUBLES",
]

# --------------------------------------------------------------------------
# MEP shape
# --------------------------------------------------------------------------

#: Default relative magnitude of successive MEP lobes (signs alternate).
_LOBE_AMPLITUDES = (1.0, 0.9, 0.35, 0.15, 0.07, 0.03, 0.015, 0.007)
#: Growth of lobe duration with lobe index (later phases are slower).
_LOBE_DURATION_GROWTH = 0.15
#: Default fraction of a lobe that the next lobe overlaps.
_LOBE_OVERLAP = 0.4
_MAX_PHASES = len(_LOBE_AMPLITUDES)
_SHAPE_KEYS = frozenset({"polarity", "lobe_amplitudes", "lobe_durations", "overlap"})


def _check_sfreq(sfreq_hz: float) -> float:
    fs = float(sfreq_hz)
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"sfreq_hz must be a positive number, got {sfreq_hz!r}")
    return fs


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator | None:
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _mep_lobes(
    duration_ms: float,
    phases: int,
    shape: Mapping[str, Any] | None,
    rng: np.random.Generator | None,
    jitter: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lobe start times (ms), durations (ms) and signed relative amplitudes."""
    duration_ms = float(duration_ms)
    if not (math.isfinite(duration_ms) and duration_ms > 0):
        raise ValueError(f"duration_ms must be positive, got {duration_ms!r}")
    if isinstance(phases, bool) or int(phases) != phases or not 1 <= int(phases) <= _MAX_PHASES:
        raise ValueError(f"phases must be an integer from 1 to {_MAX_PHASES}, got {phases!r}")
    phases = int(phases)
    shape = {} if shape is None else dict(shape)
    unknown = set(shape) - _SHAPE_KEYS
    if unknown:
        raise ValueError(
            f"unknown MEP shape key(s) {sorted(unknown)}; allowed: {sorted(_SHAPE_KEYS)}"
        )
    polarity = shape.get("polarity", 1)
    if polarity not in (1, -1):
        raise ValueError(f"shape['polarity'] must be +1 or -1, got {polarity!r}")
    amps = np.asarray(shape.get("lobe_amplitudes", _LOBE_AMPLITUDES[:phases]), dtype=float)
    durs = np.asarray(
        shape.get("lobe_durations", 1.0 + _LOBE_DURATION_GROWTH * np.arange(phases)),
        dtype=float,
    )
    overlap = float(shape.get("overlap", _LOBE_OVERLAP))
    if amps.shape != (phases,) or durs.shape != (phases,):
        raise ValueError(
            f"shape['lobe_amplitudes'] and shape['lobe_durations'] must have {phases} values"
        )
    if not (np.all(np.isfinite(amps)) and np.all(amps > 0)):
        raise ValueError("shape['lobe_amplitudes'] must be positive magnitudes")
    if not (np.all(np.isfinite(durs)) and np.all(durs > 0)):
        raise ValueError("shape['lobe_durations'] must be positive")
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"shape['overlap'] must be within [0, 0.9], got {overlap!r}")
    if rng is not None and jitter > 0:
        amps = amps * np.exp(rng.normal(0.0, 0.10 * jitter, phases))
        durs = durs * np.exp(rng.normal(0.0, 0.07 * jitter, phases))
        overlap = float(np.clip(overlap + rng.normal(0.0, 0.03 * jitter), 0.0, 0.8))
    starts = np.concatenate([[0.0], np.cumsum(durs[:-1] * (1.0 - overlap))])
    scale = duration_ms / float(np.max(starts + durs))
    signs = polarity * (-1.0) ** np.arange(phases)
    return starts * scale, durs * scale, signs * amps


def _mep_eval(t_ms: np.ndarray, lobes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Continuous (unnormalised) MEP at times ``t_ms`` after onset; 0 outside."""
    starts, durs, amps = lobes
    x = (t_ms[:, None] - starts[None, :]) / durs[None, :]
    inside = (x >= 0.0) & (x <= 1.0)
    lobe = np.where(inside, np.sin(np.pi * np.clip(x, 0.0, 1.0)) ** 2, 0.0)
    return lobe @ amps


def _scale_p2p(w: np.ndarray, amplitude_uv: float) -> np.ndarray:
    if amplitude_uv == 0:
        return np.zeros_like(w)
    p2p = float(w.max() - w.min()) if w.size else 0.0
    if not p2p > 0:
        raise ValueError("MEP too short to be sampled at this rate; raise duration_ms or sfreq_hz")
    return w * (amplitude_uv / p2p)


def mep_waveform(
    sfreq_hz: float,
    amplitude_uv: float,
    *,
    duration_ms: float = 20.0,
    phases: int = 3,
    rng: np.random.Generator | int | None = None,
    shape: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """A clean polyphasic MEP whose onset is sample 0.

    The waveform is a sum of ``phases`` overlapping raised-cosine lobes of
    alternating sign (first lobe positive unless ``shape['polarity'] == -1``),
    later lobes smaller and slower.  It is exactly 0 at sample 0, rises
    smoothly (zero slope at onset), has its first peak at about 0.19 ×
    ``duration_ms`` (~3.9 ms for the default 20 ms, 3 phases) and returns
    smoothly to 0 at ``duration_ms``.

    Parameters
    ----------
    sfreq_hz : float
        Sampling rate in Hz.
    amplitude_uv : float
        Peak-to-peak amplitude in µV (``max - min`` of the returned samples
        equals it to rounding error).  ``0`` gives zeros.
    duration_ms : float, default 20.0
        Time from onset to the end of the last lobe; all lobe times scale with it.
    phases : int, default 3
        Number of lobes (1 to 8).
    rng : numpy.random.Generator or int or None, default None
        If given, lobe sizes (±10 %), durations (±7 %) and overlap vary a
        little (the total duration does not).
    shape : mapping, optional
        Overrides of the base shape: ``polarity`` (+1 or -1, sign of the first
        lobe), ``lobe_amplitudes`` (``phases`` positive relative magnitudes,
        default ``(1.0, 0.9, 0.35, ...)``), ``lobe_durations`` (``phases``
        positive relative durations, default ``1 + 0.15 * k``) and ``overlap``
        (fraction of a lobe overlapped by the next, 0 to 0.9, default 0.4).

    Returns
    -------
    numpy.ndarray
        Float64 array of ``floor(duration_ms * sfreq_hz / 1000) + 1`` samples,
        sample ``k`` at ``k / sfreq_hz`` after onset.

    Raises
    ------
    ValueError
        On a non-positive rate or duration, negative amplitude or bad shape.
    """
    fs = _check_sfreq(sfreq_hz)
    amplitude_uv = float(amplitude_uv)
    if not (math.isfinite(amplitude_uv) and amplitude_uv >= 0):
        raise ValueError(f"amplitude_uv must be a non-negative number, got {amplitude_uv!r}")
    lobes = _mep_lobes(duration_ms, phases, shape, _as_rng(rng))
    n = int(math.floor(float(duration_ms) * fs / 1000.0 + 1e-9)) + 1
    t_ms = np.arange(n) * (1000.0 / fs)
    return _scale_p2p(_mep_eval(t_ms, lobes), amplitude_uv)


# --------------------------------------------------------------------------
# Stimulus artifact
# --------------------------------------------------------------------------

_SPIKE_MS = 0.4
_SPIKE_POS, _SPIKE_NEG, _TAIL = 0.6, 0.4, 0.03


def stimulus_artifact(
    sfreq_hz: float,
    amplitude_uv: float,
    *,
    tau_ms: float = 1.0,
    duration_ms: float = 10.0,
) -> np.ndarray:
    """The TMS pulse artifact, starting at sample 0.

    A sharp biphasic spike (positive then negative) lasting ~0.4 ms (at least
    two samples, so longer below 5 kHz), then an exponential recovery with
    time constant ``tau_ms`` from a residual of ~3 % of the spike size,
    bent to reach exactly 0 at the last sample.  With the defaults and an
    amplitude up to ~20 mV, ``|artifact| < 0.5 µV`` from 8 ms on.

    Parameters
    ----------
    sfreq_hz : float
        Sampling rate in Hz.
    amplitude_uv : float
        Peak-to-peak size in µV (``max - min`` equals ``|amplitude_uv|``); a
        negative value inverts the artifact.  Several mV is typical.
    tau_ms : float, default 1.0
        Time constant of the exponential recovery.
    duration_ms : float, default 10.0
        Length of the returned artifact.

    Returns
    -------
    numpy.ndarray
        Float64 array of ``max(round(duration_ms * sfreq_hz / 1000), spike + 2)``
        samples.

    Raises
    ------
    ValueError
        On a non-positive rate, time constant or duration, or non-finite amplitude.
    """
    fs = _check_sfreq(sfreq_hz)
    amplitude_uv = float(amplitude_uv)
    tau_ms = float(tau_ms)
    duration_ms = float(duration_ms)
    if not math.isfinite(amplitude_uv):
        raise ValueError(f"amplitude_uv must be finite, got {amplitude_uv!r}")
    if not (math.isfinite(tau_ms) and tau_ms > 0):
        raise ValueError(f"tau_ms must be positive, got {tau_ms!r}")
    if not (math.isfinite(duration_ms) and duration_ms > 0):
        raise ValueError(f"duration_ms must be positive, got {duration_ms!r}")
    n_spike = max(2, int(round(_SPIKE_MS * fs / 1000.0)))
    n = max(n_spike + 2, int(round(duration_ms * fs / 1000.0)))
    a = np.zeros(n)
    n_pos = (n_spike + 1) // 2
    n_neg = n_spike - n_pos
    a[:n_pos] = _SPIKE_POS * np.sin(np.pi * (np.arange(n_pos) + 0.5) / n_pos)
    a[n_pos:n_spike] = -_SPIKE_NEG * np.sin(np.pi * (np.arange(n_neg) + 0.5) / n_neg)
    t = (np.arange(n_spike, n) - (n_spike - 1)) * (1000.0 / fs)
    e_end = math.exp(-t[-1] / tau_ms)
    a[n_spike:] = -_TAIL * (np.exp(-t / tau_ms) - e_end) / (1.0 - e_end)
    a[-1] = 0.0
    return a * (amplitude_uv / float(a.max() - a.min()))


# --------------------------------------------------------------------------
# Streaming generator
# --------------------------------------------------------------------------

_LINE_HARMONICS = (1.0, 0.15, 0.25)  # relative amplitude of f, 2f, 3f
_N_DRIFT = 3
_DRIFT_FREQ_HZ = (0.05, 0.8)
_CONTRACTION_BAND_HZ = (20.0, 250.0)
_CONTRACTION_RAMP_MS = 50.0
# Seed-sequence stream identifiers (second entropy word).
_S_NOISE, _S_CARRIER, _S_TRIAL, _S_CHANNEL = 0, 1, 2, 3


@dataclass
class _Pulse:
    key: tuple[int, int]  # (start, sequence) -- rendering order
    start: int
    stop: int
    wave: np.ndarray  # (stop - start, n_channels)


@dataclass
class _Contraction:
    start: int
    stop: int
    ramp: int
    rms_uv: np.ndarray  # (n_channels,), 0 for channels not involved
    channels: np.ndarray


def _envelope(con: _Contraction, n: np.ndarray) -> np.ndarray:
    """Level (0..1) of a contraction at samples ``n``: raised-cosine ramps, plateau 1."""
    inside = (n >= con.start) & (n < con.stop)
    if con.ramp <= 0:
        return inside.astype(float)
    up = np.clip((n - con.start + 0.5) / con.ramp, 0.0, 1.0)
    down = np.clip((con.stop - n - 0.5) / con.ramp, 0.0, 1.0)
    return np.where(inside, np.sin(0.5 * np.pi * np.minimum(up, down)) ** 2, 0.0)


class EmgSynth:
    """Streaming generator of continuous multi-channel surface EMG (µV).

    Call :meth:`add_pulse` and :meth:`add_contraction` to schedule events (at
    absolute sample indices, now or in the future) and :meth:`generate` to get
    the next block.  The output is a deterministic function of the
    constructor arguments and the events scheduled before each sample is
    generated: it is bit-identical whatever block sizes are used.

    Components, summed per channel:

    * white Gaussian noise of RMS ``noise_rms_uv`` (amplifier/baseline noise);
    * mains interference: a sinusoid at ``line_freq_hz`` of amplitude
      ``line_amplitude_uv`` plus harmonics at 2f and 3f (0.15× and 0.25×),
      random phases per channel and harmonic; harmonics at or above Nyquist
      are left out;
    * baseline drift: per channel, 3 sinusoids of random frequency in
      0.05–0.8 Hz whose amplitudes add up to ``drift_amplitude_uv`` (so the
      drift never exceeds it);
    * voluntary contractions (:meth:`add_contraction`): band-limited noise
      (~20–250 Hz) with 50 ms raised-cosine ramps;
    * per pulse (:meth:`add_pulse`): the stimulus artifact (peak-to-peak
      ``artifact_amplitude_uv`` × a fixed per-channel gain in 0.5–1 with a
      random sign) and one MEP per channel.  MEP shapes are polyphasic
      (:func:`mep_waveform`) with a per-channel base shape (random polarity,
      lobe sizes and durations, fixed by ``seed``) varied a little per
      pulse when ``mep_shape_jitter`` is true.  MEP onsets may be at
      fractional samples; the rendered MEP is rescaled so that its sampled
      peak-to-peak is exactly the requested amplitude.

    Parameters
    ----------
    sfreq_hz : float
        Sampling rate in Hz.
    n_channels : int
        Number of EMG channels.
    seed : int, default 0
        Non-negative seed of every random choice.
    noise_rms_uv : float, default 4.0
        RMS of the white noise.
    line_freq_hz : float, default 50.0
        Mains frequency (50 or 60 Hz).
    line_amplitude_uv : float, default 30.0
        Amplitude (not RMS) of the fundamental; 0 switches mains off.
    drift_amplitude_uv : float, default 100.0
        Bound of the baseline drift; 0 switches drift off.
    artifact_amplitude_uv : float, default 5000.0
        Peak-to-peak of the stimulus artifact before per-channel gain; 0 switches it off.
    artifact_tau_ms : float, default 1.0
        Time constant of the artifact's exponential recovery.
    mep_duration_ms : float, default 20.0
        Duration of each MEP (see :func:`mep_waveform`).
    mep_phases : int, default 3
        Number of MEP lobes.
    mep_shape_jitter : bool, default True
        Vary the MEP shape slightly from pulse to pulse.

    Attributes
    ----------
    ground_truth : list of dict
        One dict per :meth:`add_pulse` call, in call order (see there).
    contractions : list of dict
        One dict per :meth:`add_contraction` call: ``start_sample``,
        ``stop_sample`` and ``rms_uv`` (per channel, 0 where not involved).
    page_size : int
        Internal page length; noise is drawn per page of absolute samples.

    Notes
    -----
    Events are rendered only for samples not yet generated: the part of a
    pulse or contraction before :attr:`position` at the time it is added is
    lost (its ground truth is still recorded).
    """

    page_size: int = 4096
    _CACHE_PAGES = 4

    def __init__(
        self,
        sfreq_hz: float,
        n_channels: int,
        *,
        seed: int = 0,
        noise_rms_uv: float = 4.0,
        line_freq_hz: float = 50.0,
        line_amplitude_uv: float = 30.0,
        drift_amplitude_uv: float = 100.0,
        artifact_amplitude_uv: float = 5000.0,
        artifact_tau_ms: float = 1.0,
        mep_duration_ms: float = 20.0,
        mep_phases: int = 3,
        mep_shape_jitter: bool = True,
    ) -> None:
        self.sfreq_hz = _check_sfreq(sfreq_hz)
        if isinstance(n_channels, bool) or int(n_channels) != n_channels or n_channels < 1:
            raise ValueError(f"n_channels must be a positive integer, got {n_channels!r}")
        self.n_channels = int(n_channels)
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        for name, value in (
            ("noise_rms_uv", noise_rms_uv),
            ("line_freq_hz", line_freq_hz),
            ("line_amplitude_uv", line_amplitude_uv),
            ("drift_amplitude_uv", drift_amplitude_uv),
            ("artifact_amplitude_uv", artifact_amplitude_uv),
        ):
            if not (math.isfinite(float(value)) and float(value) >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        self.noise_rms_uv = float(noise_rms_uv)
        self.line_freq_hz = float(line_freq_hz)
        self.line_amplitude_uv = float(line_amplitude_uv)
        self.drift_amplitude_uv = float(drift_amplitude_uv)
        self.artifact_amplitude_uv = float(artifact_amplitude_uv)
        self.artifact_tau_ms = float(artifact_tau_ms)
        self.mep_duration_ms = float(mep_duration_ms)
        self.mep_phases = int(mep_phases)
        self.mep_shape_jitter = bool(mep_shape_jitter)

        self.ground_truth: list[dict[str, Any]] = []
        self.contractions: list[dict[str, Any]] = []
        self._position = 0
        self._pulses: list[_Pulse] = []
        self._contractions: list[_Contraction] = []
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._white_cache: OrderedDict[int, np.ndarray] = OrderedDict()

        fs, nch, P = self.sfreq_hz, self.n_channels, self.page_size
        rng = np.random.default_rng([self.seed, _S_CHANNEL])
        j = np.arange(P, dtype=float)

        # Mains: sin(theta0 + w j + phi) = sin(w j) cos(theta0 + phi) + cos(w j) sin(theta0 + phi)
        line_phase = rng.uniform(0.0, 2 * np.pi, (len(_LINE_HARMONICS), nch))
        self._line_h = [
            (h + 1, rel * self.line_amplitude_uv, line_phase[h])
            for h, rel in enumerate(_LINE_HARMONICS)
            if self.line_amplitude_uv > 0 and 0 < (h + 1) * self.line_freq_hz < fs / 2
        ]
        if self._line_h:
            cyc = np.array([h * self.line_freq_hz / fs for h, _, _ in self._line_h])
            self._line_cyc = cyc  # cycles per sample
            w = 2 * np.pi * j[:, None] * cyc[None, :]
            self._line_sin, self._line_cos = np.sin(w), np.cos(w)  # (P, H)

        # Drift: per channel, _N_DRIFT sinusoids.
        d_freq = rng.uniform(*_DRIFT_FREQ_HZ, (nch, _N_DRIFT))
        d_phase = rng.uniform(0.0, 2 * np.pi, (nch, _N_DRIFT))
        d_weight = rng.uniform(0.5, 1.0, (nch, _N_DRIFT))
        self._drift_cyc = d_freq / fs
        self._drift_phase = d_phase
        self._drift_amp = self.drift_amplitude_uv * d_weight / d_weight.sum(1, keepdims=True)
        if self.drift_amplitude_uv > 0:
            w = 2 * np.pi * self._drift_cyc[:, None, :] * j[None, :, None]  # (nch, P, K)
            self._drift_basis = np.concatenate([np.sin(w), np.cos(w)], axis=2)  # (nch, P, 2K)

        # Stimulus artifact, one column per channel.
        gain = rng.uniform(0.5, 1.0, nch) * rng.choice([-1.0, 1.0], nch)
        self._artifact_uv = self.artifact_amplitude_uv * gain
        if self.artifact_amplitude_uv > 0:
            self._artifact = np.stack(
                [stimulus_artifact(fs, a, tau_ms=self.artifact_tau_ms) for a in self._artifact_uv],
                axis=1,
            )
        else:
            self._artifact = np.zeros((0, nch))

        # Per-channel base MEP shape.
        _mep_lobes(self.mep_duration_ms, self.mep_phases, None, None)  # validate
        base_amp = np.asarray(_LOBE_AMPLITUDES[: self.mep_phases])
        base_dur = 1.0 + _LOBE_DURATION_GROWTH * np.arange(self.mep_phases)
        self._mep_shapes = [
            {
                "polarity": int(rng.choice([-1, 1])),
                "lobe_amplitudes": base_amp * np.exp(rng.normal(0.0, 0.15, self.mep_phases)),
                "lobe_durations": base_dur * np.exp(rng.normal(0.0, 0.10, self.mep_phases)),
            }
            for _ in range(nch)
        ]

        # Contraction carrier: zero-phase FIR band-pass, unit output variance.
        n_taps = min(int(round(0.25 * fs)) // 2 * 2 + 1, P - 1 if P % 2 == 0 else P)
        n_taps = max(n_taps, 3)
        f = np.fft.rfftfreq(n_taps, 1.0 / fs)
        lo, hi = _CONTRACTION_BAND_HZ
        hi = min(hi, 0.45 * fs)
        mag = (f / lo) ** 2 / (1.0 + (f / lo) ** 2) / np.sqrt(1.0 + (f / hi) ** 4)
        h = np.fft.fftshift(np.fft.irfft(mag, n_taps)) * np.hanning(n_taps + 2)[1:-1]
        h /= np.sqrt(np.sum(h**2))
        self._n_taps = n_taps
        self._nfft = 1 << int(math.ceil(math.log2(P + n_taps - 1)))
        self._carrier_h = np.fft.rfft(h, self._nfft)[:, None]

    # ------------------------------------------------------------------ API

    @property
    def position(self) -> int:
        """Absolute index of the next sample :meth:`generate` returns."""
        return self._position

    def add_pulse(
        self,
        sample_index: int,
        amplitudes_uv: ArrayLike,
        latencies_ms: ArrayLike,
        *,
        artifact: bool = True,
    ) -> dict[str, Any]:
        """Schedule a TMS pulse.

        Parameters
        ----------
        sample_index : int
            Absolute sample of the stimulus (artifact starts there).
        amplitudes_uv : array_like
            MEP peak-to-peak per channel (scalar broadcasts); 0 means no MEP.
        latencies_ms : array_like
            MEP onset latency per channel (scalar broadcasts); ignored (may be
            NaN) where the amplitude is 0.
        artifact : bool, default True
            Add the stimulus artifact.

        Returns
        -------
        dict
            The ground-truth entry, also appended to :attr:`ground_truth`:
            ``pulse`` (index), ``sample_index``, ``artifact`` (bool),
            ``artifact_amplitude_uv`` (per channel, signed peak-to-peak, 0 if
            none), ``amplitude_uv``, ``latency_ms`` and ``onset_samples`` (per
            channel; exact, possibly fractional absolute sample of MEP onset
            ``sample_index + latency_ms * sfreq_hz / 1000``; latency and onset
            are NaN where there is no MEP).

        Raises
        ------
        ValueError
            On a negative sample index, negative/non-finite amplitudes, or
            negative/non-finite latencies where an MEP is requested.
        """
        if isinstance(sample_index, bool) or int(sample_index) != sample_index or sample_index < 0:
            raise ValueError(f"sample_index must be a non-negative integer, got {sample_index!r}")
        sample_index = int(sample_index)
        nch, fs = self.n_channels, self.sfreq_hz
        amps = self._per_channel(amplitudes_uv, "amplitudes_uv")
        lats = self._per_channel(latencies_ms, "latencies_ms")
        if not np.all(np.isfinite(amps) & (amps >= 0)):
            raise ValueError(f"amplitudes_uv must be finite and >= 0, got {amps!r}")
        has_mep = amps > 0
        if not np.all(np.isfinite(lats[has_mep]) & (lats[has_mep] >= 0)):
            raise ValueError(
                f"latencies_ms must be finite and >= 0 where amplitude > 0, got {lats!r}"
            )
        seq = len(self.ground_truth)
        lat_truth = np.where(has_mep, lats, np.nan)
        onset = sample_index + lat_truth * fs / 1000.0

        pieces: list[tuple[int, int, np.ndarray]] = []  # (first sample, channel or -1, values)
        use_artifact = bool(artifact) and self._artifact.shape[0] > 0
        if use_artifact:
            pieces.append((sample_index, -1, self._artifact))
        trial_rng = np.random.default_rng([self.seed, _S_TRIAL, seq])
        dur_samples = self.mep_duration_ms * fs / 1000.0
        for c in range(nch):
            jitter = 1.0 if self.mep_shape_jitter else 0.0
            lobes = _mep_lobes(
                self.mep_duration_ms, self.mep_phases, self._mep_shapes[c], trial_rng, jitter
            )
            if not has_mep[c]:
                continue
            first = int(math.ceil(onset[c]))
            last = int(math.floor(onset[c] + dur_samples))
            t_ms = (np.arange(first, last + 1) - onset[c]) * (1000.0 / fs)
            pieces.append((first, c, _scale_p2p(_mep_eval(t_ms, lobes), float(amps[c]))))

        truth = {
            "pulse": seq,
            "sample_index": sample_index,
            "artifact": use_artifact,
            "artifact_amplitude_uv": self._artifact_uv.copy() if use_artifact else np.zeros(nch),
            "amplitude_uv": amps.copy(),
            "latency_ms": lat_truth,
            "onset_samples": onset,
        }
        self.ground_truth.append(truth)
        if pieces:
            start = min(p[0] for p in pieces)
            stop = max(p[0] + len(p[2]) for p in pieces)
            if stop > self._position:
                wave = np.zeros((stop - start, nch))
                for first, c, values in pieces:
                    if c < 0:
                        wave[first - start : first - start + len(values)] += values
                    else:
                        wave[first - start : first - start + len(values), c] += values
                pulse = _Pulse((start, seq), start, stop, wave)
                bisect.insort(self._pulses, pulse, key=lambda p: p.key)
        return truth

    def activation(self, sample: int, channels: Sequence[int] | None = None) -> float:
        """Voluntary activation (0..1, the fraction of a contraction's plateau) at
        ``sample`` of the most active of ``channels`` (default all)."""
        chans = None if channels is None else set(int(c) for c in channels)
        level = 0.0
        n = np.array([int(sample)])
        for con in self._contractions:
            if con.start <= sample < con.stop and (
                    chans is None or chans.intersection(con.channels.tolist())):
                level = max(level, float(_envelope(con, n)[0]))
        return level

    def add_contraction(
        self,
        start_sample: int,
        stop_sample: int,
        rms_uv: ArrayLike,
        channels: Sequence[int] | None = None,
    ) -> None:
        """Schedule a voluntary contraction episode.

        Adds band-limited noise (~20–250 Hz) of RMS ``rms_uv`` over
        ``[start_sample, stop_sample)``, with raised-cosine ramps of
        ``min(50 ms, episode / 4)`` at both ends (``rms_uv`` is the plateau
        RMS).  Overlapping contractions on a channel share one noise process,
        so their amplitudes add.

        Parameters
        ----------
        start_sample, stop_sample : int
            Absolute sample range, stop exclusive.
        rms_uv : array_like
            Plateau RMS, scalar or one value per channel in ``channels``.
        channels : sequence of int, optional
            Channels involved (default all).

        Raises
        ------
        ValueError
            On an empty/negative range, bad channels or negative RMS.
        """
        start, stop = int(start_sample), int(stop_sample)
        if start != start_sample or stop != stop_sample or not 0 <= start < stop:
            raise ValueError(
                "need integer 0 <= start_sample < stop_sample, "
                f"got {start_sample!r}, {stop_sample!r}"
            )
        chans = np.arange(self.n_channels) if channels is None else np.asarray(channels, dtype=int)
        chans = np.atleast_1d(chans)
        if chans.size == 0 or np.any((chans < 0) | (chans >= self.n_channels)):
            raise ValueError(
                f"channels must be indices in [0, {self.n_channels}), got {channels!r}"
            )
        if len(np.unique(chans)) != len(chans):
            raise ValueError(f"channels must not repeat, got {channels!r}")
        try:
            rms_sel = np.broadcast_to(np.asarray(rms_uv, dtype=float), chans.shape)
        except ValueError:
            raise ValueError(
                f"rms_uv must be a scalar or one value per channel, got {rms_uv!r}"
            ) from None
        if not np.all(np.isfinite(rms_sel) & (rms_sel >= 0)):
            raise ValueError(f"rms_uv must be finite and >= 0, got {rms_uv!r}")
        rms = np.zeros(self.n_channels)
        rms[chans] = rms_sel
        ramp = min(int(round(_CONTRACTION_RAMP_MS * self.sfreq_hz / 1000.0)), (stop - start) // 4)
        self._contractions.append(_Contraction(start, stop, ramp, rms, np.sort(chans)))
        self.contractions.append({"start_sample": start, "stop_sample": stop, "rms_uv": rms.copy()})
        P = self.page_size
        for p in range(start // P, (stop - 1) // P + 1):
            self._cache.pop(p, None)

    def generate(self, n_samples: int) -> np.ndarray:
        """Return the next ``n_samples`` samples and advance :attr:`position`.

        Parameters
        ----------
        n_samples : int
            Block length (0 allowed).

        Returns
        -------
        numpy.ndarray
            Float64 array ``(n_samples, n_channels)`` in µV.
        """
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 0:
            raise ValueError(f"n_samples must be a non-negative integer, got {n_samples!r}")
        n = int(n_samples)
        out = np.empty((n, self.n_channels))
        if n == 0:
            return out
        start, stop, P = self._position, self._position + n, self.page_size
        for p in range(start // P, (stop - 1) // P + 1):
            a, b = max(start, p * P), min(stop, (p + 1) * P)
            out[a - start : b - start] = self._page(p)[a - p * P : b - p * P]
        for pulse in self._pulses:
            if pulse.start >= stop:
                break
            a, b = max(start, pulse.start), min(stop, pulse.stop)
            if a < b:
                out[a - start : b - start] += pulse.wave[a - pulse.start : b - pulse.start]
        self._position = stop
        while self._pulses and self._pulses[0].stop <= stop:
            self._pulses.pop(0)
        if len(self._contractions) > 64:
            self._contractions = [c for c in self._contractions if c.stop > stop]
        return out

    # ------------------------------------------------------------- internals

    def _per_channel(self, value: ArrayLike, name: str) -> np.ndarray:
        try:
            return np.array(
                np.broadcast_to(np.asarray(value, dtype=float), (self.n_channels,)), dtype=float
            )
        except ValueError:
            raise ValueError(
                f"{name} must be a scalar or {self.n_channels} values, got {value!r}"
            ) from None

    def _white(self, p: int) -> np.ndarray:
        """Unit white noise of the contraction carrier, page ``p``."""
        cached = self._white_cache.get(p)
        if cached is None:
            rng = np.random.default_rng([self.seed, _S_CARRIER, p])
            cached = rng.standard_normal((self.page_size, self.n_channels))
            self._white_cache[p] = cached
            while len(self._white_cache) > self._CACHE_PAGES:
                self._white_cache.popitem(last=False)
        return cached

    def _carrier(self, p: int) -> np.ndarray:
        """Band-limited unit-variance noise for page ``p`` (continuous across pages)."""
        L, P = self._n_taps, self.page_size
        prev = self._white(p - 1)[P - (L - 1) :] if p > 0 else np.zeros((L - 1, self.n_channels))
        x = np.concatenate([prev, self._white(p)])
        y = np.fft.irfft(np.fft.rfft(x, self._nfft, axis=0) * self._carrier_h, self._nfft, axis=0)
        return y[L - 1 : L - 1 + P]

    def _page(self, p: int) -> np.ndarray:
        """Background (noise, mains, drift, contractions) of page ``p``."""
        cached = self._cache.get(p)
        if cached is not None:
            return cached
        P, nch = self.page_size, self.n_channels
        n0 = p * P
        if self.noise_rms_uv > 0:
            rng = np.random.default_rng([self.seed, _S_NOISE, p])
            out = rng.standard_normal((P, nch))
            out *= self.noise_rms_uv
        else:
            out = np.zeros((P, nch))
        if self._line_h:
            theta0 = 2 * np.pi * np.mod(n0 * self._line_cyc, 1.0)  # (H,)
            ang = theta0[:, None] + np.array([ph for _, _, ph in self._line_h])  # (H, nch)
            amp = np.array([a for _, a, _ in self._line_h])[:, None]
            out += self._line_sin @ (amp * np.cos(ang)) + self._line_cos @ (amp * np.sin(ang))
        if self.drift_amplitude_uv > 0:
            ang = 2 * np.pi * np.mod(n0 * self._drift_cyc, 1.0) + self._drift_phase  # (nch, K)
            coef = np.concatenate([np.cos(ang), np.sin(ang)], axis=1) * np.tile(self._drift_amp, 2)
            out += (self._drift_basis @ coef[:, :, None])[:, :, 0].T
        carrier = None
        for con in self._contractions:
            a, b = max(con.start, n0), min(con.stop, n0 + P)
            if a >= b:
                continue
            if carrier is None:
                carrier = self._carrier(p)
            env = _envelope(con, np.arange(a, b))
            ch = con.channels
            out[a - n0 : b - n0, ch] += carrier[a - n0 : b - n0, ch] * (
                env[:, None] * con.rms_uv[ch][None, :]
            )
        self._cache[p] = out
        while len(self._cache) > self._CACHE_PAGES:
            self._cache.popitem(last=False)
        return out


# --------------------------------------------------------------------------
# Whole recordings
# --------------------------------------------------------------------------


def _contraction_args(item: Any) -> tuple[float, float, Any, Any]:
    if isinstance(item, Mapping):
        return item["start_s"], item["stop_s"], item["rms_uv"], item.get("channels")
    item = tuple(item)
    if len(item) == 3:
        return (*item, None)
    if len(item) == 4:
        return item
    raise ValueError(
        "each contraction must be (start_s, stop_s, rms_uv[, channels]) or a mapping "
        f"with those keys, got {item!r}"
    )


def synthesize_recording(
    sfreq_hz: float,
    n_channels: int,
    stim_times_s: ArrayLike,
    amplitudes_uv: ArrayLike,
    latencies_ms: ArrayLike,
    *,
    duration_s: float,
    seed: int = 0,
    contractions: Iterable[Any] = (),
    t0_s: float = 0.0,
    **synth_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Synthesize a whole recording with :class:`EmgSynth`.

    Parameters
    ----------
    sfreq_hz : float
        Sampling rate in Hz.
    n_channels : int
        Number of channels.
    stim_times_s : array_like
        Stimulus times in s on the recording clock (``t0_s`` is the first
        sample); each stimulus is placed at sample ``round((t - t0_s) * sfreq_hz)``.
    amplitudes_uv, latencies_ms : array_like
        MEP peak-to-peak and onset latency, broadcastable to
        ``(n_trials, n_channels)``.
    duration_s : float
        Recording length; ``round(duration_s * sfreq_hz)`` samples.
    seed : int, default 0
        Seed of :class:`EmgSynth`.
    contractions : iterable, default ()
        Items ``(start_s, stop_s, rms_uv)`` or ``(start_s, stop_s, rms_uv,
        channels)`` or mappings with those keys; times on the recording clock.
    t0_s : float, default 0.0
        Time of the first sample.
    **synth_kwargs
        Other :class:`EmgSynth` arguments (noise, mains, drift, artifact, MEP shape).

    Returns
    -------
    data_uv : numpy.ndarray
        ``(n_samples, n_channels)`` float64, µV.
    timestamps_s : numpy.ndarray
        ``t0_s + arange(n_samples) / sfreq_hz``.
    truth : list of dict
        :attr:`EmgSynth.ground_truth` entries, each with ``stim_time_s``
        (time of the stimulus sample) added.

    Raises
    ------
    ValueError
        If a stimulus falls outside the recording or shapes do not broadcast.
    """
    fs = _check_sfreq(sfreq_hz)
    n = int(round(float(duration_s) * fs))
    if n < 1:
        raise ValueError(f"duration_s must give at least one sample, got {duration_s!r}")
    stim = np.atleast_1d(np.asarray(stim_times_s, dtype=float))
    if stim.ndim != 1:
        raise ValueError("stim_times_s must be one-dimensional")
    samples = np.rint((stim - float(t0_s)) * fs)
    if np.any(~np.isfinite(samples)) or np.any((samples < 0) | (samples >= n)):
        raise ValueError("every stimulus must fall within the recording")
    shape = (stim.size, int(n_channels))
    try:
        amps = np.broadcast_to(np.asarray(amplitudes_uv, dtype=float), shape)
        lats = np.broadcast_to(np.asarray(latencies_ms, dtype=float), shape)
    except ValueError:
        raise ValueError(
            f"amplitudes_uv and latencies_ms must broadcast to (n_trials, n_channels) = {shape}"
        ) from None
    synth = EmgSynth(fs, n_channels, seed=seed, **synth_kwargs)
    for item in contractions:
        start_s, stop_s, rms, chans = _contraction_args(item)
        a = int(round((float(start_s) - t0_s) * fs))
        b = int(round((float(stop_s) - t0_s) * fs))
        synth.add_contraction(max(a, 0), min(b, n), rms, chans)
    truth = []
    for k in range(stim.size):
        entry = synth.add_pulse(int(samples[k]), amps[k], lats[k])
        entry["stim_time_s"] = float(t0_s) + int(samples[k]) / fs
        truth.append(entry)
    data = synth.generate(n)
    timestamps = float(t0_s) + np.arange(n) / fs
    return data, timestamps, truth


def epochs_from_recording(
    data: ArrayLike,
    sfreq_hz: float,
    stim_samples: ArrayLike,
    tmin_s: float,
    tmax_s: float,
) -> np.ndarray:
    """Cut epochs around stimuli.

    Parameters
    ----------
    data : array_like
        ``(n_samples, n_channels)`` recording.
    sfreq_hz : float
        Sampling rate in Hz.
    stim_samples : array_like of int
        Stimulus sample indices.
    tmin_s, tmax_s : float
        Epoch window relative to each stimulus, both ends included: samples
        ``stim + round(tmin_s * sfreq_hz)`` to ``stim + round(tmax_s * sfreq_hz)``.

    Returns
    -------
    numpy.ndarray
        ``(n_trials, n_channels, n_epoch_samples)`` float64; samples outside
        the recording are NaN.

    Raises
    ------
    ValueError
        If ``tmax_s < tmin_s`` or ``data`` is not 2-D.
    """
    fs = _check_sfreq(sfreq_hz)
    x = np.asarray(data, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"data must be (n_samples, n_channels), got shape {x.shape}")
    lo, hi = int(round(tmin_s * fs)), int(round(tmax_s * fs))
    if hi < lo:
        raise ValueError(f"need tmin_s <= tmax_s, got {tmin_s!r}, {tmax_s!r}")
    stim = np.atleast_1d(np.asarray(stim_samples)).astype(np.int64)
    idx = stim[:, None] + np.arange(lo, hi + 1)[None, :]
    valid = (idx >= 0) & (idx < x.shape[0])
    if x.shape[0] == 0:
        out = np.full((stim.size, idx.shape[1], x.shape[1]), np.nan)
    else:
        out = x[np.clip(idx, 0, x.shape[0] - 1)]
        out[~valid] = np.nan
    return np.ascontiguousarray(out.transpose(0, 2, 1))


# --------------------------------------------------------------------------
# Epochs for onset benchmarks
# --------------------------------------------------------------------------

#: What may come before an MEP in :func:`synthesize_onset_epochs`.
ONSET_TROUBLES = ("none", "tail", "bigtail", "slow", "lowfreq")


def synthesize_onset_epochs(
    sfreq_hz: float,
    n_epochs: int,
    *,
    seed: int = 0,
    amplitude_range_uv: tuple[float, float] = (100.0, 4000.0),
    latency_range_ms: tuple[float, float] = (18.0, 28.0),
    troubles: Sequence[str] = ONSET_TROUBLES,
    line_freq_hz: float = 50.0,
    tmin_ms: float = -200.0,
    tmax_ms: float = 100.0,
) -> dict[str, Any]:
    """Single-channel epochs of MEPs with realistic trouble before the onset.

    Every epoch is continuous EMG from :class:`EmgSynth` (white noise 2 µV RMS, resting
    EMG as band-limited 20-250 Hz noise of 2-4 µV RMS, mains of 10-40 µV at
    ``line_freq_hz`` with harmonics, drift, a 2-8 mV stimulus artifact) with one MEP of
    log-uniform amplitude in ``amplitude_range_uv`` and uniform onset latency in
    ``latency_range_ms``, plus one kind of trouble, cycling through ``troubles``:

    * ``"none"``;
    * ``"tail"``: a slow artifact recovery, an exponential from the stimulus with time
      constant 3-10 ms whose size 10 ms after the stimulus is 1-3 x the background RMS;
    * ``"bigtail"``: a large artifact recovery as measured on real recordings (the
      input-output recordings of docs/methods.md, "Real recordings": 38 µV in the median,
      up to 120 µV, left 15 ms after the stimulus; a drift of 12 x the background RMS in
      the median, up to 22 x, from 15 to 20 ms): an exponential from the stimulus with time
      constant 5-15 ms whose size 15 ms after the stimulus (the response window's start)
      is 20-40 x the background RMS (so it drifts by 6-25 x the RMS from 15 to 20 ms),
      either sign relative to the MEP;
    * ``"slow"``: a smooth bump (raised cosine, 4-12 ms long) of 1-3 x the background
      RMS, ending 0-2 ms before the onset or overlapping it by up to 2 ms;
    * ``"lowfreq"``: low-frequency EMG, 10-60 Hz band-limited noise of 1-3 x the
      background RMS over the 40 ms before the onset (fading in), continuing into the MEP.

    Parameters
    ----------
    sfreq_hz : float
        Sampling rate.
    n_epochs : int
        Number of epochs.
    seed : int
        Seed of every random choice.

    Returns
    -------
    dict
        ``epochs`` (n_epochs, 1, n_samples) µV, ``t0_ms`` (time of sample 0, ms after
        the stimulus), ``onset_ms`` (true MEP onset latency), ``amplitude_uv``,
        ``trouble`` (kind per epoch), ``background_rms_uv`` (the trouble's reference).
    """
    fs = _check_sfreq(sfreq_hz)
    unknown = set(troubles) - set(ONSET_TROUBLES)
    if unknown:
        raise ValueError(f"unknown trouble(s) {sorted(unknown)}; allowed: {ONSET_TROUBLES}")
    rng = np.random.default_rng([seed, 7])
    n_ch = 16
    per_ch = -(-int(n_epochs) // n_ch)
    gap_s = 0.6
    n_total = int(round((per_ch + 1) * gap_s * fs))
    stim = (np.arange(per_ch) + 1) * int(round(gap_s * fs))
    lo, hi = np.log(amplitude_range_uv[0]), np.log(amplitude_range_uv[1])
    amps = np.exp(rng.uniform(lo, hi, (per_ch, n_ch)))
    lats = rng.uniform(*latency_range_ms, (per_ch, n_ch))
    synth = EmgSynth(fs, n_ch, seed=seed, noise_rms_uv=2.0, line_freq_hz=line_freq_hz,
                     line_amplitude_uv=float(rng.uniform(10.0, 40.0)),
                     drift_amplitude_uv=100.0,
                     artifact_amplitude_uv=float(rng.uniform(2000.0, 8000.0)))
    synth.add_contraction(0, n_total, rng.uniform(2.0, 4.0, n_ch))
    for k in range(per_ch):
        synth.add_pulse(int(stim[k]), amps[k], lats[k])
    data = synth.generate(n_total)
    lo_i, hi_i = int(round(tmin_ms * fs / 1000.0)), int(round(tmax_ms * fs / 1000.0))
    t_ms = np.arange(lo_i, hi_i + 1) * (1000.0 / fs)
    out = np.empty((per_ch * n_ch, 1, t_ms.size))
    onset = np.empty(per_ch * n_ch)
    amp = np.empty(per_ch * n_ch)
    kinds = []
    bg_rms = np.empty(per_ch * n_ch)
    pre = (t_ms >= -105) & (t_ms < -5)
    tp = t_ms[pre] / 1000.0
    design = np.stack([np.ones(tp.size), tp] + [
        f(2 * np.pi * h * line_freq_hz * tp) for h in (1, 2, 3) for f in (np.cos, np.sin)
        if h * line_freq_hz < 0.45 * fs], axis=1)
    for k in range(per_ch):
        seg = data[stim[k] + lo_i:stim[k] + hi_i + 1]
        for c in range(n_ch):
            e = k * n_ch + c
            x = seg[:, c].copy()
            # background RMS as the measurement sees it: offset, drift and mains removed
            coef, *_ = np.linalg.lstsq(design, x[pre], rcond=None)
            bg = float(np.sqrt(np.mean((x[pre] - design @ coef) ** 2)))
            kind = troubles[e % len(troubles)]
            x += _onset_trouble(kind, t_ms, lats[k, c], bg, fs, rng)
            out[e, 0] = x
            onset[e] = lats[k, c]
            amp[e] = amps[k, c]
            kinds.append(kind)
            bg_rms[e] = bg
    n = int(n_epochs)
    return {"epochs": out[:n], "t0_ms": float(t_ms[0]), "onset_ms": onset[:n],
            "amplitude_uv": amp[:n], "trouble": np.array(kinds[:n]),
            "background_rms_uv": bg_rms[:n]}


def _onset_trouble(kind: str, t_ms: np.ndarray, onset_ms: float, bg_uv: float, fs: float,
                   rng: np.random.Generator) -> np.ndarray:
    """One epoch's trouble before the onset (see :func:`synthesize_onset_epochs`)."""
    level = rng.uniform(1.0, 3.0) * bg_uv * rng.choice([-1.0, 1.0])
    y = np.zeros(t_ms.size)
    if kind == "tail":
        tau = rng.uniform(3.0, 10.0)
        after = t_ms >= 0
        y[after] = level * np.exp(-(t_ms[after] - 10.0) / tau)
        y[after] = np.clip(y[after], -50 * abs(level), 50 * abs(level))
    elif kind == "bigtail":
        tau = rng.uniform(5.0, 15.0)
        at15 = rng.uniform(20.0, 40.0) * bg_uv * np.sign(level)
        after = t_ms >= 0
        y[after] = at15 * np.exp(-(t_ms[after] - 15.0) / tau)
    elif kind == "slow":
        width = rng.uniform(4.0, 12.0)
        end = onset_ms + rng.uniform(-2.0, 2.0)
        inside = (t_ms >= end - width) & (t_ms <= end)
        y[inside] = level * np.sin(np.pi * (t_ms[inside] - end + width) / width) ** 2
    elif kind == "lowfreq":
        n = t_ms.size
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / fs)
        spec[(f < 10.0) | (f > 60.0)] = 0.0
        noise = np.fft.irfft(spec, n)
        noise *= abs(level) / max(float(np.std(noise)), 1e-12)
        ramp = np.clip((t_ms - (onset_ms - 40.0)) / 20.0, 0.0, 1.0)
        y = noise * np.sin(0.5 * np.pi * ramp) ** 2
    return y
