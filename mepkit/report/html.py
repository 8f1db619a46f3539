"""The session report: one self-contained HTML file from a record or an XDF recording.

``build_report(path)`` reads the file, derives every section the data allow and renders
the figures; ``Report.to_html()`` gives the page (figures as base64 PNG in ``data:`` URIs,
one small embedded stylesheet, no script and nothing loaded from the network) and
``Report.write_figures(dir)`` writes each figure as PNG and SVG. ``write_report`` does
both. Every text that comes from the file (labels, markers, subject fields, event
details) is HTML-escaped.

Sections (each says what is absent when the file lacks its data): session and subject,
data quality, MEP overlays, motor thresholds (hunts stored by the closed-loop runner, and
thresholds from trials), recruitment curves, motor maps, hemispheric excitability,
parameters and software. What each shows and how: docs/report.md.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mepkit.errors import MepkitError, UsageError
from mepkit.params import Params
from mepkit.analysis._table import at_main_site
from mepkit.analysis.summary import TYPOGRAPHIC, interval, number

__all__ = ["Report", "ReportFigure", "Section", "build_report", "write_report", "SECTIONS",
           "OVERLAY_WINDOW_MS", "MAX_TRACES"]

logger = logging.getLogger("mepkit.report")

#: Section keys and titles, in the order of the page.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Session and subject"),
    ("quality", "Data quality"),
    ("overlays", "MEP overlays"),
    ("thresholds", "Motor thresholds"),
    ("recruitment", "Recruitment curves"),
    ("maps", "Motor maps"),
    ("excitability", "Hemispheric excitability"),
    ("parameters", "Parameters and software"),
)
#: Overlay traces are drawn from this long before the stimulus to this long after the end
#: of the response window (ms).
OVERLAY_WINDOW_MS = (20.0, 20.0)
#: Most traces drawn per overlay panel (the latest trials).
MAX_TRACES = 60
#: Fewest distinct intensities for thresholds (2) and recruitment curves (3) from trials.
MIN_INTENSITIES_THRESHOLD = 2
MIN_INTENSITIES_CURVE = 3
#: Fewest distinct coil positions of one hemisphere for a map.
MIN_MAP_SITES = 3

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1100px;padding:1em 2em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
nav ol{columns:2;font-size:.95em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
p.absent{color:#7a5b00;background:#fff8e0;padding:.3em .6em;border-left:3px solid #e0b000}
p.warn{color:#8a1f11;background:#fdecea;padding:.3em .6em;border-left:3px solid #c62828}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.82em}
.meta{color:#666;font-size:.9em}
"""


# ---------------------------------------------------------------------- structure
@dataclass
class ReportFigure:
    """One figure: a file-name-safe ``slug``, its title, PNG bytes and (if asked) SVG bytes."""

    slug: str
    title: str
    caption: str
    png: bytes
    svg: bytes | None = None


@dataclass
class Section:
    """One section of the report: HTML fragments (already escaped), figures, absences."""

    key: str
    title: str
    parts: list[str] = field(default_factory=list)
    figures: list[ReportFigure] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    def say_absent(self, text: str) -> None:
        self.absent.append(text)
        self.parts.append(f'<p class="absent">{_e(text)}</p>')


@dataclass
class Report:
    """A built report: its sections (in `SECTIONS` order) and where it came from."""

    title: str
    source: str
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)
    generated_utc: str = ""

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    @property
    def figures(self) -> list[ReportFigure]:
        return [f for s in self.sections for f in s.figures]

    def to_html(self) -> str:
        """The whole page as a string (UTF-8, self-contained)."""
        toc = "".join(f'<li><a href="#{s.key}">{_e(s.title)}</a>'
                      + (" <span class=\"meta\">(absent)</span>" if not s.figures
                         and s.absent and len(s.parts) == len(s.absent) else "") + "</li>"
                      for s in self.sections)
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               '<meta name="viewport" content="width=device-width, initial-scale=1">',
               f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>",
               f"<h1>{_e(self.title)}</h1>",
               f'<p class="meta">Source: {_e(self.source)} · generated {_e(self.generated_utc)}'
               f" by mepkit {_e(_version())}</p>"]
        for w in self.warnings:
            out.append(f'<p class="warn">warning: {_e(w)}</p>')
        out.append(f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>")
        for s in self.sections:
            out.append(f'<section id="{s.key}"><h2>{_e(s.title)}</h2>')
            out.extend(s.parts)
            out.append("</section>")
        out.append("</body></html>")
        return "\n".join(out)

    def write_figures(self, directory: str | os.PathLike) -> list[Path]:
        """Write each figure as ``<slug>.png`` and ``<slug>.svg``; returns the paths."""
        d = Path(directory)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{d}: cannot create the figures directory "
                             f"({exc.strerror or exc})") from None
        paths = []
        for f in self.figures:
            for ext, data in (("png", f.png), ("svg", f.svg)):
                if data is None:
                    continue
                p = d / f"{f.slug}.{ext}"
                try:
                    p.write_bytes(data)
                except OSError as exc:
                    raise UsageError(f"{p}: cannot write ({exc.strerror or exc})") from None
                paths.append(p)
        return paths


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _version() -> str:
    import mepkit

    return mepkit.__version__


def _fmt(v: Any, digits: int = 1) -> str:
    return number(v, digits, TYPOGRAPHIC)


