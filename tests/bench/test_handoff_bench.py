"""bench/handoff.py with tiny numbers: two real Daphne processes, Redis, a throw-away database.

Every agent message must reach its customer once, across processes and within one, and the
database must hold each one; the latencies must be real (positive, ordered, under the timeout).
"""

from __future__ import annotations

import math
import os

import pytest

from bench.handoff import CROSS, SAME, TIMEOUT, parse_args, run_benchmark

needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="needs REDIS_URL: the two web processes share the Redis channel layer; CI sets it",
)


@pytest.mark.slow
@needs_redis
@pytest.mark.parametrize("in_flight", [1, 2])
def test_it_delivers_every_agent_message_across_processes_and_within_one(in_flight):
    report = run_benchmark(
        customers=2,
        messages=3,
        warmup=1,
        in_flight=in_flight,
        redis_url=os.environ["REDIS_URL"],
        database_url=os.environ.get("DATABASE_URL", ""),
    )

    assert set(report.results) == {CROSS, SAME}
    for name, result in report.results.items():
        assert result["errors"] == [], name
        assert result["sent"] == result["delivered"] == 2 * 3, name
        assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"] < TIMEOUT * 1000
        assert result["messages_per_s"] > 0
    assert report.stored == report.expected_stored == 2 * 2 * (1 + 3)  # warm-up ones included
    assert all(math.isfinite(value) and value > 0 for value in report.ratio.values())
    assert report.ok


def test_it_refuses_nonsense_sizes_and_using_no_database():
    for argv in (["--customers", "0"], ["--warmup", "-1"], ["--in-flight", "0"]):
        with pytest.raises(SystemExit):
            parse_args(argv)
    with pytest.raises(SystemExit):
        parse_args(["--use-database", "--database-url", ""])
    assert parse_args(["--customers", "3"]).customers == 3
