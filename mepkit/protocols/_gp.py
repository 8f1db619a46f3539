"""A small Gaussian-process regression in 2-D (numpy only), for the hotspot search.

Squared-exponential kernel ``s_f**2 * exp(-d**2 / (2 * l**2))`` plus Gaussian noise
``s_n**2``, constant prior mean; hyperparameters chosen by the marginal likelihood over a
small grid (Rasmussen & Williams 2006, ch. 2 and 5). Kept private: the search is the API.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["GaussianProcess2D"]


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)


class GaussianProcess2D:
    """GP posterior over ``f(x, y)`` from noisy observations.

    Parameters
    ----------
    mean : float
        Constant prior mean (the value far from any data).
    length_mm, signal_sd, noise_sd : sequence of float
        Candidate hyperparameters; the pair with the largest marginal likelihood is used.
    """

    def __init__(self, mean: float, length_mm, signal_sd, noise_sd) -> None:
        self.mean = float(mean)
        self.grid = list(itertools.product(length_mm, signal_sd, noise_sd))
        self.params = self.grid[0]
        self._X = np.zeros((0, 2))
        self._y = np.zeros(0)
        self._L = None
        self._alpha = None

    def kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ell, sf, _ = self.params
        return sf * sf * np.exp(-_sqdist(a, b) / (2.0 * ell * ell))

    def fit(self, X: np.ndarray, y: np.ndarray) -> "GaussianProcess2D":
        X = np.asarray(X, float).reshape(-1, 2)
        r = np.asarray(y, float).reshape(-1) - self.mean
        self._X, self._y = X, r
        if X.shape[0] == 0:
            self._L = None
            return self
        D = _sqdist(X, X)
        best = (-math.inf, None, None)
        n = X.shape[0]
        for ell, sf, sn in self.grid:
            K = sf * sf * np.exp(-D / (2.0 * ell * ell)) + (sn * sn + 1e-9) * np.eye(n)
            try:
                L = np.linalg.cholesky(K)
            except np.linalg.LinAlgError:
                continue
            alpha = np.linalg.solve(L.T, np.linalg.solve(L, r))
            lml = -0.5 * r @ alpha - np.log(np.diag(L)).sum()
            if lml > best[0]:
                best = (lml, (ell, sf, sn), (L, alpha))
        self.params = best[1]
        self._L, self._alpha = best[2]
        return self

    def predict(self, Q: np.ndarray, *, full_cov: bool = False):
        """Posterior mean (and SD, or the full covariance) at the points ``Q`` (m, 2)."""
        Q = np.asarray(Q, float).reshape(-1, 2)
        _, sf, _ = self.params
        if self._L is None:
            mu = np.full(Q.shape[0], self.mean)
            if full_cov:
                return mu, self.kernel(Q, Q)
            return mu, np.full(Q.shape[0], sf)
        Ks = self.kernel(Q, self._X)
        mu = self.mean + Ks @ self._alpha
        V = np.linalg.solve(self._L, Ks.T)
        if full_cov:
            return mu, self.kernel(Q, Q) - V.T @ V
        var = np.maximum(sf * sf - (V * V).sum(axis=0), 1e-12)
        return mu, np.sqrt(var)
