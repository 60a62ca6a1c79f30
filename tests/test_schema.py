"""The typed config refuses every wrong value: one line naming the key, exit 2, nothing written, and
before torch is imported."""

import math
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_probe import UserError
from mnist_probe.machine import gpu_present
from mnist_probe.model_spec import MODELS
from mnist_probe.run import check_command_line, jobs
from mnist_probe.schema import RECIPES
from mnist_probe.specs import ACCELERATORS, LOSSES, PRECISIONS, STRATEGIES
from tests.conftest import REPO, mnist_root

# A Hydra value for text: quoted, so that it stays text whatever it spells.
text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=12).map(lambda s: f"'{s}'")
fractional = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not float(x).is_integer())
not_whole = st.one_of(fractional.map(repr), text, st.just("true"))


def whole_outside(low, high=None):
    """Whole numbers below low, or above high."""
    below = st.integers(max_value=low - 1)
    return st.one_of(below, st.integers(min_value=high + 1)) if high is not None else below


def counts(low=1, high=None):
    return st.one_of(not_whole, whole_outside(low, high).map(str))


def fractions(high=1.0):
    bad = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=high), st.just(math.nan))
    return st.one_of(text, bad.map(lambda x: "nan" if math.isnan(x) else repr(x).replace("inf", "inf")))


# OmegaConf reads these words (and whole numbers, as 0 or not) as booleans; other text and
# fractions where true/false is meant are refused.
BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n"}
booleans = st.one_of(text.filter(lambda s: s.strip("'").lower() not in BOOLEAN_WORDS), fractional.map(repr))
layers = st.one_of(whole_outside(1, 12).map(str), text.filter(lambda s: s.strip("'") not in ("dense_1",)))
shifts = st.one_of(fractional.map(repr), text, st.integers().filter(lambda v: abs(v) >= 28).map(str))

# Every user-facing key (the experiment that uses it) and a strategy of wrong values for it.
WRONG = {
    ("train", "train.epochs"): counts(),
    ("train", "train.deterministic"): booleans,
    ("train", "train.augment.enabled"): booleans,
    ("train", "data.verify"): booleans,
    ("shift", "shift.grid"): booleans,
    ("shift", "shift.dataset.enabled"): booleans,
    ("interpreters", "interpreters.probes.enabled"): booleans,
    ("train", "train.batch_size"): counts(),
    ("train", "train.optimizer.lr"): st.one_of(
        text, st.floats(max_value=0).map(repr), st.just("inf"), st.just("nan")
    ),
    ("train", "trainer.precision"): text.filter(lambda s: s.strip("'") not in PRECISIONS),
    ("train", "train.loss"): text.filter(lambda s: s.strip("'") not in LOSSES),
    ("train", "trainer.strategy"): text.filter(lambda s: s.strip("'") not in STRATEGIES),
    ("train", "trainer.devices"): counts(),
    ("train", "trainer.num_nodes"): counts(),
    ("train", "trainer.accelerator"): st.one_of(
        text.filter(lambda s: s.strip("'") not in ACCELERATORS), *([] if gpu_present() else [st.just("gpu")])
    ),
    ("train", "train.augment.shift"): fractions(),
    ("train", "train.augment.zoom"): fractions(),
    ("train", "train.augment.rotation"): fractions(180.0).filter(lambda v: v != "180.0"),
    ("train", "seed"): st.one_of(not_whole, st.integers(max_value=-1).map(str)),
    ("train", "data.val_size"): counts(1, 59_999),
    ("train", "data.train_subset"): counts(1, 54_000),
    ("train", "data.test_subset"): counts(1, 10_000),
    ("train", "data.split_seed"): st.one_of(not_whole, st.integers(max_value=-1).map(str)),
    ("train", "+model.filters"): counts(),
    ("train", "+model.dense"): counts(),
    ("shift", "shift.dx"): shifts,
    ("shift", "shift.dy"): shifts,
    ("shift", "shift.index"): counts(0, 9_999),
    ("shift", "shift.digit"): counts(0, 9),
    ("shift", "shift.layers"): layers.map(lambda v: f"[{v}]"),
    ("shift", "shift.models"): text.map(lambda v: f"[{v}]"),
    ("shift", "shift.min_other"): fractions().filter(lambda v: v != "1.0"),
    ("shift", "shift.dataset.samples"): counts(1, 10_000),
    ("shift", "shift.dataset.radius"): counts(1, 27),
    ("shift", "interpreter"): st.one_of(text, st.just("svm@voxels")),
    ("activations", "activations.layers"): layers.map(lambda v: f"[{v}]"),
    ("activations", "activations.indices"): whole_outside(0).map(lambda v: f"[{v}]"),
    ("activations", "activations.n_codes"): counts(2, 10_000),
    ("interpreters", "interpreters.models"): text.map(lambda v: f"[{v}]"),
    ("interpreters", "interpreters.probes.train_samples"): counts(10),
    ("reproduce", "reproduce.augment.shifts"): fractions().map(lambda v: f"[{v}]"),
    ("reproduce", "reproduce.augment.recipe"): text.filter(lambda s: s.strip("'") not in RECIPES),
    ("reproduce", "reproduce.augment.models"): text.filter(lambda s: s.strip("'") not in MODELS).map(
        lambda v: f"[keras_cnn,{v}]"
    ),
    ("reproduce", "reproduce.losses"): text.filter(lambda s: s.strip("'") not in LOSSES).map(
        lambda v: f"[{v}]"
    ),
}


