"""The benchmark runs end to end at a tiny size: every phase, every figure.

No figure is asserted (timings vary by machine); what must hold is that the
script finishes, every queued message reached the sink exactly once (the
script exits 1 otherwise) and the JSON holds a figure for every target.
"""

import json
import os
import subprocess
import sys

from conftest import DATABASES, REQUIRE, ROOT, _check

TARGETS = {
    "enqueue_sqlite_commit_mean",
    "enqueue_sqlite_tx_mean",
    "drain_sqlite_1_rate",
    "drain_sqlite_1_cpu",
    "drain_postgres_2_rate",
    "backlog_batch_ratio",
    "backlog_rss_growth",
    "relay_worker_rate",
    "latency_p95",
    "idle_queries",
    "baseline_rate",
    "built_rate",
    "enqueue_dropin_raw_commit",
    "enqueue_dropin_commit_mean",
    "drain_dropin_1_rate",
    "drain_dropin_1_trips",
    "drain_postgres_1_rate",
    "wire_smtplib_trips",
    "wire_worker_rate",
    "wire_worker_trips",
    "wire_worker_connections",
}


def test_bench_quick(tmp_path):
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        os.path.join(ROOT, "bench", "bench.py"),
        "--quick",
        "--json",
        str(out),
    ]
    problem = _check("postgres", DATABASES["postgres"])
    wanted = set(TARGETS)
    if problem and not REQUIRE:
        command.append("--no-postgres")
        wanted -= {"drain_postgres_1_rate", "drain_postgres_2_rate"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["problems"] == []
    figures = {f["key"]: f for f in result["figures"]}
    assert wanted <= set(figures), wanted - set(figures)
    for key in wanted:
        assert figures[key]["value"] is not None and figures[key]["value"] >= 0, key
    raw = result["raw"]
    assert raw["drain_sqlite_1"]["sent"] == raw["drain_sqlite_1"]["n"]
    assert raw["relay_worker"]["sent"] == raw["relay_worker"]["n"]
    assert raw["wire_worker"]["sent"] == raw["wire_worker"]["n"]
    # smtplib awaits each reply; the sink (advertising PIPELINING) counts fewer
    # round trips from the outbox, which pipelines.
    assert raw["prebuilt"]["trips"] >= 4 > raw["drain_dropin_1"]["trips"]
    assert raw["latency"]["n"] == result["args"]["latency"]
    # The baseline sends the same MIME as the outbox, so ratios compare like with like.
    assert abs(raw["drain_sqlite_1"]["size"] / raw["baseline"]["size"] - 1) < 0.1
    assert "enqueue, commit each: mean" in done.stdout


def test_enqueue_floor_runs():
    """bench/enqueue_floor.py prints its three sides, each with a ratio."""
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "enqueue_floor.py"), "--messages", "20"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sides = [line.split()[0] for line in done.stdout.splitlines()[1:]]
    assert sides == ["send", "least", "sqlite3"], done.stdout
    assert done.stdout.splitlines()[-1].endswith("1.00x")
