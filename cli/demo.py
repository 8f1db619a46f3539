"""``mepkit demo``: a whole session on the virtual subject, closed loop over LSL.

One live session, one record: the virtual subject (``stroke-mild`` by default) is published
over LSL on loopback (`mepkit.sim.outlet.SimulatedAmplifier`), read back like a real
amplifier by one `mepkit.live.LiveSession`, and fired by its simulated stimulator. On each
hemisphere in turn the closed-loop runner (`mepkit.protocols.runner`) runs

1. a hotspot search (`mepkit.protocols.mapping.make_hotspot_search`),
2. the resting motor threshold (`mepkit.make_hunter`, Bayesian by default), the coil held
   at the hotspot found,
3. a recruitment curve (`mepkit.protocols.recruitment.RecruitmentProtocol`) around it,
4. a grid map centred on the hotspot (`mepkit.protocols.mapping.GridMapping`),

then the hemispheric excitability summary (`mepkit.analysis.hemispheric_excitability`) is
computed from the threshold and curve trials and stored in the record too. Every step of
every protocol and every result goes to the one record; the HTML report is written next
to it (`mepkit report`, when this installation has it). Settings: the smallest (default,
a few minutes), ``--quick`` (fewer pulses, for tests) and ``--full`` (a realistic session:
7x7 maps of 5 pulses per site, 5-6 s between pulses). ``--offline`` analyses the bundled
sample recording instead. Defaults and their sources: docs/methods.md, "The demo session".
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mepkit_cli._common import add_view_options, start_view

__all__ = ["DemoSetting", "SETTINGS", "add_parser", "run", "write_report"]

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_XDF = ROOT / "sample_data" / "sample_session.xdf"
MUSCLES = ("FDI", "APB", "ADM")
HEMISPHERES = ("left", "right")


@dataclass(frozen=True)
class DemoSetting:
    """How many pulses each protocol of the demo gives, and how far apart."""

    name: str
    hotspot_max_pulses: int
    hotspot_min_pulses: int
    rmt_max_pulses: int
    rc_levels_pct_rmt: tuple[float, ...]
    rc_per_level: int
    grid: str
    per_site: int
    interval_s: float
    jitter: float
    n_boot: int

    @property
    def planned_pulses(self) -> int:
        """Upper bound of the pulses of both hemispheres (rejections aside)."""
        rows, rest = self.grid.split("x", 1)
        cols = rest.split("@", 1)[0]
        per_side = (self.hotspot_max_pulses + self.rmt_max_pulses
                    + len(self.rc_levels_pct_rmt) * self.rc_per_level
                    + int(rows) * int(cols) * self.per_site)
        return 2 * per_side


#: Recruitment levels (% RMT): 90-150 in steps of 10, as `mepkit recruitment`.
RC_LEVELS_PCT_RMT = (90.0, 100.0, 110.0, 120.0, 130.0, 140.0, 150.0)

SETTINGS = {
    # the default of `mepkit demo` and `make demo`: every protocol, at its smallest
    "smallest": DemoSetting("smallest", hotspot_max_pulses=15, hotspot_min_pulses=12,
                            rmt_max_pulses=20, rc_levels_pct_rmt=RC_LEVELS_PCT_RMT,
                            rc_per_level=2, grid="5x5@10", per_site=1, interval_s=0.4,
                            jitter=0.5, n_boot=1000),
    # for the tests: the same session with fewer pulses
    "quick": DemoSetting("quick", hotspot_max_pulses=9, hotspot_min_pulses=9,
                         rmt_max_pulses=12,
                         rc_levels_pct_rmt=(90.0, 105.0, 120.0, 135.0, 150.0),
                         rc_per_level=1, grid="3x3@10", per_site=1, interval_s=0.4,
                         jitter=0.5, n_boot=200),
    # a realistic session: the protocols' own defaults and >= 5 s between pulses
    "full": DemoSetting("full", hotspot_max_pulses=20, hotspot_min_pulses=12,
                        rmt_max_pulses=30, rc_levels_pct_rmt=RC_LEVELS_PCT_RMT,
                        rc_per_level=10, grid="7x7@10", per_site=5, interval_s=5.0,
                        jitter=0.2, n_boot=1000),
}
#: Starting intensity of the hotspot search (%MSO): above most resting thresholds, so the
#: opening design sees MEPs; the search raises it when it sees none.
HOTSPOT_INTENSITY_PCT_MSO = 70.0
#: The area searched for the hotspot (mm, the subject's frame of each hemisphere).
HOTSPOT_BOUNDS_MM = ((-20.0, 20.0), (-20.0, 20.0))
#: Map intensity (% RMT).
MAP_PCT_RMT = 120.0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="a whole session on the virtual subject: hotspot, RMT, recruitment, "
                     "maps, excitability (about 2 minutes)",
        description="Run a complete session against the virtual subject over LSL on this "
                    "machine: on each hemisphere a hotspot search, the resting motor "
                    "threshold, a recruitment curve and a map, then the hemispheric "
                    "excitability summary; everything goes into one record, and the report "
                    "next to it. The smallest setting (default) fires pulses 0.4-0.6 s "
                    "apart, which the virtual subject allows; a real session keeps at least "
                    "5 s (--full). Defaults and sources: docs/methods.md, 'The demo session'.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--full", action="store_true",
                   help="a realistic session: 7x7 maps with 5 pulses per site, 10 trials per "
                        "recruitment level, 5-6 s between pulses (about 70 minutes)")
    g.add_argument("--quick", action="store_true",
                   help="fewer pulses (3x3 maps, 4 recruitment levels; for tests)")
    p.add_argument("--preset", default="stroke-mild",
                   choices=("healthy", "stroke-mild", "stroke-severe"),
                   help="virtual subject (default stroke-mild)")
    p.add_argument("--lesioned", default="right", choices=HEMISPHERES,
                   help="lesioned hemisphere of the stroke presets (default right)")
    p.add_argument("--method", default="bayes",
                   choices=("bayes", "ml-pest", "mills-nithi", "rossini-rothwell"),
                   help="threshold hunting method (default bayes)")
    p.add_argument("--interval", type=float, metavar="S",
                   help="shortest time between pulses (default 0.4 s; 5 s with --full)")
    p.add_argument("--jitter", type=float, metavar="FRACTION",
                   help="intervals drawn from [S, S * (1 + FRACTION)] (default 0.5; 0.2 "
                        "with --full)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the virtual subject and of the protocols (default 0)")
    p.add_argument("-o", "--output", metavar="FILE.h5",
                   help="the record (default out/demo-<time>.h5; replaced if it exists)")
    p.add_argument("--report", metavar="FILE.html",
                   help="the report (default: the record's name with .html)")
    p.add_argument("--no-report", action="store_true", help="write no report")
    add_view_options(p)
    p.add_argument("--offline", action="store_true",
                   help="skip LSL: analyse the sample recording instead")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------- offline
def _offline(reason: str) -> int:
    from mepkit_cli.main import build_parser

    print(f"mepkit demo: {reason}; analysing the sample recording instead\n", file=sys.stderr)
    if not SAMPLE_XDF.exists():
        print(f"mepkit demo: {SAMPLE_XDF} is missing too", file=sys.stderr)
        return 1
    from mepkit_cli import analyze

    args = build_parser().parse_args(["analyze", str(SAMPLE_XDF), "--no-progress"])
    return analyze.run(args)


# ---------------------------------------------------------------------- the coil
class _Coil:
    """The simulated stimulator with the coil held at a position between protocols.

    A protocol that proposes no position (threshold hunts, recruitment) is fired where
    the coil was put (the hotspot found); every pulse's marker gets the label of the
    protocol it belongs to (``rmt-left``, ...), so the trial table says which is which.
    """

    def __init__(self, stimulator: Any) -> None:
        self.stimulator = stimulator
        self.position_mm: tuple[float, float] | None = None
        self.label = ""

    def fire(self, intensity_pct_mso: float, x_mm: float | None = None,
             y_mm: float | None = None, hemisphere: str = "left", **meta: Any) -> Any:
        if x_mm is None and y_mm is None and self.position_mm is not None:
            x_mm, y_mm = self.position_mm
        if self.label:
            meta.setdefault("label", self.label)
        return self.stimulator.fire(intensity_pct_mso, x_mm, y_mm, hemisphere, **meta)

    def close(self) -> None:
        self.stimulator.close()


# ---------------------------------------------------------------------- progress
def _f(v: Any, digits: int = 1) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}f}"


def _interval(lo: Any, hi: Any, digits: int = 1) -> str:
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{lo:.{digits}f}, {hi:.{digits}f}]"


def _estimate_text(kind: str, proto: Any) -> str:
    from mepkit.protocols.base import ProtocolError

    try:
        est = proto.estimate
    except ProtocolError:
        return "no estimate yet"
    if kind == "hotspot":
        if not math.isfinite(est.uncertainty_mm):
            return f"no MEP yet at {est.intensity_pct_mso:g} %MSO"
        x, y = est.hotspot_mm
        return f"hotspot ({x:.0f}, {y:.0f}) mm ± {est.uncertainty_mm:.1f} mm"
    if kind == "rmt":
        if not math.isfinite(est.threshold_pct_mso):
            return est.message or "no threshold yet"
        return (f"estimate {est.threshold_pct_mso:.1f} %MSO"
                f"{_interval(est.ci_low_pct_mso, est.ci_high_pct_mso)}")
    if kind == "recruitment":
        from mepkit_cli.recruitment import describe

        return describe(est)
    m = est.metrics
    cog = ", ".join(_f(v, 0) for v in m.cog_mm[:2])
    return (f"CoG ({cog}) mm, area {_f(m.area_mm2, 0)} mm², {m.n_responsive}/{m.n_sites} "
            f"sites responsive")


def _planned(kind: str, proto: Any) -> str:
    if kind == "recruitment":
        return str(len(proto.schedule))
    if kind == "map":
        return str(proto.grid.n_sites * proto.per_site)
    return f"≤{proto.max_pulses}"


# ---------------------------------------------------------------------- the session
class _Demo:
    """Runs the phases on one live session and keeps what they found."""

    def __init__(self, args: argparse.Namespace, setting: DemoSetting) -> None:
        self.args = args
        self.setting = setting
        self.results: dict[str, Any] = {}
        self.protocols: dict[str, Any] = {}
        self.steps: dict[str, list[dict[str, Any]]] = {}
        self.timing_s: dict[str, float] = {}
        self.n_phase = 0
        self.view: Any = None  # the live page (--view), shown the protocol that runs
        self.total_phases = 4 * len(HEMISPHERES) + 1

    def phase(self, title: str) -> None:
        self.n_phase += 1
        print(f"\n[{self.n_phase}/{self.total_phases}] {title}", flush=True)

    def run_protocol(self, session: Any, coil: Any, kind: str, hemisphere: str,
                     protocol: Any) -> Any:
        from mepkit.errors import MepkitError
        from mepkit.protocols import runner as rn
        from mepkit.sim.subject import channel_label

        name = f"{kind}-{hemisphere}"
        coil.label = name
        channel = channel_label(hemisphere, "FDI")
        t0 = time.monotonic()
        what = {"hotspot": "hotspot", "rmt": "RMT", "recruitment": "recruitment",
                "map": "map"}[kind]

        def on_step(row: dict[str, Any], proto: Any) -> None:
            amp = row["amplitude_uv"]
            amp_txt = "no trial" if amp is None else f"{amp:.0f} µV"
            where = ""
            if kind in ("hotspot", "map") and row.get("x_mm") is not None:
                where = f" at ({row['x_mm']:.0f}, {row['y_mm']:.0f}) mm"
            flag = "" if row["counted"] else \
                f" (rejected: {row['reject_reason'] or row['note']})"
            print(f"  {what} {hemisphere} hemisphere: pulse {row['step'] + 1}/"
                  f"{_planned(kind, proto)}, {row['intensity_pct_mso']:.0f} %MSO{where}, "
                  f"{channel} {amp_txt}{flag} | {_estimate_text(kind, proto)}", flush=True)
            if self.view is not None:
                self.view.update_protocol(proto)  # the estimate, computed in this thread

        match_s = min(rn.MATCH_WINDOW_S, self.interval_s / 2)
        try:
            runner = rn.ClosedLoopRunner(
                session, coil, protocol, channel=channel, hemisphere=hemisphere,
                min_interval_s=self.interval_s, jitter=self.jitter,
                match_window_s=match_s, seed=self.args.seed, result_name=name,
                on_step=on_step)
        except ValueError as exc:
            raise MepkitError(f"{name}: {exc}") from None
        if self.view is not None:
            self.view.channels = [channel]
            self.view.update_protocol(protocol)
        result = runner.run()
        self.timing_s[name] = time.monotonic() - t0
        self.results[name] = result
        self.protocols[name] = protocol
        self.steps[name] = result.steps
        if result.interrupted:
            raise KeyboardInterrupt
        if result.error:
            raise MepkitError(f"{name} stopped after {len(result.steps)} pulses: "
                              f"{result.reason}")
        return result

    @property
    def interval_s(self) -> float:
        return self.setting.interval_s if self.args.interval is None else self.args.interval

    @property
    def jitter(self) -> float:
        return self.setting.jitter if self.args.jitter is None else self.args.jitter

    def hemisphere(self, session: Any, coil: Any, hemisphere: str) -> None:
        """Hotspot, RMT, recruitment curve and map of one hemisphere."""
        from mepkit.analysis.grids import parse_grid
        from mepkit.protocols.mapping import GridMapping, make_hotspot_search
        from mepkit.protocols.recruitment import RecruitmentProtocol
        from mepkit.protocols.threshold import make_hunter

        s, seed = self.setting, self.args.seed
        self.phase(f"Hotspot search, {hemisphere} hemisphere (FDI, GP search over "
                   f"±{HOTSPOT_BOUNDS_MM[0][1]:g} mm, from {HOTSPOT_INTENSITY_PCT_MSO:g} %MSO)")
        coil.position_mm = None
        search = make_hotspot_search(
            HOTSPOT_BOUNDS_MM, intensity_pct_mso=HOTSPOT_INTENSITY_PCT_MSO,
            max_pulses=s.hotspot_max_pulses, min_pulses=s.hotspot_min_pulses,
            hemisphere=hemisphere, seed=seed)
        hot = self.run_protocol(session, coil, "hotspot", hemisphere, search).estimate
        coil.position_mm = (float(hot.hotspot_mm[0]), float(hot.hotspot_mm[1]))
        print(f"  -> hotspot ({hot.hotspot_mm[0]:.0f}, {hot.hotspot_mm[1]:.0f}) mm; the coil "
              f"stays there for the threshold and the curve", flush=True)

        self.phase(f"Resting motor threshold, {hemisphere} hemisphere ({self.args.method}, "
                   f"at most {s.rmt_max_pulses} pulses)")
        hunter = make_hunter(self.args.method, max_pulses=s.rmt_max_pulses,
                             hemisphere=hemisphere)
        rmt = self.run_protocol(session, coil, "rmt", hemisphere, hunter).estimate
        found = rmt is not None and rmt.found
        print(f"  -> {rmt.message if rmt is not None else 'no estimate'}", flush=True)

        if not found:
            for title in ("Recruitment curve", "Map"):
                self.phase(f"{title}, {hemisphere} hemisphere: skipped, no resting motor "
                           f"threshold to set the intensities from")
            return
        rmt_pct = float(rmt.threshold_pct_mso)
        self.phase(f"Recruitment curve, {hemisphere} hemisphere "
                   f"({'/'.join(f'{p:g}' for p in s.rc_levels_pct_rmt)} % of "
                   f"{rmt_pct:.1f} %MSO, {s.rc_per_level} per level)")
        rc = RecruitmentProtocol(rmt_pct, levels_pct_rmt=s.rc_levels_pct_rmt,
                                 n_per_level=s.rc_per_level, seed=seed, hemisphere=hemisphere)
        self.run_protocol(session, coil, "recruitment", hemisphere, rc)

        map_pct = min(100.0, round(MAP_PCT_RMT * rmt_pct / 100.0))
        grid = parse_grid(s.grid, centre_mm=coil.position_mm)
        self.phase(f"Map, {hemisphere} hemisphere ({s.grid} mm centred on the hotspot, "
                   f"{s.per_site} per site, {map_pct:g} %MSO = {MAP_PCT_RMT:g} % RMT)")
        coil.position_mm = None
        mapping = GridMapping(grid, map_pct, per_site=s.per_site, seed=seed,
                              hemisphere=hemisphere)
        self.run_protocol(session, coil, "map", hemisphere, mapping)

    def excitability(self, session: Any, lesioned: str | None) -> Any:
        """The hemispheric excitability summary from the threshold and curve trials."""
        import numpy as np
        import pandas as pd

        from mepkit.analysis import hemispheric_excitability
        from mepkit.errors import MepkitError

        self.phase("Hemispheric excitability (RMT and recruitment trials of both sides, "
                   f"{self.setting.n_boot} bootstrap resamples)")
        rows = []
        for name, steps in self.steps.items():
            if not name.startswith(("rmt-", "recruitment-")):
                continue
            for r in steps:
                amp = r["amplitude_uv"]
                rows.append({"hemisphere": r["hemisphere"], "channel": r["channel"],
                             "intensity_pct_mso": r["intensity_pct_mso"],
                             "amplitude_uv": np.nan if amp is None else float(amp),
                             "rejected": not r["counted"], "condition": "",
                             "label": name})
        table = pd.DataFrame(rows)
        if table.empty or set(table["hemisphere"]) != set(HEMISPHERES):
            print("  -> skipped: it needs threshold trials from both hemispheres", flush=True)
            return None
        try:
            res = hemispheric_excitability(table, affected=lesioned, n_boot=self.setting.n_boot,
                                           seed=self.args.seed)
        except MepkitError as exc:
            print(f"  -> not computed: {exc}", flush=True)
            return None
        session.set_protocol_result("hemispheric-excitability", res.as_dict())
        print("  -> stored in the record as 'hemispheric-excitability'", flush=True)
        return res


# ---------------------------------------------------------------------- report
def write_report(record: Path, out: Path, *, affected: str | None, n_boot: int = 1000) -> str:
    """Write the HTML report of ``record`` to ``out`` with ``mepkit report``'s library call.

    Returns a line saying where it is, or why there is none (this installation has no
    report module yet).
    """
    from mepkit.errors import MepkitError

    try:
        from mepkit.report.html import write_report as _write
    except ImportError:
        return "report: not written (this installation has no 'mepkit report' yet)"
    try:
        _write(record, out, affected=affected, n_boot=n_boot)
    except MepkitError as exc:
        return f"report: not written: {exc} (the record is complete; try: mepkit report " \
               f"{record} -o {out})"
    return f"report: {out}"


# ---------------------------------------------------------------------- summary
def _print_summary(demo: _Demo, subject: Any, exc_res: Any, record: Path,
                   report_line: str, wall_s: float) -> None:
    from mepkit.protocols.base import ProtocolError

    print("\n" + "=" * 78)
    print(f"Results (virtual subject {subject.name!r}, lesioned hemisphere "
          f"{subject.lesioned_hemisphere or 'none'}; 'truth' is the simulation's own value)")
    for h in HEMISPHERES:
        res = {k: demo.results.get(f"{k}-{h}") for k in ("hotspot", "rmt", "recruitment", "map")}
        print(f"\n{h} hemisphere (FDI_{'R' if h == 'left' else 'L'}):")
        tx, ty = subject.hotspot(h)
        hot = res["hotspot"].estimate if res["hotspot"] is not None else None
        coil = None
        if hot is not None:
            coil = hot.hotspot_mm
            unc = (f"± {hot.uncertainty_mm:.1f} mm" if math.isfinite(hot.uncertainty_mm)
                   else f"(no MEP >= {search_mep_uv(demo, h):g} µV: best guess)")
            print(f"  hotspot        ({coil[0]:.0f}, {coil[1]:.0f}) mm {unc} at "
                  f"{hot.intensity_pct_mso:g} %MSO, {hot.n_pulses} pulses; truth "
                  f"({tx:.1f}, {ty:.1f}) mm, {math.hypot(coil[0] - tx, coil[1] - ty):.1f} mm away")
        true_rmt = subject.true_rmt(h)
        rmt = res["rmt"].estimate if res["rmt"] is not None else None
        if rmt is not None:
            at_coil = subject.true_rmt(h, x_mm=coil[0], y_mm=coil[1]) if coil else true_rmt
            value = (f"{rmt.threshold_pct_mso:.1f} %MSO"
                     f"{_interval(rmt.ci_low_pct_mso, rmt.ci_high_pct_mso)}"
                     if rmt.found else rmt.message)
            print(f"  RMT            {value}, {rmt.n_pulses} pulses; truth {true_rmt:.1f} %MSO at "
                  f"the true hotspot, {at_coil:.1f} at the coil position")
        rc = res["recruitment"]
        if rc is not None:
            fits = _fit_curve(rc.steps)
            m = subject.muscle(h, "FDI")
            w = true_rmt / subject.true_rmt(h, x_mm=coil[0], y_mm=coil[1]) if coil else 1.0
            if fits is not None and fits.ok:
                unreached = any("plateau not reached" in n for n in fits.notes)
                mx = ("not reached" if unreached else f"{fits.mep_max_uv:.0f} µV"
                      f"{_interval(*(fits.mep_max_uv_ci or (None, None)), digits=0)}")
                print(f"  recruitment    MEPmax {mx}, I50 "
                      f"{fits.i50_pct_mso:.1f}{_interval(*(fits.i50_pct_mso_ci or (None, None)))}"
                      f" %MSO, slope {fits.slope_pct_mso:.1f} %MSO; truth {m.mep_max_uv:.0f} µV, "
                      f"{m.i50_pct_mso / w:.1f} %MSO, {m.slope_pct_mso / w:.1f} %MSO "
                      f"(at the coil position)")
                for note in fits.notes:
                    print(f"                 ({note})")
            else:
                print(f"  recruitment    no fit: {fits.message if fits is not None else '-'}")
        mp = res["map"]
        if mp is not None:
            try:
                mm = mp.estimate.metrics
                cog = ", ".join(_f(v) for v in mm.cog_mm[:2])
                print(f"  map            CoG ({cog}) mm, area {_f(mm.area_mm2, 0)} mm², "
                      f"{mm.n_responsive}/{mm.n_sites} sites responsive, "
                      f"{len(mp.steps)} pulses; true hotspot ({tx:.1f}, {ty:.1f}) mm")
            except ProtocolError as exc:
                print(f"  map            {exc}")
    if exc_res is not None:
        role = ("affected / unaffected" if exc_res.affected_given
                else f"{exc_res.affected} / {exc_res.unaffected}")
        print(f"\nHemispheric excitability ({role}):")
        for muscle, e in exc_res.muscles.items():
            if "rmt_ratio" not in e:
                continue
            truth = subject.true_rmt(exc_res.affected, muscle) / \
                subject.true_rmt(exc_res.unaffected, muscle)
            pct = exc_res.settings["matched_pct_rmt"] / 100.0
            meps = [subject.expected_amplitude(pct * subject.true_rmt(h, muscle), hemisphere=h,
                                               muscle=muscle)
                    for h in (exc_res.affected, exc_res.unaffected)]
            mep_truth = meps[0] / meps[1] if meps[1] > 0 else math.nan
            for label, q, t in (("RMT ratio", e["rmt_ratio"], truth),
                                (f"MEP ratio at {pct * 100:g} % RMT",
                                 e["mep_ratio"]["same_pct_rmt"], mep_truth),
                                ("laterality index, RMT", e["laterality_index"]["rmt"], None)):
                val = _quantity(q)
                extra = f"; truth {t:.2f}" if t is not None and math.isfinite(t) else ""
                print(f"  {muscle} {label:<30} {val}{extra}")
    n = sum(len(v) for v in demo.steps.values())
    s = demo.setting
    print(f"\n{n} pulses in {wall_s:.0f} s ({s.name} setting, pulses "
          f"{demo.interval_s:g}-{demo.interval_s * (1 + demo.jitter):g} s apart"
          + ("; the virtual subject's excitability does not depend on the rate, a real "
             "session keeps at least 5 s between pulses: --full" if demo.interval_s < 5 else "")
          + ")")
    print(f"record: {record}  (mepkit info {record}; mepkit analyze {record})")
    print(report_line, flush=True)


def search_mep_uv(demo: _Demo, hemisphere: str) -> float:
    """The MEP criterion of the hotspot search of ``hemisphere``."""
    return float(getattr(demo.protocols.get(f"hotspot-{hemisphere}"), "mep_uv", 50.0))


def _quantity(q: Any) -> str:
    if q.value is not None and math.isfinite(q.value):
        ci = q.ci
        return f"{q.value:.2f}" + (_interval(ci[0], ci[1], 2) if ci else "")
    if q.lower_bound is not None:
        return f"> {q.lower_bound:.2f}"
    if q.upper_bound is not None:
        return f"< {q.upper_bound:.2f}"
    return "- " + (q.message or "")


def _fit_curve(steps: list[dict[str, Any]]) -> Any:
    """The recruitment fit (`mepkit.analysis.fit_recruitment_curves`) of one run's steps."""
    import numpy as np
    import pandas as pd

    from mepkit.analysis import fit_recruitment_curves

    if not steps:
        return None
    t = pd.DataFrame({
        "hemisphere": [r["hemisphere"] for r in steps],
        "channel": [r["channel"] for r in steps],
        "intensity_pct_mso": [r["intensity_pct_mso"] for r in steps],
        "amplitude_uv": [np.nan if r["amplitude_uv"] is None else r["amplitude_uv"]
                         for r in steps],
        "rejected": [not r["counted"] for r in steps]})
    fits = fit_recruitment_curves(t, by=("hemisphere", "channel"))
    return fits["fit"].iloc[0] if len(fits) else None