def _ci(ci: Any, digits: int = 1) -> str:
    return interval(ci, digits, TYPOGRAPHIC)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
           numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    head = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
            for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _p(text: str) -> str:
    return f"<p>{_e(text)}</p>"


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:60] or "figure"


# ---------------------------------------------------------------------- input
@dataclass
class _Source:
    path: str
    kind: str
    record: Any = None
    recording: Any = None
    table: Any = None
    params: Params = field(default_factory=Params)
    params_origin: str = ""
    table_origin: str = ""
    no_raw: str = ""
    warnings: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.recording is not None and self.recording.source is not None:
            self.recording.close()
        elif self.record is not None:
            self.record.close()


def _load(path: str, params: Params | None, emg_stream: str | None,
          marker_stream: str | None) -> _Source:
    from mepkit.analyze import analyze_recording
    from mepkit.batch import _kind

    kind = _kind(path)
    if kind == "xdf":
        from mepkit.sources.xdf import read_xdf

        src = _Source(path, kind)
        src.recording = read_xdf(path, emg_stream=emg_stream, marker_stream=marker_stream)
        src.params = params or Params()
        src.params_origin = "given" if params is not None else "defaults (an XDF file stores none)"
        src.table = analyze_recording(src.recording, src.params)
        src.table_origin = "measured from the XDF file's raw EMG and markers"
        src.warnings.extend(src.recording.warnings)
        return src
    from mepkit.records import open_record
    from mepkit.sources.replay import recording_from_record

    rec = open_record(path)
    src = _Source(path, kind, record=rec)
    try:
        src.warnings.extend(rec.warnings)
        stored = rec.params
        src.params = params or stored or Params()
        src.params_origin = ("given" if params is not None else
                             "stored in the record" if stored is not None else
                             "defaults (the record stores none)")
        try:
            src.recording = recording_from_record(path, emg_stream=emg_stream, record=rec)
        except MepkitError as exc:
            src.no_raw = str(exc)
        has_table = len(rec.trials) > 0
        remeasure = src.recording is not None and len(src.recording.marker_times) and (
            not has_table or (params is not None and params != stored))
        if remeasure:
            src.table = analyze_recording(src.recording, src.params)
            src.table_origin = ("measured now from the record's raw EMG and markers "
                                + ("(the record holds no trial table)" if not has_table else
                                   "with the given parameters"))
        else:
            src.table = rec.trials
            src.table_origin = "the record's trial table (as measured during the session)"
    except BaseException:
        src.close()
        raise
    return src


