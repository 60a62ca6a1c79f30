import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch

from mnist_probe import UserError
from mnist_probe import training as train_mod
from mnist_probe.model import load_model
from mnist_probe.model_spec import ModelSpec
from mnist_probe.schema import typed
from mnist_probe.specs import DataSpec, Hardware, Recipe
from mnist_probe.stages.adapters import trained_cnn
from mnist_probe.training import cnn_key
from tests.conftest import key_of, make_cfg, mnist_root


def test_short_training_beats_90_percent(small_run):
    cfg, results = small_run
    assert results["test_images"] == 1000
    assert results["test_acc"] > 0.90
    assert results["cached"] is False and Path(results["checkpoint"]).is_file()


def test_run_writes_results_json_and_tensorboard(small_run):
    cfg, results = small_run
    out = Path(cfg.paths.output_dir)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["test_acc"] == results["test_acc"]
    assert {"seed", "config_hash", "versions", "device", "precision", "format"} <= on_disk.keys()
    # the training curves: one value an epoch of the validation accuracy and loss, 4 epochs
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (out / "tb" / "train").rglob("events.out.tfevents.*")
    curves = EventAccumulator(str(events))
    curves.Reload()
    for tag in ("val_acc", "val_loss", "train_acc"):
        assert len(curves.Scalars(tag)) == 4, tag
    assert curves.Scalars("val_acc")[-1].value == pytest.approx(on_disk["val_acc"], abs=1e-6)


def test_second_fit_or_load_does_not_train(small_run, monkeypatch):
    cfg, results = small_run

    def refuse(*args, **kwargs):
        raise AssertionError("trained again although the cache holds this model")

    monkeypatch.setattr(train_mod, "train_cnn", refuse)
    cnn = trained_cnn(cfg)
    assert cnn.meta["cached"] is True and cnn.test_acc == results["test_acc"]
    trained = torch.load(results["checkpoint"], weights_only=True)
    assert all(torch.equal(v, trained[k]) for k, v in cnn.model.state_dict().items())


def test_a_cache_moved_elsewhere_names_its_checkpoint_where_it_is_now(small_run, tmp_path, monkeypatch):
    """A cache copied to another folder (or from another machine) loads without training, and the
    checkpoint it reports is the copy's, not the path its meta.json was written at; it says which
    machine trained it."""
    cfg, results = small_run
    moved = tmp_path / "moved"
    shutil.copytree(cfg.paths.cache, moved)
    monkeypatch.setattr(train_mod, "train_cnn", lambda *a, **k: pytest.fail("trained again"))
    c = typed(cfg)
    cnn = train_mod.fit_or_load(c.data, c.train, c.seed, moved, None, c.model, c.trainer)
    assert cnn.meta["cached"] and Path(cnn.meta["checkpoint"]).parent.parent == moved
    assert Path(cnn.meta["checkpoint"]).is_file() and cnn.meta["trained_on"].startswith(("cpu: ", "cuda: "))


def test_changed_hyperparameter_changes_the_key(tmp_path):
    a = key_of(make_cfg(tmp_path))
    for changed in (
        "train.optimizer.lr=0.01",
        "seed=1",
        "data.test_subset=100",
        "data.train_subset=1000",
        "data.split_seed=1",
        "data.val_size=100",
        "+model.dense=128",
        "train.epoch_images=1000",
    ):
        assert a != key_of(make_cfg(tmp_path, changed)), changed
    # where MNIST lives and how the run looks do not change the model: the same files elsewhere
    shutil.copytree(Path(mnist_root()) / "MNIST", tmp_path / "elsewhere" / "MNIST")
    assert a == key_of(make_cfg(tmp_path, f"data.root={tmp_path / 'elsewhere'}", "trainer.progress_bar=true"))


