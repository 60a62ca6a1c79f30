import json
import math
import os

import pytest
import torch

from mnist_probe.bench.accuracy import spread_rows
from mnist_probe.bench.cli import main
from mnist_probe.bench.peers import installed
from mnist_probe.bench.reports import bound_rows, took
from mnist_probe.bench.training import flops_per_image, rate
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.pages.render import render
from mnist_probe.precision import emulated_bf16
from mnist_probe.specs import INFERENCE_BATCH


@pytest.mark.slow  # every row of make bench, tiny: half a minute (the rows' parts are fast tests here)
def test_bench_runs_end_to_end_on_a_tiny_configuration(tmp_path):
    page = tmp_path / "PERFORMANCE.md"
    result = main(["--tiny", "--repeats", "1", "--out", str(tmp_path), "--page", str(page)])
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["machine"]["torch"] and on_disk["rows"] == result["rows"]
    assert on_disk["command"].startswith("python -m mnist_probe.bench")
    rows = {r["what"].split(" [")[0]: r for r in result["rows"]}  # notes in [...] after the name
    refusal = "start-up: bad command line -> one-line error (train.epochs=1.5)"
    assert rows[refusal]["unit"] == "s"
    startup = [r for r in result["rows"] if r["what"].startswith("start-up: ")]
    assert len(startup) == 4 and all(r["unit"] == "s" and math.isfinite(r["value"]) for r in startup)
    emulated = emulated_bf16(torch.device("cpu"))  # AVX2 kernels: bf16 neither probed nor trained
    for what in [
        "hook overhead",
        "shift sweep / plain inference",
        "train 32-true, Lightning / plain",
        *([] if emulated else ["train bf16-mixed, Lightning / plain"]),
        "train 32-true, achieved / matmul peak",
    ]:
        assert what in rows and math.isfinite(rows[what]["value"])
    assert any(what.startswith("train bf16") for what in rows) != emulated
    throughput = [r["value"] for r in result["rows"] if r["unit"] == "img/s"]
    assert len(throughput) >= 8 and all(math.isfinite(v) for v in throughput)
    # each ratio is what its own rows give (to the table's rounding)
    value = {what: r["value"] for what, r in rows.items()}
    light = next(v for w, v in value.items() if w.startswith("train 32-true, Lightning (batch"))
    assert value["train 32-true, Lightning / plain"] == pytest.approx(
        100 * light / value["train 32-true, plain PyTorch loop"], rel=0.01, abs=0.02
    )
    assert value["train 32-true, achieved"] == pytest.approx(
        value["FLOPs per image, forward + backward"] * light / 1000, rel=0.01, abs=0.02
    )
    small = f"batch {INFERENCE_BATCH}"
    free = value[f"inference, no hooks, {small}"]
    hooked = value[f"inference, hooks on all 12 layers, {small}"]
    assert value["hook overhead"] == pytest.approx(100 * (free / hooked - 1), rel=0.01, abs=0.05)
    assert value[f"  {small} / batch 1000"] == pytest.approx(
        value[f"inference, no hooks, {small}"] / value["inference, no hooks, batch 1000"], rel=0.01, abs=0.01
    )
    shift_rate = next(v for w, v in value.items() if w.startswith("shift grid ±"))
    assert value["shift sweep / plain inference"] == pytest.approx(
        100 * shift_rate / value["plain inference of the same images"], rel=0.01, abs=0.02
    )
    # beside the peers: the same activations as torchvision's feature extractor, the same Grad-CAM as a
    # plain autograd one; each ratio from its own rows; a peer of the bench extra, there or said missing
    fx = "torchvision create_feature_extractor"
    assert value[f"  {fx}: largest |difference| from record"] == 0
    # ResNet-18, each call of its ReLUs recorded: the extractor's nine bn1 outputs are overwritten in place
    resnet = " of ResNet-18, 1-channel stem"
    assert value[f"  {fx}{resnet}: largest |difference| from record"] > 0.1
    assert value[f"  {fx}{resnet}: layers whose values differ from record's (beyond rounding)"] == 9
    if installed("torchlens"):
        assert (
            value[
                f"  TorchLens log_forward_pass{resnet}: layers whose values differ from record's "
                "(beyond rounding)"
            ]
            == 0
        )
    assert value["  plain autograd: least Pearson r with mnist_probe's maps"] > 0.999
    assert value["  saliency: largest |difference| between the two maps"] == 0  # Captum's, to the rounding
    ours, plain = (
        value[f"record all 12 layers: {w}"]
        for w in ("mnist_probe record", "plain forward pass (records nothing)")
    )
    # the times are rounded to 0.01 s per 1,000 images (and the ratio to 0.01): within what that allows
    ratio = value["  mnist_probe record / plain forward pass"]
    assert (ours - 0.005) / (plain + 0.005) - 0.005 <= ratio <= (ours + 0.005) / (plain - 0.005) + 0.005
    assert 0.5 < value["  peak above / activations returned"] < 1.5  # a copy of them too many reads 1.7+
    if installed("torch_cka"):  # the same estimator on the same minibatches: the same matrix
        assert value["  largest |difference| between the two matrices"] < 1e-3
    peers = [
        ("torchlens", "record all 12 layers: TorchLens"),
        ("pytorch_grad_cam", "Grad-CAM: pytorch"),
        ("torch_cka", "CKA"),
    ]
    for peer, row in peers:
        there = [w for w in value if w.startswith(row)]
        assert there and (installed(peer) == ("not installed" not in there[0]))
    assert (tmp_path / "bench.md").read_text().startswith("| what | value | unit |\n")
    # the page, from the JSON: the machine, the command, every figure
    text = page.read_text()
    assert on_disk["machine"]["cpu"] in text and "Not measured yet: run `make bench-long`" in text
    assert f"| hook overhead | {rows['hook overhead']['value']:.4g} | % |" in text


