"""Mapping grids: named coil sites at known positions (mm).

A grid is defined in one of three ways (see docs/methods.md, "Motor maps"):

* **Text** ``"ROWSxCOLS"`` or ``"ROWSxCOLS@SPACING"`` (``"7x7@10"``, ``"5x7@7.5mm"``):
  a regular grid of ``ROWS`` rows and ``COLS`` columns ``SPACING`` mm apart (default
  10 mm), centred on ``centre_mm``. Column ``c`` (1 = leftmost) is at
  ``x = centre_x + (c - (COLS + 1) / 2) * SPACING``, row ``r`` (1 = lowest) at
  ``y = centre_y + (r - (ROWS + 1) / 2) * SPACING``; the axes are the operator's (for
  example x lateral, y anterior on a cap).
* **A mapping** ``{"rows": 7, "cols": 7, "spacing_mm": 10, "centre_mm": [0, 0]}``
  (the JSON form stored in records), the same regular grid.
* **Explicit sites** ``{"sites": {"hand": [0, 0], "M1-ant": [0, 10], ...},
  "spacing_mm": 10}``: any names at any positions; ``spacing_mm`` (the side of the
  square cell each site stands for) defaults to the median nearest-neighbour distance.

Site names of a regular grid: ``"r3c5"`` (row 3, column 5, 1-based), canonical, or the
spreadsheet form ``"E3"`` (column letter, then row number; up to 26 columns). The
letter form is *not* a 10-20 EEG position; use explicit sites for those.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from mepkit.errors import UsageError

__all__ = ["Grid", "GridError", "parse_grid", "DEFAULT_SPACING_MM"]

#: Default distance between neighbouring sites of a regular grid (mm): 1 cm
#: (Wassermann et al. 1992; Thickbroom et al. 1998; Rossini et al. 2015).
DEFAULT_SPACING_MM = 10.0

_TEXT = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*(?:@\s*([0-9]*\.?[0-9]+)\s*(?:mm)?)?\s*$")
_RC = re.compile(r"^[rR](\d+)[cC](\d+)$")
_LETTER = re.compile(r"^([A-Za-z])(\d+)$")


class GridError(UsageError, ValueError):
    """A grid definition that does not parse, a duplicate or unknown site, a position off the grid."""


@dataclass(frozen=True, eq=False)
class Grid:
    """Named sites at positions (mm), each standing for a square cell ``spacing_mm`` wide.

    Build one with :func:`parse_grid`. ``rows``/``cols`` are 0 for explicit-site grids.
    """

    names: tuple[str, ...]
    x_mm: np.ndarray
    y_mm: np.ndarray
    spacing_mm: float
    rows: int = 0
    cols: int = 0
    centre_mm: tuple[float, float] = (0.0, 0.0)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for i, n in enumerate(self.names):
            if not n:
                raise GridError(f"grid site {i} has an empty name")
            if n in seen:
                raise GridError(f"duplicate site name {n!r} in the grid definition "
                                f"(sites {seen[n]} and {i})")
            seen[n] = i
        pos: dict[tuple[float, float], str] = {}
        for n, x, y in zip(self.names, self.x_mm, self.y_mm):
            if not (math.isfinite(x) and math.isfinite(y)):
                raise GridError(f"grid site {n!r} has a position that is not finite: ({x}, {y})")
            key = (round(float(x), 6), round(float(y), 6))
            if key in pos:
                raise GridError(f"duplicate sites: {pos[key]!r} and {n!r} are both at "
                                f"({x:g}, {y:g}) mm in the grid definition")
            pos[key] = n
        if not (math.isfinite(self.spacing_mm) and self.spacing_mm > 0):
            raise GridError(f"grid spacing_mm must be a positive number, got {self.spacing_mm!r}")
        self._index.update(seen)

    # ---------------------------------------------------------------- facts
    @property
    def n_sites(self) -> int:
        return len(self.names)

    @property
    def regular(self) -> bool:
        """True for a rows × cols grid (site names ``rNcM`` and letter forms)."""
        return self.rows > 0

    @property
    def cell_area_mm2(self) -> float:
        """Scalp area one site stands for: ``spacing_mm ** 2``."""
        return float(self.spacing_mm) ** 2

    def describe(self) -> dict[str, Any]:
        """The JSON form of this grid (parses back with :func:`parse_grid`)."""
        if self.regular:
            return {"rows": self.rows, "cols": self.cols, "spacing_mm": float(self.spacing_mm),
                    "centre_mm": [float(self.centre_mm[0]), float(self.centre_mm[1])]}
        return {"sites": {n: [float(x), float(y)] for n, x, y in
                          zip(self.names, self.x_mm, self.y_mm)},
                "spacing_mm": float(self.spacing_mm)}

    def __repr__(self) -> str:
        if self.regular:
            return (f"Grid({self.rows}x{self.cols}@{self.spacing_mm:g}mm centred on "
                    f"({self.centre_mm[0]:g}, {self.centre_mm[1]:g}))")
        return f"Grid({self.n_sites} explicit sites, cell {self.spacing_mm:g} mm)"

    # ---------------------------------------------------------------- sites
    def site_index(self, name: str) -> int:
        """Index of the site called ``name`` (canonical, ``rNcM`` or letter form)."""
        key = str(name).strip()
        i = self._index.get(key)
        if i is not None:
            return i
        if self.regular:
            m = _RC.match(key)
            if m:
                r, c = int(m.group(1)), int(m.group(2))
            else:
                m = _LETTER.match(key)
                r, c = (int(m.group(2)), ord(m.group(1).upper()) - 64) if m else (0, 0)
            if m:
                if 1 <= r <= self.rows and 1 <= c <= self.cols:
                    return (r - 1) * self.cols + (c - 1)
                raise GridError(f"site {name!r} is outside the {self.rows}x{self.cols} grid "
                                f"(rows 1..{self.rows}, columns 1..{self.cols})")
        hint = ("'r<row>c<col>' or a column letter and row number like 'C3'" if self.regular
                else f"one of {list(self.names)[:8]}{'...' if self.n_sites > 8 else ''}")
        raise GridError(f"unknown site {name!r} for {self!r}; expected {hint}")

    def position(self, name: str) -> tuple[float, float]:
        """``(x_mm, y_mm)`` of the site called ``name``."""
        i = self.site_index(name)
        return (float(self.x_mm[i]), float(self.y_mm[i]))

    def locate(self, x_mm: Any, y_mm: Any, *, what: str = "position",
               labels: Any = None) -> np.ndarray:
        """The site index of each position: the site whose cell contains it.

        A regular grid's cell is the square ``spacing_mm`` wide around the site; an
        explicit site's cell is the disc of radius ``spacing_mm / 2`` around it.

        Raises
        ------
        GridError
            When a position lies in no site's cell (outside the grid), naming the
            first few offending entries (``what`` and its label, default the index).
        """
        x = np.atleast_1d(np.asarray(x_mm, dtype=float))
        y = np.atleast_1d(np.asarray(y_mm, dtype=float))
        d2 = (x[:, None] - self.x_mm[None, :]) ** 2 + (y[:, None] - self.y_mm[None, :]) ** 2
        idx = np.argmin(d2, axis=1) if self.n_sites else np.zeros(x.size, int)
        half = self.spacing_mm / 2.0 + 1e-9
        if self.regular:
            inside = ((np.abs(x - self.x_mm[idx]) <= half) & (np.abs(y - self.y_mm[idx]) <= half))
        else:
            inside = d2[np.arange(x.size), idx] <= half ** 2
        bad = np.flatnonzero(~inside)
        if bad.size:
            lab = np.arange(x.size) if labels is None else np.asarray(labels).reshape(-1)
            shown = ", ".join(f"{what} {lab[i]} at ({x[i]:g}, {y[i]:g}) mm" for i in bad[:3])
            more = f" and {bad.size - 3} more" if bad.size > 3 else ""
            raise GridError(f"{bad.size} position(s) outside {self!r}: {shown}{more} "
                            f"(each must lie within {self.spacing_mm / 2:g} mm of a site)")
        return idx


def _regular(rows: int, cols: int, spacing_mm: float, centre_mm: Any) -> Grid:
    if rows < 1 or cols < 1:
        raise GridError(f"a grid needs at least 1 row and 1 column, got {rows}x{cols}")
    try:
        cx, cy = (float(v) for v in centre_mm)
    except (TypeError, ValueError):
        raise GridError(f"grid centre_mm must be a pair of numbers (x, y), got {centre_mm!r}") from None
    s = float(spacing_mm)
    if not (math.isfinite(s) and s > 0):
        raise GridError(f"grid spacing_mm must be a positive number, got {spacing_mm!r}")
    r, c = np.meshgrid(np.arange(1, rows + 1), np.arange(1, cols + 1), indexing="ij")
    x = cx + (c.ravel() - (cols + 1) / 2.0) * s
    y = cy + (r.ravel() - (rows + 1) / 2.0) * s
    names = tuple(f"r{i}c{j}" for i, j in zip(r.ravel(), c.ravel()))
    return Grid(names, x.astype(float), y.astype(float), s, rows, cols, (cx, cy))


def _explicit(sites: Any, spacing_mm: Any) -> Grid:
    if isinstance(sites, Mapping):
        items = list(sites.items())
    else:
        try:
            items = [(str(n), p) for n, p in sites]
        except (TypeError, ValueError):
            raise GridError("grid 'sites' must map names to [x_mm, y_mm] positions") from None
        names = [n for n, _ in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise GridError(f"duplicate site name(s) {dup} in the grid definition")
    if not items:
        raise GridError("grid 'sites' is empty")
    xs, ys = [], []
    for name, p in items:
        try:
            x, y = (float(v) for v in p)
        except (TypeError, ValueError):
            raise GridError(f"grid site {name!r}: position must be [x_mm, y_mm], got {p!r}") from None
        xs.append(x)
        ys.append(y)
    x, y = np.asarray(xs), np.asarray(ys)
    if spacing_mm is None:
        if x.size < 2:
            raise GridError("a grid of one explicit site needs spacing_mm (the cell it stands for)")
        d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        np.fill_diagonal(d, np.inf)
        spacing_mm = float(np.median(d.min(axis=1)))
        if spacing_mm <= 0:  # duplicates; let Grid name them
            spacing_mm = 1.0
    return Grid(tuple(str(n) for n, _ in items), x, y, float(spacing_mm))


def parse_grid(spec: Any, *, spacing_mm: float | None = None,
               centre_mm: tuple[float, float] = (0.0, 0.0)) -> Grid:
    """A :class:`Grid` from its definition (see the module doc for the forms).

    Parameters
    ----------
    spec : Grid, str or mapping
        ``"7x7"``, ``"7x7@10"``, ``"7x7@10mm"``, a JSON string or mapping with
        ``rows``/``cols``/``spacing_mm``/``centre_mm``, or one with ``sites``.
    spacing_mm : float, optional
        Spacing of a text grid without ``@`` (default :data:`DEFAULT_SPACING_MM`);
        an ``@SPACING`` in the text must agree with it.
    centre_mm : (float, float)
        Centre of a regular grid given as text.

    Raises
    ------
    GridError
        When the definition does not parse, or has duplicate sites.

    Examples
    --------
    >>> g = parse_grid("3x3@10")
    >>> g.position("r1c1"), g.position("C3")
    ((-10.0, -10.0), (10.0, 10.0))
    """
    if isinstance(spec, Grid):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except ValueError as exc:
                raise GridError(f"grid definition {spec!r} is not valid JSON ({exc})") from None
        else:
            m = _TEXT.match(text)
            if not m:
                raise GridError(f"grid definition {spec!r} does not parse; expected "
                                f"'ROWSxCOLS' or 'ROWSxCOLS@SPACING' such as '7x7@10'")
            rows, cols = int(m.group(1)), int(m.group(2))
            s = float(m.group(3)) if m.group(3) else None
            if s is not None and spacing_mm is not None and not math.isclose(s, spacing_mm):
                raise GridError(f"grid definition {spec!r} says spacing {s:g} mm but "
                                f"spacing_mm={spacing_mm!r} was given")
            s = s if s is not None else (DEFAULT_SPACING_MM if spacing_mm is None else spacing_mm)
            return _regular(rows, cols, s, centre_mm)
    if isinstance(spec, Mapping):
        keys = set(spec)
        if "sites" in keys:
            extra = keys - {"sites", "spacing_mm"}
            if extra:
                raise GridError(f"grid definition has unknown key(s) {sorted(extra)}; "
                                f"an explicit grid takes 'sites' and 'spacing_mm'")
            return _explicit(spec["sites"], spec.get("spacing_mm", spacing_mm))
        extra = keys - {"rows", "cols", "spacing_mm", "centre_mm"}
        if extra or not {"rows", "cols"} <= keys:
            raise GridError(f"grid definition {dict(spec)!r} does not parse; expected keys "
                            f"rows, cols, spacing_mm, centre_mm (or sites)")
        try:
            rows, cols = int(spec["rows"]), int(spec["cols"])
        except (TypeError, ValueError):
            raise GridError(f"grid rows/cols must be integers, got {spec['rows']!r}, "
                            f"{spec['cols']!r}") from None
        s = spec.get("spacing_mm", DEFAULT_SPACING_MM if spacing_mm is None else spacing_mm)
        try:
            s = float(s)
        except (TypeError, ValueError):
            raise GridError(f"grid spacing_mm must be a number, got {s!r}") from None
        return _regular(rows, cols, s, spec.get("centre_mm", centre_mm))
    raise GridError(f"grid definition must be text like '7x7@10', a mapping or a Grid, "
                    f"got {type(spec).__name__}")
