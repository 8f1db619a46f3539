"""Numba kernels: per-trial MEP features from raw epochs, in one pass over the samples.

Steps per epoch (see ``docs/methods.md``): validity and clipping checks on the raw
samples, stimulus-artifact replacement by a straight line, baseline and mains removal by
a least-squares fit over the pre-stimulus window (offset, slope and mains harmonics)
extrapolated across the epoch, an optional causal low-pass, then peak-to-peak amplitude,
onset latency, rectified area and background RMS.

A trial is measured in three steps that share one state:

* `trial_init` places the windows on the epoch's samples;
* `trial_advance` takes the rows that have arrived: once the background window is
  complete it fits the baseline, then every further row is checked, cleaned, detrended,
  low-passed and added to the running features, each row once, all channels together
  (channel-minor inner loops, so the work vectorises across channels);
* `trial_finish` turns the running sums into features, finds the onset and rejects.

A live trial is advanced as its samples arrive, so when the last sample of its window
comes only that sample and `trial_finish` are left to do. Every row is processed with the
same operations in the same order however the rows are split over calls, so the results
do not depend on the chunking. `measure_epochs` runs the three steps for many epochs.
"""

import math

import numpy as np
from numba import njit, prange

from mepkit.config import JIT

#: Highest rate at which background samples enter the baseline/mains fit.
FIT_RATE_HZ = 5000.0

# Reject codes (order = priority); names in mepkit.params.REJECT_REASONS.
OK = 0
INVALID = 1
GAP = 2
CLIPPED = 3
BACKGROUND = 4

# ``prm``: the measurement parameters as one float array (see mepkit.dsp.features.kernel_params)
P_DT = 0
P_RESP_LO = 1
P_RESP_HI = 2
P_BG_LO = 3
P_BG_HI = 4
P_ART_LO = 5
P_ART_HI = 6
P_LINE = 7  # <= 0 disables the mains fit
P_NHARM = 8
P_DETECT = 9
P_BG_LIMIT = 10
P_ONSET_SD = 11
P_CLIP_RUN = 12
P_ONSET_METHOD = 13  # one of the ONSET_* codes
N_PRM = 14

# Onset methods (``Params.onset_method``; names in mepkit.dsp.features.ONSET_METHODS)
ONSET_THRESHOLD = 0  # threshold crossing, walked back to the start of the rise
ONSET_HODGES = 1  # Hodges & Bui (1996): sliding-window mean of the rectified signal
ONSET_TKEO = 2  # Teager-Kaiser energy (Li et al. 2007; Solnik et al. 2010)
ONSET_SLOPE = 3  # tangent at the steepest point of the rise, back to the baseline
N_ONSET = 4
#: Onset methods that disagree by more than this (ms) make the onset ambiguous.
ONSET_AGREE_MS = 1.0
#: Hodges-Bui window (ms) and multiple of the background SD of the rectified signal.
HODGES_WINDOW_MS = 1.0
HODGES_H = 3.0
#: TKEO threshold: background mean + TKEO_J x background SD of the operator.
TKEO_J = 8.0
#: Walk-back of the threshold method: it goes on while the signal falls (going back) by
#: at least ONSET_SLOPE_SD x the background RMS of one-sample differences per sample,
#: measured over ONSET_SLOPE_N samples.
ONSET_SLOPE_SD = 0.5
ONSET_SLOPE_N = 2
#: ... on average over up to this much longer (ms): a wiggle of noise does not stop it.
ONSET_LOOK_MS = 0.6
#: ... and by at least this fraction of the steepest slope of the phase being walked (of
#: the MEP's anchor phase to begin with): a slow drift before the MEP (an artifact
#: recovering, tens of µV) may be steep next to the noise but not next to the MEP.
ONSET_STEEP_FRAC = 0.1
#: An earlier movement of the other sign is a phase of the MEP (the walk goes on over it)
#: when it moves by more than the crossing threshold and its steepest slope reaches this
#: fraction of the later phase's; otherwise the onset is at its turn ...
ONSET_PHASE_FRAC = 0.2
#: ... unless it is large: its turn stands this fraction of the MEP's peak |deviation| or
#: more from the baseline, and it rises (found back over a flat top) by as much. A slow
#: first phase of a polyphasic MEP is hundreds of µV; an artifact recovery tens.
ONSET_PHASE_SIZE = 0.3
#: The anchor is also no earlier than the first sample whose slope reaches this fraction
#: of the response's steepest slope (a level reached by a drifting baseline is not).
ONSET_ANCHOR_SLOPE = 0.5

# ``w``: a trial's sample indices and progress (int64)
W_OK = 0  # 1: the windows leave something to measure
W_LO = 1  # first row processed
W_HI = 2  # one past the last row processed (end of the response window)
W_B0 = 3
W_B1 = 4
W_R0 = 5
W_R1 = 6
W_A0 = 7
W_A1 = 8
W_NB = 9  # background samples
W_NBASIS = 10
W_KEEP = 11  # filtered rows from here on are kept for the onset search
W_DONE = 12  # next row to process
W_TREND = 13  # -1 not fitted yet, 0 nothing to remove, 1 background mean, 2 fit
W_FIT_NEED = 14  # rows that must be present before the fit
W_ART = 15  # artifact replacement: 0 none, 1 right value, 2 left value, 3 straight line
W_F0 = 16
W_NEED = 17  # rows the measurement needs: the trial is complete when they are here
N_W = 18

# ``st``: a trial's running state, one row per quantity, one column per channel
S_VACC = 0  # sum of x * 0.0 (NaN/inf propagate)
S_TOP = 1  # raw maximum / minimum in the response window
S_BOT = 2
S_RUN = 3  # length of the current run of equal raw samples
S_PREV = 4  # previous raw sample
S_BTOP = 5  # longest run at the maximum / minimum
S_BBOT = 6
S_BG = 7  # sum of squares over the background window
S_HI = 8
S_LO = 9
S_PEAK = 10  # largest |x| in the response window and its row
S_PEAKI = 11
S_AREA = 12
S_MEAN = 13
S_BGABS = 14  # background sums for the onset methods: |y|, first difference squared,
S_BGD2 = 15  # Teager-Kaiser energy and its square
S_BGTK = 16
S_BGTK2 = 17
S_COEF = 18  # fit coefficients: max_basis rows, then the low-pass state: 2 per section