# ---------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    import uuid

    from mepkit_cli.main import UserError

    if args.offline:
        return _offline("--offline")
    setting = SETTINGS["full" if args.full else "quick" if args.quick else "smallest"]
    for opt in ("interval", "jitter"):
        v = getattr(args, opt)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise UserError(f"--{opt} must be a number >= 0, got {v}")
    if args.interval is not None and args.interval < 0.3:
        raise UserError(f"--interval must be >= 0.3 s (the muscle must be seen relaxed "
                        f"before each pulse), got {args.interval}")
    out = Path(args.output) if args.output else (
        Path("out") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.h5")
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise UserError(f"{out}: the record must end in .h5")
    report = Path(args.report) if args.report else out.with_suffix(".html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out.parent}: cannot create the folder ({exc.strerror})") from None
    try:
        import pylsl  # noqa: F401 - liblsl itself is needed for the live session
        from mepkit.sim.outlet import SimulatedAmplifier
    except (ImportError, RuntimeError) as exc:
        return _offline(f"LSL is not available ({exc})")
    from mepkit.live import LiveSession
    from mepkit.sim.stimulator import SimulatedStimulator
    from mepkit.sim.subject import VirtualSubject, channel_label

    lesioned = args.lesioned if args.preset != "healthy" else None
    subject = VirtualSubject.from_preset(args.preset, seed=args.seed,
                                         lesioned_hemisphere=args.lesioned)
    demo = _Demo(args, setting)
    t_start = time.monotonic()
    sid = f"mepkit-demo-{uuid.uuid4().hex[:8]}"
    channels = [channel_label(h, m) for h in HEMISPHERES for m in MUSCLES]
    print(f"mepkit demo ({setting.name} setting): virtual subject {args.preset!r} (seed "
          f"{args.seed}, lesioned hemisphere {lesioned or 'none'}) over LSL on this machine, "
          f"channels {', '.join(channels)}; at most about {setting.planned_pulses} pulses, "
          f"{demo.interval_s:g}-{demo.interval_s * (1 + demo.jitter):g} s apart"
          + (" (the virtual subject allows it; a real session keeps at least 5 s)"
             if demo.interval_s < 5 else ""), flush=True)
    amp = SimulatedAmplifier(subject, channels=channels, name=f"{sid}-emg", source_id=sid,
                             seed=args.seed)

    def on_term(signum: int, frame: Any) -> None:  # SIGTERM stops like Ctrl-C: record kept
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    coil = None
    exc_res = None
    try:
        session = LiveSession(
            emg=amp.name, markers=amp.marker_name, source_id=amp.source_id,
            marker_source_id=amp.marker_source_id, record_path=str(out), overwrite=True,
            subject={"identifier": f"virtual-{args.preset}", "preset": args.preset,
                     "seed": args.seed, "lesioned_hemisphere": lesioned},
            session={"identifier": "demo", "setting": setting.name,
                     "protocol": "demo: hotspot, RMT, recruitment, map per hemisphere; "
                                 "hemispheric excitability"})
        demo.view = start_view(args, session, channels=[channel_label(h, "FDI")
                                                        for h in HEMISPHERES],
                               title="mepkit demo")
        session.start()
        try:
            coil = _Coil(SimulatedStimulator(amp))
            print(f"record: {out}", flush=True)
            for h in HEMISPHERES:
                demo.hemisphere(session, coil, h)
            exc_res = demo.excitability(session, lesioned)
        except KeyboardInterrupt:
            print("\nmepkit demo: interrupted; the record keeps every step so far: "
                  f"{out}", file=sys.stderr)
            return 130
        finally:
            if demo.view is not None:
                demo.view.stop()
            session.stop()
            if session.error is not None:
                from mepkit.live import one_line

                print(f"mepkit demo: error: the live session failed: "
                      f"{one_line(session.error)}", file=sys.stderr)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    finally:
        if demo.view is not None:  # also when the session never started
            demo.view.stop()
        if coil is not None:
            coil.close()
        amp.stop()
        signal.signal(signal.SIGTERM, old_term)
    session_s = time.monotonic() - t_start
    report_line = "report: not written (--no-report)"
    if not args.no_report:
        print(f"\nwriting the report {report} ...", flush=True)
        report_line = write_report(out, report, affected=lesioned, n_boot=setting.n_boot)
    _print_summary(demo, subject, exc_res, out, report_line, time.monotonic() - t_start)
    print(f"(the session took {session_s:.0f} s, the report "
          f"{time.monotonic() - t_start - session_s:.0f} s)")
    return 0 if session.error is None else 1

