import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from mnist_probe import UserError
from mnist_probe.data import ImageDataModule, KerasAugment
from mnist_probe.keras_cnn import KerasCNN, MaxBlurPool2d
from mnist_probe.model import build_model
from mnist_probe.run import check_config
from mnist_probe.schema import typed
from mnist_probe.trainer import make_datamodule
from tests.conftest import CONF, REPO, make_cfg

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
RECIPES = sorted(p.stem for p in (CONF / "train").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_config_composes_and_instantiates(tmp_path, experiment, recipe):
    cfg = make_cfg(tmp_path, f"+experiment={experiment}", f"train={recipe}")
    check_config(cfg)
    model = build_model(typed(cfg).model)
    assert isinstance(model, KerasCNN)
    optimizer = instantiate(cfg.train.optimizer)(model.parameters())
    assert isinstance(optimizer, torch.optim.RMSprop)
    scheduler = instantiate(cfg.train.scheduler.factory)
    kwargs = {"total_steps": 10} if cfg.train.scheduler.interval == "step" else {}
    built = scheduler(optimizer, **kwargs)
    assert f"{type(built).__module__}.{type(built).__name__}" == cfg.train.scheduler.factory._target_
    assert isinstance(instantiate(cfg.train.augment), KerasAugment)
    dm = make_datamodule(typed(cfg).data, typed(cfg).train)
    assert isinstance(dm, ImageDataModule) and dm.batch_size == cfg.train.batch_size


def test_study_recipe_is_the_studys():
    cfg = make_cfg(REPO, "train=study")
    assert cfg.train.epochs == 30 and cfg.train.batch_size == 86
    assert cfg.train.optimizer.lr == 1e-3 and cfg.train.optimizer.alpha == 0.9
    sched = cfg.train.scheduler
    assert sched.monitor == "val_acc" and sched.factory.factor == 0.5 and sched.factory.patience == 3
    aug = cfg.train.augment
    assert (aug.rotation, aug.zoom, aug.shift) == (10, 0.1, 0.1)
    assert cfg.train.loss == "clipped"  # Keras 2's clipped categorical_crossentropy, as the study trained


def test_the_default_and_fast_recipes_keep_their_own_losses():
    """train=default inherits the study's recipe but trains on PyTorch's cross-entropy (its cached
    CNNs keep their keys); train=fast, what a run trains unless told otherwise, smooths the labels
    and trains 2 epochs of 36,000 images."""
    assert make_cfg(REPO, "train=default").train.loss == "cross_entropy"
    fast = make_cfg(REPO, "train=fast").train
    assert fast.loss == "label_smoothing" and (fast.epochs, fast.epoch_images) == (2, 36000)
    assert make_cfg(REPO).train == fast


@pytest.mark.parametrize(
    "override, key",
    [("train.epochs=0", "train.epochs"), ("train.batch_size=0", "train.batch_size"), ("stage=nope", "stage")],
)
def test_bad_values_refused_naming_the_key(tmp_path, override, key):
    cfg = make_cfg(tmp_path, "+experiment=train", override)
    with pytest.raises(UserError, match=key):
        check_config(cfg)


def test_entry_point_missing_data_root_is_one_line(tmp_path):
    """The real command line: a missing data root exits 2 with one error line and no traceback."""
    cmd = [
        sys.executable,
        "-m",
        "mnist_probe.run",
        "+experiment=train",
        f"data.root={tmp_path / 'no-mnist'}",
        f"paths.cache={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in (proc.stderr + proc.stdout).splitlines() if "error:" in line]
    assert len(errors) == 1 and "MNIST not found" in errors[0] and "MNIST_ROOT" in errors[0]
    assert "GPU available" not in proc.stderr + proc.stdout  # refused before Lightning starts
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pt"))


@pytest.mark.parametrize(
    "experiment, override, message",
    [
        ("shift", "shift.dy=[0,-28]", r"shift.dy=\[0, -28\] is not allowed: .*\|shift\| < 28"),
        ("shift", "shift.dy=[]", r"shift.dy=\[\] is not allowed: at least one shift"),
        ("shift", "shift.index=10000", "shift.index=10000 is not allowed: a whole number from 0 to 9999"),
        ("shift", "shift.digit=12", "shift.digit=12 is not allowed: a whole number from 0 to 9"),
        ("shift", "shift.models=[rf,nope]", "shift.models='nope' is not allowed: an interpreter of"),
        ("interpreters", "interpreters.models=[svm@voxels]", "interpreters.models='svm@voxels' .*features"),
        ("activations", "activations.indices=[3,-1]", "activations.indices=-1 is not allowed"),
        ("activations", "activations.layers=[13]", "activations.layers=13 .* h runs from 1 to 12"),
    ],
)
def test_stage_values_refused_before_any_work(tmp_path, experiment, override, message):
    cfg = make_cfg(tmp_path, f"+experiment={experiment}", override)
    with pytest.raises(UserError, match=message):
        check_config(cfg)
    assert not (tmp_path / "cache").exists()  # nothing trained or written


def test_anti_aliased_model_is_a_config_choice(tmp_path):
    cfg = make_cfg(tmp_path, "+experiment=shift", "model=keras_cnn_aa")
    check_config(cfg)
    model = build_model(typed(cfg).model)
    assert isinstance(model, KerasCNN) and isinstance(model.max_pooling2d_2, MaxBlurPool2d)
    plain = build_model(typed(make_cfg(tmp_path, "+experiment=shift")).model)
    assert isinstance(plain.max_pooling2d_2, torch.nn.MaxPool2d)


def test_a_generated_page_names_the_recipe_and_overrides_its_job_ran_with():
    """RESULTS.md's head quotes the command of the Hydra job that wrote it, and its recipe is the
    train option that job took, not the one +experiment=reproduce defaults to."""
    from hydra.core.hydra_config import HydraConfig

    from mnist_probe.config import compose_config, job_choice, job_overrides
    from mnist_probe.pages.report import results_head
    from mnist_probe.stages.adapters import page_setting
    from tests.builders import study_results

    assert (job_choice("train", "study"), job_overrides()) == ("study", "")  # outside a Hydra app
    job = compose_config("+experiment=reproduce", "train=fast", return_hydra_config=True)
    HydraConfig.instance().set_config(job)
    try:
        assert job_choice("train", "study") == "fast"
        setting = page_setting(job)  # what the page keeps of the run: no config when rendering
        assert setting.command == f"python -m mnist_probe.run {job_overrides()}"
        assert setting.command == "python -m mnist_probe.run +experiment=reproduce train=fast"
        assert setting.recipe_name == "fast"
        head = "\n".join(results_head(study_results(setting=setting)))
        assert (
            f"Generated by `{setting.command}`" in head and f"on {setting.date}, on {setting.machine}" in head
        )
    finally:
        HydraConfig.instance().cfg = None


def test_the_stage_draws_as_many_randomisations_as_the_library_does(tmp_path):
    """beyond.randomisation_draws is the library's default (sanity.RANDOMISATION_DRAWS), at least 5."""
    from mnist_probe.sanity import RANDOMISATION_DRAWS

    draws = typed(make_cfg(tmp_path, "+experiment=beyond")).beyond.randomisation_draws
    assert draws == RANDOMISATION_DRAWS >= 5
    with pytest.raises(UserError, match="beyond.randomisation_draws"):
        check_config(make_cfg(tmp_path, "+experiment=beyond", "beyond.randomisation_draws=0"))
