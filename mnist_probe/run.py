"""Hydra entry point: `python -m mnist_probe.run +experiment=NAME` runs a stage into a run dir."""

from __future__ import annotations

import logging
import platform
import sys
import time
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mnist_probe import CONF, UserError
from mnist_probe.cache import config_key, write_json
from mnist_probe.model import layer_name

log = logging.getLogger("mnist_probe")


def stage_train(cfg: DictConfig, out_dir: Path) -> dict:
    """Train (or load from the cache) the CNN; report its test accuracy."""
    from mnist_probe.train import confidence, fit_or_load, scored_test_set, test_logits

    model, meta = fit_or_load(cfg, out_dir)
    images, labels = scored_test_set(cfg)
    sure = confidence(test_logits(model, images), labels)
    if cfg.get("checkpoint"):
        how = "your checkpoint"
    else:
        how = "from cache" if meta["cached"] else f"trained in {meta['train_seconds']:.0f}s"
    log.info("CNN test accuracy %.2f%% on %d images (%s; %s)",
             100 * meta["test_acc"], meta["test_images"], how, meta["checkpoint"])  # fmt: skip
    log.info("test cross-entropy %.4f; its %d errors carry %.1f%% (%.1f nats each); largest |logit| %.0f",
             sure["cross_entropy"], sure["errors"], 100 * sure["error_share_of_loss"],
             sure["mean_loss_on_errors"], sure["max_abs_logit"])  # fmt: skip
    return {**meta, "confidence": sure}


def stage_activations(cfg: DictConfig, out_dir: Path) -> dict:
    """Feature maps, code vectors and class similarity of the trained CNN."""
    from mnist_probe.viz import activations_stage

    results = activations_stage(cfg, out_dir)
    log.info(
        "code vectors: within-class cosine %.3f, between %.3f, ratio %.2f; figures in %s",
        results["within_class_cosine"], results["between_class_cosine"],
        results["within_between_ratio"], out_dir,
    )  # fmt: skip
    return results


def stage_interpreters(cfg: DictConfig, out_dir: Path) -> dict:
    """Interpreters on code vectors and pixels, the study's accuracy table, probes by layer."""
    from mnist_probe.interpreters import interpreters_stage

    results = interpreters_stage(cfg, out_dir)
    log.info("interpreter table: %s", out_dir / "interpreters.md")
    return results


def stage_shift(cfg: DictConfig, out_dir: Path) -> dict:
    """The study's translation test, and shift metrics over the test set."""
    from mnist_probe.shift import shift_stage

    results = shift_stage(cfg, out_dir)
    log.info("shift table: %s", out_dir / "shift_table.md")
    return results


def stage_reproduce(cfg: DictConfig, out_dir: Path) -> dict:
    """Every stage on the study's recipe, the augmentation sweep, and docs/RESULTS.md."""
    from mnist_probe.reproduce import reproduce_stage

    results = reproduce_stage(cfg, out_dir)
    for c in results["conclusions"]:
        log.info("conclusion: %s -> %s", c["claim"], c["verdict"])
    return results


STAGES: dict[str, Callable[[DictConfig, Path], dict]] = {
    "train": stage_train,
    "activations": stage_activations,
    "interpreters": stage_interpreters,
    "shift": stage_shift,
    "reproduce": stage_reproduce,
}


def check_config(cfg: DictConfig) -> None:
    """Refuse wrong values, naming the key, before any work starts."""
    if cfg.stage not in STAGES:
        raise UserError(f"unknown stage {cfg.stage!r}; valid stages: {', '.join(STAGES)}")
    for key in ("train.epochs", "train.batch_size"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{key} must be a whole number of at least 1, got {value!r}")
    if not cfg.data.download:  # checked again after a download; here, before any work
        from mnist_probe.data import require_files

        require_files(cfg.data.root)
    if cfg.get("checkpoint"):
        from mnist_probe.train import checkpoint_path, load_model

        load_model(checkpoint_path(cfg), cfg.model)  # missing, truncated, other architecture
    from mnist_probe.interpreters import interpreter_config, selected
    from mnist_probe.reproduce import CHAIN

    stages = set(CHAIN) if cfg.stage == "reproduce" else {cfg.stage}
    if cfg.stage == "reproduce":
        for value in cfg.reproduce.augment.shifts:
            if not 0 <= value < 1:
                raise UserError(f"reproduce.augment.shifts must be fractions in [0, 1), got {value}")
    if "interpreters" in stages:
        for spec in selected(cfg):
            interpreter_config(spec)
    if "activations" in stages:
        bad = [i for i in cfg.activations.indices or [] if not 0 <= i < 10_000]
        if bad:
            raise UserError(f"activations.indices {bad} are outside the test set 0..9999")
        for layer in cfg.activations.layers:
            layer_name(layer)
    if "shift" in stages:
        from mnist_probe.shift import shift_pairs

        shift_pairs(cfg.shift)
        if cfg.shift.index is not None and not 0 <= cfg.shift.index < 10_000:
            raise UserError(f"shift.index must be a test-set index 0..9999, got {cfg.shift.index}")
        if cfg.shift.index is None and not 0 <= cfg.shift.digit <= 9:
            raise UserError(f"shift.digit must be 0..9, got {cfg.shift.digit}")
        for spec in [cfg.interpreter] if cfg.get("interpreter") else cfg.shift.models:
            interpreter_config(spec)


def check_choices(argv: list[str]) -> None:
    """Config-group choices on the command line (+experiment=shift, interpreter=svm,rf, ...) checked
    before Hydra composes, so that a typo gets one line that lists the valid names."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in groups or "(" in value:  # sweep functions: left to Hydra
            continue
        valid = sorted(p.stem for p in (CONF / key).glob("*.yaml"))
        for choice in value.split(","):  # a multirun lists several
            if choice not in valid and choice != "null":
                raise UserError(f"unknown {key} {choice!r}; valid: {', '.join(valid)}")


def device() -> str:
    """What the stages compute on: the GPU's name, or the CPU's model."""
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    from mnist_probe.train import cpu_model

    return f"cpu: {cpu_model()} ({torch.get_num_threads()} threads)"


def job_overrides() -> str:
    """The command-line overrides of this Hydra job ('' outside a Hydra app, as in tests)."""
    from hydra.core.hydra_config import HydraConfig

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
    results = STAGES[cfg.stage](cfg, out_dir)
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
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
