import json
import math

from mnist_probe.bench import flops_per_image, main, rate
from mnist_probe.model import KerasCNN


def test_bench_runs_end_to_end_on_a_tiny_configuration(tmp_path):
    result = main(["--tiny", "--repeats", "1", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["machine"]["torch"] and on_disk["rows"] == result["rows"]
    rows = {r["what"]: r for r in result["rows"]}
    refusal = "bad command line -> one-line error (train.epochs=1.5)"
    assert rows[refusal]["value"] > 0 and rows[refusal]["target"] == "<= 3 s"  # measured, not judged
    for what in ["hook overhead", "shift sweep / plain inference", "train 32-true, Lightning / plain",
                 "train bf16-mixed, Lightning / plain", "train 32-true, achieved / matmul peak"]:
        assert what in rows and math.isfinite(rows[what]["value"])
    throughput = [r["value"] for r in result["rows"] if r["unit"] == "img/s"]
    assert len(throughput) >= 8 and all(v > 0 for v in throughput)
    assert (tmp_path / "bench.md").read_text().startswith("| what | value | unit | target |")


def test_flop_count_matches_the_architecture_by_hand():
    # Forward MACs: 5x5 convs 1->64 and 64->64 at 28x28, 3x3 convs 64->64 twice at 14x14, dense layers.
    macs = 784 * 64 * 25 * (1 + 64) + 196 * 64 * 64 * 9 * 2 + 3136 * 256 + 256 * 10
    forward, both = flops_per_image(KerasCNN())
    assert forward == 2 * macs
    assert 2.5 * forward < both < 3.5 * forward  # backward: grads of inputs and weights


def test_rate_skips_warmup_steps():
    stamps = [0.0, 5.0, 6.0, 7.0, 8.0]  # a slow first step, then one second per step
    assert rate(stamps, batch=10, warmup=1) == 10.0


def test_time_to_accuracy_reports_one_row_per_epoch(tmp_path):
    result = main(["--tiny", "--long", "--out", str(tmp_path)])
    rows = result["rows"]
    assert [r["what"].split(":")[0] for r in rows[:-1]] == ["epoch 1", "epoch 2"]
    assert all(0 <= r["value"] <= 100 for r in rows[:-1])
    assert rows[-1]["what"].startswith("time to 99.3% test accuracy")
    assert (tmp_path / "bench-long.md").is_file()
