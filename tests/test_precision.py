"""precision: auto is measured on this machine, once, and decides the CNN's key."""

import pytest
import torch

from mnist_probe import precision
from mnist_probe.trainer import resolve_precision


@pytest.mark.parametrize("fp32, bf16, chosen", [(150.0, 12.0, "32-true"), (75.0, 130.0, "bf16-mixed")])
def test_the_faster_precision_is_chosen(monkeypatch, fp32, bf16, chosen):
    rates = {"32-true": fp32, "bf16-mixed": bf16}
    monkeypatch.setattr(precision, "emulated_bf16", lambda device: False)  # an AVX-512 machine's choice
    monkeypatch.setattr(precision, "step_rate", lambda p, device: rates[p])
    result = precision.measure("cpu")
    assert result["chosen"] == chosen and result["rates"] == rates


def test_kernels_capped_at_another_width_are_another_machine(monkeypatch):
    real, full = torch.backends.cpu.get_cpu_capability(), precision.machine_key("cpu")
    keys = {}
    for capability in ("AVX2", "AVX512", real):  # whatever this CPU's kernels are (x86 or not)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        keys[capability] = precision.machine_key("cpu")
    assert keys["AVX2"] != keys["AVX512"] and keys[real] == full


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


@pytest.mark.parametrize("name, bf16", [("32-true", False), ("bf16-mixed", True)])
def test_the_probe_times_each_precision_as_asked_within_its_budget(monkeypatch, name, bf16):
    """One warm-up step, then the timed steps at that precision: all of them within the budget, one
    when the budget is spent (a precision far slower stops early)."""
    seen = []
    monkeypatch.setattr(precision, "train_step", lambda model, optimizer, x, y, b16: seen.append(b16))
    precision.step_rate(name, torch.device("cpu"), batch=8, steps=3, budget_s=1e9)
    assert seen == [bf16] * 4
    seen.clear()
    precision.step_rate(name, torch.device("cpu"), batch=8, steps=3, budget_s=0.0)
    assert seen == [bf16] * 2


@pytest.mark.parametrize(
    "machine, capability, measured",
    [
        ("x86_64", "AVX2", ["32-true"]),  # no bf16 instructions: emulated, not worth measuring
        ("x86_64", "DEFAULT", ["32-true"]),
        ("x86_64", "AVX512", ["32-true", "bf16-mixed"]),  # maybe native (AVX512-BF16, AMX): measured
        ("aarch64", "DEFAULT", ["32-true", "bf16-mixed"]),
    ],
)
def test_bf16_is_measured_only_where_the_cpu_may_have_it(monkeypatch, machine, capability, measured):
    monkeypatch.setattr(precision.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    timed = []
    monkeypatch.setattr(precision, "step_rate", lambda p, device: timed.append(p) or 100.0)
    result = precision.measure("cpu", rounds=1)
    assert timed == measured and list(result["rates"]) == measured and result["chosen"] == "32-true"


def test_auto_resolves_to_a_candidate_and_explicit_values_pass_through():
    assert resolve_precision("auto", "cpu") == precision.fastest("cpu")["chosen"]  # what was measured
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("32-true", "auto") == "32-true"