def test_the_cnn_key_holds_the_loss_the_processes_per_step_and_the_resolved_precision(monkeypatch):
    """Of the hardware, what trains other weights: the precision (auto as what it resolves to) and how
    many processes share a step, not the strategy that runs them; and the loss."""
    data = DataSpec(root=mnist_root())

    def key(recipe: Recipe | None = None, **hardware) -> str:
        return cnn_key(data, recipe or Recipe(), 0, hardware=Hardware(**hardware))

    assert len({key(Recipe(loss=loss)) for loss in ("clipped", "cross_entropy", "label_smoothing")}) == 3
    one = key(precision="32-true")
    assert key(precision="32-true", strategy="ddp") == one  # one process: the same CNN
    assert key(precision="32-true", strategy="ddp", devices=2) != one  # a global batch twice as big
    assert key(precision="32-true", strategy="ddp", devices=2) == key(precision="32-true", num_nodes=2)
    assert key(precision="bf16-mixed") != one
    for chosen in ("32-true", "bf16-mixed"):
        monkeypatch.setattr("mnist_probe.trainer.fastest", lambda acc, chosen=chosen: {"chosen": chosen})
        assert key(precision="auto") == key(precision=chosen)  # auto trains what it resolves to


def test_load_model_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "truncated.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), bad)
    with pytest.raises(
        UserError,
        match=r"does not fit KerasCNN \(missing conv2d_1.weight, conv2d_1.bias, "
        r"conv2d_2.weight and 9 more; unexpected weight, bias\)",
    ):
        load_model(bad)
    bad.write_bytes(bad.read_bytes()[:20])
    with pytest.raises(UserError, match="truncated"):
        load_model(bad)


def test_the_study_recipe_and_model_are_the_library_defaults(tmp_path):
    """train=study and model=keras_cnn add nothing to Recipe() and ModelSpec() (what a notebook gets);
    the default recipe differs from the study's only where conf/train/default.yaml says."""
    study, default = typed(make_cfg(tmp_path, "train=study")), typed(make_cfg(tmp_path, "train=default"))
    assert study.train == Recipe() and default.model == ModelSpec()
    assert (default.train.epochs, default.train.batch_size, default.train.loss) == (3, 128, "cross_entropy")
    assert default.train.scheduler.factory["_target_"].endswith("OneCycleLR")
    assert "mode" not in default.train.scheduler.factory  # the one-cycle schedule replaced the plateau


def test_epoch_images_trains_that_many_images_an_epoch(tmp_path, caplog):
    # train.epoch_images=150 with batch 64: 3 whole batches an epoch (192 images), not the split's 8
    cfg = make_cfg(
        tmp_path,
        "data.train_subset=500",
        "data.val_size=500",
        "train.batch_size=64",
        "train.epochs=2",
        "train.epoch_images=150",
        "+model.filters=4",
        "+model.dense=16",
        "train.gap_images=0",
        "trainer.precision=32-true",
    )
    c = typed(cfg)
    dm, lit = train_mod.make_datamodule(c.data, c.train), train_mod.make_lit(c.train, c.model)
    trainer = train_mod.make_trainer(
        c.train, c.trainer, tmp_path / "logs", tmp_path / "work", enable_progress_bar=False
    )
    with caplog.at_level(logging.INFO, logger="mnist_probe.trainer"):
        trainer.fit(lit, datamodule=dm)
    assert trainer.global_step == 2 * 3
    # each epoch says what it reached and what is left, with no progress bar
    said = [r.getMessage() for r in caplog.records if r.name == "mnist_probe.trainer"]
    assert [m.split(" (")[0] for m in said] == ["epoch 1 of 2 done", "epoch 2 of 2 done"], said
    assert all(
        re.search(r"\(train_acc 0\.\d{4}; train_loss \d\.\d{4}; val_acc 0\.\d{4}; val_loss", m) for m in said
    )
    assert re.search(r"\) in \d+ s, about \d+ s left$", said[0]) and said[1].endswith(", about 0 s left"), (
        said
    )
    # an epoch that ends at its limit is a whole epoch: its checkpoint resumes at the next one
    assert dm.state_dict()["batches_done"] == 0
