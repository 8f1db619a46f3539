"""Names, versions and column kinds of the HDF5 session record (see docs/record-format.md).

Shared by the writer and the reader; no h5py import here.
"""

from __future__ import annotations

import math
from typing import Any

from mepkit.errors import MepkitError
from mepkit.units import scale_to_uv
from mepkit.params import TRIAL_COLUMN_KINDS  # noqa: F401 - re-exported for the writer

#: Version of the record layout written by this mepkit. Readers refuse newer versions.
FORMAT_VERSION = 1
#: Value of the root attribute ``mepkit_format``: marks an HDF5 file as a mepkit record.
FORMAT_NAME = "mepkit-record"

#: Column kinds of an appendable table and how each is stored.
#: ``float64``/``int64``/``bool`` are 1-D datasets; ``text`` is a group holding a
#: ``utf8`` byte dataset and an ``end`` offset dataset (variable-length strings are not
#: safe under HDF5 SWMR: readers hit "address of object past end of allocation").
KINDS = ("float64", "int64", "bool", "text")


#: The small appendable tables other than /trials: path -> ((column, kind), ...).
FIXED_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "markers": (("time_s", "float64"), ("value", "text")),
    "protocol/steps": (("time_s", "float64"), ("json", "text")),
    "protocol/results": (("time_s", "float64"), ("name", "text"), ("json", "text")),
    "events": (("time_s", "float64"), ("kind", "text"), ("detail", "text")),
}

#: Stored unit of EMG data (format version 1 converted voltages to it).
STORED_UNIT = "µV"

#: Fill values used when an appended batch lacks a declared column.
FILL = {"float64": math.nan, "int64": -1, "bool": False, "text": ""}


def normalize_kind(kind: Any, column: str) -> str:
    """Map a kind given as a name or a Python type to one of `KINDS`."""
    aliases = {float: "float64", "float": "float64", "f8": "float64",
               int: "int64", "int": "int64", "i8": "int64",
               bool: "bool", "bool_": "bool",
               str: "text", "str": "text", "string": "text"}
    try:
        out = aliases.get(kind, kind)
    except TypeError:  # unhashable
        out = kind
    if out not in KINDS:
        raise ValueError(f"column {column!r}: kind must be one of {KINDS} (or float, int, bool, "
                         f"str), got {kind!r}")
    return out


def unit_scale(unit: str) -> tuple[float, str]:
    """Return (factor to stored unit, stored unit) for a source channel unit.

    Voltages (V, mV, µV) become µV; any other unit (e.g. a trigger channel's "" or
    "a.u.") is stored unchanged with factor 1.
    """
    scale = scale_to_uv(unit)
    return (1.0, str(unit)) if scale is None else (scale, STORED_UNIT)


class RecordExistsError(MepkitError, FileExistsError):
    """The record file exists and ``overwrite=True`` was not given."""


class RecordNotFoundError(MepkitError, FileNotFoundError):
    """The record file does not exist."""
