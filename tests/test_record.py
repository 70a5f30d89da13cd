"""The run record's `trained` judgement: a pure function of the logged losses."""

import dataclasses

import pytest

from study.record import RunRecord, read_record, training_check, write_record


def test_trained_when_the_final_loss_falls_to_the_ratio_of_the_first():
    curves = [{"step": 100, "loss": 0.9}, {"step": 100, "val_miou": 0.3}, {"step": 200, "loss": 0.35}]
    trained, check = training_check(curves, initial_loss=1.4, max_ratio=0.5)
    assert trained is True
    assert check == {"rule": "final_loss <= max_ratio x initial_loss", "max_ratio": 0.5, "initial_loss": 1.4,
                     "final_loss": 0.35, "ratio": pytest.approx(0.25)}
    # a plateau: 0.745 / 1.4 = 0.532 > 0.5
    trained, check = training_check([{"loss": 1.0}, {"loss": 0.745}], initial_loss=1.4, max_ratio=0.5)
    assert trained is False and check["ratio"] == pytest.approx(0.745 / 1.4)
    assert training_check([{"loss": 0.7}], initial_loss=1.4, max_ratio=0.5)[0] is True  # the bound is inclusive


def test_no_judgement_without_numbers_or_with_the_check_off():
    assert training_check([{"loss": 0.3}], initial_loss=1.4, max_ratio=0.0) == (None, {})
    assert training_check([{"val_miou": 0.3}], initial_loss=1.4, max_ratio=0.5) == (None, {})
    assert training_check([{"loss": 0.3}], initial_loss=None, max_ratio=0.5) == (None, {})


def test_records_without_the_field_read_as_not_judged(tmp_path):
    rec = RunRecord(id="A__s0", study="s", variant="A", seed=0, config={}, config_hash="x", status="completed")
    old = {k: v for k, v in rec.to_dict().items() if k not in ("trained", "training_check")}
    assert RunRecord.from_dict(old).trained is None and RunRecord.from_dict(old).training_check == {}
    judged = dataclasses.replace(rec, trained=False, training_check={"ratio": 0.53})
    write_record(judged, tmp_path)
    assert read_record(tmp_path / "record.json") == judged
