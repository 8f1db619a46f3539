"""Grid definitions: the forms that parse, site names, and the ones that must not."""

import json

import numpy as np
import pytest

from mepkit.analysis.grids import Grid, GridError, parse_grid
from mepkit.errors import UsageError


def test_text_grid_positions_follow_the_documented_layout():
    g = parse_grid("3x4@5", centre_mm=(100.0, -20.0))
    assert (g.rows, g.cols, g.n_sites, g.spacing_mm) == (3, 4, 12, 5.0)
    # column c at centre_x + (c - (cols + 1) / 2) * spacing, row r likewise in y
    assert g.position("r1c1") == (100.0 - 1.5 * 5, -20.0 - 1.0 * 5)
    assert g.position("r3c4") == (100.0 + 1.5 * 5, -20.0 + 1.0 * 5)
    assert g.cell_area_mm2 == 25.0


@pytest.mark.parametrize("spec", ["7x7", "7x7@10", "7x7@10mm", "7 x 7 @ 10 mm", "7X7@10.0",
                                  {"rows": 7, "cols": 7}, '{"rows": 7, "cols": 7, "spacing_mm": 10}'])
def test_equivalent_spellings_give_the_same_grid(spec):
    g = parse_grid(spec)
    ref = parse_grid("7x7@10")
    assert g.names == ref.names
    np.testing.assert_array_equal(g.x_mm, ref.x_mm)
    np.testing.assert_array_equal(g.y_mm, ref.y_mm)


def test_letter_and_rc_names_are_the_same_site():
    g = parse_grid("5x5@10")
    assert g.site_index("C3") == g.site_index("r3c3") == g.site_index("c3") == 12
    assert g.position("A1") == g.position("r1c1") == (-20.0, -20.0)
    assert g.position("E2") == (20.0, -10.0)  # column E = 5, row 2


def test_describe_parses_back():
    for g in (parse_grid("4x6@7.5", centre_mm=(1, 2)),
              parse_grid({"sites": {"hand": [0, 0], "ant": [0, 10], "lat": [10, 0]}})):
        back = parse_grid(json.dumps(g.describe()))
        assert back.names == g.names and back.spacing_mm == g.spacing_mm
        np.testing.assert_array_equal(back.x_mm, g.x_mm)


def test_explicit_sites_take_the_median_neighbour_distance_as_cell():
    g = parse_grid({"sites": {"a": [0, 0], "b": [10, 0], "c": [0, 10], "d": [30, 30]}})
    # nearest-neighbour distances 10, 10, 10, sqrt(800): median 10
    assert g.spacing_mm == 10.0
    assert g.position("d") == (30.0, 30.0)


@pytest.mark.parametrize("spec", ["7by7", "7x", "x7", "7x7@", "7x7@-3", "0x5", "7x7@ten",
                                  "{not json", {"rows": 3}, {"rows": 3, "cols": 3, "shape": 1},
                                  {"rows": "a", "cols": 3}, 42])
def test_definitions_that_do_not_parse_are_refused(spec):
    with pytest.raises(GridError):
        parse_grid(spec)


def test_error_is_a_usage_error_with_the_text():
    with pytest.raises(UsageError, match=r"'7by7' does not parse"):
        parse_grid("7by7")


def test_duplicate_sites_are_refused():
    with pytest.raises(GridError, match=r"duplicate sites: 'a' and 'b' are both at \(0, 0\)"):
        parse_grid({"sites": {"a": [0, 0], "b": [0, 0], "c": [10, 0]}})
    with pytest.raises(GridError, match=r"duplicate site name"):
        parse_grid({"sites": [("a", [0, 0]), ("a", [10, 0])]})
    with pytest.raises(GridError, match="duplicate site name 'x'"):
        Grid(("x", "x"), np.array([0.0, 1.0]), np.array([0.0, 0.0]), 1.0)


def test_text_spacing_must_agree_with_the_keyword():
    with pytest.raises(GridError, match="says spacing 10 mm but spacing_mm=7"):
        parse_grid("7x7@10", spacing_mm=7)


def test_unknown_and_out_of_range_site_names():
    g = parse_grid("3x3@10")
    with pytest.raises(GridError, match=r"site 'r4c1' is outside the 3x3 grid"):
        g.site_index("r4c1")
    with pytest.raises(GridError, match=r"site 'D1' is outside"):
        g.site_index("D1")
    with pytest.raises(GridError, match=r"unknown site 'hand'"):
        g.site_index("hand")


def test_locate_assigns_cells_and_refuses_positions_off_the_grid():
    g = parse_grid("3x3@10")
    idx = g.locate([0.0, 4.9, -10.0, 14.9], [0.0, -4.9, 10.0, 0.0])
    assert [g.names[i] for i in idx] == ["r2c2", "r2c2", "r3c1", "r2c3"]
    with pytest.raises(GridError, match=r"1 position\(s\) outside .*trial 7 at \(15.5, 0\) mm"):
        g.locate([0.0, 15.5], [0.0, 0.0], what="trial", labels=[6, 7])
