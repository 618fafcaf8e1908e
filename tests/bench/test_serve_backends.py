"""bench/serve.py --backend openai with tiny numbers: real Daphnes in front of a real serve_model.

Every set-up (in-process, one openai web process, two of them sharing one serve_model) must
answer every message with nothing lost, and the openai web process must never load torch.
"""

from __future__ import annotations

import re

import pytest

from bench.serve import main, parse_args


def test_it_defaults_to_the_issues_session_counts_for_the_openai_backend():
    args = parse_args(["--backend", "openai"])
    assert (args.sessions, args.messages, args.repeats) == ([1, 32], 4, 5)
    assert parse_args([]).sessions == [1, 8, 32, 64]
    with pytest.raises(SystemExit):
        parse_args(["--backend", "openai", "--repeats", "0"])


@pytest.mark.slow
def test_it_serves_every_session_through_serve_model_from_one_and_two_web_processes(capsys):
    main(
        ["--quick", "--backend", "openai", "--sessions", "1,4", "--messages", "2", "--repeats", "1"]
    )
    out = capsys.readouterr().out

    for setup in ("in-process", "openai", "openai x2"):
        for n in (1, 4):
            row = re.search(rf"^{re.escape(setup)} +{n} +(\d+) .* (\d+) +0 +0 ok$", out, re.M)
            assert row, f"{setup} N={n} missing or not ok:\n{out}"
            assert int(row.group(1)) > 0  # tokens/s
            assert int(row.group(2)) == n * 2  # every message answered
    assert "PASS  openai web process RSS" in out and "torch never loaded" in out, out
    assert "PASS  errors, busy answers and count mismatches: 0" in out, out
    assert re.search(r"(PASS|FAIL)  N=1 TTFT p50 through serve_model [\d.]+ ms", out), out
