"""The live page in a real headless browser, fed by a live session over real LSL loopback.

The virtual subject (`mepkit.sim.SimulatedAmplifier`, in this process) publishes EMG and
markers; a `LiveSession` measures them and a `LiveView` serves the page; Debian's
chromium (installed by ``make test``) shows it, and the test reads what the page shows
through the DevTools protocol while pulses are fired, then stalls the stream.
"""

from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("pylsl")

from view_browser import Chromium  # noqa: E402

from mepkit.live import LiveSession  # noqa: E402
from mepkit.protocols.mapping import make_grid_mapping  # noqa: E402
from mepkit.sim.outlet import SimulatedAmplifier  # noqa: E402
from mepkit.view import LiveView  # noqa: E402

pytestmark = pytest.mark.timeout(150)

SHOWN = """(() => {
  if (!document.getElementById('banner') || !document.body.dataset.state) return {};
  const rows = [...document.querySelectorAll('#trial-table tr[data-trial]')];
  return {state: document.body.dataset.state, trials: +document.body.dataset.trials,
          last: document.body.dataset.lastTrial, traces: +document.body.dataset.traces,
          mapPoints: +document.body.dataset.mapPoints, estimate: document.body.dataset.estimate,
          banner: document.getElementById('banner').textContent,
          rows: rows.map(r => [+r.dataset.trial, r.querySelector('.amp').textContent,
                               r.querySelector('.st').textContent]),
          latest: [...document.querySelectorAll('polyline.trace.latest')].map(p => +p.dataset.trial),
          polylines: document.querySelectorAll('polyline.trace').length,
          ampPoints: document.querySelectorAll('#amp .pt').length,
          rejMarks: document.querySelectorAll('#amp .pt.rej').length,
          sites: document.querySelectorAll('#map circle.site').length,
          cog: !!document.getElementById('map-cog'),
          title: document.title, marker: window.__sameDocument || 0};
})()"""


def _fire_and_measure(amp, session, grid, n, channel, got):
    """Fire ``n`` pulses where the grid asks, feed each trial back to it."""
    for _ in range(n):
        stim = grid.propose()
        amp.fire(stim.intensity_pct_mso, x_mm=stim.x_mm, y_mm=stim.y_mm, hemisphere="left")
        trial = session.next_trial(timeout=5.0)
        assert trial is not None, "no trial came for a pulse"
        c = trial.channels.index(channel)
        grid.observe(stim.x_mm, stim.y_mm, float(trial.amplitude_uv[c]),
                     rejected=bool(trial.reject_reason[c]))
        got.append(trial)
        time.sleep(0.15)


def _check_rows(shown, got, channel):
    by_index = {t.index: t for t in got}
    assert shown["rows"], shown
    for index, amp_text, result in shown["rows"]:
        t = by_index[index]
        c = t.channels.index(channel)
        a = float(t.amplitude_uv[c])
        # the page prints 0 decimals from 100 µV, 1 below
        assert float(amp_text) == pytest.approx(a, abs=0.51 if abs(a) >= 100 else 0.051), index
        if t.reject_reason[c]:
            assert result == f"rejected: {t.reject_reason[c]}"
        else:
            assert result == ("MEP" if t.detected[c] else "no MEP")


