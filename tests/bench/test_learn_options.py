"""bench/learn.py's command-line arms and the seed-spread table."""

from __future__ import annotations

import argparse

import pytest

from bench.learn import _arm
from bench.learning.runner import BenchConfig, Measurement, spread_table


def test_an_arm_is_a_named_configuration_with_typed_overrides():
    parser = argparse.ArgumentParser()

    arm = _arm("strong:lr=1e-4,epochs=3,regularizer=l2sp", parser)

    assert arm == BenchConfig("strong", {"lr": 1e-4, "epochs": 3, "regularizer": "l2sp"})
    with pytest.raises(SystemExit):
        _arm("broken:lr", parser)


def test_the_spread_is_the_median_and_range_over_seeds():
    def held_out(share: float) -> Measurement:
        return Measurement(0.0, share, 1.0, 1.0)

    table = spread_table(
        {"default": [held_out(0.5), held_out(0.25), held_out(0.75)], "lambda=0": [held_out(0.5)]}
    ).splitlines()

    assert table[1].split() == ["default", "3", "50%", "[25%,", "75%]"]
    assert table[2].split() == ["lambda=0", "1", "50%", "[50%,", "50%]"]