def state_rows(n_harmonics, n_sections):
    """Rows of ``st`` for these settings."""
    return S_COEF + 2 + 2 * n_harmonics + 2 * max(n_sections, 1)


@njit(**JIT)
def _cholesky(a, lower):
    """Cholesky factor of a small symmetric positive definite ``a`` into ``lower``.

    Returns False when ``a`` is singular to working precision.
    """
    n = a.shape[0]
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= lower[j, k] * lower[j, k]
        if s <= 1e-12 * max(abs(a[j, j]), 1e-300):
            return False
        lower[j, j] = math.sqrt(s)
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= lower[i, k] * lower[j, k]
            lower[i, j] = s / lower[j, j]
    return True


@njit(**JIT)
def _set_invalid(tr, ch, amplitude_uv, latency_ms, area_uv_ms, background_rms_uv,
                 peak_time_ms, detected, reject, onset_ambiguous):
    """No numbers for an invalid trial/channel: NaN features, not detected, INVALID."""
    amplitude_uv[tr, ch] = np.nan
    latency_ms[tr, ch] = np.nan
    area_uv_ms[tr, ch] = np.nan
    background_rms_uv[tr, ch] = np.nan
    peak_time_ms[tr, ch] = np.nan
    detected[tr, ch] = False
    reject[tr, ch] = INVALID
    onset_ambiguous[tr, ch] = False


@njit(**JIT)
def _chol_solve_col(lower, n, b, col):
    """Solve (L L^T) x = b[:n, col] in place."""
    for i in range(n):
        s = b[i, col]
        for k in range(i):
            s -= lower[i, k] * b[k, col]
        b[i, col] = s / lower[i, i]
    for i in range(n - 1, -1, -1):
        s = b[i, col]
        for k in range(i + 1, n):
            s -= lower[k, i] * b[k, col]
        b[i, col] = s / lower[i, i]


@njit(**JIT)
def fill_basis(basis, dt_ms, line_freq_hz):
    """Regressors for every epoch row: 1, t (s), then cos/sin of the mains harmonics.

    They are built on the epoch's own sample index: a time shift only changes the phase
    of a sinusoid and the offset of a line, so the fitted subspace (and the fit) is the
    same for any t0 and every trial of a stream shares them."""
    n_cols = basis.shape[1]
    for i in range(basis.shape[0]):
        t_s = (i * dt_ms) * 1e-3
        basis[i, 0] = 1.0
        if n_cols > 1:
            basis[i, 1] = t_s
        k = 1
        j = 2
        while j + 1 < n_cols:
            w = 2.0 * math.pi * k * line_freq_hz * t_s
            basis[i, j] = math.cos(w)
            basis[i, j + 1] = math.sin(w)
            j += 2
            k += 1


@njit(**JIT)
def trial_init(t0, f0, n_samples, prm, w, st):
    """Place the windows of a trial whose sample 0 is at ``t0`` ms from the stimulus
    (samples before ``f0`` are absent) and reset its state."""
    dt_ms = prm[P_DT]
    b0 = max(f0, int(math.ceil((prm[P_BG_LO] - t0) / dt_ms - 1e-9)))
    b1 = min(n_samples, int(math.ceil((prm[P_BG_HI] - t0) / dt_ms - 1e-9)))
    r0 = max(f0, int(math.ceil((prm[P_RESP_LO] - t0) / dt_ms - 1e-9)))
    r1 = min(n_samples, int(math.floor((prm[P_RESP_HI] - t0) / dt_ms + 1e-9)) + 1)
    a0 = max(f0, int(math.ceil((prm[P_ART_LO] - t0) / dt_ms - 1e-9)))
    a1 = min(n_samples, int(math.floor((prm[P_ART_HI] - t0) / dt_ms + 1e-9)) + 1)
    nb = max(0, b1 - b0)
    lo = max(f0, min(b0, a0, r0)) if nb > 0 else max(f0, min(a0, r0))
    hi = r1
    w[W_OK] = 0 if (hi <= lo or r1 <= r0) else 1
    w[W_LO] = lo
    w[W_HI] = hi
    w[W_B0] = b0
    w[W_B1] = b1
    w[W_R0] = r0
    w[W_R1] = r1
    w[W_A0] = a0
    w[W_A1] = a1
    w[W_NB] = nb
    w[W_F0] = f0
    # regressors: offset; a slope over >= 20 ms; mains harmonics below 0.9 x Nyquist
    # over >= 1.5 periods, each with >= 4 samples per regressor
    line_freq_hz = prm[P_LINE]
    nyq_hz = 500.0 / dt_ms
    n_basis = 1
    bg_ms = nb * dt_ms
    if bg_ms >= 20.0 and nb >= 8:
        n_basis = 2
    if line_freq_hz > 0 and bg_ms >= 1.5 * 1000.0 / line_freq_hz:
        h = 0
        while h < int(prm[P_NHARM]) and (h + 1) * line_freq_hz < 0.9 * nyq_hz:
            h += 1
        if nb >= 4 * (2 + 2 * h):
            n_basis = 2 + 2 * h
    w[W_NBASIS] = n_basis
    # artifact: a straight line between the samples around the window
    left = a0 - 1
    right = a1
    art = 0
    if a1 > a0:
        if left < f0 and right < n_samples:
            art = 1
        elif right >= n_samples and left >= f0:
            art = 2
        elif left >= f0 and right < n_samples:
            art = 3
    w[W_ART] = art
    fit_need = b1
    if (art == 1 or art == 3) and a0 < b1 and a1 > b0:  # the fit sees replaced samples
        fit_need = max(b1, a1 + 1)
    w[W_FIT_NEED] = fit_need
    need = max(hi, fit_need)
    if art == 1 or art == 3:
        need = max(need, a1 + 1)
    w[W_NEED] = min(n_samples, need) if w[W_OK] == 1 else n_samples
    w[W_KEEP] = lo  # every filtered row is kept: the onset methods read the background
    w[W_DONE] = lo
    w[W_TREND] = -1
    n_ch = st.shape[1]
    for ch in range(n_ch):
        st[S_VACC, ch] = 0.0
        st[S_TOP, ch] = -np.inf
        st[S_BOT, ch] = np.inf
        st[S_RUN, ch] = 1.0
        st[S_PREV, ch] = np.nan
        st[S_BTOP, ch] = 0.0
        st[S_BBOT, ch] = 0.0
        st[S_BG, ch] = 0.0
        st[S_HI, ch] = -np.inf
        st[S_LO, ch] = np.inf
        st[S_PEAK, ch] = -1.0
        st[S_PEAKI, ch] = r0
        st[S_AREA, ch] = 0.0
        st[S_MEAN, ch] = 0.0
        st[S_BGABS, ch] = 0.0
        st[S_BGD2, ch] = 0.0
        st[S_BGTK, ch] = 0.0
        st[S_BGTK2, ch] = 0.0


