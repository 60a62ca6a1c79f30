"""Hydra entry point: `python -m mnist_probe.run +experiment=NAME` (or `mnist-probe ...`) validates
the config, then runs one stage (mnist_probe/stages/NAME.py) into a run dir."""

from __future__ import annotations

import logging
import platform
import sys
import time
import warnings
from importlib import import_module
from importlib.metadata import version
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_probe.cache import config_key, write_json
from mnist_probe.config import CONF
from mnist_probe.data import require_files
from mnist_probe.errors import UserError
from mnist_probe.model import layer_name, load_model
from mnist_probe.shift import shift_pairs
from mnist_probe.stages import CHAIN, STAGES
from mnist_probe.stages.common import interpreter_settings, selected
from mnist_probe.train import cpu_model

log = logging.getLogger("mnist_probe")


def check_config(cfg: DictConfig) -> None:
    """Refuse wrong values, naming the key, before any work starts."""
    if cfg.stage not in STAGES:
        raise UserError(f"unknown stage {cfg.stage!r}; valid stages: {', '.join(STAGES)}")
    for key in ("train.epochs", "train.batch_size"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{key} must be a whole number of at least 1, got {value!r}")
    if not cfg.data.download:  # checked again after a download; here, before any work
        require_files(cfg.data.root)
    if cfg.get("checkpoint"):  # missing, truncated, another architecture
        load_model(cfg.checkpoint, instantiate(cfg.model))
    stages = set(CHAIN) if cfg.stage == "reproduce" else {cfg.stage}
    if cfg.stage == "reproduce":
        for value in cfg.reproduce.augment.shifts:
            if not 0 <= value < 1:
                raise UserError(f"reproduce.augment.shifts must be fractions in [0, 1), got {value}")
    if "interpreters" in stages:
        for spec in selected(cfg, cfg.interpreters.models):
            interpreter_settings(cfg, spec)
    if "activations" in stages:
        bad = [i for i in cfg.activations.indices or [] if not 0 <= i < 10_000]
        if bad:
            raise UserError(f"activations.indices {bad} are outside the test set 0..9999")
        for layer in cfg.activations.layers:
            layer_name(layer)
    if "shift" in stages:
        dx, dy = (v if OmegaConf.is_list(v) else [v] for v in (cfg.shift.dx, cfg.shift.dy))
        shift_pairs(dx, dy, cfg.shift.grid)
        if cfg.shift.index is not None and not 0 <= cfg.shift.index < 10_000:
            raise UserError(f"shift.index must be a test-set index 0..9999, got {cfg.shift.index}")
        if cfg.shift.index is None and not 0 <= cfg.shift.digit <= 9:
            raise UserError(f"shift.digit must be 0..9, got {cfg.shift.digit}")
        for spec in selected(cfg, cfg.shift.models):
            interpreter_settings(cfg, spec)


def check_choices(argv: list[str]) -> None:
    """Config-group choices on the command line (+experiment=shift, train=keras, ...) and interpreter
    names (interpreter=svm,rf) checked before Hydra composes, so that a typo gets one line that lists
    the valid names."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "__pycache__"}
    catalog = sorted(OmegaConf.load(CONF / "interpreters" / "default.yaml").catalog)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in groups | {"interpreter"} or "(" in value:  # sweep functions: Hydra's
            continue
        if key == "interpreter":
            valid = catalog
            value = ",".join(v.partition("@")[0] for v in value.split(","))
        else:
            valid = sorted(p.stem for p in (CONF / key).glob("*.yaml"))
        for choice in value.split(","):  # a multirun lists several
            if choice not in valid and choice != "null":
                raise UserError(f"unknown {key} {choice!r}; valid: {', '.join(valid)}")


def device() -> str:
    """What the stages compute on: the GPU's name, or the CPU's model."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {cpu_model()} ({torch.get_num_threads()} threads)"


def job_overrides() -> str:
    """The command-line overrides of this Hydra job ('' outside a Hydra app, as in tests)."""
    try:
        return " ".join(HydraConfig.get().overrides.task)
    except ValueError:
        return ""


def versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers, for results.json."""
    names = ["torch", "torchvision", "pytorch-lightning", "scikit-learn", "xgboost", "hydra-core"]
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def run(cfg: DictConfig) -> dict:
    """Run cfg.stage into cfg.paths.output_dir and return its results (also in results.json)."""
    check_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stage = import_module(f"mnist_probe.stages.{cfg.stage}")  # only the stage that runs is imported
    results = stage.run(cfg, out_dir)
    results = {
        "stage": cfg.stage,
        "overrides": job_overrides(),
        **results,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "seed": cfg.seed,
        "config_hash": config_key(cfg),
        "versions": versions(),
        "device": device(),
    }
    write_json(out_dir / "results.json", results)
    log.info("wrote %s", out_dir / "results.json")
    return results


@hydra.main(version_base="1.3", config_path="pkg://mnist_probe.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra's wrapper around run(): a UserError becomes one line on stderr and exit status 2."""
    try:
        run(cfg)
    except UserError as err:
        log.error("error: %s", err)
        sys.exit(2)


def quiet_library_noise() -> None:
    """Drop two lines every run printed that say nothing about the run: Lightning's advert for its
    cloud logger, and a deprecation inside Lightning's own use of torch's pytree API."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )


def cli() -> None:
    """`python -m mnist_probe.run`: group choices checked first (one line on error), then Hydra."""
    quiet_library_noise()
    try:
        check_choices(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
