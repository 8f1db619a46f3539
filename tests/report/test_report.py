"""``mepkit report``: every section's figures on a record that has the data, absent sections
said on one that does not, XDF input, escaping, no network resources, ``--figures DIR``."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from session_record import HOSTILE, HOSTILE_CONDITION, write_bare_record, write_session_record  # noqa: E402

from mepkit.report.html import SECTIONS, write_report  # noqa: E402

pytestmark = pytest.mark.timeout(120)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Not imported from tests/conftest.py: in a whole-suite run another conftest may own that name.
SAMPLE_XDF = Path(__file__).resolve().parents[2] / "sample_data" / "sample_session.xdf"


class _Page(HTMLParser):
    """Sections (by id) with their images, text and links; script tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: str | None = None
        self.scripts = 0
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))
        if tag == "script":
            self.scripts += 1
        if tag == "section":
            self.current = a["id"]
            self.sections[self.current] = {"imgs": [], "text": [], "absent": []}
        if tag == "img" and self.current:
            self.sections[self.current]["imgs"].append(a)
        self._in_absent = tag == "p" and a.get("class") == "absent"

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        if tag == "p":
            self._in_absent = False

    def handle_data(self, data):
        self.text.append(data)
        if self.current:
            self.sections[self.current]["text"].append(data)
            if getattr(self, "_in_absent", False):
                self.sections[self.current]["absent"].append(data)