# ---------------------------------------------------------------------- builder
class _Builder:
    def __init__(self, src: _Source, *, svg: bool, affected: str | None, n_boot: int,
                 seed: int, criterion_uv: float, floor_uv: float, dpi: int) -> None:
        self.src = src
        self.svg = svg
        self.affected = affected
        self.n_boot = n_boot
        self.seed = seed
        self.criterion_uv = criterion_uv
        self.floor_uv = floor_uv
        self.dpi = dpi
        t = src.table
        self.table = t
        self.site_table, self.n_off_site = at_main_site(t, MIN_MAP_SITES)
        st = self.site_table
        self.ok = st[~st["rejected"].astype(bool)] if len(st) else st
        self.slugs: set[str] = set()
        self.notes: list[str] = []

    # -- figures
    def figure(self, section: Section, slug: str, title: str, fig: Any, caption: str = "") -> None:
        from mepkit.report.figures import close_figure, render_figure

        base = _slug(slug)
        s, k = base, 2
        while s in self.slugs:
            s, k = f"{base}-{k}", k + 1
        self.slugs.add(s)
        try:
            png = render_figure(fig, "png", dpi=self.dpi)
            svg = render_figure(fig, "svg") if self.svg else None
        finally:
            close_figure(fig)
        rf = ReportFigure(s, title, caption, png, svg)
        section.figures.append(rf)
        data = base64.b64encode(png).decode("ascii")
        section.parts.append(
            f'<figure id="fig-{s}"><img alt="{_e(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(title)}{(': ' + _e(caption)) if caption else ''}</figcaption>"
            f"</figure>")

    def safe(self, section: Section, what: str, fn, *args, **kw) -> Any:
        """Run one part; an analysis error becomes a line in the section, not a failure."""
        try:
            return fn(*args, **kw)
        except (MepkitError, ValueError) as exc:
            section.parts.append(f'<p class="warn">{_e(what)}: {_e(exc)}</p>')
            logger.warning("report: %s: %s", what, exc)
            return None

    # -- helpers
    def say_off_site(self, section: Section) -> None:
        if self.n_off_site:
            section.parts.append(_p(
                f"{self.n_off_site} trial rows at other coil positions than each hemisphere's "
                "most used one (mapping trials) are left out"))

    def intensities(self, t) -> np.ndarray:
        if "intensity_pct_mso" not in t:
            return np.zeros(0)
        x = t["intensity_pct_mso"].to_numpy(float)
        return np.unique(x[np.isfinite(x)])

    # -- sections
    def summary(self) -> Section:
        s = Section(*SECTIONS[0])
        src, rec = self.src, self.src.record
        rows: list[tuple[str, Any]] = [("file", src.path)]
        if rec is not None:
            rows += [("kind", f"mepkit record, format v{rec.format_version}"),
                     ("written by", f"mepkit {rec.software_version}"),
                     ("created (UTC)", rec.created_utc or "?"),
                     ("closed cleanly", "yes" if rec.closed_cleanly else
                      "NO (still being written, or the writer crashed)"),
                     ("duration", f"{rec.duration_s:.1f} s")]
            for key in ("subject", "session"):
                info = getattr(rec, key)
                for k, v in info.items():
                    rows.append((f"{key}: {k}", v if isinstance(v, str) else json.dumps(v)))
                if not info:
                    rows.append((key, "not recorded"))
        else:
            r = src.recording
            rows += [("kind", "XDF recording"), ("duration", f"{r.duration_s:.1f} s"),
                     ("subject", "not recorded (XDF)")]
        s.parts.append(_table(("", ""), rows))
        st = []
        if rec is not None:
            for name, stream in rec.streams.items():
                st.append((name, stream.type or "?", stream.n_channels,
                           f"{stream.nominal_srate_hz:g}", stream.n_samples,
                           ", ".join(f"{a} [{u}]" for a, u in zip(stream.channel_labels,
                                                                   stream.units))))
        elif src.recording is not None:
            r = src.recording
            st.append((r.emg_stream.get("name", "EMG"), r.emg_stream.get("type", ""),
                       len(r.channel_labels), f"{r.sfreq_hz:g}", len(r.timestamps),
                       ", ".join(f"{a} [{u}]" for a, u in zip(r.channel_labels, r.units))))
        if st:
            s.parts.append("<h3>Streams</h3>" + _table(
                ("stream", "type", "channels", "rate (Hz)", "samples", "labels [units]"), st,
                numeric=(2, 3, 4)))
        else:
            s.parts.append(_p("streams: none"))
        n_markers = (len(rec.markers.times) if rec is not None else
                     len(src.recording.marker_times))
        t = self.table
        if len(t):
            n_tr, n_ch = t["trial"].nunique(), t["channel"].nunique()
            det = int(np.sum(t["detected"].astype(bool) & ~t["rejected"].astype(bool)))
            s.parts.append(_p(f"{n_markers} markers; {n_tr} trials × {n_ch} channels "
                              f"({len(t)} rows; {det} with an MEP, "
                              f"{int(t['rejected'].astype(bool).sum())} rejected). "
                              f"Trials: {src.table_origin}."))
        else:
            s.say_absent(f"no trials in this file ({n_markers} markers)")
        runs = self.runs()
        if runs:
            s.parts.append("<h3>Protocol runs</h3>" + _table(
                ("#", "protocol", "pulses", "counted", "ended", "result"),
                [(k + 1, r["protocol"], len(r["steps"]),
                  sum(bool(x.get("counted", True)) for x in r["steps"]),
                  (r["result"] or {}).get("reason", "no result stored"),
                  ((r["result"] or {}).get("estimate") or {}).get("message", ""))
                 for k, r in enumerate(runs)], numeric=(0, 2, 3)))
        elif rec is not None:
            s.say_absent("no protocol runs in this record")
        return s

    def runs(self) -> list[dict[str, Any]]:
        """Protocol steps split into runs (a run's step index restarts at 0), each with
        the result stored after it (matched by time and number of pulses)."""
        if hasattr(self, "_runs"):
            return self._runs
        rec = self.src.record
        runs: list[dict[str, Any]] = []
        if rec is not None and rec.protocol_steps:
            cur: list[Any] = []
            groups = []
            for st in rec.protocol_steps:
                idx = st.data.get("step")
                prev = cur[-1].data.get("step") if cur else None
                restart = isinstance(idx, int) and isinstance(prev, int) and idx <= prev
                other = cur and st.data.get("protocol") != cur[-1].data.get("protocol")
                if cur and (restart or other):
                    groups.append(cur)
                    cur = []
                cur.append(st)
            if cur:
                groups.append(cur)
            results = _result_rows(rec)
            used: set[int] = set()
            for g in groups:
                t_last = g[-1].time_s
                named = g[-1].data.get("protocol")  # the runner names each step's run
                match = None
                for i, (t_res, name, doc) in enumerate(results):
                    if i in used or not isinstance(doc, dict):
                        continue
                    n = doc.get("n_pulses")
                    if named is not None and name != named:
                        continue
                    if t_res >= t_last - 1e-6 and (n is None or n == len(g)):
                        match = i
                        break
                res = results[match][2] if match is not None else None
                if match is not None:
                    used.add(match)
                name = (results[match][1] if match is not None else
                        g[-1].data.get("protocol") or "unnamed protocol")
                runs.append({"protocol": str(name), "steps": [x.data for x in g],
                             "time_s": [x.time_s for x in g], "result": res})
        self._runs = runs
        return runs

    def quality(self) -> Section:
        from mepkit.report.figures import plot_background

        s = Section(*SECTIONS[1])
        t = self.table
        if len(t):
            rej = t["rejected"].astype(bool)
            reasons = t["reject_reason"].astype(str).where(rej, "")
            kinds = sorted(set(reasons[rej].replace("", "unspecified")))
            rows = []
            for ch, g in t.groupby(t["channel"].astype(str), sort=False):
                r = g["rejected"].astype(bool)
                rr = g["reject_reason"].astype(str)[r].replace("", "unspecified")
                rows.append((ch, len(g), int(r.sum()), *[int((rr == k).sum()) for k in kinds]))
            s.parts.append("<h3>Rejections</h3>" + _table(
                ("channel", "trials", "rejected", *kinds), rows,
                numeric=tuple(range(1, 3 + len(kinds)))))
            if not rej.any():
                s.parts.append(_p("no trial was rejected"))
        else:
            s.say_absent("no trials: no rejections or background EMG to show")
        s.parts.append("<h3>Gaps and outages</h3>")
        rec = self.src.record
        ev = rec.events if rec is not None else None
        t0 = float(np.nanmin(t["stim_time_s"])) if len(t) else None
        if ev is not None and len(ev):
            ref = t0 if t0 is not None else float(ev["time_s"].min())
            s.parts.append(_table(("time (s, from first trial)", "kind", "detail"),
                                  [(f"{tt - ref:.3f}", k, _short(d)) for tt, k, d in
                                   zip(ev["time_s"], ev["kind"], ev["detail"])], numeric=(0,)))
        elif rec is not None:
            s.parts.append(_p("no gaps or outages recorded"))
        else:
            s.say_absent("an XDF file records no gap events; trials in a timestamp gap are "
                         "rejected with reason 'gap' (above)")
        if len(t) and "background_rms_uv" in t:
            s.parts.append("<h3>Background EMG over time</h3>")
            gaps = ev[ev["kind"].astype(str).isin(("gap", "outage"))] if ev is not None and \
                len(ev) else None
            self.figure(s, "quality-background", "Background EMG per trial",
                        plot_background(t, events=gaps, limit_uv=self.src.params.background_limit_uv,
                                        t0_s=t0),
                        "pre-stimulus RMS of each trial and channel; x: rejected trials; "
                        "dashed: rejection limit; vertical lines: gaps (dotted), outages")
        return s

    def overlays(self) -> Section:
        from mepkit.report.figures import MAX_PANELS, plot_overlays

        s = Section(*SECTIONS[2])
        t, r = self.table, self.src.recording
        if not len(t):
            s.say_absent("no trials: no MEP overlays")
            return s
        if r is None:
            s.say_absent(f"no raw EMG stream to cut epochs from ({self.src.no_raw})")
            return s
        p = self.src.params
        from mepkit.units import channel_scales

        labels = list(r.channel_labels)
        scales, _, _ = channel_scales(labels, list(r.units), source=r.path)
        dt_ms = 1000.0 / r.sfreq_hz
        bg0, bg1 = p.background_window_ms
        show0 = -OVERLAY_WINDOW_MS[0]
        show1 = p.response_window_ms[1] + OVERLAY_WINDOW_MS[1]
        pre = int(math.ceil(max(-bg0, -show0) / dt_ms)) + 1
        post = int(math.ceil(show1 / dt_ms)) + 1
        rel_ms = np.arange(-pre, post) * dt_ms
        bg_sel = (rel_ms >= bg0) & (rel_ms < bg1)
        art = (rel_ms >= p.artifact_window_ms[0]) & (rel_ms <= p.artifact_window_ms[1])
        keep = rel_ms >= show0
        from mepkit.analyze import _assign_markers, recording_clock

        # samples on the stream's fitted clock, as the measurement timed them
        fit = recording_clock(r, p)
        ts = fit.times()
        trials = t.drop_duplicates("trial").sort_values("stim_time_s")
        cond = _condition_names(trials)
        chans = [c for c in dict.fromkeys(t["channel"].astype(str)) if c in labels]
        if not chans:
            s.say_absent("the trial table's channels are not in the raw stream")
            return s
        if len(chans) > MAX_PANELS:
            s.parts.append(_p(f"the first {MAX_PANELS} of {len(chans)} channels are shown"))
            chans = chans[:MAX_PANELS]
        idx = [labels.index(c) for c in chans]
        # a clock that jumps back (reset): each trial is looked up on its own part of the
        # stream, assigned as the measurement assigned its marker
        segments = fit.timelines
        in_order = trials.sort_values("trial")
        stims = in_order["stim_time_s"].to_numpy(float)
        seg_of = dict(zip(in_order["trial"].to_numpy(int),
                          _assign_markers(stims, ts, segments) if len(segments) > 1
                          else np.zeros(len(stims), int)))
        epochs: dict[int, np.ndarray] = {}
        for trial, st in zip(trials["trial"].to_numpy(int), trials["stim_time_s"].to_numpy(float)):
            k = int(seg_of.get(int(trial), -1))
            if not math.isfinite(st) or k < 0:
                continue
            lo_i, hi_i = segments[k]
            i = lo_i + int(np.searchsorted(ts[lo_i:hi_i], st))
            a, b = i - pre, i + post
            if a < lo_i or b > hi_i:
                continue
            x = np.asarray(r.data[a:b], float)[:, idx] * np.asarray(scales, float)[idx]
            x = x - np.nanmean(x[bg_sel], axis=0)
            x[art] = np.nan
            epochs[int(trial)] = x[keep].T  # (channel, samples)
        if not epochs:
            s.say_absent("no trial's epoch lies within the raw stream")
            return s
        s.parts.append(_p(
            "Raw EMG around each stimulus with its offset removed (mean of the background "
            f"window {bg0:g}…{bg1:g} ms subtracted); samples in the artifact window "
            f"({p.artifact_window_ms[0]:g}…{p.artifact_window_ms[1]:g} ms, grey) are not drawn. "
            "Not the Pipeline's filtered epoch: no mains fit, detrend or low-pass. Colour: "
            "intensity; dotted red: rejected on that channel; black: mean of accepted; "
            f"green: response window. At most the latest {MAX_TRACES} trials per panel."))
        rej = {(int(a), str(c)): bool(v) for a, c, v in
               zip(t["trial"], t["channel"], t["rejected"])}
        for name in dict.fromkeys(cond.values()):
            ids = [int(k) for k, v in cond.items() if v == name and int(k) in epochs][-MAX_TRACES:]
            if not ids:
                continue
            inten = trials.set_index("trial").loc[ids, "intensity_pct_mso"].to_numpy(float) \
                if "intensity_pct_mso" in trials else np.full(len(ids), np.nan)
            panels = []
            for c, ch in enumerate(chans):
                panels.append({"title": f"{name} · {ch}",
                               "traces_uv": np.stack([epochs[k][c] for k in ids]),
                               "rejected": np.array([bool(rej.get((k, ch), False)) for k in ids]),
                               "intensity_pct_mso": inten})
            s.parts.append(f"<h3>{_e(name)}</h3>")
            self.figure(s, f"overlays-{name}", f"MEP overlays: {name}",
                        plot_overlays(rel_ms[keep], panels,
                                      response_window_ms=p.response_window_ms,
                                      artifact_window_ms=p.artifact_window_ms))
        return s

    def thresholds(self) -> Section:
        from mepkit.report.figures import MAX_PANELS, plot_hunt, plot_threshold_trials

        s = Section(*SECTIONS[3])
        hunts = [r for r in self.runs() if _is_hunt(r)]
        if hunts:
            rows = []
            for k, run in enumerate(hunts, 1):
                res = run["result"] or {}
                est = res.get("estimate") or {}
                crit = _crit(est, res, self.criterion_uv)
                first = run["steps"][0] if run["steps"] else {}
                where = " ".join(str(v) for v in (first.get("hemisphere"), first.get("channel"))
                                 if v)
                title = f"Hunt {k}: {run['protocol']}" + (f" ({where})" if where else "")
                rows.append((k, run["protocol"], where, len(run["steps"]),
                             _fmt(est.get("threshold_pct_mso")),
                             _ci((est.get("ci_low_pct_mso"), est.get("ci_high_pct_mso")))
                             if est.get("ci_low_pct_mso") is not None else "",
                             est.get("message") or res.get("reason") or "no result stored"))
                s.parts.append(f"<h3>{_e(title)}</h3>")
                self.figure(s, f"hunt-{k}", title,
                            plot_hunt(run["steps"], est, criterion_uv=crit,
                                      title=est.get("message", "") or "no result stored"),
                            f"criterion {crit:g} µV")
            s.parts.insert(0, "<h3>Threshold hunts</h3>" + _table(
                ("#", "protocol", "hemisphere / channel", "pulses", "threshold (%MSO)",
                 "interval", "result"), rows, numeric=(0, 3, 4)))
        else:
            s.say_absent("no threshold hunt in this record" if self.src.record is not None
                         else "no threshold hunt (an XDF file stores no protocol steps)")
        t = self.ok
        if len(self.intensities(t)) >= MIN_INTENSITIES_THRESHOLD:
            from mepkit.analysis import estimate_thresholds

            self.say_off_site(s)
            res = self.safe(s, "thresholds from trials", estimate_thresholds, self.site_table,
                            criterion_uv=self.criterion_uv)
            if res is not None and len(res):
                s.parts.append("<h3>Thresholds from trials</h3>")
                s.parts.append(_p(
                    f"The 50 % point of P(MEP ≥ {self.criterion_uv:g} µV) against intensity, "
                    "per hemisphere, channel and condition (mepkit.analysis.estimate_thresholds;"
                    " rejected trials left out; interval: profile likelihood)."))
                by = [c for c in ("hemisphere", "channel", "condition") if c in res]
                s.parts.append(_table(
                    (*by, "trials", "MEPs", "RMT (%MSO)", "interval", "status / note"),
                    [(*[row[c] for c in by], row["n_trials"], row["n_mep"],
                      _fmt(row["threshold_pct_mso"]),
                      _ci((row["ci_low"], row["ci_high"])) if row["ci_low"] is not None
                      and not _isnan(row["ci_low"]) else "",
                      row["status"] + (f": {row['message']}" if row["message"] else ""))
                     for _, row in res.iterrows()], numeric=(len(by), len(by) + 1, len(by) + 2)))
                show = [row for _, row in res.iterrows() if row["status"] == "ok"
                        or (row["n_mep"] > 0 and row["n_trials"] >= 5)][:MAX_PANELS]
                if show:
                    groups = [self._group(row, by) | {"estimate": row["estimate"]}
                              for row in show]
                    self.figure(s, "thresholds-from-trials", "Thresholds from trials",
                                plot_threshold_trials(groups, criterion_uv=self.criterion_uv),
                                "amplitude against intensity; dashed: criterion; orange: "
                                "threshold and its interval; x: rejected")
        else:
            s.say_absent("no threshold from trials: the accepted trials are not at "
                         f"{MIN_INTENSITIES_THRESHOLD} or more intensities")
        return s

    def _group(self, row: Any, by: Sequence[str]) -> dict[str, Any]:
        from mepkit.analysis._table import prepared

        t = prepared(self.site_table, by)
        sel = np.ones(len(t), bool)
        for c in by:
            sel &= (t[c] == row[c]).to_numpy()
        g = t[sel]
        return {"title": " · ".join(str(row[c]) for c in by if str(row[c])),
                "intensity_pct_mso": g["intensity_pct_mso"].to_numpy(float),
                "amplitude_uv": g["amplitude_uv"].to_numpy(float),
                "rejected": g["rejected"].to_numpy(bool)}

    def recruitment(self) -> Section:
        from mepkit.report.figures import MAX_PANELS, plot_recruitment

        s = Section(*SECTIONS[4])
        if len(self.intensities(self.ok)) < MIN_INTENSITIES_CURVE:
            s.say_absent("no recruitment curve: the accepted trials are not at "
                         f"{MIN_INTENSITIES_CURVE} or more intensities")
            return s
        from mepkit.analysis import fit_recruitment_curves

        self.say_off_site(s)
        res = self.safe(s, "recruitment curves", fit_recruitment_curves, self.site_table,
                        floor_uv=self.floor_uv)
        if res is None or not len(res):
            return s
        by = [c for c in ("hemisphere", "channel", "condition") if c in res]
        s.parts.append(_p(
            "Boltzmann curves of the median MEP against intensity, per hemisphere, channel and "
            f"condition (mepkit.analysis.fit_recruitment_curves; amplitudes below "
            f"{self.floor_uv:g} µV are no measurable MEP; intervals: profile likelihood)."))
        rows = []
        for _, row in res.iterrows():
            f = row["fit"]
            rows.append((*[row[c] for c in by], row["n_trials"],
                         f"{_fmt(f.mep_max_uv, 0)} {_ci(f.mep_max_uv_ci, 0)}" if f.ok else "–",
                         f"{_fmt(f.i50_pct_mso)} {_ci(f.i50_pct_mso_ci)}" if f.ok else "–",
                         f"{_fmt(f.slope_pct_mso)} {_ci(f.slope_pct_mso_ci)}" if f.ok else "–",
                         f.status + (f": {row['message']}" if row["message"] else "")))
        s.parts.append(_table((*by, "trials", "MEPmax (µV)", "I50 (%MSO)", "slope (%MSO)",
                               "status / note"), rows, numeric=(len(by),)))
        show = [row for _, row in res.iterrows() if row["fit"].ok][:MAX_PANELS]
        if show:
            groups = [self._group(row, by) | {"fit": row["fit"]} for row in show]
            self.figure(s, "recruitment-curves", "Recruitment curves",
                        plot_recruitment(groups, floor_uv=self.floor_uv),
                        "amplitudes (no MEP drawn at half the floor), the fitted median curve "
                        "and the interval of its midpoint I50")
        else:
            s.parts.append(_p("no group has a fitted curve to draw"))
        return s

    def maps(self) -> Section:
        s = Section(*SECTIONS[5])
        t = self.table
        if not len(t) or not {"x_mm", "y_mm"} <= set(t.columns):
            s.say_absent("no map: no trial has a coil position")
            return s
        pos = t[np.isfinite(t["x_mm"].to_numpy(float)) & np.isfinite(t["y_mm"].to_numpy(float))]
        hemis = pos["hemisphere"].fillna("").astype(str) if "hemisphere" in pos else None
        found: dict[str, Any] = {}
        rows = []
        for h in ("left", "right", ""):
            sub = pos[hemis == h] if hemis is not None else pos
            if not len(sub):
                continue
            n_sites = len(set(zip(sub["x_mm"].round(3), sub["y_mm"].round(3))))
            if n_sites < MIN_MAP_SITES:
                continue
            ok = sub[~sub["rejected"].astype(bool)]
            med = ok.groupby(ok["channel"].astype(str))["amplitude_uv"].median()
            if not len(med):
                continue
            ch = str(med.idxmax())
            from mepkit.analysis.maps import map_metrics_from_table

            m = self.safe(s, f"map ({h or 'no hemisphere'}, {ch})", map_metrics_from_table,
                          sub, channel=ch, hemisphere=h if hemis is not None else None,
                          n_boot=max(self.n_boot, 0), seed=self.seed,
                          missing_position="exclude")
            if m is None:
                continue
            found[h] = (m, ch)
            ci = m.ci
            rows.append((h or "–", ch, m.n_trials, m.n_sites, m.n_responsive,
                         _fmt(m.area_mm2, 0) + " " + _ci(ci.get("area_mm2"), 0),
                         _fmt(m.volume_uv, 0) + " " + _ci(ci.get("volume_uv"), 0),
                         f"({_fmt(m.cog_mm[0])}, {_fmt(m.cog_mm[1])})",
                         f"({_fmt(m.hotspot_mm[0])}, {_fmt(m.hotspot_mm[1])}) "
                         f"{_fmt(m.hotspot_uv, 0)} µV", "; ".join(m.notes)))
        if not found:
            s.say_absent(f"no map: no hemisphere has trials at {MIN_MAP_SITES} or more coil "
                         "positions")
            return s
        s.parts.append(_p(
            "Per hemisphere, the channel with the largest median MEP at the mapped positions "
            "(mepkit.analysis.maps.map_metrics; CoG: amplitude-weighted mean position; "
            f"intervals: bootstrap, {self.n_boot} resamples)."))
        s.parts.append(_table(("hemisphere", "channel", "trials", "sites", "responsive",
                               "area (mm²)", "volume (µV)", "CoG (mm)", "hotspot (mm)",
                               "notes"), rows, numeric=(2, 3, 4)))
        from mepkit.report.maps import plot_hemispheres, plot_map

        if "left" in found and "right" in found:
            (ml, cl), (mr, cr) = found["left"], found["right"]
            self.figure(s, "maps-hemispheres", "Motor maps, both hemispheres",
                        plot_hemispheres(ml, mr, titles=(f"left hemisphere ({cl})",
                                                         f"right hemisphere ({cr})")),
                        "one colour scale; +: centre of gravity; x: hotspot")
        else:
            for h, (m, ch) in found.items():
                name = f"{h} hemisphere" if h else "map"
                self.figure(s, f"map-{h or 'all'}", f"Motor map: {name} ({ch})",
                            plot_map(m, title=f"{name} ({ch})"),
                            "+: centre of gravity; x: hotspot")
            if "" not in found:
                other = "right" if "left" in found else "left"
                s.say_absent(f"no map of the {other} hemisphere in this file")
        return s

    def excitability(self) -> Section:
        s = Section(*SECTIONS[6])
        t = self.site_table
        if not len(t) or "hemisphere" not in t or "intensity_pct_mso" not in t:
            s.say_absent("no hemispheric excitability: no trials with hemisphere and intensity")
            return s
        h = t["hemisphere"].fillna("").astype(str).str.strip().str.lower()
        use = t[h.isin(("left", "right", "l", "r", "lh", "rh"))
                & np.isfinite(t["intensity_pct_mso"].to_numpy(float))]
        sides = set(use.loc[~use["rejected"].astype(bool), "hemisphere"].str.lower().str[0])
        if sides != {"l", "r"}:
            s.say_absent("no hemispheric excitability: it needs accepted trials with intensities "
                         "from both hemispheres"
                         + (f" (this file has the {'left' if 'l' in sides else 'right'} only)"
                            if sides else ""))
            return s
        self.say_off_site(s)
        if len(use) < len(t):
            s.parts.append(_p(f"{len(t) - len(use)} of {len(t)} trial rows have no hemisphere "
                              "or intensity and are left out"))
        affected = self.affected
        rec = self.src.record
        if affected is None and rec is not None:
            lh = str(rec.subject.get("lesioned_hemisphere", "")).lower()
            affected = lh if lh in ("left", "right") else None
        from mepkit.analysis import hemispheric_excitability

        res = self.safe(s, "hemispheric excitability", hemispheric_excitability, use,
                        affected=affected, criterion_uv=self.criterion_uv,
                        floor_uv=self.floor_uv, n_boot=max(self.n_boot, 50), seed=self.seed)
        if res is None:
            return s
        s.parts.append(_excitability_html(res))
        return s

    def parameters(self) -> Section:
        s = Section(*SECTIONS[7])
        p = self.src.params
        s.parts.append(_p(f"Measurement parameters ({self.src.params_origin}); defaults and "
                          "their sources: docs/methods.md."))
        s.parts.append(_table(("parameter", "value"),
                              [(k, json.dumps(v)) for k, v in p.to_dict().items()]))
        rows = [("report written by", f"mepkit {_version()}")]
        if self.src.record is not None:
            rows.append(("record written by", f"mepkit {self.src.record.software_version}"))
        rows += [("analysis: MEP criterion", f"{self.criterion_uv:g} µV"),
                 ("analysis: floor of curves", f"{self.floor_uv:g} µV"),
                 ("analysis: bootstrap", f"{self.n_boot} resamples, seed {self.seed}"),
                 ("trials", self.src.table_origin)]
        import platform

        rows.append(("python", platform.python_version()))
        s.parts.append("<h3>Software</h3>" + _table(("", ""), rows))
        runs = [r for r in self.runs() if r["result"]]
        for k, run in enumerate(runs, 1):
            res = run["result"]
            opts = {key: res[key] for key in ("options", "runner") if key in res}
            if opts:
                s.parts.append(f"<h3>{_e(run['protocol'])}: settings</h3>"
                               f"<pre>{_e(json.dumps(opts, indent=2, default=str))}</pre>")
        return s