@njit(**JIT)
def _clean_row(ep, row, i, w, y):
    """Raw row ``i`` of the epoch (ring row ``row``) into ``y``, artifact replaced."""
    n_ch = y.shape[0]
    for ch in range(n_ch):
        y[ch] = ep[row, ch]
    art = w[W_ART]
    a0 = w[W_A0]
    a1 = w[W_A1]
    if art != 0 and a0 <= i < a1:
        base = row - i
        if art == 1:
            for ch in range(n_ch):
                y[ch] = ep[base + a1, ch]
        elif art == 2:
            for ch in range(n_ch):
                y[ch] = ep[base + a0 - 1, ch]
        else:
            left = a0 - 1
            span = a1 - left
            wt = (i - left) / span
            for ch in range(n_ch):
                y[ch] = (1.0 - wt) * ep[base + left, ch] + wt * ep[base + a1, ch]


@njit(**JIT)
def _fit(ep, row0, w, st, dt_ms, basis, dkey, lower, xtx, y):
    """Baseline, drift and mains over the background window: coefficients into ``st``."""
    n_ch = st.shape[1]
    nb = w[W_NB]
    b0 = w[W_B0]
    b1 = w[W_B1]
    n_basis = w[W_NBASIS]
    # the fit uses at most FIT_RATE_HZ samples per second of background (every sample up
    # to 5 kHz): plenty for 8 smooth regressors, and 4x less work at 20 kHz
    fit_step = max(1, int(round(1000.0 / (dt_ms * FIT_RATE_HZ))))
    trend = 0
    if nb >= 2:
        if not (dkey[0] == 1 and dkey[1] == b0 and dkey[2] == b1 and dkey[3] == n_basis
                and dkey[4] == fit_step):
            for p in range(n_basis):
                for q in range(p + 1):
                    s = 0.0
                    for i in range(b0, b1, fit_step):
                        s += basis[i, p] * basis[i, q]
                    xtx[p, q] = s
                    xtx[q, p] = s
            dkey[5] = 1 if _cholesky(xtx[:n_basis, :n_basis], lower) else 0
            dkey[0] = 1
            dkey[1] = b0
            dkey[2] = b1
            dkey[3] = n_basis
            dkey[4] = fit_step
        if dkey[5] == 1:
            for p in range(n_basis):
                for ch in range(n_ch):
                    st[S_COEF + p, ch] = 0.0
            for i in range(b0, b1, fit_step):
                _clean_row(ep, row0 + i, i, w, y)
                for p in range(n_basis):
                    bp = basis[i, p]
                    for ch in range(n_ch):
                        st[S_COEF + p, ch] += bp * y[ch]
            coef = st[S_COEF:S_COEF + n_basis]
            for ch in range(n_ch):
                _chol_solve_col(lower, n_basis, coef, ch)
            trend = 2
    if trend == 0 and nb >= 1:
        for ch in range(n_ch):
            st[S_MEAN, ch] = 0.0
        for i in range(b0, b1):
            _clean_row(ep, row0 + i, i, w, y)
            for ch in range(n_ch):
                st[S_MEAN, ch] += y[ch]
        for ch in range(n_ch):
            st[S_MEAN, ch] /= nb
        trend = 1
    w[W_TREND] = trend


@njit(**JIT)
def _add_background(i, b0, y, xs, st):
    """Background row ``i`` (cleaned, filtered ``y``; earlier rows in ``xs``) into the
    background sums: squares, |y|, squared first differences, Teager-Kaiser energy."""
    n_ch = y.shape[0]
    for ch in range(n_ch):
        v = y[ch]
        st[S_BG, ch] += v * v
        st[S_BGABS, ch] += abs(v)
    if i > b0:
        for ch in range(n_ch):
            d = y[ch] - xs[i - 1, ch]
            st[S_BGD2, ch] += d * d
    if i > b0 + 1:  # the operator at row i - 1 needs its neighbours
        for ch in range(n_ch):
            m = xs[i - 1, ch]
            tk = m * m - xs[i - 2, ch] * y[ch]
            st[S_BGTK, ch] += tk
            st[S_BGTK2, ch] += tk * tk