def test_the_models_and_recipes_offered_are_the_config_files():
    assert sorted(MODELS) == sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))
    assert sorted(RECIPES) == sorted(p.stem for p in (REPO / "conf" / "train").glob("*.yaml"))


# Every key, every run (a random draw of keys left some out), a wrong value each, drawn anew each run.
@pytest.mark.parametrize(("experiment", "key"), sorted(WRONG))
@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_wrong_value_is_one_line_naming_its_key(experiment, key, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_ROOT", mnist_root())
    value = data.draw(WRONG[(experiment, key)])
    with pytest.raises(UserError) as err:
        check_command_line([f"+experiment={experiment}", f"{key}={value}"])
    message = str(err.value)
    assert "\n" not in message
    assert re.match(rf"{re.escape(key.lstrip('+'))}(\[\d+\])?=.+ is not allowed: .+", message), message
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_right_values_pass_and_a_sweep_is_checked_job_by_job(monkeypatch):
    monkeypatch.setenv("MNIST_ROOT", mnist_root())
    good = [
        "-m",
        "+experiment=shift",
        "shift.dy=0,-1,-2",
        "interpreter=svm,rf@pixels",
        "hydra/launcher=joblib",
        "train.optimizer.lr=0.0005",
        "hydra.launcher.n_jobs=2",
    ]
    assert len(jobs(good)) == 6
    check_command_line(good)
    with pytest.raises(UserError, match=r"shift.dy=-40 is not allowed"):
        check_command_line(["-m", "+experiment=shift", "shift.dy=0,-1,-40"])  # the third job's value


@pytest.mark.parametrize("args", [["train.epochs=1.5"], ["trainer.precision=bogus"], ["shift.dyy=3"]])
def test_the_cli_refuses_before_importing_torch(args):
    code = (
        "import runpy, sys\nsys.argv = ['mnist-probe', '+experiment=shift', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('mnist_probe.run', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'torch imported:', 'torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"MNIST_ROOT": mnist_root(), "PATH": ""},
    )
    assert proc.stdout.strip() == "exit 2 torch imported: False", proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr


def test_every_stage_setting_and_run_key_is_written_once_in_conf():
    """The schema declares the stages' settings and the run-wide keys without values (conf/ gives each
    one), so no key can have two defaults that disagree; and composing any experiment leaves none unset."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mnist_probe.schema import SCHEMA, ReproduceConfig

    once = [
        "activations",
        "interpreters",
        "shift",
        "beyond",
        "stage",
        "seed",
        "checkpoint",
        "interpreter",
        "code_layer",
        "paths",
    ]
    assert [k for k in once if not OmegaConf.is_missing(SCHEMA, k)] == []
    reproduce = OmegaConf.structured(ReproduceConfig)
    assert [k for k in reproduce if not OmegaConf.is_missing(reproduce, k)] == []

    def unset(node, path=""):
        if isinstance(node, dict):
            return [p for k, v in node.items() for p in unset(v, f"{path}.{k}")]
        return [path] if node == "???" else []

    experiments = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        for experiment in experiments:
            cfg = compose("config", overrides=[f"+experiment={experiment}"])
            assert unset(OmegaConf.to_container(cfg, resolve=False)) == [], experiment
