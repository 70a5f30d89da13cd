"""Sweeps (grids and searches) on Optuna storage: study files (space.py), storage and the study lock
(storage.py), enqueue, claim and re-queue (queue.py), one worker (worker.py), local workers kept alive
(supervise.py), GPU and thread placement (placement.py), torchrun cells (cell_job.py), Slurm workers (slurm.py),
seeds-on-demand rounds (rounds.py), progress and the audit (outputs.py), each variant timed after a sweep
(variants.py), the runner's own overhead (scale.py), Optuna's private handles
(optuna_handles.py) and the sweep command (runner.py)."""