def test_page_shows_trials_as_they_arrive_and_the_stall(tmp_path):
    sid = f"view-{uuid.uuid4().hex[:10]}"
    channel = "FDI_R"  # the left hemisphere's hand muscle
    amp = SimulatedAmplifier(sfreq_hz=5000.0, name=sid, source_id=sid, seed=21)
    grid = make_grid_mapping("3x3@10", 70.0, per_site=1)
    session = LiveSession(emg=sid, markers=amp.marker_name, source_id=sid,
                          marker_source_id=amp.marker_source_id,
                          record_path=tmp_path / "s.h5", outage_after_s=1.0)
    view = LiveView(session, protocol=grid, channels=[channel, "APB_R"], port=0,
                    title="view test")
    got: list = []
    shot = tmp_path / "live-view.png"
    try:
        with view, session, Chromium(view.url, tmp_path / "profile") as browser:
            shown = browser.wait_for(f"({SHOWN}).state === 'running' && ({SHOWN})", 30,
                                     "the page to show a running session")
            assert shown["trials"] == 0 and shown["banner"].startswith("● receiving EMG")
            browser.evaluate("window.__sameDocument = 1")

            # trials arrive: the same page (no reload) shows each of them
            _fire_and_measure(amp, session, grid, 4, channel, got)
            shown = browser.wait_for(f"({SHOWN}).trials >= 4 && ({SHOWN})", 10, "4 trials")
            assert shown["marker"] == 1
            assert shown["trials"] == 4 and shown["last"] == str(got[-1].index)
            assert [r[0] for r in shown["rows"]] == [t.index for t in reversed(got)]
            _check_rows(shown, got, channel)
            # latest trace on top of the recent ones, for both channels shown
            assert shown["polylines"] == 2 * 4 and shown["latest"] == [got[-1].index] * 2
            assert shown["ampPoints"] == 4
            assert shown["sites"] + shown["rejMarks"] >= 1 and shown["mapPoints"] == 4

            _fire_and_measure(amp, session, grid, 5, channel, got)
            shown = browser.wait_for(f"({SHOWN}).trials >= 9 && ({SHOWN})", 10, "9 trials")
            assert shown["marker"] == 1 and shown["trials"] == 9
            assert shown["last"] == str(got[-1].index)
            _check_rows(shown, got, channel)
            assert shown["polylines"] == 2 * 9 and shown["latest"] == [got[-1].index] * 2
            assert shown["mapPoints"] == 9
            # the protocol's estimate as the protocol gives it
            est = grid.estimate.as_dict()
            if est["cog_mm"][0] is not None:
                browser.wait_for(f"({SHOWN}).estimate.includes('cog {est['cog_mm'][0]:.1f},"
                                 f"{est['cog_mm'][1]:.1f}')", 10, "the estimate's CoG")
                assert browser.evaluate(SHOWN)["cog"]
            else:  # no responsive site: the page says so rather than inventing one
                assert "cog" not in shown["estimate"]
            assert any(bool(t.detected[t.channels.index(channel)]) for t in got), \
                "70 %MSO near the hotspot gave no MEP at all"
            browser.screenshot(shot)
            print(f"\nlive view screenshot: {shot}")

            # the stream stalls, then is lost: the banner says so at once
            amp.stop()
            shown = browser.wait_for(f"['stalled', 'lost'].includes(({SHOWN}).state) && "
                                     f"({SHOWN})", 10, "the stall to show")
            assert "STALLED" in shown["banner"] or "LOST" in shown["banner"]
            shown = browser.wait_for(f"({SHOWN}).state === 'lost' && ({SHOWN})", 10,
                                     "the lost stream to show")
            assert shown["banner"].startswith("⚠ EMG STREAM LOST")
            assert shown["title"].startswith("⚠")
            browser.screenshot(tmp_path / "live-view-lost.png")
            print(f"live view screenshot (stream lost): {tmp_path / 'live-view-lost.png'}")

            session.stop()
            browser.wait_for(f"({SHOWN}).state === 'stopped'", 10, "the stopped session")
            view.stop()
            shown = browser.wait_for(f"({SHOWN}).state === 'disconnected' && ({SHOWN})", 10,
                                     "the page to notice mepkit is gone")
            assert "NO CONTACT" in shown["banner"]
            assert shown["trials"] == 9  # what it had stays on screen
    finally:
        amp.stop()
    session_latency_ms = session.latencies_s * 1e3
    # (trials whose samples came while the kernels loaded are not counted as live)
    assert session_latency_ms.size >= 7 and np.all(np.isfinite(session_latency_ms))
    assert view.n_dropped == 0 and view.n_trials == 9
    assert shot.stat().st_size > 20_000  # a real picture, not an empty page
    assert math.isfinite(session_latency_ms.max())