def test_flop_count_matches_the_architecture_by_hand():
    # Forward MACs: 5x5 convs 1->64 and 64->64 at 28x28, 3x3 convs 64->64 twice at 14x14, dense layers.
    macs = 784 * 64 * 25 * (1 + 64) + 196 * 64 * 64 * 9 * 2 + 3136 * 256 + 256 * 10
    forward, both = flops_per_image(KerasCNN())
    assert forward == 2 * macs
    assert 2.5 * forward < both < 3.5 * forward  # backward: grads of inputs and weights


def test_rate_skips_warmup_steps():
    stamps = [0.0, 5.0, 6.0, 7.0, 8.0]  # a slow first step, then one second per step
    assert rate(stamps, batch=10, warmup=1) == 10.0


def test_bench_long_times_the_fast_recipe_and_the_default_one(tmp_path):
    result = main(["--tiny", "--long", "--every", "0.5", "--seeds", "2", "--out", str(tmp_path)])
    rows = {r["what"].split(",")[0]: r for r in result["rows"]}
    fast = rows["train=fast: time to 99.3% test accuracy"]
    images = rows["train=fast: images seen until then"]["value"]
    reaching = [p for p in result["curves"]["train=fast"] if p["acc"] >= 0.993]
    if reaching:  # the first test at 99.3% or more: its seconds and images
        assert (fast["value"], images) == (reaching[0]["seconds"], reaching[0]["images"])
    else:  # never reached: both said so, neither a number
        assert math.isnan(fast["value"]) and math.isnan(images)
    assert fast["unit"] == "s"
    final = next(r for r in result["rows"] if r["what"].startswith("train=default: final test accuracy"))
    assert final["value"] == pytest.approx(100 * result["curves"]["train=default"][-1]["acc"], abs=0.01)
    assert final["unit"] == "%"
    # tested every half epoch (4 steps of 7) and at each epoch's end, 2 epochs: the curve's points
    curve = result["curves"]["train=default"]
    assert [p["step"] for p in curve] == [4, 7, 8, 12, 14]
    assert [p["images"] for p in curve] == [256, 448, 512, 768, 896]
    assert all(a["seconds"] < b["seconds"] for a, b in zip(curve, curve[1:], strict=False))
    assert (tmp_path / "bench-long.md").read_text().startswith("| what | value | unit |\n")
    # the fast recipe again once per seed, each its own curve, summed up in its spread rows
    assert {"train=fast seed=42", "train=fast seed=43"} <= result["curves"].keys()
    assert result["curves"]["train=fast seed=42"] != result["curves"]["train=fast seed=43"]
    reached = next(
        r for r in result["rows"] if r["what"] == "train=fast, 2 seeds: reached 99.3% test accuracy"
    )
    got_there = sum(
        max(p["acc"] for p in result["curves"][f"train=fast seed={seed}"]) >= 0.993 for seed in (42, 43)
    )
    assert reached["unit"] == "of 2 seeds" and reached["value"] == got_there


