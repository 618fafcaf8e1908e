"""Every data file a benchmark names at module level (``*_PATH``) exists: a moved file breaks
a benchmark that no other test runs whole."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for path in (ROOT / "bench").rglob("*.py")
    if path.name != "__init__.py"
)


@pytest.mark.parametrize("name", BENCHES)
def test_the_files_a_benchmark_names_exist(name):
    module = importlib.import_module(name)
    paths = {
        attribute: value
        for attribute, value in vars(module).items()
        if attribute.endswith("_PATH") and isinstance(value, Path)
    }
    assert [attribute for attribute, path in paths.items() if not path.exists()] == []


def test_it_reads_the_paths_of_the_benchmarks_that_name_files():
    assert importlib.import_module("bench.answers").OFF_TOPIC_PATH.name == "off_topic.json"
