"""Names, versions and column kinds of the HDF5 session record (see docs/record-format.md).

Shared by the writer and the reader; no h5py import here.
"""

from __future__ import annotations

import math
from typing import Any

from mepkit.errors import MepkitError
from mepkit.params import TRIAL_COLUMN_KINDS  # noqa: F401 - re-exported for the writer

#: Version of the record layout written by this mepkit. Readers refuse newer versions.
#: 2: raw samples stored as received (source dtype and units, ``scale_to_uv`` per channel);
#: 1 stored them as float32 µV.
FORMAT_VERSION = 2
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

#: Columns of a stream's clock mapping table ``/clock/<stream>`` (see mepkit.sources.clock):
#: row j times samples sample_index[j] <= k < sample_index[j+1] as
#: time_s[j] + (k - sample_index[j]) / rate_hz[j]; timeline increments at a clock reset.
CLOCK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sample_index", "int64"), ("time_s", "float64"), ("rate_hz", "float64"),
    ("timeline", "int64"),
)

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


class RecordExistsError(MepkitError, FileExistsError):
    """The record file exists and ``overwrite=True`` was not given."""


class RecordNotFoundError(MepkitError, FileNotFoundError):
    """The record file does not exist."""
