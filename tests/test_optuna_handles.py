"""Optuna's private handles the runner relies on: fails loudly if an Optuna upgrade changes them."""

import optuna
import pytest
from optuna.trial import TrialState

from study.search.optuna_handles import storage_of, trial_id


def test_storage_and_trial_ids_are_what_the_runner_uses():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="handles")
    study.enqueue_trial({"x": 1})
    storage = storage_of(study)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[0]
    tid = trial_id(waiting)
    # the claim: WAITING -> RUNNING through the storage, by id, granted once
    assert storage.set_trial_state_values(tid, TrialState.RUNNING) is True
    assert storage.get_trial(tid).number == waiting.number
    live = optuna.Trial(study, tid)
    assert trial_id(live) == tid
    storage.set_trial_user_attr(tid, "heartbeat", 1.5)
    assert study.get_trials(deepcopy=False)[0].user_attrs["heartbeat"] == 1.5


def test_a_renamed_handle_is_a_clear_error():
    class NoStorage:
        pass

    with pytest.raises(RuntimeError, match="Study._storage is gone"):
        storage_of(NoStorage())
    with pytest.raises(RuntimeError, match="_trial_id is gone"):
        trial_id(NoStorage())