def parse(path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def decode_png(img: dict) -> np.ndarray:
    import matplotlib.image as mpimg

    src = img["src"]
    assert src.startswith("data:image/png;base64,"), src[:40]
    raw = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert raw.startswith(PNG_MAGIC)
    arr = mpimg.imread(io.BytesIO(raw), format="png")
    assert arr.ndim == 3 and arr.shape[0] > 100 and arr.shape[1] > 100
    assert float(arr[..., :3].std()) > 0.01  # something is drawn
    return arr


def no_network(text: str, page: _Page) -> None:
    assert not re.search(r"https?://", text, re.I)
    for tag, k, v in page.attrs:
        if k in ("src", "href", "srcset", "data", "action"):
            assert v.startswith(("data:", "#")), (tag, k, v[:60])
    assert "@import" not in text and "url(" not in text


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    path = d / "session.h5"
    truth = write_session_record(path)
    out = d / "session.html"
    figs = d / "figs"
    report = write_report(path, out, figures_dir=figs, n_boot=60, seed=1)
    return {"path": path, "out": out, "figs": figs, "report": report, "truth": truth}


def test_every_section_has_its_figures(session):
    text, page = parse(session["out"])
    assert list(page.sections) == [k for k, _ in SECTIONS]
    for key in ("quality", "overlays", "thresholds", "recruitment", "maps"):
        imgs = page.sections[key]["imgs"]
        assert imgs, f"section {key} has no figure"
        for img in imgs:
            decode_png(img)
    # one overlay figure per hemisphere (and the hostile condition's own group)
    assert len(page.sections["overlays"]["imgs"]) == 3
    # the hunt: one figure, its threshold in the table, plus thresholds from trials
    th = "".join(page.sections["thresholds"]["text"])
    assert "Hunt 1: ml-pest" in th
    assert f"{session['truth']['threshold']:.1f}" in th
    assert any("hunt" in i["alt"].lower() for i in page.sections["thresholds"]["imgs"])
    assert "Thresholds from trials" in th
    # maps: both hemispheres side by side in one figure, CoG in the table
    assert [i["alt"] for i in page.sections["maps"]["imgs"]] == ["Motor maps, both hemispheres"]
    mp = "".join(page.sections["maps"]["text"])
    assert "left" in mp and "right" in mp and "CoG" in mp
    # the excitability table: both sides, the RMT ratio, the lesioned side from the subject
    ex = "".join(page.sections["excitability"]["text"])
    assert "RMT ratio" in ex and "affected / unaffected" in ex
    assert "FDI_R" in ex and "FDI_L" in ex
    # data quality: the contraction's rejection, the gap and the outage
    q = "".join(page.sections["quality"]["text"])
    assert "background" in q and "gap" in q and "outage" in q
    # parameters and version
    pa = "".join(page.sections["parameters"]["text"])
    import mepkit

    assert "background_limit_uv" in pa and f"mepkit {mepkit.__version__}" in pa
    assert not any(page.sections[k]["absent"] for k in
                   ("overlays", "thresholds", "recruitment", "maps", "excitability"))
    no_network(text, page)


def test_untrusted_text_is_escaped(session):
    text, page = parse(session["out"])
    assert page.scripts == 0 and "<script" not in text.lower()
    assert "onerror=" not in text.replace("onerror=alert", "") or "<img src=x" not in text
    assert "<img src=x" not in text
    assert "&lt;script&gt;" in text  # the marker, step note, subject note and event detail
    body = "".join(page.text)
    assert HOSTILE in body and HOSTILE_CONDITION in body  # shown as text, not markup
    assert "S<01>" in body


def test_figures_dir_has_png_and_svg_of_each_figure(session):
    figs, report = session["figs"], session["report"]
    names = sorted(p.name for p in figs.iterdir())
    slugs = [f.slug for f in report.figures]
    assert len(set(slugs)) == len(slugs)
    assert names == sorted([f"{s}.png" for s in slugs] + [f"{s}.svg" for s in slugs])
    for s in slugs:
        assert (figs / f"{s}.png").read_bytes().startswith(PNG_MAGIC)
        root = ET.parse(figs / f"{s}.svg").getroot()
        assert root.tag.endswith("svg")
        assert re.fullmatch(r"[a-z0-9-]+", s)


def test_record_without_data_says_what_is_absent(tmp_path):
    path = tmp_path / "bare.h5"
    write_bare_record(path)
    out = tmp_path / "bare.html"
    report = write_report(path, out, n_boot=60)
    text, page = parse(out)
    assert list(page.sections) == [k for k, _ in SECTIONS]
    for key in ("overlays", "recruitment", "maps", "excitability"):
        assert page.sections[key]["absent"], key
        assert not page.sections[key]["imgs"]
    th = " ".join(page.sections["thresholds"]["absent"])
    assert "no threshold hunt in this record" in th
    assert "no trials" in " ".join(page.sections["summary"]["absent"])
    assert "no map" in " ".join(page.sections["maps"]["absent"])
    assert "background_limit_uv" in "".join(page.sections["parameters"]["text"])
    assert report.figures == []
    no_network(text, page)


def test_xdf_through_the_cli(tmp_path, capsys):
    from mepkit_cli.main import main

    out, figs = tmp_path / "xdf.html", tmp_path / "figs"
    rc = main(["report", str(SAMPLE_XDF), "-o", str(out), "--figures", str(figs),
               "--n-boot", "60"])
    assert rc == 0, capsys.readouterr().err
    assert str(out) in capsys.readouterr().out
    text, page = parse(out)
    for key in ("quality", "overlays", "thresholds", "recruitment"):
        assert page.sections[key]["imgs"], key
        for img in page.sections[key]["imgs"]:
            decode_png(img)
    assert "no threshold hunt" in " ".join(page.sections["thresholds"]["absent"])
    assert page.sections["maps"]["absent"] and page.sections["excitability"]["absent"]
    n = sum(len(s["imgs"]) for s in page.sections.values())
    assert len(list(figs.glob("*.png"))) == n == len(list(figs.glob("*.svg")))
    no_network(text, page)


def test_bad_input_is_one_line(tmp_path, capsys):
    from mepkit_cli.main import main

    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    rc = main(["report", str(bad), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err and str(bad) in err
    rc = main(["report", str(bad), "-o", str(tmp_path / "missing" / "r.html")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "r.html" in err


def test_live_threshold_hunt_record(tmp_path):
    """A record written by the real closed-loop runner (``mepkit threshold --simulate``, real
    liblsl): its hunt is drawn with the stored estimate; no map, no excitability."""
    import subprocess
    import sys

    pytest.importorskip("pylsl")
    from mepkit.records import open_record

    rec_path = tmp_path / "rmt.h5"
    res = subprocess.run([sys.executable, "-m", "mepkit_cli.main", "threshold", "--simulate",
                          "--method", "bayes", "--seed", "2", "--max-pulses", "5", "-o",
                          str(rec_path), "--interval", "0.3", "--jitter", "0.2", "--relax",
                          "0.2"], capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-3000:]
    with open_record(rec_path) as rec:
        (name, result), = rec.protocol_results.items()
        n_steps = len(rec.protocol_steps)
    out = tmp_path / "rmt.html"
    report = write_report(rec_path, out, n_boot=60)
    text, page = parse(out)
    th = page.sections["thresholds"]
    assert [i["alt"] for i in th["imgs"]][0].startswith(f"Hunt 1: {name}")
    decode_png(th["imgs"][0])
    est = result["estimate"]
    body = "".join(th["text"])
    assert est["message"] in body
    runs = "".join(page.sections["summary"]["text"])
    assert name in runs and str(n_steps) in runs
    assert page.sections["maps"]["absent"] and page.sections["excitability"]["absent"]
    assert page.sections["overlays"]["imgs"]
    assert '"min_interval_s": 0.3' in "".join(page.sections["parameters"]["text"])
    assert report.section("thresholds").figures
    no_network(text, page)