def test_the_seed_spread_counts_the_seeds_that_got_there():
    def curve(*accs):
        return [{"images": 1000 * (k + 1), "seconds": 10.0 * (k + 1), "acc": a} for k, a in enumerate(accs)]

    rows = spread_rows("r", {1: curve(0.98, 0.993, 0.995), 2: curve(0.97, 0.99, 0.992), 3: curve(0.994)})
    by = {r["what"].split(": ", 1)[1]: r for r in rows}
    assert not any(" [" in r["what"] for r in rows)  # the page reads "NAME [...]" as a run's note
    reached = by["reached 99.3% test accuracy"]
    assert reached["value"] == 2 and reached["unit"] == "of 3 seeds"
    images = by["images to 99.3%, median of those that got there (min and max after the unit)"]
    assert images["value"] == 1500 and images["unit"] == "images [1000, 2000]"
    final = by["final test accuracy, mean (min and max after the unit)"]
    assert final["value"] == pytest.approx((99.5 + 99.2 + 99.4) / 3) and final["unit"] == "% [99.20, 99.50]"


def test_the_performance_page_is_written_from_the_json_alone(tmp_path):
    machine = {"cpu": "Test CPU (family 25, model 1, AVX2)", "cores": 2, "gpu": None, "torch": "2.14.1"}
    parts = (
        ("bench", "train 32-true, Lightning / plain"),
        ("bench-long", "train=fast: time"),
        ("bench-run", "make run's job, wall time"),
        ("bench-reports", "report on a CNN, wall time"),
    )
    for name, what in parts:
        (tmp_path / f"{name}.json").write_text(
            json.dumps(
                {
                    "machine": machine,
                    "command": f"python -m mnist_probe.bench {name}",
                    "date": "2026-12-01",
                    "rows": [{"what": what, "value": 97.25, "unit": "%"}],
                }
            )
        )
    page = tmp_path / "docs" / "PERFORMANCE.md"
    assert main(["--page-only", "--out", str(tmp_path), "--page", str(page)]) == {}  # nothing measured
    text = page.read_text()
    assert text.count("Machine: Test CPU (family 25, model 1, AVX2), 2 threads, torch 2.14.1") == 4
    assert "| train 32-true, Lightning / plain | 97.25 | % |" in text
    assert "| train=fast: time | 97.25 | % |" in text
    assert "`python -m mnist_probe.bench bench-long`, on 2026-12-01" in text and "Not measured" not in text
    # another run of make bench, under a kernel cap: a column of its own, its machine line, its own rows
    capped = machine | {"kernels": "AVX2", "capped": {"ATEN_CPU_CAPABILITY": "avx2"}}
    (tmp_path / "bench@avx2.json").write_text(
        json.dumps(
            {
                "machine": capped,
                "command": "capped",
                "rows": [
                    {"what": "train 32-true, Lightning / plain [a note]", "value": 99.5, "unit": "%"},
                    {"what": "bf16 not measured", "value": 1.0, "unit": "x"},
                ],
            }
        )
    )
    main(["--page-only", "--out", str(tmp_path), "--page", str(page)])
    text = page.read_text()
    assert "| what | value | value (avx2) | unit |" in text and "`value (avx2)`: Machine: Test CPU" in text
    assert "| train 32-true, Lightning / plain | 97.25 | 99.5 [a note] | % |" in text  # one row, noted
    assert "| bf16 not measured |  | 1 | x |" in text and "kernels capped at AVX2" in text
    (tmp_path / "bench@avx2.json").unlink()
    # make bench alone again, on another day: its section is new, bench-long's and bench-run's kept
    (tmp_path / "bench-long.json").unlink()
    (tmp_path / "bench-run.json").unlink()
    bench = json.loads((tmp_path / "bench.json").read_text()) | {"date": "2026-12-04"}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    main(["--page-only", "--out", str(tmp_path), "--page", str(page)])
    again = page.read_text()
    assert "`python -m mnist_probe.bench bench`, on 2026-12-04" in again
    assert "`python -m mnist_probe.bench bench-long`, on 2026-12-01" in again and "Not measured" not in again
    assert again.count("| train=fast: time | 97.25 | % |") == 1
    assert again.count("| make run's job, wall time | 97.25 | % |") == 1
    assert "\n\n## `make bench-run`" in again  # a blank line after the kept section before it
    # the page is its results file rendered: nothing else is read
    (tmp_path / "bench.json").unlink()
    assert render(page.with_suffix(".json")) == page and page.read_text() == again
    # another run alone (a kernel cap on another day) joins the stored part as a column
    (tmp_path / "bench@avx2.json").write_text(
        json.dumps({"machine": capped, "rows": [], "command": "capped"})
    )
    main(["--page-only", "--out", str(tmp_path), "--page", str(page)])
    capped_too = page.read_text()
    assert "| what | value | value (avx2) | unit |" in capped_too
    assert "`python -m mnist_probe.bench bench`, on 2026-12-04" in capped_too


