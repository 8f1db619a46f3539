"""Numba flags and numeric tolerances, in one place.

Kernels import ``JIT`` from here rather than hard-coding flags. Numba itself is
imported lazily by the kernel modules, never by ``import mepkit``.
"""

#: Options for every ``numba.njit`` in mepkit. ``cache`` keeps compiled kernels
#: on disk (``NUMBA_CACHE_DIR`` redirects it when the package dir is read-only).
JIT = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