@njit(**JIT)
def trial_advance(ep, row0, upto, w, st, xs, dt_ms, basis, dkey, lower, xtx, lp_sos,
                  lp_zi_unit, max_rows=-1):
    """Process the rows of a trial that have arrived: epoch rows ``0 .. upto`` are
    ``ep[row0 + i]``; at most ``max_rows`` of them in this call (``-1``: all). Returns
    True when every row of the trial is processed."""
    if w[W_OK] == 0:
        return True
    hi = w[W_HI]
    done = w[W_DONE]
    if done >= hi:
        return True
    n_ch = st.shape[1]
    y = np.empty(n_ch)
    if w[W_TREND] < 0:
        if upto < w[W_FIT_NEED]:
            return False
        _fit(ep, row0, w, st, dt_ms, basis, dkey, lower, xtx, y)
    lim = min(upto, hi)
    art = w[W_ART]
    a0 = w[W_A0]
    a1 = w[W_A1]
    if (art == 1 or art == 3) and lim > a0 and upto <= a1:
        lim = max(done, a0)  # artifact rows wait for the sample after the window
    if max_rows >= 0 and lim > done + max_rows:
        lim = done + max_rows
    lo = w[W_LO]
    b0 = w[W_B0]
    b1 = w[W_B1]
    r0 = w[W_R0]
    r1 = w[W_R1]
    keep = w[W_KEEP]
    trend = w[W_TREND]
    n_basis = w[W_NBASIS]
    n_sec = lp_sos.shape[0]
    zi0 = S_COEF + basis.shape[1]
    t = np.empty(n_ch)
    for i in range(done, lim):
        row = row0 + i
        # raw checks: NaN and inf propagate through v * 0.0 (inf * 0 is NaN), branch-free
        for ch in range(n_ch):
            st[S_VACC, ch] += ep[row, ch] * 0.0
        if r0 <= i < r1:
            # clipping: the longest run of equal raw samples at the window's extremes
            # (branch-free selects so the loop vectorises; S_PREV is NaN before r0)
            for ch in range(n_ch):
                v = ep[row, ch]
                run = st[S_RUN, ch] + 1.0 if v == st[S_PREV, ch] else 1.0
                st[S_RUN, ch] = run
                st[S_PREV, ch] = v
                top = st[S_TOP, ch]
                btop = st[S_BTOP, ch]
                st[S_BTOP, ch] = run if (v > top or (v == top and run > btop)) else btop
                st[S_TOP, ch] = v if v > top else top
                bot = st[S_BOT, ch]
                bbot = st[S_BBOT, ch]
                st[S_BBOT, ch] = run if (v < bot or (v == bot and run > bbot)) else bbot
                st[S_BOT, ch] = v if v < bot else bot
        _clean_row(ep, row, i, w, y)
        # baseline, drift and mains fitted on the background, extrapolated
        if trend == 2:
            for ch in range(n_ch):
                t[ch] = 0.0
            for p in range(n_basis):
                bp = basis[i, p]
                for ch in range(n_ch):
                    t[ch] += st[S_COEF + p, ch] * bp
            for ch in range(n_ch):
                y[ch] -= t[ch]
        elif trend == 1:
            for ch in range(n_ch):
                y[ch] -= st[S_MEAN, ch]
        # causal low-pass from the first row (steady state)
        if n_sec > 0:
            if i == lo:
                for s in range(n_sec):
                    for ch in range(n_ch):
                        st[zi0 + 2 * s, ch] = lp_zi_unit[s, 0] * y[ch]
                        st[zi0 + 2 * s + 1, ch] = lp_zi_unit[s, 1] * y[ch]
            for s in range(n_sec):
                b0s = lp_sos[s, 0]
                b1s = lp_sos[s, 1]
                b2s = lp_sos[s, 2]
                a1s = lp_sos[s, 4]
                a2s = lp_sos[s, 5]
                z0 = zi0 + 2 * s
                for ch in range(n_ch):
                    v = y[ch]
                    yy = b0s * v + st[z0, ch]
                    st[z0, ch] = b1s * v - a1s * yy + st[z0 + 1, ch]
                    st[z0 + 1, ch] = b2s * v - a2s * yy
                    y[ch] = yy
        if b0 <= i < b1:
            _add_background(i, b0, y, xs, st)
        if r0 <= i < r1:
            # response: peak-to-peak, peak time, rectified area
            fi = float(i)
            for ch in range(n_ch):
                v = y[ch]
                h = st[S_HI, ch]
                st[S_HI, ch] = v if v > h else h
                m = st[S_LO, ch]
                st[S_LO, ch] = v if v < m else m
                av = abs(v)
                st[S_AREA, ch] += av
                pk = st[S_PEAK, ch]
                pki = st[S_PEAKI, ch]
                st[S_PEAKI, ch] = fi if av > pk else pki
                st[S_PEAK, ch] = av if av > pk else pk
        if i >= keep:
            for ch in range(n_ch):
                xs[i, ch] = y[ch]
    if lim > done:
        w[W_DONE] = lim
    return w[W_DONE] >= hi


# ---------------------------------------------------------------------------- onsets
# Every method reads the stored filtered response ``xs[:, ch]`` (baseline, drift and mains
# removed, artifact bridged, low-passed) relative to ``lb``, its level over the 5 ms
# before the response window, and returns a (possibly fractional) row or -1.


@njit(**JIT)
def _onset_threshold(xs, ch, a, r0, r1, thr, dnoise, n_look, peak, lb):
    """Walk back from the anchor ``a`` (on the MEP's rising edge) to the start of the rise;
    returns (onset row, the anchor phase's steepest slope per row, the phase's sign).

    Going back, the signal must keep falling steeply: by at least ONSET_SLOPE_SD x the
    background RMS of one-sample differences (``dnoise``) per sample and ONSET_STEEP_FRAC x
    the steepest slope of the phase, over ONSET_SLOPE_N samples, or on average over up to
    ONSET_LOOK_MS more. Where it stops it is at the foot of the response (the onset) or
    at the turn of an earlier movement of the other sign: a phase of the MEP if it moves by
    ``thr`` and is steep (ONSET_PHASE_FRAC) or large next to the MEP's ``peak``
    (ONSET_PHASE_SIZE; :func:`_earlier_phase`; the walk goes on to its foot), else the onset
    (a slow drift turning). A drift before the MEP is not steep next to the MEP, so the
    walk stops at its edge whatever its level or direction."""
    n = ONSET_SLOPE_N
    # (a noise-free background still needs a fall: a flat line is not a rise)
    noise_min = max(ONSET_SLOPE_SD * dnoise * n, 1e-3 * thr)
    s = 1.0 if xs[a + 1, ch] >= xs[a - 1, ch] else -1.0
    top = _phase_slope(xs, ch, a, r1, s)
    top0 = top
    j = a
    while j - n >= r0:
        if _falls_back(xs, ch, j, r0, s, n, n_look, max(noise_min, ONSET_STEEP_FRAC * top * n)):
            top = max(top, 0.5 * s * (xs[j, ch] - xs[j - n, ch]))
            j -= 1
            continue
        k, k2, top2, big = _earlier_phase(xs, ch, j, r0, -s, n, n_look, noise_min, lb,
                                          ONSET_PHASE_SIZE * peak)
        if k - n < r0:  # at the window's start: the response may have begun before it
            j = r0
            break
        if k2 == k:  # nothing steep before: the foot
            break
        rise2 = -s * (xs[k, ch] - xs[k2, ch])
        if rise2 < thr or (top2 < ONSET_PHASE_FRAC * top
                           and not (big and rise2 >= ONSET_PHASE_SIZE * peak)):
            break  # a slow or small movement turning into the MEP: the onset is here
        j = k2
        s = -s
        top = top2
    if j - n < r0:  # still falling at the window's start: the response began before it
        j = r0
    return float(j), top0, 1.0 if xs[a + 1, ch] >= xs[a - 1, ch] else -1.0


