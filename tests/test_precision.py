"""precision: auto is measured on this machine, once, and decides the CNN's key."""

import pytest
import torch

from mnist_probe import precision
from mnist_probe.specs import DataSpec, Hardware, Recipe
from mnist_probe.training import cnn_key, resolve_precision
from tests.conftest import mnist_root


@pytest.mark.parametrize("fp32, bf16, chosen", [(150.0, 12.0, "32-true"), (75.0, 130.0, "bf16-mixed")])
def test_the_faster_precision_is_chosen(monkeypatch, fp32, bf16, chosen):
    rates = {"32-true": fp32, "bf16-mixed": bf16}
    monkeypatch.setattr(precision, "emulated_bf16", lambda device: False)  # an AVX-512 machine's choice
    monkeypatch.setattr(precision, "step_rate", lambda p, device: rates[p])
    result = precision.measure("cpu")
    assert result["chosen"] == chosen and result["rates"] == rates


def test_kernels_capped_at_another_width_are_another_machine(monkeypatch):
    full = precision.machine_key("cpu")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    capped = precision.machine_key("cpu")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert capped != precision.machine_key("cpu") and full in (capped, precision.machine_key("cpu"))


def test_measured_once_per_machine_then_read(monkeypatch, tmp_path):
    calls = []

    def fake(accelerator, rounds=2):
        calls.append(accelerator)
        return {"rates": {"32-true": 100.0, "bf16-mixed": 50.0}, "chosen": "32-true", "device": "cpu"}

    monkeypatch.setattr(precision, "measure", fake)
    first = precision.fastest("cpu", tmp_path)
    assert len(list(tmp_path.glob("precision-*/meta.json"))) == 1
    precision._fastest.cache_clear()  # a new process: the answer comes from the disk, not memory
    again = precision.fastest("cpu", tmp_path)
    assert first == again and first["chosen"] == "32-true" and len(calls) == 1
    precision._fastest.cache_clear()
    assert precision.fastest("cpu", tmp_path / "other")["chosen"] == "32-true" and len(calls) == 2


def test_a_real_measurement_gives_a_rate_for_each_precision():
    rate = precision.step_rate("32-true", torch.device("cpu"), batch=8, steps=2, budget_s=0.0)
    assert rate > 0  # budget 0: one timed step, not the loop's full count


@pytest.mark.parametrize("machine, capability, measured", [
    ("x86_64", "AVX2", ["32-true"]),  # no bf16 instructions: emulated, not worth measuring
    ("x86_64", "DEFAULT", ["32-true"]),
    ("x86_64", "AVX512", ["32-true", "bf16-mixed"]),  # maybe native (AVX512-BF16, AMX): measured
    ("aarch64", "DEFAULT", ["32-true", "bf16-mixed"]),
])  # fmt: skip
def test_bf16_is_measured_only_where_the_cpu_may_have_it(monkeypatch, machine, capability, measured):
    monkeypatch.setattr(precision.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    timed = []
    monkeypatch.setattr(precision, "step_rate", lambda p, device: timed.append(p) or 100.0)
    result = precision.measure("cpu", rounds=1)
    assert timed == measured and list(result["rates"]) == measured and result["chosen"] == "32-true"


def test_auto_resolves_to_a_candidate_and_explicit_values_pass_through():
    assert resolve_precision("auto", "cpu") in precision.CANDIDATES
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("32-true", "auto") == "32-true"


def test_the_key_holds_what_auto_resolved_to(monkeypatch):
    data = DataSpec(root=mnist_root())
    for chosen in ("32-true", "bf16-mixed"):
        monkeypatch.setattr("mnist_probe.training.fastest", lambda acc, chosen=chosen: {"chosen": chosen})
        # auto trains what it resolves to: the same CNN as asking for that precision
        assert cnn_key(data, Recipe(), 0, hardware=Hardware(precision="auto")) == cnn_key(
            data, Recipe(), 0, hardware=Hardware(precision=chosen))
    assert cnn_key(data, Recipe(), 0, hardware=Hardware(precision="32-true")) != cnn_key(
        data, Recipe(), 0, hardware=Hardware(precision="bf16-mixed"))
