"""Reanalysis of records and XDF files: serial, local Dask cluster, remote scheduler."""

import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from mepkit.batch import analyze_file, analyze_files
from mepkit.convert import convert_xdf
from mepkit.records import open_record
from mepkit.sim.sample import make_sample_session


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    paths = []
    for k in range(3):
        p = d / f"s{k}.xdf"
        make_sample_session(p, n_trials=6 + k, seed=k)
        paths.append(str(p))
    h5 = d / "s0.h5"
    convert_xdf(paths[0], h5)
    return d, paths, str(h5)


def same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a.drop(columns="file").reset_index(drop=True),
                                  b.drop(columns="file").reset_index(drop=True))


def test_xdf_to_record_to_analyze_equals_xdf(files):
    _, paths, h5 = files
    same(analyze_file(h5), analyze_file(paths[0]))


def test_record_trials_equal_reanalysis_with_stored_params(files, caplog):
    _, _, h5 = files
    with open_record(h5) as rec:
        stored = rec.trials
    again = analyze_file(h5)  # the record's own parameters, by default
    cols = [c for c in again.columns if c != "file"]
    assert len(stored) == len(again) > 0
    pd.testing.assert_frame_equal(stored[cols].reset_index(drop=True),
                                  again[cols].reset_index(drop=True), check_dtype=False)
    assert "other than those stored" not in caplog.text
    other = analyze_file(h5, detection_threshold_uv=5000.0)  # allowed, and said
    assert "detection_threshold_uv 50.0 -> 5000.0" in caplog.text
    assert not other.detected.any() and again.detected.any()


def test_damaged_trials_table_still_reanalysed_from_raw(files, tmp_path):
    _, paths, h5 = files
    broken = tmp_path / "broken.h5"
    broken.write_bytes(open(h5, "rb").read())
    with h5py.File(broken, "r+") as f:
        del f["trials"]["amplitude_uv"]  # a damaged trials table
    rec = open_record(broken)
    assert rec.warnings  # says the table is damaged
    rec.close()
    same(analyze_file(str(broken)), analyze_file(paths[0]))


def test_serial_and_local_dask_cluster_give_identical_tables(files):
    _, paths, h5 = files
    inputs = paths + [h5]
    serial = analyze_files(inputs)
    dask = analyze_files(inputs, jobs=2)
    assert [r.path for r in dask] == inputs
    for a, b in zip(serial, dask):
        assert a.error is None and b.error is None
        pd.testing.assert_frame_equal(a.frame, b.frame)


def test_remote_scheduler_address(files):
    from distributed import LocalCluster

    _, paths, _ = files
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = analyze_files(paths[:2], scheduler=cluster.scheduler_address)
    serial = analyze_files(paths[:2])
    for a, b in zip(serial, remote):
        assert b.error is None
        pd.testing.assert_frame_equal(a.frame, b.frame)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mepkit_cli.main", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_many_files_one_table_bad_file_reported(files, tmp_path):
    d, paths, h5 = files
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # HDF5 signature, nothing behind
    notrec = tmp_path / "plain.h5"
    with h5py.File(notrec, "w") as f:
        f["x"] = np.arange(3)
    out = tmp_path / "all.parquet"
    r = cli("analyze", *paths, h5, str(bad), str(notrec), "-o", str(out), "--jobs", "2")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errs = [line for line in r.stderr.splitlines() if ": error:" in line]
    assert len(errs) == 2 and any("bad.h5" in e for e in errs) and any("plain.h5" in e for e in errs)
    table = pd.read_parquet(out)
    assert set(table.file) == set(paths + [h5])
    serial = pd.concat([analyze_file(p) for p in paths + [h5]], ignore_index=True)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), serial, check_dtype=False)


def test_cli_convert_and_info(files, tmp_path):
    _, paths, _ = files
    out = tmp_path / "c.h5"
    r = cli("convert", paths[1], str(out), "--subject", "S07")
    assert r.returncode == 0, r.stderr
    r = cli("convert", paths[1], str(out))
    assert r.returncode == 2 and "exists" in r.stderr
    r = cli("info", str(out))
    assert r.returncode == 0 and "closed cleanly: yes" in r.stdout and "S07" in r.stdout


def test_analysing_a_record_releases_its_file(files, tmp_path):
    """analyze_file closes the record it opened: the file can be opened for writing after."""
    _, _, h5 = files
    copy = tmp_path / "copy.h5"
    copy.write_bytes(open(h5, "rb").read())
    analyze_file(copy)
    with h5py.File(copy, "r+") as f:  # fails while this process still holds it read-only
        assert f.attrs["mepkit_format"] == "mepkit-record"
    with pytest.raises(Exception):
        analyze_file(tmp_path / "missing.h5")
    held = open_record(copy)
    with pytest.raises(OSError):
        h5py.File(copy, "r+")  # the check above can fail: an open handle is seen
    held.close()
