"""The two private Optuna handles this runner needs, in one place.

Claiming a WAITING trial, re-queueing a dead worker's trial and heartbeats act on a trial by its storage id, which
Optuna's public API does not expose (its own retry callbacks use the same two attributes). If an Optuna upgrade
renames them, tests/test_optuna_handles.py fails loudly rather than the runner misbehaving quietly.
"""

from __future__ import annotations

import optuna


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object behind `study` (Optuna's private `Study._storage`)."""
    storage = getattr(study, "_storage", None)
    if not isinstance(storage, optuna.storages.BaseStorage):
        raise RuntimeError(f"optuna {optuna.__version__}: Study._storage is gone; update study/search/optuna_handles.py")
    return storage


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage id of a trial (Optuna's private `_trial_id`), which the storage's methods take."""
    value = getattr(trial, "_trial_id", None)
    if not isinstance(value, int):
        raise RuntimeError(f"optuna {optuna.__version__}: trial._trial_id is gone; update "
                           "study/search/optuna_handles.py")
    return value
