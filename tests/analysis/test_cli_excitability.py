"""``mepkit excitability`` end to end: an XDF recording of both hemispheres, through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mepkit.sim.subject import VirtualSubject
from mepkit_cli.main import main
from recording import write_excitability_xdf


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    s = VirtualSubject.from_preset("stroke-mild", seed=8, lesioned_hemisphere="left",
                                   muscles=("FDI",))
    path = tmp_path_factory.mktemp("exc") / "stroke.xdf"
    write_excitability_xdf(path, s, np.arange(30.0, 101.0, 5.0), repeats=4, seed=3,
                           ihi={"left": 0.4}, test_intensity={"left": 95.0}, n_ihi=12)
    return s, path


def test_cli_on_an_xdf_recording_recovers_the_subject(recording, tmp_path, capsys):
    s, path = recording
    out = tmp_path / "exc.json"
    code = main(["excitability", str(path), "--affected", "left", "--json", str(out),
                 "--n-boot", "200"])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert "RMT ratio" in text.out and "FDI_R" in text.out and "FDI_L" in text.out
    d = json.loads(out.read_text())
    assert d["files"] == [str(path)] and d["affected"] == "left"
    a_rmt, u_rmt = s.true_rmt("left"), s.true_rmt("right")
    aff = d["hemispheres"]["left"]["FDI_R"]
    una = d["hemispheres"]["right"]["FDI_L"]

    def inside(entry, truth, slack=0.5):
        lo, hi = entry["ci95"]
        pad = slack * (hi - lo)
        return lo - pad <= truth <= hi + pad

    assert inside(aff["rmt_pct_mso"], a_rmt)
    assert inside(una["rmt_pct_mso"], u_rmt)
    for side, h in ((aff, "left"), (una, "right")):
        m = s.muscle(h, "FDI")
        assert inside(side["recruitment"]["i50_pct_mso"], m.i50_pct_mso)
        assert side["recruitment"]["slope_pct_mso"]["value"] == pytest.approx(m.slope_pct_mso,
                                                                             rel=0.4)
    fdi = d["muscles"]["FDI"]
    assert inside(fdi["rmt_ratio"], a_rmt / u_rmt)
    assert fdi["rmt_ratio"]["value"] == pytest.approx(a_rmt / u_rmt, rel=0.08)
    i0 = fdi["mep_ratio"]["same_pct_mso"]["intensity_pct_mso"]
    ma = s.expected_amplitude(i0, hemisphere="left")
    mu = s.expected_amplitude(i0, hemisphere="right")
    assert inside(fdi["mep_ratio"]["same_pct_mso"], ma / mu)
    assert inside(fdi["laterality_index"]["mep"], (mu - ma) / (mu + ma))
    assert inside(fdi["laterality_index"]["rmt"], (a_rmt - u_rmt) / (a_rmt + u_rmt))
    true_120 = (s.expected_amplitude(1.2 * a_rmt, hemisphere="left")
                / s.expected_amplitude(1.2 * u_rmt, hemisphere="right"))
    assert inside(fdi["mep_ratio"]["same_pct_rmt"], true_120)
    assert inside(d["ihi"]["left"]["FDI_R"]["ihi"], 0.4)


def test_markers_without_hemisphere_get_a_clear_error(tmp_path, capsys):
    s = VirtualSubject.from_preset("healthy", seed=1, muscles=("FDI",))
    path = tmp_path / "nohemi.xdf"
    write_excitability_xdf(path, s, [40.0, 60.0], repeats=2, hemisphere_key=False)
    code = main(["excitability", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "no hemisphere" in err and "marker key 'hemisphere'" in err and "nohemi.xdf" in err


def test_a_file_that_fails_is_named(recording, tmp_path, capsys):
    _, good = recording
    bad = tmp_path / "broken.xdf"
    bad.write_bytes(b"XDF:not really")
    code = main(["excitability", str(good), str(bad), "--n-boot", "50"])
    err = capsys.readouterr().err
    assert code == 1 and "broken.xdf" in err and "could not be read" in err
    missing = tmp_path / "absent.h5"
    assert main(["excitability", str(missing)]) == 1
    assert "absent.h5" in capsys.readouterr().err
