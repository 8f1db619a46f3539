"""A human-readable summary of a session record (``mepkit info``)."""

from __future__ import annotations

import numpy as np

from mepkit.records.reader import Record

__all__ = ["format_info"]


def _fmt_duration(s: float) -> str:
    m, sec = divmod(s, 60.0)
    h, m = divmod(int(m), 60)
    return f"{s:.1f} s" + (f" ({h:d}:{m:02d}:{sec:04.1f})" if s >= 60 else "")


def format_info(record: Record) -> str:
    """Summarise a record: file, format, streams, markers, trials, latency.

    Parameters
    ----------
    record : Record
        From `open_record`.

    Returns
    -------
    str
        Several lines, no trailing newline.
    """
    out = [f"{record.path}",
           f"  format: mepkit-record v{record.format_version}, written by mepkit "
           f"{record.software_version}, created {record.created_utc or '?'}",
           "  closed cleanly: " + ("yes" if record.closed_cleanly else
                                   "NO (still being written, or the writer crashed)"),
           f"  duration: {_fmt_duration(record.duration_s)}"]
    for key in ("subject", "session"):
        info = getattr(record, key)
        if info:
            out.append(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    for name, st in record.streams.items():
        out.append(f"  stream {name!r} ({st.type or '?'}): {st.n_channels} channels at "
                   f"{st.nominal_srate_hz:g} Hz, {st.n_samples} samples")
        chans = ", ".join(f"{lab} [{unit}]" for lab, unit in zip(st.channel_labels, st.units))
        out.append(f"    channels: {chans}")
        rows = getattr(st, "clock_rows", None)
        if rows is not None and len(rows):
            n_tl = int(len(np.unique(rows[:, 3])))
            out.append(f"    clock: fitted, {rows[-1, 2]:.3f} Hz at the end, {len(rows)} mapping "
                       f"rows" + (f", {n_tl} timelines (clock resets)" if n_tl > 1 else ""))
    if not record.streams:
        out.append("  streams: none")
    times, _ = record.markers
    out.append(f"  markers: {len(times)}"
               + (f" from stream {record.marker_stream!r}" if record.marker_stream else ""))
    t = record.trials
    out.append(f"  trial rows: {len(t)}"
               + (f" ({t['trial'].nunique()} trials x {t['channel'].nunique()} channels)"
                  if len(t) and {"trial", "channel"} <= set(t.columns) else ""))
    if len(t):
        if "detected" in t:
            out.append(f"    detected: {int(np.sum(t['detected'].astype(bool)))}")
        if "rejected" in t:
            rej = t[t["rejected"].astype(bool)]
            by = ""
            if len(rej) and "reject_reason" in t:
                counts = rej["reject_reason"].replace("", "unspecified").value_counts()
                by = " (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")"
            out.append(f"    rejected: {len(rej)}{by}")
        if {"channel", "amplitude_uv"} <= set(t.columns):
            ok = t[~t["rejected"].astype(bool)] if "rejected" in t else t
            med = ok.groupby("channel", sort=False)["amplitude_uv"].median()
            out.append("    median amplitude (accepted): " + ", ".join(
                f"{ch} {v:.0f} µV" for ch, v in med.items()) if len(med) else
                "    median amplitude (accepted): no accepted trials")
        if {"available_s", "last_sample_s"} <= set(t.columns):
            lat = (t["available_s"] - t["last_sample_s"]).to_numpy(dtype=float) * 1e3
            lat = lat[np.isfinite(lat)]
            if lat.size:
                p50, p99 = np.percentile(lat, [50, 99])
                out.append(f"    result latency (available - last sample): p50 {p50:.1f} ms, "
                           f"p99 {p99:.1f} ms (n={lat.size})")
    if record.protocol_steps or record.protocol_results:
        out.append(f"  protocol: {len(record.protocol_steps)} steps, results: "
                   + (", ".join(record.protocol_results) or "none"))
    if len(record.events):
        counts = record.events["kind"].value_counts()
        out.append("  events: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    for w in record.warnings:
        out.append(f"  warning: {w}")
    return "\n".join(out)
