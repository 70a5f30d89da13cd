"""Results, without torch: records to the results table (table.py), the ablation axes (axes.py), per-variant
summaries and protocol checks (summary.py), the verdict rule (stats.py), the claims and their rows (claims.py),
detectable differences (power.py) and planning against m (plan.py), image-level and two-level intervals
(images.py), seeds on demand (sequential.py, on_demand.py), replication on disjoint seed groups (replicate.py), the
probe controls (controls.py), the A/A (aa.py) and a search study's trials (search.py)."""
