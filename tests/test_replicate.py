"""Replication across seed groups (study.results.replicate): verdicts per group, moves and reversals."""

import pytest
from fabricate import fabricate  # noqa: I001

from study.results.replicate import main, parse_seeds, replicate
from study.results.table import read_table

# seeds 0-2: B1-AVE 5-7 points above the FCN; seeds 3-5: 5-7 points below; B1236-AVE 10 points above throughout
FCN = [0.60, 0.61, 0.62, 0.60, 0.61, 0.62]
AVE = [0.66, 0.66, 0.69, 0.54, 0.56, 0.55]
PYR = [0.70, 0.71, 0.72, 0.70, 0.71, 0.72]


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ValueError, match="--groups: 'a-b' is not seeds"):
        parse_seeds("a-b")


def test_a_claim_that_flips_between_seed_groups_reverses(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": FCN, "B1-AVE": AVE, "B1236-AVE": PYR})
    rows = {(r["better"], r["worse"]): r for r in replicate(read_table(study), [[0, 1, 2], [3, 4, 5]])}
    flip = rows[("B1-AVE", "FCN")]
    assert flip["verdicts"] == ["supported", "contradicted"] and flip["moves"] and flip["reverses"]
    assert flip["diffs"] == pytest.approx([(6 + 5 + 7) / 3, (-6 - 5 - 7) / 3])
    steady = rows[("B1236-AVE", "FCN")]
    assert steady["verdicts"] == ["supported", "supported"] and not steady["moves"] and not steady["reverses"]


def test_groups_must_be_two_and_disjoint(tmp_path):
    study = fabricate(tmp_path / "results", {"FCN": FCN, "B1-AVE": AVE})
    df = read_table(study)
    with pytest.raises(ValueError, match="at least two groups"):
        replicate(df, [[0, 1, 2]])
    with pytest.raises(ValueError, match="share seeds"):
        replicate(df, [[0, 1, 2], [2, 3, 4]])


def test_cli_prints_the_table_and_counts(tmp_path, capsys):
    study = fabricate(tmp_path / "results", {"FCN": FCN, "B1-AVE": AVE, "B1236-AVE": PYR})
    assert main([str(study), "--groups", "0-2", "3-5"]) == 0
    out = capsys.readouterr().out
    assert "| seeds 0-2 " in out and "supported (+6.0, n=3)" in out and "contradicted (-6.0, n=3)" in out
    assert out.rstrip().endswith("3 claim rows: 1 move, 1 reverse.")
    assert main([str(tmp_path / "nowhere"), "--groups", "0-2", "3-5"]) == 2
    assert "results folder not found" in capsys.readouterr().err