@njit(**JIT)
def _slope_anchor(xs, ch, r0, r1):
    """First row of the response whose slope (central difference) reaches
    ONSET_ANCHOR_SLOPE x the steepest; a steep movement already under way at the
    window's start (an artifact recovering) is passed over: then the first such row
    after it, relative to the steepest slope after it. -1 if none."""
    lo = r0 + 1
    hi = r1 - 1  # rows lo .. hi - 1 have both neighbours
    if hi <= lo:
        return -1
    top = 0.0
    for i in range(lo, hi):
        top = max(top, abs(xs[i + 1, ch] - xs[i - 1, ch]))
    if abs(xs[lo + 1, ch] - xs[lo - 1, ch]) >= ONSET_ANCHOR_SLOPE * top:
        while lo < hi and abs(xs[lo + 1, ch] - xs[lo - 1, ch]) >= ONSET_ANCHOR_SLOPE * top:
            lo += 1
        if lo == hi:
            return r0 + 1
        top = 0.0
        for i in range(lo, hi):
            top = max(top, abs(xs[i + 1, ch] - xs[i - 1, ch]))
    for i in range(lo, hi):
        if abs(xs[i + 1, ch] - xs[i - 1, ch]) >= ONSET_ANCHOR_SLOPE * top:
            return i
    return -1


@njit(**JIT)
def _phase_slope(xs, ch, a, r1, s):
    """Steepest slope (per row, central differences) of the phase of sign ``s`` from row
    ``a`` up to its extremum."""
    p1 = a
    while p1 + 2 < r1 and s * (xs[p1 + 1, ch] - xs[p1, ch]) > 0.0:
        p1 += 1
    top = 0.0
    for i in range(a, p1 + 1):
        top = max(top, 0.5 * s * (xs[i + 1, ch] - xs[i - 1, ch]))
    return top


@njit(**JIT)
def _earlier_phase(xs, ch, j, r0, s, n, n_look, noise_min, lb, level):
    """From row ``j`` (where a walk of the other sign stopped) back to the extremum of an
    earlier movement of sign ``s``, ``k`` (at most ``n_look`` rows back: the walk stopped
    at or just before it), then down that movement's rise to its foot ``k2``, steep next
    to the noise and to its own steepest slope ``top``. Where the signal at ``k`` stands
    ``level`` or more from ``lb`` on the side of ``s``, the movement may have a flat top:
    its rise (climbing half that level) is then sought back over the top, while the signal
    stays beyond half its level at ``k``; none found: no phase, unless the movement from
    ``k`` runs into the window's start. Returns (k, k2, top, whether the turn stands
    ``level`` or more from ``lb``); ``k2 == k`` when nothing rises steeply before ``k`` (the
    foot of the response, or a drift going on the same way)."""
    k = j
    while k > max(r0, j - n_look) and s * (xs[k - 1, ch] - xs[k, ch]) > 0.0:
        k -= 1
    lev = s * (xs[k, ch] - lb)
    k1 = k
    k2f = k
    topf = 0.0
    while True:
        top = 0.0
        k2 = k1
        while k2 - n >= r0 and _falls_back(xs, ch, k2, r0, s, n, n_look,
                                           max(noise_min, ONSET_STEEP_FRAC * top * n)):
            top = max(top, 0.5 * s * (xs[k2, ch] - xs[k2 - n, ch]))
            k2 -= 1
        if k1 == k:
            k2f = k2
            topf = top
        if lev < level or s * (xs[k1, ch] - xs[k2, ch]) >= 0.5 * lev:
            break
        # a wiggle on a flat top: go on back over the top for its rise
        k1 = min(k2, k1 - 1)
        if k1 - n < r0 or s * (xs[k1, ch] - lb) < 0.5 * lev:
            if k2f - n < r0:  # the movement from k runs into the window's start
                return k, k2f, topf, False
            return k, k, 0.0, False  # no rise to the top: not a phase
    return k, k2, top, lev >= level


@njit(**JIT)
def _falls_back(xs, ch, j, r0, s, n, n_look, slope_min):
    """Whether the signal of sign ``s`` falls steeply going back from row ``j``: by
    ``slope_min`` over ``n`` rows, or on average over ``n + k`` rows for some ``k`` up to
    ``n_look`` (a wiggle of noise on the rise is passed over)."""
    if s * (xs[j, ch] - xs[j - n, ch]) >= slope_min:
        return True
    for k in range(1, n_look + 1):
        if j - n - k < r0:
            break
        if s * (xs[j, ch] - xs[j - n - k, ch]) >= slope_min * (n + k) / n:
            return True
    return False


