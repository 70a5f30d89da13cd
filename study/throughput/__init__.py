"""Throughput: the measurement protocol (bench.py), the settings chosen per device (settings.py), the machine's own
peak (peak.py), settings side by side (matrix.py), the data pipeline (data.py), per-variant timing after a sweep
(variants.py), the runner's overhead (scale.py), seeds packed into one network against one by one (packing.py), ours
against the official PSPNet50 (official.py) and the one-GPU check (gpu_check.py)."""
