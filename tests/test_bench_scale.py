"""The runner-overhead benchmark: stand-in cells through the real queue and worker, exactly once, timed."""

import pytest

from study.search.scale import _stats, measure, table


def test_stats_are_milliseconds_with_a_nearest_rank_p95():
    s = _stats([i / 1000 for i in range(1, 21)])  # 1..20 ms
    assert s == {"median_ms": 10.5, "p95_ms": 19.0, "max_ms": 20.0, "n": 20}
    assert _stats([]) == {}


@pytest.mark.slow  # two worker processes
def test_two_workers_run_every_stand_in_cell_once_beside_earlier_cells():
    point = measure("journal", workers=2, cells=8, record_kb=1, cell_ms=0, earlier=3)  # table1: 8 variants, 1 seed
    assert point["cells"] == 8 and point["completed_once"] == 8 and sum(point["per_worker_cells"]) == 8
    assert point["earlier_cells"] == 3 and point["journal_bytes"] > 11 * 1024  # 11 records of >= 1 KB
    for key in ("claim", "setup", "tell"):
        assert point[key]["n"] == 8 and 0 < point[key]["median_ms"] <= point[key]["p95_ms"] <= point[key]["max_ms"]
    text = table([{"storage": "journal", **point}])
    assert "8/8" in text and "claim ms (median / p95)" in text