def _is_hunt(run: dict[str, Any]) -> bool:
    est = (run["result"] or {}).get("estimate")
    if isinstance(est, dict):
        return "threshold_pct_mso" in est
    xs = {_r(s.get("intensity_pct_mso")) for s in run["steps"]}
    pos = {(_r(s.get("x_mm")), _r(s.get("y_mm"))) for s in run["steps"]}
    return len(xs - {None}) >= 2 and len(pos) <= 1


def _r(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return round(x, 3) if math.isfinite(x) else None


def _crit(est: dict[str, Any], res: dict[str, Any], default: float) -> float:
    for v in (est.get("criterion_uv"), (res.get("options") or {}).get("criterion_uv")):
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return default


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def _short(text: Any, n: int = 200) -> str:
    s = str(text)
    return s if len(s) <= n else s[:n] + "…"


def _result_rows(rec: Any) -> list[tuple[float, str, Any]]:
    """``(time_s, name, result dict)`` of every stored protocol result, in stored order."""
    from mepkit.records.reader import _read_table

    if "protocol/results" not in rec.file:
        return []
    try:
        cols, _ = _read_table(rec.file["protocol/results"])
    except (KeyError, OSError, RuntimeError, ValueError, TypeError, IndexError):
        return []
    out = []
    for t, name, text in zip(cols.get("time_s", []), cols.get("name", []), cols.get("json", [])):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        out.append((float(t), str(name), doc))
    return out


def _condition_names(trials: Any) -> dict[int, str]:
    """Overlay group of each trial: hemisphere and condition (or 'all trials')."""
    out = {}
    for _, row in trials.iterrows():
        parts = []
        h = str(row.get("hemisphere", "") or "")
        c = str(row.get("condition", "") or "")
        if h:
            parts.append(f"{h} hemisphere")
        if c:
            parts.append(c)
        out[int(row["trial"])] = ", ".join(parts) or "all trials"
    return out


def _excitability_html(res: Any) -> str:
    """Tables of a HemisphericExcitability, as ``mepkit excitability`` prints it."""
    from mepkit.analysis.summary import TYPOGRAPHIC, excitability_rows

    rows = excitability_rows(res, TYPOGRAPHIC)
    out = [f"<h3>Per hemisphere and channel (intervals {rows.ci_level * 100:g} %)</h3>",
           _table(("hemisphere", "channel", "trials", "RMT (%MSO)", "MEPmax (µV)",
                   "I50 (%MSO)", "slope (%MSO)", "notes"),
                  [(*r[:-1], "; ".join(r[-1])) for r in rows.sides], numeric=(2,))]
    out += [f"<h3>Ratios ({_e(rows.role)})</h3>",
            _table(("muscle", "channels", "measure", "value [interval]", "note"),
                   [(m, c, "–" if name is None else name, v, note)
                    for m, c, name, v, note in rows.ratios])]
    if rows.ihi:
        out += ["<h3>Interhemispheric inhibition (conditioned / test-alone MEP)</h3>",
                _table(("test hemisphere", "channel", "condition", "ratio", "note"), rows.ihi)]
    for note in rows.notes:
        out.append(_p(f"note: {note}"))
    return "\n".join(out)


# ---------------------------------------------------------------------- entry points
def build_report(path: str | os.PathLike, *, params: Params | None = None,
                 emg_stream: str | None = None, marker_stream: str | None = None,
                 affected: str | None = None, n_boot: int = 1000, seed: int = 0,
                 criterion_uv: float = 50.0, floor_uv: float = 30.0, svg: bool = False,
                 title: str | None = None, dpi: int = 100) -> Report:
    """Build the report of a mepkit record (.h5) or an XDF recording.

    Parameters
    ----------
    path : path
        The file.
    params : Params, optional
        Measurement parameters. Default: a record's stored trial table as measured live
        (its stored parameters); ``Params()`` for an XDF file. Given parameters that differ
        from a record's own re-measure its raw EMG.
    emg_stream, marker_stream : str, optional
        Stream names (default: the streams of type EMG and Markers).
    affected : {'left', 'right'}, optional
        Lesioned hemisphere for the excitability ratios (default: the record's subject
        field ``lesioned_hemisphere``, else left / right).
    n_boot : int
        Bootstrap resamples of the excitability ratios and map intervals.
    seed : int
        Bootstrap seed.
    criterion_uv, floor_uv : float
        MEP criterion of thresholds (50 µV) and floor of curves (30 µV); sources in
        docs/methods.md.
    svg : bool
        Also render every figure as SVG (for `Report.write_figures`).
    title : str, optional
    dpi : int
        Resolution of the embedded PNGs.

    Returns
    -------
    Report

    Raises
    ------
    MepkitError
        The file cannot be read (one line naming it).
    """
    path = os.fspath(path)
    src = _load(path, params, emg_stream, marker_stream)
    try:
        b = _Builder(src, svg=svg, affected=affected, n_boot=int(n_boot), seed=int(seed),
                     criterion_uv=float(criterion_uv), floor_uv=float(floor_uv), dpi=int(dpi))
        sections = [b.summary(), b.quality(), b.overlays(), b.thresholds(), b.recruitment(),
                    b.maps(), b.excitability(), b.parameters()]
    finally:
        src.close()
    rec_subject = ""
    if src.record is not None:
        ident = src.record.subject.get("identifier") or src.record.subject.get("id")
        rec_subject = f" — {ident}" if ident else ""
    return Report(title or f"mepkit session report: {os.path.basename(path)}{rec_subject}",
                  path, sections, warnings=list(dict.fromkeys(src.warnings)),
                  generated_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))


def write_report(path: str | os.PathLike, out: str | os.PathLike, *,
                 figures_dir: str | os.PathLike | None = None, **options: Any) -> Report:
    """Build the report of ``path`` and write it to ``out`` (HTML); with ``figures_dir``
    also each figure as PNG and SVG. ``options``: those of :func:`build_report`."""
    parent = Path(out).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{out}: cannot write the report (no directory {parent})")
    report = build_report(path, svg=figures_dir is not None, **options)
    text = report.to_html()
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    if figures_dir is not None:
        report.write_figures(figures_dir)
    return report
