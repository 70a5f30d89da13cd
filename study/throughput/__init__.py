"""Throughput: the measuring tools. The measurement protocol (bench.py), the machine's own peak (peak.py), settings
side by side (matrix.py), the data pipeline (data.py), seeds packed into one network against one by one
(packing.py, timing the packed step of packed_step.py; the product does not pack), ours against the official PSPNet50 (official.py) and the one-GPU check (gpu_check.py). Nothing
outside this package imports it but the one wiring point (study/run.py, for bench.py) and the command line."""
