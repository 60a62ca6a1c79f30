"""The one get-or-compute: computed once, published whole, damage detected and recomputed."""

import json
import logging

import pytest

from mnist_probe.cache import config_key, get_or_compute


class Counter:
    """compute() that writes one file and counts its calls; load() reads it back."""

    def __init__(self, text: str = "payload") -> None:
        self.calls, self.text = 0, text

    def compute(self, staging):
        self.calls += 1
        (staging / "data.txt").write_text(self.text)
        return {"what": "test"}

    @staticmethod
    def load(entry, meta):
        return (entry / "data.txt").read_text()


def test_computed_once_then_loaded(tmp_path):
    c = Counter()
    value, meta, cached = get_or_compute(tmp_path / "a", c.compute, c.load)
    assert (value, cached, c.calls) == ("payload", False, 1)
    assert meta["files"].keys() == {"data.txt"} and len(meta["files"]["data.txt"]) == 64
    value, meta2, cached = get_or_compute(tmp_path / "a", c.compute, c.load)
    assert (value, cached, c.calls) == ("payload", True, 1) and meta2 == meta
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["a"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "meta"])
def test_a_damaged_entry_is_moved_aside_and_recomputed(tmp_path, caplog, damage):
    c = Counter()
    get_or_compute(tmp_path / "a", c.compute, c.load)
    target = tmp_path / "a" / ("meta.json" if damage == "meta" else "data.txt")
    if damage == "truncate":
        target.write_text("pay")
    elif damage == "flip":
        target.write_text("Payload")
    elif damage == "delete":
        target.unlink()
    else:
        target.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="mnist_probe.cache"):
        value, _, cached = get_or_compute(tmp_path / "a", c.compute, c.load)
    assert (value, cached, c.calls) == ("payload", False, 2)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "damaged" in warnings[0] and "\n" not in warnings[0]
    assert len(list(tmp_path.glob("a.damaged-*"))) == 1  # kept for a look, never reused


def test_a_failed_computation_publishes_nothing_and_keeps_its_staging(tmp_path):
    def crash(staging):
        (staging / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_or_compute(tmp_path / "a", crash, Counter.load)
    assert not (tmp_path / "a").exists()
    assert (tmp_path / "a.partial" / "half.txt").is_file()  # a rerun finds it (training resumes)

    def resume(staging):
        assert (staging / "half.txt").read_text() == "half"
        (staging / "half.txt").unlink()
        (staging / "data.txt").write_text("whole")
        return {}

    value, meta, cached = get_or_compute(tmp_path / "a", resume, Counter.load)
    assert value == "whole" and not cached and not (tmp_path / "a.partial").exists()
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["files"].keys() == {"data.txt"}


def test_key_covers_every_part():
    base = config_key({"a": 1, "b": [1, 2]}, "x", 3)
    assert base == config_key({"b": [1, 2], "a": 1}, "x", 3)  # dict order does not matter
    assert base != config_key({"a": 1, "b": [1, 3]}, "x", 3)
    assert base != config_key({"a": 1, "b": [1, 2]}, "x", 4)