@njit(**JIT)
def _onset_slope(xs, ch, c, j0, pk, r0, lb, sign):
    """Tangent at the steepest point of the rise from ``j0`` to the first peak after the
    crossing ``c``, extended back to the baseline level ``lb``."""
    p1 = c
    while p1 < pk and sign * (xs[p1 + 1, ch] - xs[p1, ch]) > 0.0:
        p1 += 1
    best = 0.0
    im = -1
    for i in range(max(j0, r0 + 1), p1 + 1):
        sl = 0.5 * sign * (xs[i + 1, ch] - xs[i - 1, ch])
        if sl > best:
            best = sl
            im = i
    if im < 0:
        return -1.0
    j = im - sign * (xs[im, ch] - lb) / best
    if j < r0:
        j = float(r0)
    if j > im:
        j = float(im)
    return j


@njit(**JIT)
def _find_onsets(xs, st, w, prm, mep, bgv, rows, amb):
    """Onset row of every channel's MEP by the chosen method (``rows``; -1: none, or no
    MEP) and whether it is ambiguous (``amb``), for the channels with ``mep``.

    Every method runs. The scans forward from the window's start go over rows with the
    channels inner (the stored response is row-major, so they read it in order); the short
    walks back and the tangent are per channel. The onset is ambiguous when the chosen
    method finds none, when it lies at the window's start (the response began earlier),
    or when it is more than ONSET_AGREE_MS from the median of the methods that found one.
    """
    n_ch = xs.shape[1]
    dt_ms = prm[P_DT]
    r0 = w[W_R0]
    r1 = w[W_R1]
    lo = w[W_LO]
    nb = w[W_NB]
    detection_uv = prm[P_DETECT]
    floor_uv = 0.02 * detection_uv
    n_win = max(1, int(round(HODGES_WINDOW_MS / dt_ms)))
    n_look = int(round(ONSET_LOOK_MS / dt_ms))
    ons = np.full((N_ONSET, n_ch), -1.0)
    lb = np.zeros(n_ch)
    thr = np.zeros(n_ch)
    pk = np.zeros(n_ch, dtype=np.int64)
    anchor = np.full(n_ch, -1, dtype=np.int64)
    # local level just before the response window: absorbs the few µV left by
    # extrapolating the drift fit across the stimulus
    l0 = max(w[W_A1], lo, r0 - int(round(5.0 / dt_ms)))
    if r0 > l0:
        for i in range(l0, r0):
            for ch in range(n_ch):
                lb[ch] += xs[i, ch]
        for ch in range(n_ch):
            lb[ch] /= r0 - l0
    # the crossing threshold: onset_sd x background RMS (at least 10 % of the detection
    # threshold, at most half the peak)
    last = r0 - 1
    n_open = 0
    for ch in range(n_ch):
        rows[ch] = -1.0
        amb[ch] = False
        if not mep[ch]:
            continue
        noise = bgv[ch] if bgv[ch] == bgv[ch] else 0.0
        t = prm[P_ONSET_SD] * noise
        if t < 0.1 * detection_uv:
            t = 0.1 * detection_uv
        if t > 0.5 * st[S_PEAK, ch]:
            t = 0.5 * st[S_PEAK, ch]
        thr[ch] = t
        pk[ch] = int(st[S_PEAKI, ch])
        last = max(last, pk[ch])
        n_open += 1
    # the anchor: the first row at half the peak, on the MEP itself (small deviations
    # before it, whatever their level, are not)
    half = np.empty(n_ch)
    for ch in range(n_ch):
        half[ch] = 0.5 * st[S_PEAK, ch] if mep[ch] else np.inf
    i = r0
    while n_open > 0 and i <= last:
        for ch in range(n_ch):
            if anchor[ch] < 0 and abs(xs[i, ch] - lb[ch]) >= half[ch]:
                anchor[ch] = i
                n_open -= 1
        i += 1
    for ch in range(n_ch):
        if mep[ch] and (anchor[ch] < 0 or anchor[ch] > pk[ch]):
            anchor[ch] = pk[ch]
        if mep[ch]:
            # ... and on the MEP's steep rise, not on a level a drifting baseline reached
            anchor[ch] = min(max(anchor[ch], _slope_anchor(xs, ch, r0, r1), r0 + 1), r1 - 2)
    _scan_hodges(xs, st, mep, lb, pk, r0, r1, nb, n_win, floor_uv, ons)
    _scan_tkeo(xs, st, mep, lb, pk, r0, r1, nb, floor_uv, ons)
    method = int(prm[P_ONSET_METHOD])
    srt = np.empty(N_ONSET)
    for ch in range(n_ch):
        if not mep[ch]:
            continue
        a = anchor[ch]
        dnoise = math.sqrt(st[S_BGD2, ch] / (nb - 1)) if nb > 1 else 0.0
        j, top, sign = _onset_threshold(xs, ch, a, r0, r1, thr[ch], dnoise, n_look,
                                        st[S_PEAK, ch], lb[ch])
        ons[ONSET_THRESHOLD, ch] = j
        # the crossing: the first row of the anchor's excursion beyond the threshold
        c = a
        while c > r0 and sign * (xs[c - 1, ch] - lb[ch]) >= thr[ch]:
            c -= 1
        ons[ONSET_SLOPE, ch] = _onset_slope(xs, ch, c, int(ons[ONSET_THRESHOLD, ch]),
                                            min(pk[ch], r1 - 2), r0, lb[ch], sign)
        chosen = ons[method, ch]
        if chosen < 0.0:
            amb[ch] = True
            continue
        # a method's onset before the threshold onset, from which the signal moves on
        # average more slowly than ONSET_STEEP_FRAC x the MEP's steepest slope, lies on a
        # slow deviation before the MEP: it does not count against the others
        n_found = 0
        for m in range(N_ONSET):
            o = ons[m, ch]
            if o < 0.0:
                continue
            if m != ONSET_THRESHOLD and o < j and (
                    abs(xs[int(j), ch] - xs[int(o), ch]) < ONSET_STEEP_FRAC * top * (j - int(o))):
                continue
            srt[n_found] = o
            n_found += 1
        med = chosen
        if n_found > 0:
            srt[:n_found].sort()
            mid = n_found // 2
            med = srt[mid] if n_found % 2 == 1 else 0.5 * (srt[mid - 1] + srt[mid])
        rows[ch] = chosen
        # ... and when the response's largest deviation is not after the onset (the window
        # began inside something larger than the rise found: an artifact recovering)
        amb[ch] = chosen <= r0 or abs(chosen - med) * dt_ms > ONSET_AGREE_MS or (
            chosen >= pk[ch])


