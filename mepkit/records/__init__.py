"""The HDF5 session record: crash-safe writer, reader, summary. Format: docs/record-format.md."""

from mepkit.records._schema import (
    FORMAT_VERSION, TRIAL_COLUMN_KINDS, RecordExistsError, RecordNotFoundError,
)
from mepkit.records.info import format_info
from mepkit.records.reader import Markers, ProtocolStep, Record, RecordStream, open_record
from mepkit.records.writer import RecordWriter, lsl_clock

__all__ = [
    "FORMAT_VERSION", "TRIAL_COLUMN_KINDS", "RecordWriter", "open_record", "Record",
    "RecordStream", "Markers", "ProtocolStep", "format_info", "RecordExistsError",
    "RecordNotFoundError", "lsl_clock",
]
