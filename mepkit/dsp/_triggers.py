"""Numba kernels: trigger edges on a TTL channel, stimulus-artifact onsets, the ring buffer
and timestamp checks."""

from numba import njit

from mepkit.config import JIT


@njit(**JIT)
def ttl_rising_edges(x, threshold, refractory, state, out):
    """Indices of upward crossings of ``threshold`` in ``x`` (1-D), streaming.

    ``state`` (float64[2]) carries [previous sample was above (0/1, -1 = no
    previous sample), samples still refractory] across calls. Writes indices
    into ``out`` and returns how many. A NaN sample counts as low.
    """
    prev_above = state[0]
    wait = state[1]
    n = 0
    for i in range(x.shape[0]):
        above = 1.0 if x[i] > threshold else 0.0
        if wait > 0:
            wait -= 1
        if above == 1.0 and prev_above == 0.0 and wait <= 0:
            if n < out.shape[0]:
                out[n] = i
                n += 1
            wait = refractory
        prev_above = above
    state[0] = prev_above
    state[1] = wait
    return n


@njit(**JIT)
def artifact_onsets(x, step, refractory, state, prev, out):
    """Indices where any channel of ``x`` (n, ch) jumps by more than ``step``.

    ``prev`` (n_channels,) holds the last sample of the previous call (NaN at
    the start); ``state`` (float64[1]) the refractory countdown.
    """
    wait = state[0]
    n = 0
    n_channels = x.shape[1]
    for i in range(x.shape[0]):
        if wait > 0:
            wait -= 1
        hit = False
        for c in range(n_channels):
            d = abs(x[i, c] - prev[c])
            if d > step:
                hit = True
            prev[c] = x[i, c]
        if hit and wait <= 0:
            if n < out.shape[0]:
                out[n] = i
                n += 1
            wait = refractory
    state[0] = wait
    return n


@njit(**JIT)
def ring_write(buf, ts_buf, pos, capacity, x, ts):
    """Write rows of ``x`` (n, ch) and ``ts`` (n,) into a double-written ring.

    ``buf`` is (2*capacity, ch): each row is stored at ``p`` and ``p + capacity``
    so the last ``capacity`` rows are always contiguous at ``buf[pos:pos+capacity]``.
    Returns the new write position.
    """
    n_channels = x.shape[1]
    for i in range(x.shape[0]):
        for c in range(n_channels):
            v = x[i, c]
            buf[pos, c] = v
            buf[pos + capacity, c] = v
        ts_buf[pos] = ts[i]
        ts_buf[pos + capacity] = ts[i]
        pos += 1
        if pos == capacity:
            pos = 0
    return pos


@njit(**JIT)
def has_gap(ts, max_step_s):
    """True if a step between consecutive timestamps is longer than ``max_step_s`` or not
    forward (a gap, or a clock that went back), in one pass."""
    for i in range(1, ts.shape[0]):
        d = ts[i] - ts[i - 1]
        if not (0.0 < d <= max_step_s):
            return True
    return False
