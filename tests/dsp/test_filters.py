import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import signal

from mepkit.dsp.filters import (StreamingFilter, apply_sos, design_bandpass, design_lowpass,
                                design_monitor_filter, design_notch, steady_state_zi)
from mepkit.params import Params

FS = 5000.0


def scipy_stream(sos, x):
    """scipy.signal.sosfilt with zi seeded like StreamingFilter (first-chunk mean)."""
    zi = steady_state_zi(sos, x.mean(axis=0))  # (ch, sec, 2)
    y, _ = signal.sosfilt(sos, x, axis=0, zi=np.transpose(zi, (1, 2, 0)))
    return y


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 600),
    n_ch=st.integers(1, 5),
    cuts=st.lists(st.integers(1, 600), min_size=0, max_size=12),
    seed=st.integers(0, 2**31 - 1),
    which=st.sampled_from(["monitor", "bandpass", "notch", "lowpass"]),
)
def test_streaming_equals_scipy_for_any_chunking(n, n_ch, cuts, seed, which):
    rng = np.random.default_rng(seed)
    sos = {
        "monitor": design_monitor_filter(FS, Params()),
        "bandpass": design_bandpass(FS, (20.0, 1000.0)),
        "notch": design_notch(FS, 50.0, q=10.0),
        "lowpass": design_lowpass(FS, 1000.0),
    }[which]
    x = (rng.normal(0, 50, (n, n_ch)) + rng.normal(0, 1000, n_ch)).astype(np.float32)
    first_len = min(n, cuts[0]) if cuts else n
    expected = scipy_stream(sos, x.astype(np.float64)) if first_len == n else None
    f = StreamingFilter(sos, n_ch)
    pieces, start = [], 0
    for c in cuts + [n]:
        stop = min(n, start + c)
        if stop > start:
            pieces.append(f.process(x[start:stop]))
        start = stop
        if start >= n:
            break
    if start < n:
        pieces.append(f.process(x[start:]))
    y = np.concatenate(pieces)
    # reference: scipy over the whole signal, state seeded at the first chunk's mean
    zi = steady_state_zi(sos, x[:first_len].astype(np.float64).mean(axis=0))
    ref, _ = signal.sosfilt(sos, x.astype(np.float64), axis=0, zi=np.transpose(zi, (1, 2, 0)))
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * scale)
    if expected is not None:
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * scale)


def test_apply_sos_matches_scipy_with_zero_state(rng):
    sos = design_bandpass(FS, (20.0, 2000.0))
    x = rng.normal(size=(1000, 3))
    y, zf = apply_sos(sos, x)
    ref, zf_ref = signal.sosfilt(sos, x, axis=0, zi=np.zeros((sos.shape[0], 2, 3)))
    np.testing.assert_allclose(y, ref, atol=1e-12)
    np.testing.assert_allclose(zf, np.transpose(zf_ref, (2, 0, 1)), atol=1e-12)


def test_constant_input_passes_without_transient():
    sos = design_lowpass(FS, 500.0)
    f = StreamingFilter(sos, 2)
    y = f.process(np.full((200, 2), 123.0))
    np.testing.assert_allclose(y, 123.0, atol=1e-9)


def test_notch_removes_line_noise():
    t = np.arange(int(FS)) / FS
    x = (100 * np.sin(2 * np.pi * 50 * t))[:, None]
    y = StreamingFilter(design_notch(FS, 50.0, q=10.0), 1).process(x)
    assert np.abs(y[int(0.5 * FS):]).max() < 1.0


def test_bad_inputs_say_what():
    with pytest.raises(ValueError, match="shape"):
        StreamingFilter(np.ones((2, 5)), 1)
    f = StreamingFilter(design_lowpass(FS, 500.0), 2)
    with pytest.raises(ValueError, match=r"\(n_samples, 2\)"):
        f.process(np.ones((5, 3)))
    with pytest.raises(ValueError, match="sfreq_hz"):
        design_bandpass(-1, (20, 100))
    assert design_lowpass(1000.0, 2000.0) is None


@pytest.mark.parametrize("fs, fc", [(5000.0, 2000.0), (20000.0, 2000.0), (2000.0, 500.0)])
def test_closed_form_butterworth_equals_scipy(fs, fc):
    from mepkit.dsp.features import butter2_lowpass

    sos, zi = butter2_lowpass(fs, fc)
    ref = signal.butter(2, fc, fs=fs, output="sos")
    np.testing.assert_allclose(sos, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(zi, signal.sosfilt_zi(ref), rtol=1e-10, atol=1e-12)