@njit(**JIT)
def _scan_hodges(xs, st, mep, lb, pk, r0, r1, nb, n_win, floor_uv, ons):
    """Hodges & Bui (1996), every channel: the first window of ``n_win`` rows whose mean
    rectified deviation from ``lb`` reaches the background mean + HODGES_H x SD of the
    rectified signal; the onset is the window's first row (into ``ons``)."""
    n_ch = xs.shape[1]
    if not (nb > 1 and r1 - r0 > n_win):
        return
    thr = np.zeros(n_ch)
    s = np.zeros(n_ch)
    stop = np.zeros(n_ch, dtype=np.int64)
    open_ = np.zeros(n_ch, dtype=np.bool_)
    last = r0 - 1
    n_open = 0
    for ch in range(n_ch):
        if not mep[ch]:
            continue
        mean_abs = st[S_BGABS, ch] / nb
        var_abs = st[S_BG, ch] / nb - mean_abs * mean_abs
        sd_abs = math.sqrt(var_abs) if var_abs > 0.0 else 0.0
        t = mean_abs + HODGES_H * sd_abs
        thr[ch] = t if t >= floor_uv else floor_uv
        stop[ch] = min(pk[ch], r1 - 1 - n_win)
        last = max(last, stop[ch])
        open_[ch] = True
        n_open += 1
    for i in range(r0, r0 + n_win):
        for ch in range(n_ch):
            s[ch] += abs(xs[i, ch] - lb[ch])
    i = r0
    while n_open > 0 and i <= last:
        for ch in range(n_ch):
            if open_[ch]:
                if i > stop[ch]:
                    open_[ch] = False
                    n_open -= 1
                elif s[ch] >= thr[ch] * n_win:
                    ons[ONSET_HODGES, ch] = float(i)
                    open_[ch] = False
                    n_open -= 1
                else:
                    s[ch] += abs(xs[i + n_win, ch] - lb[ch]) - abs(xs[i, ch] - lb[ch])
        i += 1


@njit(**JIT)
def _scan_tkeo(xs, st, mep, lb, pk, r0, r1, nb, floor_uv, ons):
    """Teager-Kaiser energy psi[i] = d[i]^2 - d[i-1] d[i+1] of the deviation from ``lb``,
    every channel: the first of two rows in a row above the background mean + TKEO_J x SD
    of the operator, walked back while the energy stays above the background mean."""
    n_ch = xs.shape[1]
    if nb <= 2:
        return
    thr = np.zeros(n_ch)
    mean = np.zeros(n_ch)
    stop = np.zeros(n_ch, dtype=np.int64)
    prev = np.zeros(n_ch, dtype=np.bool_)
    open_ = np.zeros(n_ch, dtype=np.bool_)
    last = r0
    n_open = 0
    floor_tk = floor_uv * floor_uv
    for ch in range(n_ch):
        if not mep[ch]:
            continue
        m = st[S_BGTK, ch] / (nb - 2)
        var = st[S_BGTK2, ch] / (nb - 2) - m * m
        sd = math.sqrt(var) if var > 0.0 else 0.0
        t = m + TKEO_J * sd
        thr[ch] = t if t >= floor_tk else floor_tk
        mean[ch] = m
        stop[ch] = min(pk[ch], r1 - 2)
        last = max(last, stop[ch])
        open_[ch] = True
        n_open += 1
    i = r0 + 1
    while n_open > 0 and i <= last:
        for ch in range(n_ch):
            if not open_[ch]:
                continue
            if i > stop[ch]:
                open_[ch] = False
                n_open -= 1
                continue
            b = lb[ch]
            d0 = xs[i - 1, ch] - b
            d1 = xs[i, ch] - b
            d2 = xs[i + 1, ch] - b
            above = d1 * d1 - d0 * d2 > thr[ch]
            if above and prev[ch]:
                j = i - 1
                while j > r0 + 1:
                    e0 = xs[j - 2, ch] - b
                    e1 = xs[j - 1, ch] - b
                    e2 = xs[j, ch] - b
                    if not e1 * e1 - e0 * e2 > mean[ch]:
                        break
                    j -= 1
                ons[ONSET_TKEO, ch] = float(j)
                open_[ch] = False
                n_open -= 1
            prev[ch] = above
        i += 1


