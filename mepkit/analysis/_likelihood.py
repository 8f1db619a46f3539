"""Likelihoods of MEP data, a batched bounded Newton optimiser and profile-likelihood intervals.

Two models, each a negative log-likelihood with its analytic gradient and Hessian, evaluated
for a batch of parameter vectors at once (``theta`` of shape ``(B, p)``) with per-row trial
weights (``weights`` of shape ``(B, n)``: 1 for the data themselves, bootstrap counts for a
case-resampled replicate). One fit of the data is a batch of one; a bootstrap of 1,000
replicates is one batch of 1,000, fitted together in a few milliseconds per iteration.

* :class:`BinaryModel`: the probability of an MEP (amplitude >= criterion) is
  ``F((I - t) / s)`` with ``F`` the cumulative normal or the logistic function;
  parameters ``(t, ln s)``.
* :class:`CurveModel`: log-normal amplitudes around a Boltzmann median
  ``m(I) = M / (1 + exp((i50 - I) / s))`` with SD ``sigma`` of ``ln A``; amplitudes
  below ``floor_uv`` are left-censored (they say only "smaller than the floor").
  Parameters ``(ln M, i50, ln s, ln sigma)``, or with ``threshold=True``
  ``(t, ln s, u, ln sigma)`` where ``t`` is the intensity at which the median is the
  criterion ``c`` and ``M = c (1 + e^u)``, ``i50 = t + s u``.

Everything here is private; the public functions live in ``thresholds.py`` and
``recruitment.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit, log_ndtr

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class BinaryModel:
    """P(MEP) = F((I - t) / s); parameters (t, ln s)."""

    n_params = 2

    def __init__(self, intensity: np.ndarray, hit: np.ndarray, link: str = "normal", *,
                 t_bounds=(0.0, 100.0), s_bounds=(0.25, 50.0)) -> None:
        self.x = np.asarray(intensity, float)
        self.g = np.where(np.asarray(hit, bool), 1.0, -1.0)
        if link not in ("normal", "logistic"):
            raise ValueError(f"link must be 'normal' or 'logistic', got {link!r}")
        self.link = link
        self.lower = np.array([t_bounds[0], math.log(s_bounds[0])])
        self.upper = np.array([t_bounds[1], math.log(s_bounds[1])])

    def evaluate(self, theta: np.ndarray, weights: np.ndarray):
        t = theta[:, :1]
        s = np.exp(theta[:, 1:2])
        u = self.g * (self.x - t) / s
        if self.link == "normal":
            lnd = log_ndtr(u)
            nll_i = -lnd
            lam = np.exp(-0.5 * u * u - _LOG_SQRT_2PI - lnd)
            l_u = -lam
            l_uu = lam * (u + lam)
        else:
            nll_i = -log_expit(u)
            l_u = -expit(-u)
            p = expit(u)
            l_uu = p * (1.0 - p)
        w = weights
        du_dt = -self.g / s
        f = np.sum(w * nll_i, axis=1)
        grad = np.stack([np.sum(w * l_u * du_dt, 1), np.sum(w * l_u * -u, 1)], axis=1)
        h_tt = np.sum(w * l_uu / (s * s), 1)
        h_ts = np.sum(w * (l_uu * du_dt * -u + l_u * self.g / s), 1)
        h_ss = np.sum(w * (l_uu * u * u + l_u * u), 1)
        hess = np.empty((theta.shape[0], 2, 2))
        hess[:, 0, 0] = h_tt
        hess[:, 0, 1] = hess[:, 1, 0] = h_ts
        hess[:, 1, 1] = h_ss
        return f, grad, hess


class CurveModel:
    """Censored log-normal amplitudes around a Boltzmann median (see the module doc)."""

    n_params = 4

    def __init__(self, intensity: np.ndarray, amplitude_uv: np.ndarray, floor_uv: float, *,
                 threshold: bool = False, criterion_uv: float = 50.0,
                 i_bounds=(0.0, 200.0), s_bounds=(0.25, 50.0), m_bounds=(1.0, 1e5),
                 sigma_bounds=(0.05, 3.0)) -> None:
        self.x = np.asarray(intensity, float)
        a = np.asarray(amplitude_uv, float)
        self.cens = a < floor_uv
        self.y = np.log(np.where(self.cens, floor_uv, a))
        self._obs_cols = np.flatnonzero(~self.cens)
        self._cens_cols = np.flatnonzero(self.cens)
        self.c_floor = math.log(floor_uv)
        self.threshold = threshold
        self.log_c = math.log(criterion_uv)
        if threshold:
            u_lo = -6.0
            u_hi = math.log(max(m_bounds[1] / criterion_uv - 1.0, 1e-3))
            self.lower = np.array([0.0, math.log(s_bounds[0]), u_lo, math.log(sigma_bounds[0])])
            self.upper = np.array([100.0, math.log(s_bounds[1]), u_hi, math.log(sigma_bounds[1])])
        else:
            self.lower = np.array([math.log(m_bounds[0]), i_bounds[0], math.log(s_bounds[0]),
                                   math.log(sigma_bounds[0])])
            self.upper = np.array([math.log(m_bounds[1]), i_bounds[1], math.log(s_bounds[1]),
                                   math.log(sigma_bounds[1])])

    def _mu(self, theta: np.ndarray):
        """ln median per trial, its gradient (B, n, 3) and Hessian (B, n, 3, 3) in the curve
        parameters (the first three of theta)."""
        x = self.x
        shape = (theta.shape[0], x.size)
        d = np.empty(shape + (3,))
        h = np.empty(shape + (3, 3))
        if not self.threshold:
            ln_m, i50, ln_s = theta[:, :1], theta[:, 1:2], theta[:, 2:3]
            s = np.exp(ln_s)
            z = (i50 - x) / s
            p = expit(z)
            pq = p * (1.0 - p)
            mu = ln_m - _softplus(z)
            d[..., 0] = 1.0
            d[..., 1] = -p / s
            d[..., 2] = p * z
            h[..., 0, :] = 0.0
            h[..., :, 0] = 0.0
            h[..., 1, 1] = -pq / (s * s)
            h[..., 1, 2] = h[..., 2, 1] = pq * z / s + p / s
            h[..., 2, 2] = -pq * z * z - p * z
            return mu, d, h
        t, ln_s, u = theta[:, :1], theta[:, 1:2], theta[:, 2:3]
        s = np.exp(ln_s)
        q = (t - x) / s
        z = u + q
        pz = expit(z)
        pu = expit(u)
        qz = pz * (1.0 - pz)
        mu = self.log_c + _softplus(u) - _softplus(z)
        d[..., 0] = -pz / s
        d[..., 1] = pz * q
        d[..., 2] = pu - pz
        h[..., 0, 0] = -qz / (s * s)
        h[..., 0, 1] = h[..., 1, 0] = qz * q / s + pz / s
        h[..., 0, 2] = h[..., 2, 0] = -qz / s
        h[..., 1, 1] = -qz * q * q - pz * q
        h[..., 1, 2] = h[..., 2, 1] = qz * q
        h[..., 2, 2] = pu * (1.0 - pu) - qz
        return mu, d, h

    def evaluate(self, theta: np.ndarray, weights: np.ndarray):
        mu, d, h2 = self._mu(theta)
        tau = theta[:, 3:4]
        sig = np.exp(tau)
        inv = 1.0 / sig
        oc, cc = self._obs_cols, self._cens_cols
        shape = mu.shape
        nll_i = np.empty(shape)
        l_mu = np.empty(shape)
        l_tau = np.empty(shape)
        l_mumu = np.empty(shape)
        l_mutau = np.empty(shape)
        l_tautau = np.empty(shape)
        if oc.size:
            r = (self.y[oc] - mu[:, oc]) * inv
            r2 = r * r
            nll_i[:, oc] = tau + 0.5 * r2
            l_mu[:, oc] = -r * inv
            l_tau[:, oc] = 1.0 - r2
            l_mumu[:, oc] = inv * inv
            l_mutau[:, oc] = 2.0 * r * inv
            l_tautau[:, oc] = 2.0 * r2
        if cc.size:
            w_c = (self.c_floor - mu[:, cc]) * inv
            lnd = log_ndtr(w_c)
            lam = np.exp(-0.5 * w_c * w_c - _LOG_SQRT_2PI - lnd)
            lw = lam * (w_c + lam)
            nll_i[:, cc] = -lnd
            l_mu[:, cc] = lam * inv
            l_tau[:, cc] = lam * w_c
            l_mumu[:, cc] = lw * inv * inv
            l_mutau[:, cc] = (lw * w_c - lam) * inv
            l_tautau[:, cc] = lam * w_c * (w_c * (w_c + lam) - 1.0)
        w = weights
        f = np.sum(w * nll_i, 1)
        b = theta.shape[0]
        grad = np.empty((b, 4))
        grad[:, :3] = np.einsum("bn,bni->bi", w * l_mu, d)
        grad[:, 3] = np.sum(w * l_tau, 1)
        hess = np.empty((b, 4, 4))
        hess[:, :3, :3] = (np.einsum("bn,bni,bnj->bij", w * l_mumu, d, d, optimize=True)
                           + np.einsum("bn,bnij->bij", w * l_mu, h2))
        hc = np.einsum("bn,bni->bi", w * l_mutau, d)
        hess[:, :3, 3] = hc
        hess[:, 3, :3] = hc
        hess[:, 3, 3] = np.sum(w * l_tautau, 1)
        return f, grad, hess

    def median(self, theta: np.ndarray, intensity) -> np.ndarray:
        """Median amplitude (µV) at ``intensity`` for each row of theta: shape (B, k)."""
        old = self.x
        self.x = np.atleast_1d(np.asarray(intensity, float))
        try:
            mu = self._mu(theta)[0]
        finally:
            self.x = old
        return np.exp(mu)


def minimize(model, theta0: np.ndarray, weights: np.ndarray, *, fixed=None,
             max_iter: int = 200, tol: float = 1e-9):
    """Bounded Levenberg–Marquardt Newton minimisation of ``model``'s NLL, row by row.

    Parameters
    ----------
    model : BinaryModel or CurveModel
    theta0 : ndarray (B, p)
        Starting points (clipped into the model's bounds).
    weights : ndarray (B, n) or (n,)
        Trial weights of each row.
    fixed : int or ndarray (B,) of int, optional
        Index of a parameter held at its starting value (profile likelihood), per row
        (-1: none).

    Returns
    -------
    theta : ndarray (B, p)
    nll : ndarray (B,)
    hess : ndarray (B, p, p)
        Hessian at the solution (for standard errors).
    converged : ndarray (B,) of bool
    """
    lo, hi = model.lower, model.upper
    theta = np.clip(np.array(theta0, float, copy=True), lo, hi)
    b, p = theta.shape
    weights = np.broadcast_to(np.asarray(weights, float), (b, model.x.size))
    f, g, h = model.evaluate(theta, weights)
    lam = np.full(b, 1e-3)
    done = np.zeros(b, bool)
    eye = np.eye(p)
    fixed_rows = np.full(b, -1) if fixed is None else np.broadcast_to(np.asarray(fixed), (b,))
    fixed_mask = fixed_rows[:, None] == np.arange(p)[None, :]
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        th, ga, ha = theta[act], g[act], h[act]
        free = ~fixed_mask[act] & ~((th <= lo) & (ga > 0)) & ~((th >= hi) & (ga < 0))
        gf = np.where(free, ga, 0.0)
        small = np.max(np.abs(gf), axis=1) < 1e-6
        hm = ha * free[:, :, None] * free[:, None, :] + eye * ~free[:, None, :]
        dg = np.maximum(np.abs(np.diagonal(hm, axis1=1, axis2=2)), 1e-8)
        a = hm + lam[act, None, None] * dg[:, None, :] * eye
        try:
            step = -np.linalg.solve(a, gf[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -gf / (dg * (1.0 + lam[act, None]))
        step = np.where(free, step, 0.0)
        new = np.clip(th + step, lo, hi)
        fn, gn, hn = model.evaluate(new, weights[act])
        better = np.isfinite(fn) & (fn <= f[act])
        moved = np.max(np.abs(new - th), axis=1)
        gain = f[act] - np.where(better, fn, f[act])
        idx = act[better]
        theta[idx], f[idx], g[idx], h[idx] = new[better], fn[better], gn[better], hn[better]
        lam[idx] = np.maximum(lam[idx] / 4.0, 1e-9)
        bad = act[~better]
        lam[bad] *= 6.0
        conv = (better & (gain < tol * (1.0 + np.abs(fn))) & ((moved < 1e-6) | (gain < 1e-12))) | small
        conv |= lam[act] > 1e10
        done[act[conv]] = True
    return theta, f, h, done


def covariance(hess: np.ndarray, theta: np.ndarray, model) -> np.ndarray:
    """Inverse Hessian (B, p, p); parameters at a bound get zero variance."""
    b, p = theta.shape
    at_bound = (theta <= model.lower + 1e-9) | (theta >= model.upper - 1e-9)
    out = np.zeros((b, p, p))
    for k in range(b):
        free = ~at_bound[k]
        if not free.any():
            continue
        sub = hess[k][np.ix_(free, free)]
        try:
            inv = np.linalg.pinv(sub, hermitian=True)
        except np.linalg.LinAlgError:
            continue
        out[k][np.ix_(free, free)] = inv
    return out


@dataclass
class Profile:
    """Profile-likelihood interval of one parameter (model coordinates)."""

    lower: float
    upper: float
    lower_open: bool
    upper_open: bool


#: Grid of the first pass, in Wald standard errors from the MLE (most ends lie near
#: z_crit SE), and of the second, for ends the first did not reach.
_GRID_SE = np.array([1.0, 1.7, 2.3, 3.2])
_GRID_SE_FAR = np.array([5.0, 9.0, 18.0, 40.0, 100.0])


def _at_bound(model, k, v, side) -> bool:
    return v >= model.upper[k] - 1e-12 if side > 0 else v <= model.lower[k] + 1e-12


def z_crit(level: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95."""
    from scipy.special import ndtri

    if not 0.0 < level < 1.0:
        raise ValueError(f"ci_level must be within (0, 1), got {level!r}")
    return float(ndtri(0.5 + level / 2.0))


def profile_intervals(model, theta_hat: np.ndarray, nll_hat: float, params, *,
                      level: float = 0.95, weights=None):
    """Profile-likelihood intervals of the parameters ``params`` (indices).

    The interval of parameter k holds the values v for which
    ``2 (min_{theta: theta_k = v} NLL - NLL_hat) <= chi2_1(level)``
    (Wilks; Venzon & Moolgavkar 1988). The signed root deviance is close to linear in
    v, so a grid in units of the Wald SE brackets each end and a few rounds of
    interpolation pin it down; every profile point of a round is one batch. An end that
    reaches the parameter's bound is *open*.

    Returns the intervals, and the (possibly improved) MLE and its NLL: if the profile
    finds a lower NLL than the MLE, the MLE is refitted from there and the profile redone.
    """
    w = np.ones(model.x.size) if weights is None else np.asarray(weights, float)
    crit = z_crit(level)
    theta_hat = np.asarray(theta_hat, float)
    for _attempt in range(3):
        _, _, h = model.evaluate(theta_hat[None], w[None])
        cov = covariance(h, theta_hat[None], model)[0]
        ses = {}
        for k in params:
            span = model.upper[k] - model.lower[k]
            se = math.sqrt(cov[k, k]) if cov[k, k] > 0 else 0.0
            ses[k] = min(max(se, 1e-2 * span), 0.25 * span)
        pts = {(k, side): [(float(theta_hat[k]), 0.0)] for k in params for side in (-1, 1)}
        restart = None
        for grid, two_starts in ((_GRID_SE, False), (_GRID_SE_FAR, True)):
            jobs = []
            for (k, side), got in pts.items():
                if _bracket(got, crit) is not None or _at_bound(model, k, got[-1][0], side):
                    continue
                vals = np.clip(theta_hat[k] + side * ses[k] * grid, model.lower[k], model.upper[k])
                jobs.extend((k, side, float(v)) for v in np.unique(vals)
                            if side * (v - got[-1][0]) > 0)
            if not jobs:
                break
            f_prof, th_prof = _profile_values(model, theta_hat, cov, jobs, w, two_starts)
            for (k, side, v), fv in zip(jobs, f_prof):
                pts[(k, side)].append((v, _root(fv, nll_hat)))
            if f_prof.size and np.min(f_prof) < nll_hat - 1e-6:
                restart = th_prof[int(np.argmin(f_prof))]
                break
        if restart is not None:
            th, fv, _, _ = minimize(model, restart[None], w)
            if fv[0] < nll_hat:
                theta_hat, nll_hat = th[0], float(fv[0])
                continue
        break
    ends = {}
    for key, got in pts.items():
        got.sort(key=lambda t: key[1] * (t[0] - theta_hat[key[0]]))
        ends[key] = _bracket(got, crit)
    # Refine the brackets together: regula falsi on the root deviance.
    for _round in range(4):
        todo = [(key, br) for key, br in ends.items() if br is not None and not br[2]]
        if not todo:
            break
        new_jobs = []
        for (k, side), ((v0, r0), (v1, r1), _) in todo:
            v = v1 if r1 - r0 <= 1e-12 else v0 + (crit - r0) * (v1 - v0) / (r1 - r0)
            new_jobs.append((k, side, float(v)))
        f_new, _ = _profile_values(model, theta_hat, cov, new_jobs, w)
        for ((key, ((v0, r0), (v1, r1), _)), (_, _, v), fv) in zip(todo, new_jobs, f_new):
            r = _root(fv, nll_hat)
            if abs(r - crit) < 1e-3 or abs(v1 - v0) < 1e-6 * (1.0 + abs(v)):
                ends[key] = ((v, r), (v, r), True)
            elif r < crit:
                ends[key] = ((v, r), (v1, r1), False)
            else:
                ends[key] = ((v0, r0), (v, r), False)
    out: dict[int, Profile] = {}
    for k in params:
        vals = []
        for side in (-1, 1):
            br = ends[(k, side)]
            if br is None:
                vals.append((float(model.upper[k] if side > 0 else model.lower[k]), True))
            else:
                (v0, r0), (v1, r1), _ = br
                v = v1 if r1 - r0 <= 1e-12 else v0 + (crit - r0) * (v1 - v0) / (r1 - r0)
                vals.append((float(v), False))
        out[k] = Profile(vals[0][0], vals[1][0], vals[0][1], vals[1][1])
    return out, theta_hat, nll_hat


def _root(f: float, nll_hat: float) -> float:
    return math.sqrt(max(2.0 * (f - nll_hat), 0.0))


def _bracket(pts, crit):
    """The first grid interval where the root deviance reaches ``crit`` (None: never)."""
    for a, b in zip(pts[:-1], pts[1:]):
        if b[1] >= crit:
            return (a, b, False)
    return None


def _conditional_start(theta_hat, cov, k, v, model):
    """Start for the profile at theta_k = v: the other parameters shifted along their
    regression on theta_k (the conditional mean of the Wald approximation)."""
    start = theta_hat.copy()
    if cov[k, k] > 0:
        start = start + cov[:, k] / cov[k, k] * (v - theta_hat[k])
    start[k] = v
    return np.clip(start, model.lower, model.upper)


def _profile_values(model, theta_hat, cov, jobs, w, two_starts=False):
    """Minimum NLL with theta_k fixed at v, for every job (k, side, v), in one batch, from
    the conditional shift of the MLE (and with ``two_starts`` also from the MLE with only
    theta_k moved, keeping the better)."""
    if not jobs:
        return np.empty(0), np.empty((0, theta_hat.size))
    n = len(jobs)
    ks = np.array([k for k, _, _ in jobs])
    shifted = np.stack([_conditional_start(theta_hat, cov, k, v, model) for k, _, v in jobs])
    if not two_starts:
        th, f, _, _ = minimize(model, shifted, w, fixed=ks)
        return f, th
    plain = np.repeat(theta_hat[None], n, 0)
    plain[np.arange(n), ks] = [v for _, _, v in jobs]
    th, f, _, _ = minimize(model, np.concatenate([shifted, plain]), w,
                           fixed=np.concatenate([ks, ks]))
    pick = f[n:] < f[:n]
    return np.where(pick, f[n:], f[:n]), np.where(pick[:, None], th[n:], th[:n])