def test_a_far_slower_precision_is_measured_briefly_and_an_impossible_ratio_is_flagged(monkeypatch):
    """bf16 emulated (10x slower in the probe): 2 timed steps once, marked; and a matmul probe that
    reads below the training's own rate makes the ratio say the probe failed, not '2,545%'."""
    from mnist_probe.bench import training as bench
    from mnist_probe.config import compose_config

    calls = []
    monkeypatch.setattr(
        bench, "lightning_rate", lambda cfg, p, steps, warmup, tmp: calls.append((p, steps)) or 100.0
    )
    monkeypatch.setattr(bench, "plain_rate", lambda cfg, p, steps, warmup: 100.0)
    monkeypatch.setattr(
        bench, "matmul_peak", lambda dtype, n, repeats: 0.28 if dtype == torch.bfloat16 else 500.0
    )
    cfg = compose_config()
    rows = bench.bench_training(
        cfg,
        ["32-true", "bf16-mixed"],
        steps=24,
        warmup=4,
        repeats=3,
        probe={"32-true": 150.0, "bf16-mixed": 15.0},
    )
    assert calls == [("32-true", 24)] * 3 + [("bf16-mixed", 2)]
    whats = [r["what"] for r in rows]
    assert any(
        w.startswith("train bf16-mixed, Lightning") and "[10x slower here: 2 steps only]" in w for w in whats
    )
    ratio = {r["what"].split(" [")[0]: r for r in rows}
    assert "peak probe failed" in next(
        w for w in whats if w.startswith("train bf16-mixed, achieved / matmul")
    )
    assert "[" not in next(w for w in whats if w.startswith("train 32-true, achieved / matmul"))
    assert ratio["train 32-true, achieved / matmul peak"]["value"] < 100


def test_every_lever_and_the_long_recipes_compose_and_change_what_they_say():
    """bench --levers trains each entry; each must compose, and each lever must differ from the
    one-epoch base in the setting it names (a misspelt override would be refused, or change nothing)."""
    from mnist_probe.bench import accuracy as bench
    from mnist_probe.config import compose_config

    cfgs = {name: compose_config(*overrides) for name, overrides in {**bench.LEVERS, **bench.LONG}.items()}
    base = cfgs["1 epoch"].train
    assert base.epochs == 1 and cfgs["train=default"].train.epochs == 3
    for name, cfg in cfgs.items():
        if name.startswith("1 epoch, "):
            assert cfg.train != base, name
    assert cfgs["1 epoch, batch 64"].train.batch_size == 64
    assert cfgs["1 epoch, label smoothing 0.1"].train.loss == "label_smoothing"
    fast = cfgs["train=fast"].train
    settings = (fast.epochs, fast.batch_size, fast.loss, fast.scheduler.factory.max_lr)
    assert settings == (2, 64, "label_smoothing", 0.004) and fast.epoch_images == 36000


def test_a_recipe_of_your_own_is_trained_and_reported_under_its_name(tmp_path):
    mine = "mine=train=fast train.scheduler.factory.max_lr=0.003"
    result = main(["--tiny", "--every", "0.5", "--out", str(tmp_path), "--recipe", mine])
    assert list(result["curves"]) == ["mine"]
    assert [r["what"].split(":")[0] for r in result["rows"]] == ["mine"] * 4
    assert (tmp_path / "bench-recipes.json").is_file()


