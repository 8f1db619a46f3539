"""Numba kernels: streaming second-order-section IIR filtering with carried state."""

from numba import njit

from mepkit.config import JIT


@njit(**JIT)
def sosfilt_inplace(sos, x, zi):
    """Filter ``x`` (n_samples, n_channels) in place, updating ``zi``.

    Direct form II transposed per section, as ``scipy.signal.sosfilt``.
    ``sos`` is (n_sections, 6), ``zi`` is (n_channels, n_sections, 2), all float64
    and C-contiguous. No checks: the public wrapper validates.
    """
    n_samples, n_channels = x.shape
    n_sections = sos.shape[0]
    for i in range(n_samples):
        for c in range(n_channels):
            v = x[i, c]
            for s in range(n_sections):
                b0 = sos[s, 0]
                b1 = sos[s, 1]
                b2 = sos[s, 2]
                a1 = sos[s, 4]
                a2 = sos[s, 5]
                z0 = zi[c, s, 0]
                z1 = zi[c, s, 1]
                y = b0 * v + z0
                zi[c, s, 0] = b1 * v - a1 * y + z1
                zi[c, s, 1] = b2 * v - a2 * y
                v = y
            x[i, c] = v
