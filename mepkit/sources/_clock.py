"""Numba kernel of the per-stream clock model (see `mepkit.sources.clock` and docs/methods.md).

One function, `clock_update`, runs the online model over a chunk of raw time stamps and
carries its state in three arrays (``P`` parameters, ``S`` float state, ``I`` integer
state) plus the ring of envelope points (``bx``, ``by``) and the groups of the open run of
late stamps (``grp``). It writes each sample's time on
the fitted clock to ``out`` and appends mapping rows and events to ``rows`` and ``events``.
No I/O, no Python objects; the wrapper in `mepkit.sources.clock` validates and drains.

Residuals are taken against a *reference line* ``ref(k) = S[REF_T] + (k - I[REF_K]) /
S[FREF]`` (the nominal rate, or the measured one when the nominal is far off), so every
number the model compares is small and exact in float64. The fitted line in residual
space is ``y = S[LA] + S[LC] * x`` with ``x = k - I[REF_K]``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mepkit.config import JIT

# ---------------------------------------------------------------- parameters (P)
P_FS = 0          # nominal rate (Hz): liblsl back-fills a chunk's stamps at this rate
P_TOL = 1         # gap tolerance (s)
P_RESET = 2       # backward jump (s) that is a clock reset; forward jump that is a restart
P_BLOCK = 3       # samples per envelope point
P_WARM = 4        # samples a new timeline waits for its first fit
P_MAXPUSH = 5     # one group of late stamps this long is a loss, not a late push
P_SLEW = 6        # largest relative departure of the mapping's rate from the fitted rate
P_WIN = 7         # envelope points the live fit uses
P_GEPS = 8        # a step off the nominal period by more than this starts a new push group
P_SLACK = 9       # slack of the stall test (s)
P_BADRATE = 10    # relative rate error that is reported and adopted
P_NONSENSE = 11   # relative rate error that makes the stamps unusable
P_MAXDEV = 12     # largest relative rate deviation the live fit may take (after adoption)
P_QN = 13         # groups over which the share of on-time groups is averaged
P_NMIN = 14       # fewest late groups that confirm a loss
P_NMAX = 15       # most
P_ANOM_N = 16     # this many resets/losses ...
P_ANOM_S = 17     # ... within this many seconds of samples make the stamps unusable
P_MINRUN = 18     # a loss is confirmed only after late stamps for this many samples
P_MAXWAIT = 19    # samples wait at most this long (samples) for a verdict on late stamps
N_P = 20

# ---------------------------------------------------------------- float state (S)
REF_T = 0
FREF = 1
LA = 2
LC = 3
ROW_T = 4
ROW_R = 5
PREV = 6       # previous finite stamp (NaN: none)
GMIN = 7       # smallest residual of the current push group
GMIN_X = 8     # its x
RUN_E1 = 9     # lateness of the run's first group
RUN_FLOOR = 10
BMIN = 11      # smallest residual of the current block
BMIN_X = 12
Q = 13         # share of push groups within the tolerance of the fitted line
WMIN = 14      # smallest residual of the warm-up
GX = 15        # x of the last sample seen
RUN_FREF = 16  # the run's level (least lateness) since it last moved by more than the slack
RISE_MIN = 17  # least lateness of the groups in a row above that level by the slack
N_S = 18

# ---------------------------------------------------------------- int state (I)
K = 0          # stream index of the next sample
REF_K = 1
ROW_K = 2
SEG = 3        # timeline number (increments at a clock reset)
MODE = 4       # 0 warm-up, 1 running, 2 free (stamps unusable: nominal rate)
PIECE0 = 5     # first sample of the current warm-up
SETTLED = 6    # samples before this index have their final time
FIX = 7        # samples from this index changed time in this call (-1: none)
GSTART = 8     # first sample of the current push group
INRUN = 9      # a run of late groups is open
RUN0 = 10
RUN_K1 = 11    # last sample of the run's first group (-1: still open)
RUN_NG = 12    # groups in the open run
RUN_INC = 13   # (unused)
BSTART = 14
NB = 15        # envelope points in the ring
BHEAD = 16     # next write position in the ring
NROWS = 17
NEV = 18
RESET = 19     # 1: the next sample starts a new timeline
NGAPS = 20
NMISS = 21
NRESETS = 22
NGROUPS = 23
WARNED = 24    # bit 1: jitter warned
ANOM0 = 25     # ANOM0 .. ANOM0+7: stream index of the last anomalies (ring)
ANOM_HEAD = 33
HASGROUP = 34
ADOPTED = 35   # 1: the reference rate is the measured one (the nominal is far off)
RUN_FLOOR_K = 36  # last sample of the group that last lowered the run's floor (by > slack)
WFAIL = 37     # warm-ups in a row whose stamps made no sense
FREE_OK = 38   # free mode: stamps in a row one nominal period (within the tolerance) apart
GHEAD = 39     # the open run's groups (ring ``grp``: start index, excess): next write slot
GN = 40        # ... and how many (at most the ring's size)
RISE_K0 = 41   # first sample of the groups in a row above the run's level (-1: none)
CAP_B = 42     # layout of the work array W (see `views`): envelope points
CAP_G = 43     # ... groups of the open run
CAP_R = 44     # ... mapping rows
CAP_E = 45     # ... events
N_I = 46

MODE_WARM = 0
MODE_RUN = 1
MODE_FREE = 2

# ---------------------------------------------------------------- events
EV_GAP = 1       # index, start_s, end_s, n_missing
EV_RESET = 2     # index, jump_s (negative: stamps earlier than the fitted clock)
EV_BADRATE = 3   # index, measured rate (Hz)
EV_FREE = 4      # index, measured rate (Hz) or NaN, reason (1 rate, 2 too many anomalies)
EV_JITTER = 5    # index, share of groups within the tolerance
N_EV_COLS = 5
N_ROW_COLS = 4   # sample index, time (s), rate (Hz), timeline


@njit(**JIT)
def _emit_row(I, rows, k, t, r, seg):
    n = I[NROWS]
    rows[n, 0] = k
    rows[n, 1] = t
    rows[n, 2] = r
    rows[n, 3] = seg
    I[NROWS] = n + 1


@njit(**JIT)
def _emit_event(I, events, kind, a, b, c, d):
    n = I[NEV]
    events[n, 0] = kind
    events[n, 1] = a
    events[n, 2] = b
    events[n, 3] = c
    events[n, 4] = d
    I[NEV] = n + 1


@njit(**JIT)
def _mapped(S, I, k):
    """Time of sample ``k`` on the mapping in effect."""
    return S[ROW_T] + (k - I[ROW_K]) / S[ROW_R]


@njit(**JIT)
def hull_line(bx, by, n, head, cap, win):
    """The lower-envelope line of the last ``win`` points of the ring: the edge of their
    lower convex hull above the points' mean x (the line below every point with the
    smallest summed distance to them; Moon, Skelly & Towsley 1999). Returns (a, c, ok)."""
    m = min(n, win)
    if m == 0:
        return 0.0, 0.0, False
    xs = np.empty(m)
    ys = np.empty(m)
    start = (head - m) % cap
    for j in range(m):
        p = (start + j) % cap
        xs[j] = bx[p]
        ys[j] = by[p]
    if m == 1:
        return ys[0], 0.0, False
    # lower hull (monotone chain); x is increasing
    hx = np.empty(m)
    hy = np.empty(m)
    h = 0
    for j in range(m):
        while h >= 2:
            cross = (hx[h - 1] - hx[h - 2]) * (ys[j] - hy[h - 2]) - \
                    (hy[h - 1] - hy[h - 2]) * (xs[j] - hx[h - 2])
            if cross <= 0.0:
                h -= 1
            else:
                break
        hx[h] = xs[j]
        hy[h] = ys[j]
        h += 1
    xm = 0.0
    for j in range(m):
        xm += xs[j]
    xm /= m
    e = 0
    while e < h - 2 and hx[e + 1] <= xm:
        e += 1
    dx = hx[e + 1] - hx[e]
    if dx <= 0.0:
        return ys[0], 0.0, False
    c = (hy[e + 1] - hy[e]) / dx
    a = hy[e] - c * hx[e]
    return a, c, True


@njit(**JIT)
def _below(bx, by, n, head, cap, win, c):
    """Offset of the line with slope ``c`` that touches the last ``win`` points from below."""
    m = min(n, win)
    a = np.inf
    for j in range(m):
        p = (head - 1 - j) % cap
        v = by[p] - c * bx[p]
        if v < a:
            a = v
    return a


@njit(**JIT)
def _push_point(bx, by, I, x, y):
    cap = bx.shape[0]
    p = I[BHEAD]
    bx[p] = x
    by[p] = y
    I[BHEAD] = (p + 1) % cap
    if I[NB] < cap:
        I[NB] += 1


@njit(**JIT)
def _start_piece(P, S, I, k, s, new_timeline):
    """A new timeline (or the first): warm up from sample ``k`` with stamp ``s``."""
    if new_timeline:
        I[SEG] += 1
    I[MODE] = MODE_WARM
    I[PIECE0] = k
    I[REF_K] = k
    S[REF_T] = s
    S[FREF] = P[P_FS]
    S[LA] = 0.0
    S[LC] = 0.0
    I[ROW_K] = k
    S[ROW_T] = s
    S[ROW_R] = P[P_FS]
    I[NB] = 0
    I[BHEAD] = 0
    I[ADOPTED] = 0
    I[BSTART] = k
    S[BMIN] = np.inf
    S[WMIN] = np.inf
    I[INRUN] = 0
    I[HASGROUP] = 0
    S[PREV] = np.nan


@njit(**JIT)
def _note_anomaly(P, I, k):
    """Remember a reset or loss; True when there were too many lately (stamps unusable)."""
    n = int(P[P_ANOM_N])
    h = I[ANOM_HEAD]
    I[ANOM0 + h % 8] = k
    I[ANOM_HEAD] = h + 1
    if h + 1 < n:
        return False
    oldest = I[ANOM0 + (h + 1 - n) % 8]
    return (k - oldest) < P[P_ANOM_S] * P[P_FS]


@njit(**JIT)
def _go_free(P, S, I, rows, events, k, rate, reason):
    """Stamps unusable: run on at the reference rate from the mapping in effect."""
    t = _mapped(S, I, k)
    I[MODE] = MODE_FREE
    I[FREE_OK] = 0
    I[INRUN] = 0
    I[ROW_K] = k
    S[ROW_T] = t
    S[ROW_R] = S[FREF]
    _emit_row(I, rows, k, t, S[FREF], I[SEG])
    _emit_event(I, events, EV_FREE, k, rate, reason, 0.0)
    I[SETTLED] = k


@njit(**JIT)
def _end_warmup(P, S, I, bx, by, rows, events, k_end):
    """Fit the first line of a timeline from its warm-up (samples PIECE0..k_end)."""
    cap = bx.shape[0]
    fs = P[P_FS]
    # the block in progress counts as a point if it has samples
    if S[BMIN] < np.inf:
        _push_point(bx, by, I, S[BMIN_X], S[BMIN])
        S[BMIN] = np.inf
        I[BSTART] = k_end + 1
    n = I[NB]
    a, c, ok = hull_line(bx, by, n, I[BHEAD], cap, cap)
    if ok and (bx[(I[BHEAD] - 1) % cap] - bx[(I[BHEAD] - n) % cap]) < P[P_BLOCK]:
        ok = False
    piece0 = I[PIECE0]
    if ok:
        period = 1.0 / S[FREF] + c
        rate = 1.0 / period if period != 0.0 else np.inf
        dev = rate / fs - 1.0
        if not (math.isfinite(rate) and rate > 0.0) or abs(dev) > P[P_NONSENSE]:
            I[FIX] = piece0 if I[FIX] < 0 else min(I[FIX], piece0)
            if I[WFAIL] >= 2:
                _go_free(P, S, I, rows, events, piece0, rate, 1.0)
                I[SETTLED] = k_end + 1
                return
            # perhaps a backlog going out: time these samples at the reference rate under
            # their stamps and warm up again from the next one
            I[WFAIL] += 1
            a = _below(bx, by, n, I[BHEAD], cap, cap, 0.0)
            x0 = piece0 - I[REF_K]
            t0 = S[REF_T] + a + x0 / S[FREF]
            I[ROW_K] = piece0
            S[ROW_T] = t0
            S[ROW_R] = S[FREF]
            _emit_row(I, rows, piece0, t0, S[FREF], I[SEG])
            I[SETTLED] = k_end + 1
            nxt = k_end + 1
            t_next = _mapped(S, I, nxt)
            _start_piece(P, S, I, nxt, t_next, False)
            I[ROW_K] = piece0
            S[ROW_T] = t0
            S[ROW_R] = S[FREF]
            return
        if abs(dev) > P[P_BADRATE]:
            # the stamps advance at another rate than the nominal: take theirs
            _emit_event(I, events, EV_BADRATE, piece0, rate, 0.0, 0.0)
            S[FREF] = rate
            m = min(n, cap)
            for j in range(m):
                p = (I[BHEAD] - 1 - j) % cap
                by[p] = by[p] - c * bx[p]
            S[GMIN] -= c * S[GMIN_X]
            S[WMIN] = np.inf
            c = 0.0
            I[ADOPTED] = 1
        limit = _rate_limit(P, S, I)
        c = min(max(c, -limit), limit)
    else:
        c = 0.0
    a = _below(bx, by, n, I[BHEAD], cap, cap, c) if n > 0 else S[WMIN]
    if not math.isfinite(a):
        a = 0.0
    S[LA] = a
    S[LC] = c
    x0 = piece0 - I[REF_K]
    t0 = S[REF_T] + (a + c * x0) + x0 / S[FREF]
    rate = 1.0 / (1.0 / S[FREF] + c)
    I[ROW_K] = piece0
    S[ROW_T] = t0
    S[ROW_R] = rate
    _emit_row(I, rows, piece0, t0, rate, I[SEG])
    I[FIX] = piece0 if I[FIX] < 0 else min(I[FIX], piece0)
    I[SETTLED] = k_end + 1
    I[MODE] = MODE_RUN
    I[INRUN] = 0
    I[WFAIL] = 0


@njit(**JIT)
def _rate_limit(P, S, I):
    """Largest slope deviation of the line from the reference rate."""
    # a measured reference rate came from the short warm-up: let the fit correct it
    dev = 0.2 * P[P_NONSENSE] if I[ADOPTED] == 1 else P[P_MAXDEV]
    return dev / S[FREF]


@njit(**JIT)
def _refit(P, S, I, bx, by):
    """The line under the last points of the ring (the rate within its limit)."""
    cap = bx.shape[0]
    win = int(P[P_WIN])
    a, c, ok = hull_line(bx, by, I[NB], I[BHEAD], cap, win)
    if ok:
        limit = _rate_limit(P, S, I)
        if c > limit or c < -limit:
            c = min(max(c, -limit), limit)
            a = _below(bx, by, I[NB], I[BHEAD], cap, win, c)
        S[LA] = a
        S[LC] = c
    elif I[NB] >= 1:
        S[LA] = _below(bx, by, I[NB], I[BHEAD], cap, win, S[LC])


@njit(**JIT)
def _tick(P, S, I, bx, by, rows, events, k):
    """A block ended before sample ``k``: refit the line, steer the mapping toward it."""
    _refit(P, S, I, bx, by)
    x = k - I[REF_K]
    period = 1.0 / S[FREF] + S[LC]
    m = _mapped(S, I, k)
    target = S[REF_T] + (S[LA] + S[LC] * x) + x / S[FREF]
    err = m - target
    p_new = period - err / P[P_BLOCK]
    lo = period * (1.0 - P[P_SLEW])
    hi = period * (1.0 + P[P_SLEW])
    p_new = min(max(p_new, lo), hi)
    rate = 1.0 / p_new
    I[ROW_K] = k
    S[ROW_T] = m
    S[ROW_R] = rate
    _emit_row(I, rows, k, m, rate, I[SEG])
    if (I[WARNED] & 1) == 0 and I[NGROUPS] > 2000 and S[Q] < 0.25:
        I[WARNED] |= 1
        _emit_event(I, events, EV_JITTER, k, S[Q], 0.0, 0.0)


@njit(**JIT)
def _n_confirm(P, S):
    q = S[Q]
    if q >= 1.0:
        return P[P_NMIN]
    if q <= 0.0:
        return P[P_NMAX]
    n = math.ceil(math.log(1e-6) / math.log(1.0 - q))
    return min(max(n, P[P_NMIN]), P[P_NMAX])


@njit(**JIT)
def _confirm_loss(P, S, I, bx, by, grp, rows, events, k_last):
    """The open run is a loss. Its size is the least lateness of the run's last
    ``P_MINRUN`` samples (the level it kept); it begins with the earliest group from which
    on every group is that late (earlier late groups were a stall before it)."""
    cap = bx.shape[0]
    gcap = grp.shape[0]
    slack = P[P_SLACK]
    recent = k_last + 1 - P[P_MINRUN]
    lost = np.inf
    n = I[GN]
    for j in range(n):
        h = (I[GHEAD] - 1 - j) % gcap
        if grp[h, 0] >= recent or j == 0:
            if grp[h, 1] < lost:
                lost = grp[h, 1]
    if not (lost < np.inf):
        lost = S[RUN_FLOOR]
    run0 = I[RUN0]
    for j in range(n):
        h = (I[GHEAD] - 1 - j) % gcap
        if grp[h, 1] < lost - slack:
            break
        run0 = int(grp[h, 0])
    run0 = max(run0, I[RUN0])
    I[SETTLED] = max(I[SETTLED], run0)
    I[RUN0] = run0
    before = _mapped(S, I, run0 - 1)
    after = _mapped(S, I, run0) + lost
    period = 1.0 / S[FREF] + S[LC]
    n_missing = int(round(lost / period))
    # the same envelope continues after the loss: shift the reference, not the line
    S[REF_T] += lost
    x0 = run0 - I[REF_K]
    m = min(I[NB], cap)
    for j in range(m):
        p = (I[BHEAD] - 1 - j) % cap
        if bx[p] >= x0:
            by[p] -= lost
    if S[BMIN] < np.inf and S[BMIN_X] >= x0:
        S[BMIN] -= lost
    S[GMIN] -= lost
    S[WMIN] = np.inf
    I[ROW_K] = run0
    S[ROW_T] = after
    _emit_row(I, rows, run0, after, S[ROW_R], I[SEG])
    _emit_event(I, events, EV_GAP, run0, before, after, n_missing)
    I[NGAPS] += 1
    I[NMISS] += n_missing
    if lost > P[P_RESET]:
        # an outlet restart: the envelope so far says nothing about the new outlet
        I[NB] = 0
        I[BHEAD] = 0
    I[INRUN] = 0
    I[FIX] = run0 if I[FIX] < 0 else min(I[FIX], run0)
    I[SETTLED] = k_last + 1


@njit(**JIT)
def _run_group(I, grp, start, e):
    """Remember a group of the open run (the ring keeps the latest ones)."""
    cap = grp.shape[0]
    h = I[GHEAD]
    grp[h, 0] = start
    grp[h, 1] = e
    I[GHEAD] = (h + 1) % cap
    if I[GN] < cap:
        I[GN] += 1


@njit(**JIT)
def _close_group(P, S, I, bx, by, grp, rows, events, k_end):
    """The push group that ended with sample ``k_end`` is complete."""
    if I[HASGROUP] == 0:
        return
    e = S[GMIN] - (S[LA] + S[LC] * S[GMIN_X])
    tol = P[P_TOL] + 0.5 / P[P_FS]
    I[NGROUPS] += 1
    # the share of groups on time: a run of late groups counts once (a long backlog is one
    # event, not many late groups)
    if I[MODE] == MODE_RUN and (I[INRUN] == 0 or I[RUN_K1] < 0):
        near = 1.0 if e <= tol else 0.0
        S[Q] += (near - S[Q]) / P[P_QN]
    if I[MODE] != MODE_RUN or I[INRUN] == 0:
        return
    if I[RUN_K1] < 0:
        I[RUN_K1] = k_end
        I[RUN_FLOOR_K] = k_end
        I[RISE_K0] = -1
        S[RUN_FREF] = e
        _run_group(I, grp, max(I[GSTART], I[RUN0]), e)
        return
    if e <= tol:
        return  # handled when the group began (the run ended then)
    _run_group(I, grp, I[GSTART], e)
    I[RUN_NG] += 1
    if e < S[RUN_FLOOR]:
        S[RUN_FLOOR] = e
    slack = P[P_SLACK]
    minrun = P[P_MINRUN]
    # the run's level must hold still: a stall's backlog, however unevenly flushed, is ever
    # less late; an app falling behind is ever later; a loss stays as late
    if e < S[RUN_FREF] - slack:
        S[RUN_FREF] = e
        I[RUN_FLOOR_K] = k_end
        I[RISE_K0] = -1
    elif e > S[RUN_FREF] + slack:
        if I[RISE_K0] < 0:
            I[RISE_K0] = I[GSTART]
            S[RISE_MIN] = e
        elif e < S[RISE_MIN]:
            S[RISE_MIN] = e
        if k_end - I[RISE_K0] + 1 >= minrun / 3.0:
            S[RUN_FREF] = S[RISE_MIN]
            I[RUN_FLOOR_K] = k_end
            I[RISE_K0] = -1
    else:
        I[RISE_K0] = -1
    if k_end - I[RUN_FLOOR_K] >= minrun and I[RUN_NG] >= _n_confirm(P, S):
        _confirm_loss(P, S, I, bx, by, grp, rows, events, k_end)


@njit(**JIT)
def clock_update(ts, out, P, S, I, bx, by, grp, rows, events):
    """Run the clock model over the stamps ``ts`` of the next samples of a stream.

    Writes each sample's time on the fitted clock to ``out`` (final for samples before
    ``I[SETTLED]``, provisional after), appends mapping rows ``(index, time, rate,
    timeline)`` and events to ``rows`` / ``events``, and returns how many samples it took:
    all, or fewer when the next sample starts a new timeline (``I[RESET]`` set) or the
    output buffers are nearly full.
    """
    n = ts.shape[0]
    fs = P[P_FS]
    # late (or early) by more than the tolerance and half a sample: a loss needs at least
    # one sample missing
    tol = P[P_TOL] + 0.5 / fs
    geps = P[P_GEPS]
    block = int(P[P_BLOCK])
    warm = int(P[P_WARM])
    maxpush = int(P[P_MAXPUSH])
    row_room = rows.shape[0] - 4
    ev_room = events.shape[0] - 4
    for i in range(n):
        if I[NROWS] >= row_room or I[NEV] >= ev_room:
            return i
        k = I[K]
        s = ts[i]
        finite = math.isfinite(s)
        if I[RESET] == 1:
            if not finite:
                out[i] = _mapped(S, I, k) if I[SEG] >= 0 else np.nan
                I[K] = k + 1
                continue
            _start_piece(P, S, I, k, s, True)
            I[RESET] = 0
        mode = I[MODE]
        if not finite:
            # no information in this stamp: the sample keeps the mapping in effect
            out[i] = _mapped(S, I, k)
            if mode == MODE_FREE or (mode == MODE_RUN and I[INRUN] == 0):
                I[SETTLED] = k + 1
            I[K] = k + 1
            if mode == MODE_WARM and k - I[PIECE0] + 1 >= warm:
                _end_warmup(P, S, I, bx, by, rows, events, k)
            continue
        if mode == MODE_FREE:
            # stamps given up on; but after a stretch of stamps one period apart, a jump of
            # seconds is unmistakable: a clock reset (a new timeline, fitted anew) or an
            # outlet restart (a gap, then fitted anew)
            step = s - S[PREV] - 1.0 / fs
            honour = I[FREE_OK] >= warm and abs(step) > P[P_RESET]
            if abs(step) <= tol:
                I[FREE_OK] += 1
            else:
                I[FREE_OK] = 0
            S[PREV] = s
            if honour and step < 0.0:
                _emit_event(I, events, EV_RESET, k, step, s, 0.0)
                I[NRESETS] += 1
                I[RESET] = 1
                I[FREE_OK] = 0
                I[SETTLED] = k
                return i
            if not honour:
                out[i] = _mapped(S, I, k)
                I[SETTLED] = k + 1
                I[K] = k + 1
                continue
            n_missing = int(round(step * S[FREF]))
            _emit_event(I, events, EV_GAP, k, _mapped(S, I, k - 1), s, n_missing)
            I[NGAPS] += 1
            I[NMISS] += n_missing
            I[FREE_OK] = 0
            _start_piece(P, S, I, k, s, False)
            mode = I[MODE]
        x = k - I[REF_K]
        r = (s - S[REF_T]) - x / S[FREF]
        # ------------------------------------------------ push groups
        prev = S[PREV]
        new_group = I[HASGROUP] == 0 or not (abs(s - prev - 1.0 / fs) <= geps)
        if new_group:
            _close_group(P, S, I, bx, by, grp, rows, events, k - 1)
            mode = I[MODE]
            if mode == MODE_FREE:
                out[i] = _mapped(S, I, k)
                I[SETTLED] = k + 1
                I[K] = k + 1
                continue
            x = k - I[REF_K]
            r = (s - S[REF_T]) - x / S[FREF]
            I[GSTART] = k
            S[GMIN] = r
            S[GMIN_X] = x
            I[HASGROUP] = 1
        elif r < S[GMIN]:
            S[GMIN] = r
            S[GMIN_X] = x
        S[PREV] = s
        S[GX] = x
        # ------------------------------------------------ warm-up
        if mode == MODE_WARM:
            jump_back = r < S[WMIN] - P[P_RESET]
            jump_fwd = r > S[WMIN] + P[P_RESET]
            if (jump_back or jump_fwd) and k > I[PIECE0]:
                # a jump in the first moments: fit what came before, then handle it
                _end_warmup(P, S, I, bx, by, rows, events, k - 1)
                if I[MODE] == MODE_FREE:
                    out[i] = _mapped(S, I, k)
                    I[SETTLED] = k + 1
                    I[K] = k + 1
                    continue
                mode = I[MODE]
                x = k - I[REF_K]
                r = (s - S[REF_T]) - x / S[FREF]
                S[GMIN] = r
                S[GMIN_X] = x
                I[GSTART] = k
                I[HASGROUP] = 1
                S[PREV] = s
            if mode == MODE_RUN:
                pass
            else:
                if r < S[WMIN]:
                    S[WMIN] = r
                if r < S[BMIN]:
                    S[BMIN] = r
                    S[BMIN_X] = x
                out[i] = _mapped(S, I, k)
                I[K] = k + 1
                if k - I[BSTART] + 1 >= block:
                    _push_point(bx, by, I, S[BMIN_X], S[BMIN])
                    S[BMIN] = np.inf
                    I[BSTART] = k + 1
                if k - I[PIECE0] + 1 >= warm:
                    _end_warmup(P, S, I, bx, by, rows, events, k)
                    if I[MODE] == MODE_RUN:
                        # the group in progress is judged against the new line from now on
                        out[i] = _mapped(S, I, k)
                continue
        # ------------------------------------------------ running
        line = S[LA] + S[LC] * x
        if r < line - tol and r > line - P[P_RESET] and I[ADOPTED] == 1:
            # earlier than the line: with a measured reference rate it may be the line (the
            # rate not yet known well); refit with this stamp before calling it a step
            _push_point(bx, by, I, x, r)
            _refit(P, S, I, bx, by)
            line = S[LA] + S[LC] * x
        if r < line - tol:
            # stamps earlier than the fitted clock: a clock reset (or a false loss undone)
            if I[INRUN] == 1:
                I[INRUN] = 0
                I[SETTLED] = k
            if _note_anomaly(P, I, k):
                _go_free(P, S, I, rows, events, k, np.nan, 2.0)
                out[i] = _mapped(S, I, k)
                I[SETTLED] = k + 1
                I[K] = k + 1
                continue
            _emit_event(I, events, EV_RESET, k, r - line, s, 0.0)
            I[NRESETS] += 1
            I[RESET] = 1
            I[SETTLED] = k
            I[HASGROUP] = 0
            return i
        if r < S[BMIN]:
            S[BMIN] = r
            S[BMIN_X] = x
        e = S[GMIN] - (S[LA] + S[LC] * S[GMIN_X])
        if I[INRUN] == 0:
            if e <= tol:
                I[SETTLED] = k + 1
            else:
                I[INRUN] = 1
                I[RUN0] = max(I[GSTART], I[SETTLED])
                S[RUN_E1] = e
                S[RUN_FLOOR] = e
                I[RUN_K1] = -1
                I[RUN_NG] = 1
                I[GN] = 0
        else:
            if e <= tol:
                # back on the envelope: the late stamps were a stall
                I[INRUN] = 0
                I[SETTLED] = k + 1
            else:
                if e < S[RUN_FLOOR]:
                    S[RUN_FLOOR] = e
                if k + 1 - I[SETTLED] > P[P_MAXWAIT]:
                    # no verdict for too long (an app that keeps falling behind): the
                    # oldest samples keep the envelope's time; the run goes on after them
                    I[SETTLED] = k + 1 - int(P[P_MAXWAIT])
                    if I[RUN0] < I[SETTLED]:
                        I[RUN0] = I[SETTLED]
                if k - I[GSTART] + 1 >= maxpush:
                    # one push this long does not happen: samples are missing
                    if I[RUN_K1] < 0:
                        S[RUN_FLOOR] = e
                    _run_group(I, grp, max(I[GSTART], I[RUN0]), e)
                    _confirm_loss(P, S, I, bx, by, grp, rows, events, k)
        out[i] = _mapped(S, I, k)
        I[K] = k + 1
        if k - I[BSTART] + 1 >= block:
            _push_point(bx, by, I, S[BMIN_X], S[BMIN])
            S[BMIN] = np.inf
            I[BSTART] = k + 1
            if I[INRUN] == 0 and I[MODE] == MODE_RUN:
                _tick(P, S, I, bx, by, rows, events, k + 1)
    return n


@njit(**JIT)
def clock_finish(P, S, I, bx, by, rows, events):
    """End of data: an open run was a stall, an unfinished warm-up is fitted now."""
    k_last = I[K] - 1
    if I[SEG] < 0 or k_last < 0:
        return
    if I[MODE] == MODE_WARM and I[RESET] == 0:
        _end_warmup(P, S, I, bx, by, rows, events, k_last)
    if I[INRUN] == 1:
        I[INRUN] = 0
    I[SETTLED] = I[K]


# ---------------------------------------------------------------- one work array
# Every float array of the model lives in one array W, so that a call passes four arrays
# (numba's per-call cost grows with the number of array arguments: ~1 us each).
def layout(cap_b, cap_g, cap_r, cap_e):
    """Size of W for these capacities."""
    return N_P + N_S + 2 * cap_b + 2 * cap_g + N_ROW_COLS * cap_r + N_EV_COLS * cap_e


@njit(**JIT)
def views(W, I):
    """The parameter, state, ring and output arrays inside W."""
    cb, cg, cr, ce = I[CAP_B], I[CAP_G], I[CAP_R], I[CAP_E]
    a = 0
    P = W[a:a + N_P]
    a += N_P
    S = W[a:a + N_S]
    a += N_S
    bx = W[a:a + cb]
    a += cb
    by = W[a:a + cb]
    a += cb
    grp = W[a:a + 2 * cg].reshape((cg, 2))
    a += 2 * cg
    rows = W[a:a + N_ROW_COLS * cr].reshape((cr, N_ROW_COLS))
    a += N_ROW_COLS * cr
    events = W[a:a + N_EV_COLS * ce].reshape((ce, N_EV_COLS))
    return P, S, bx, by, grp, rows, events


@njit(**JIT)
def clock_step(ts, out, W, I):
    """`clock_update` with the model's arrays in W."""
    P, S, bx, by, grp, rows, events = views(W, I)
    return clock_update(ts, out, P, S, I, bx, by, grp, rows, events)


@njit(**JIT)
def clock_end(W, I):
    """`clock_finish` with the model's arrays in W."""
    P, S, bx, by, grp, rows, events = views(W, I)
    clock_finish(P, S, I, bx, by, rows, events)