@pytest.mark.parametrize(
    "environ, mkl",
    [
        ({}, None),
        ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2"),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2"),
        ({"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "AVX512"),
    ],
)
def test_mkl_is_capped_at_the_narrowest_width_the_other_caps_allow(environ, mkl):
    from mnist_probe.bench import mkl_cap

    assert mkl_cap(environ) == mkl


def test_the_matmul_peak_runs_under_the_cap_the_training_runs_under():
    """A bench capped for torch's and oneDNN's kernels caps MKL's too, before torch loads it: in a
    fresh process, the environment MKL reads holds the cap, and the machine record lists it."""
    import subprocess
    import sys

    code = (
        "import os, mnist_probe.bench.common as c; print(os.environ.get('MKL_ENABLE_INSTRUCTIONS'), "
        "sorted(k for k in c.CAP_VARIABLES if os.environ.get(k)))"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
    }
    env |= {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split(" ", 1) == [
        "AVX2",
        "['ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS', 'ONEDNN_MAX_CPU_ISA']\n",
    ]


def test_a_peer_not_installed_is_a_row_without_a_value(tmp_path, monkeypatch):
    """Without the bench extra each peer is a row that says how to install it, with no value (JSON
    null, an empty cell), and bench.json reads back as it was written."""
    from mnist_probe.bench import peers
    from mnist_probe.bench.cli import report
    from mnist_probe.keras_cnn import KerasCNN

    monkeypatch.setattr(peers, "installed", lambda module: False)
    torch.manual_seed(0)
    net, x = KerasCNN(filters=8).eval(), torch.rand(8, 1, 28, 28)
    rows = peers.bench_recording(net, x, 4, 1) + peers.bench_grad_cam(net, x, torch.arange(8), 4, 1)
    rows += peers.bench_cka(net, KerasCNN(filters=8), x, ["conv2d_1", "dense_2"], 8, 1)
    missing = [r for r in rows if "not installed" in r["what"]]
    assert [r["what"].split(" not installed")[0] for r in missing] == [
        "record all 12 layers: TorchLens",
        "Grad-CAM: pytorch-grad-cam",
        "CKA: torch-cka",
    ]
    result = report(rows, tmp_path, "peers")
    assert json.loads((tmp_path / "peers.json").read_text())["rows"] == result["rows"]
    assert (
        all(r["value"] is None for r in missing)
        and "TorchLens not installed (pip install" in (tmp_path / "peers.md").read_text()
    )


def test_resnet18_is_recorded_per_call_beside_torchvisions_extractor_which_returns_bn1_after_its_relu():
    """Every call of every ResNet-18 module has its FX node (the blocks' ReLU twice); record's values
    are each module's own output, where torchvision's extractor keeps the tensor that the in-place
    ReLU after each bn1 then overwrites: those nine layers, and only those, differ."""
    from torchvision.models.feature_extraction import create_feature_extractor

    from mnist_probe.bench.peers import fx_return_nodes, grey_resnet18
    from mnist_probe.hooks import record
    from mnist_probe.layer_names import resolve_layers

    torch.manual_seed(0)
    model, x = grey_resnet18(), torch.rand(4, 1, 28, 28)
    layers = resolve_layers(model, "all")
    nodes, leaves = fx_return_nodes(model, layers)
    assert sorted(nodes.values()) == sorted(layers) and {"layer1.0.relu:1", "layer1.0.relu:2"} <= set(layers)
    theirs = create_feature_extractor(model, return_nodes=nodes, tracer_kwargs={"leaf_modules": leaves})(x)
    ours = record(model, x, layers)
    differ = [k for k in layers if not torch.allclose(theirs[k], ours[k], atol=1e-5)]
    assert differ == ["bn1"] + [f"layer{i}.{j}.bn1" for i in range(1, 5) for j in range(2)]
    with torch.no_grad():
        assert torch.allclose(ours["bn1"], model.bn1(model.conv1(x)), atol=1e-6)
        assert (ours["bn1"] < 0).any() and torch.equal(theirs["bn1"], torch.relu(ours["bn1"]))
    assert torch.equal(ours["layer1.0.relu:1"], torch.relu(ours["layer1.0.bn1"]))


@pytest.mark.slow
def test_make_runs_job_from_a_fresh_clone_is_timed_and_its_parts_add_up(tmp_path):
    """make bench-run: the shift stage in a fresh clone with empty caches; training and the fits are
    the cache entries' own seconds, and the rest of the wall time is what is left of it."""
    main(["--make-run", "--tiny", "--out", str(tmp_path), "shift.dataset.samples=20"])
    written = json.loads((tmp_path / "bench-run.json").read_text())["rows"]
    rows = {r["what"].strip(): r["value"] for r in written}
    wall = rows["make run's job from a fresh clone (install apart), wall time"]
    train, fits = rows["of which training the CNN"], rows["of which fitting the interpreters"]
    rest = rows["the rest (start-up, code vectors, tables, the shift grid)"]
    assert 0 < train < wall and 0 < fits < wall and rest == pytest.approx(wall - train - fits, abs=0.02)
    each = [v for w, v in rows.items() if w.startswith("fit ")]  # rf@pixels, svm@pixels, rf1000, svm
    assert len(each) == 4 and sum(each) == pytest.approx(fits, abs=0.05)
    assert 0 < rows["the CNN's test accuracy"] <= 100


@pytest.mark.slow
def test_the_peers_give_the_values_mnist_probe_gives():
    """With the bench extra (make test-slow installs it): TorchLens records what record does on the
    study's CNN and, per call, on ResNet-18; pytorch-grad-cam's maps correlate 1.0 with ours on every
    image; torch-cka's matrix is ours (the same estimator, the same minibatches)."""
    from mnist_probe.bench import peers
    from mnist_probe.keras_cnn import KerasCNN

    missing = [p for p in ("torchlens", "pytorch_grad_cam", "torch_cka") if not peers.installed(p)]
    assert not missing, f"{missing} missing: pip install -e '.[bench]' (make test-slow installs it)"
    torch.manual_seed(0)
    from mnist_probe.data import load_mnist, to_float
    from tests.conftest import mnist_root

    net, x = KerasCNN(filters=16).eval(), to_float(load_mnist(mnist_root(), "test")[0][:200])
    few, resnet = x[:16], peers.grey_resnet18()
    value = {
        r["what"]: r["value"]
        for r in peers.bench_recording(net, few, 8, 1)
        + peers.bench_recording(resnet, few, 8, 1, " R")
        + peers.bench_grad_cam(net, few, torch.arange(16) % 10, 8, 1)
        + peers.bench_cka(net, KerasCNN(filters=16), x, ["conv2d_1", "dense_1"], 100, 1)
    }
    lens = "  TorchLens log_forward_pass{}: layers whose values differ from record's (beyond rounding)"
    assert value[lens.format("")] == 0 and value[lens.format(" R")] == 0
    assert value["  pytorch-grad-cam GradCAM: least Pearson r with mnist_probe's maps"] > 0.999
    assert value["  largest |difference| between the two matrices"] < 2e-3  # torch-cka sums in float32


def test_the_reports_bounds_are_costed_against_the_stage_at_full_sizes(tmp_path):
    def results(name, nn, svm, pixels, probes):
        rows = [
            {"interpreter": "nn", "features": "codes", "test_acc": nn},
            {"interpreter": "svm", "features": "codes", "test_acc": svm},
            {"interpreter": "svm", "features": "pixels", "test_acc": pixels},
        ]
        probe_rows = [{"layer": layer, "test_acc": acc} for layer, acc in probes.items()]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"rows": rows, "probes": probe_rows}))
        return path

    report = results("report", 0.98, 0.99, 0.95, {"conv": 0.90, "dense": 0.97})
    full = results("full", 0.99, 0.9950, 0.95, {"conv": 0.95, "dense": 0.98})
    rows = {r["what"].split(": ", 1)[1]: r["value"] for r in bound_rows(report, full)}
    assert rows["nn on codes, report minus full sizes"] == pytest.approx(-1.0)
    assert rows["svm on codes, report minus full sizes"] == pytest.approx(-0.5)
    assert not any("pixels" in what for what in rows)  # the pixels' interpreters see what they saw
    assert rows["linear probes, report minus full sizes (the layer that lost most)"] == pytest.approx(-5.0)


def test_a_runs_log_gives_each_stage_and_beyond_step_its_seconds(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(
        "[t][mnist_probe.stages.adapters][INFO] - train stage done in 9 s\n"
        "[t][mnist_probe.stages.adapters][INFO] - interpreters stage done in 2.5 min\n"
        "[t][mnist_probe.stages.adapters][INFO] - beyond: CKA under shifts took 17 s\n"
        "[t][mnist_probe.stages.train][INFO] - something else done in 3 s\n"
    )
    assert took(log) == {"train": 9.0, "interpreters": 150.0, "beyond: CKA under shifts": 17.0}
    assert took(tmp_path / "missing.log") == {}