@njit(**JIT)
def trial_finish(tr, t0, gap, w, st, xs, prm,
                 amplitude_uv, latency_ms, area_uv_ms, background_rms_uv, peak_time_ms,
                 detected, reject, onset_ambiguous):
    """Features of a fully processed trial into row ``tr`` of the outputs."""
    n_ch = st.shape[1]
    if w[W_OK] == 0 or w[W_DONE] < w[W_HI]:
        for ch in range(n_ch):
            _set_invalid(tr, ch, amplitude_uv, latency_ms, area_uv_ms, background_rms_uv,
                         peak_time_ms, detected, reject, onset_ambiguous)
        return
    dt_ms = prm[P_DT]
    detection_uv = prm[P_DETECT]
    clip_run = prm[P_CLIP_RUN]
    nb = w[W_NB]
    mep = np.zeros(n_ch, dtype=np.bool_)
    bgv = np.empty(n_ch)
    for ch in range(n_ch):
        if not st[S_VACC, ch] == 0.0:
            _set_invalid(tr, ch, amplitude_uv, latency_ms, area_uv_ms, background_rms_uv,
                         peak_time_ms, detected, reject, onset_ambiguous)
            continue
        bg = math.sqrt(st[S_BG, ch] / nb) if nb > 0 else np.nan
        bgv[ch] = bg
        amp = st[S_HI, ch] - st[S_LO, ch]
        amplitude_uv[tr, ch] = amp
        area_uv_ms[tr, ch] = st[S_AREA, ch] * dt_ms
        background_rms_uv[tr, ch] = bg
        peak_time_ms[tr, ch] = t0 + int(st[S_PEAKI, ch]) * dt_ms
        mep[ch] = amp >= detection_uv
        detected[tr, ch] = mep[ch]
        # ---- rejection, by priority
        clipped = (st[S_TOP, ch] > st[S_BOT, ch]
                   and (st[S_BTOP, ch] >= clip_run or st[S_BBOT, ch] >= clip_run))
        reason = OK
        if nb == 0:
            reason = INVALID
        elif gap:
            reason = GAP
        elif clipped:
            reason = CLIPPED
        elif not (bg <= prm[P_BG_LIMIT]):
            reason = BACKGROUND
        reject[tr, ch] = reason
    # ---- onset: every method on the stored filtered response, the chosen one kept
    rows = np.empty(n_ch)
    amb = np.zeros(n_ch, dtype=np.bool_)
    _find_onsets(xs, st, w, prm, mep, bgv, rows, amb)
    for ch in range(n_ch):
        if st[S_VACC, ch] == 0.0:
            latency_ms[tr, ch] = t0 + rows[ch] * dt_ms if rows[ch] >= 0.0 else np.nan
            onset_ambiguous[tr, ch] = amb[ch]


@njit(**JIT)
def measure_epochs(
    src,  # (n_rows, n_channels) float64, µV, sample-major (read only)
    start,  # (n_trials,) int64: row of src holding epoch sample 0 (may be < 0, see first)
    src3,  # (n_trials, n_channels, n_samples) epochs; when it has trials, read instead of src
    n_samples,  # samples per epoch
    t0_ms,  # (n_trials,) time of sample 0 relative to the stimulus
    first,  # (n_trials,) int64: samples before this index are absent
    gap,  # (n_trials,) bool: a timestamp gap inside the epoch
    prm,  # (N_PRM,) parameters
    basis,  # (n_samples, 2 + 2 * n_harmonics) from fill_basis
    dkey, lower, xtx,  # fit design cache (int64 (6,), two (n_basis, n_basis) scratch)
    lp_sos,  # (n_sections, 6); zero sections disables the low-pass
    lp_zi_unit,  # (n_sections, 2) steady-state state for unit input
    amplitude_uv, latency_ms, area_uv_ms, background_rms_uv, peak_time_ms,
    detected, reject, onset_ambiguous,  # outputs (n_trials, n_channels)
):
    """Measure every trial and channel.

    Epoch ``tr`` is rows ``start[tr] + i`` of ``src`` for ``i`` in ``first[tr]..n_samples``
    (a live ring buffer is measured in place, without copying epochs out of it), or
    ``src3[tr, :, i]`` when ``src3`` holds the trials (epochs as exported)."""
    from_rows = src3.shape[0] == 0
    n_trials = start.shape[0] if from_rows else src3.shape[0]
    n_channels = src.shape[1] if from_rows else src3.shape[1]
    w = np.empty(N_W, dtype=np.int64)
    st = np.empty((S_COEF + basis.shape[1] + 2 * max(lp_sos.shape[0], 1), n_channels))
    xs = np.empty((n_samples, n_channels))
    xin = np.empty((n_samples if not from_rows else 0, n_channels))
    for tr in range(n_trials):
        trial_init(t0_ms[tr], first[tr], n_samples, prm, w, st)
        if w[W_OK] == 1:
            if from_rows:
                trial_advance(src, start[tr], n_samples, w, st, xs, prm[P_DT], basis, dkey,
                              lower, xtx, lp_sos, lp_zi_unit)
            else:
                # exported epochs are channel-major: copy the rows used sample-major
                a0 = w[W_A0]
                c0 = max(w[W_F0], min(w[W_LO], a0) - 1)
                c1 = min(n_samples, max(w[W_HI], w[W_A1] + 1))
                for ch in range(n_channels):
                    for i in range(c0, c1):
                        xin[i, ch] = src3[tr, ch, i]
                trial_advance(xin, 0, n_samples, w, st, xs, prm[P_DT], basis, dkey, lower,
                              xtx, lp_sos, lp_zi_unit)
        trial_finish(tr, t0_ms[tr], gap[tr], w, st, xs, prm, amplitude_uv, latency_ms,
                     area_uv_ms, background_rms_uv, peak_time_ms, detected, reject,
                     onset_ambiguous)


@njit(parallel=True, **JIT)
def measure_epochs_parallel(
    n_blocks, src, start, src3, n_samples, t0_ms, first, gap, prm, basis, dkey, lower, xtx,
    lp_sos, lp_zi_unit,
    amplitude_uv, latency_ms, area_uv_ms, background_rms_uv, peak_time_ms, detected, reject,
    onset_ambiguous,
):
    """:func:`measure_epochs` over ``n_blocks`` blocks of trials on the numba thread pool
    (epochs as ``src3``; each block writes its own rows of the outputs and has its own
    fit design cache; ``dkey``, ``lower`` and ``xtx`` give their shapes)."""
    n_trials = src3.shape[0]
    for b in prange(n_blocks):
        lo = b * n_trials // n_blocks
        hi = (b + 1) * n_trials // n_blocks
        if hi > lo:
            my_key = np.zeros_like(dkey)
            my_lower = np.zeros_like(lower)
            my_xtx = np.zeros_like(xtx)
            measure_epochs(
                src, start[lo:hi], src3[lo:hi], n_samples, t0_ms[lo:hi], first[lo:hi],
                gap[lo:hi], prm, basis, my_key, my_lower, my_xtx, lp_sos, lp_zi_unit,
                amplitude_uv[lo:hi], latency_ms[lo:hi], area_uv_ms[lo:hi],
                background_rms_uv[lo:hi], peak_time_ms[lo:hi], detected[lo:hi], reject[lo:hi],
                onset_ambiguous[lo:hi])
