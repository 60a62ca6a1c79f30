"""Hydra entry point: `python -m mnist_probe.run +experiment=NAME` (or `mnist-probe ...`) checks the
command line, then runs one stage (mnist_probe/stages/NAME.py) into a run dir.

Nothing imported here imports torch: a wrong command line is refused (one line, exit status 2)
before torch and Lightning load. Each job of a sweep is composed and checked up front too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import typing
import warnings
from importlib import import_module
from importlib.metadata import version
from pathlib import Path

import hydra
import psutil
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from mnist_probe.cache import config_key, write_json
from mnist_probe.checks import creatable
from mnist_probe.config import CONF, compose_config, job_overrides
from mnist_probe.errors import Stopped, UserError, first_line, signal_words
from mnist_probe.machine import describe
from mnist_probe.schema import Config, validate
from mnist_probe.stages.results import FORMAT, to_json

log = logging.getLogger("mnist_probe")
# What OmegaConf calls the types it could not convert to, in the words of a refusal.
EXPECTED = {
    "converted to Integer": "a whole number",
    "converted to Float": "a number",
    "converted to Boolean": "true or false",
    "not a valid bool": "true or false",
    "converted to String": "text",
}
MAX_CHECKED_JOBS = 256  # a sweep larger than this is checked on its first jobs only


def check_choices(argv: list[str]) -> None:
    """Config-group choices on the command line (+experiment=shift, train=study, ...) checked before
    Hydra composes, so that a typo gets one line that lists the valid names."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "__pycache__"}
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in groups or "(" in value:  # sweep functions: Hydra's
            continue
        valid = sorted(p.stem for p in (CONF / key).glob("*.yaml"))
        for choice in value.split(","):  # a multirun lists several
            if choice not in valid and choice != "null":
                raise UserError(f"{key}={choice!r} is not allowed: one of {', '.join(valid)}")


def jobs(argv: list[str]) -> list[list[str]]:
    """The override lists of every job a command line launches (one, or a sweep's product); flags and
    hydra.* settings are Hydra's own and left out."""
    overrides = [
        a
        for a in argv
        if "=" in a and not a.startswith("-") and not a.lstrip("+~").startswith(("hydra.", "hydra/"))
    ]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot read the command line: {first_line(err)}") from None
    choices = []
    for o in parsed:
        prefix = o.input_line[: len(o.input_line) - len(o.input_line.lstrip("+~"))]
        if o.is_sweep_override():
            choices.append([f"{prefix}{o.key_or_group}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(job) for job in itertools.islice(itertools.product(*choices), MAX_CHECKED_JOBS)]


def compose_checked(overrides: list[str]) -> DictConfig:
    """The config of one job, composed and validated; any refusal is one UserError line."""
    stray = [o for o in overrides if o.lstrip("+~").startswith("reproduce.")]
    if stray and "+experiment=reproduce" not in overrides:
        raise UserError(f"{stray[0]}: reproduce.* settings need +experiment=reproduce; add it or drop them")
    try:
        cfg = compose_config(*overrides)
    except MissingConfigException as err:
        raise UserError(first_line(err)) from None
    except HydraException as err:
        cause = err.__cause__
        if isinstance(cause, ValidationError):
            raise refusal(cause) from None
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):  # a key the schema lacks
            raise unknown_key(cause) from None
        what = first_line(cause) if cause else first_line(err)
        raise UserError(f"{first_line(err)} {what}".strip()) from None
    except Exception as err:  # OmegaConf asserts on some overrides, e.g. a key under a null node
        first = (str(err).splitlines() or [""])[0]
        raise UserError(
            f"cannot apply {' '.join(overrides)}: {type(err).__name__} {first}; "
            "check the keys against `--cfg job`"
        ) from None
    check_config(cfg)
    return cfg


def refusal(err: ValidationError) -> UserError:
    """OmegaConf's type error as the one-line refusal: the key, the value, what is allowed."""
    message = first_line(err)
    wanted = next((words for phrase, words in EXPECTED.items() if phrase in message), None)
    if wanted is None:
        return UserError(f"{err.full_key}: {message}")
    return UserError(f"{err.full_key}={getattr(err, 'value', None)!r} is not allowed: {wanted}")


def schema_class(path: str) -> type:
    """The schema's dataclass of a config node, by its dotted path (read from the types: the stages'
    nodes have no values in the schema)."""
    node = Config
    for part in filter(None, path.split(".")):
        hint = typing.get_type_hints(node)[part]
        node = next(t for t in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(t))
    return node


def unknown_key(err: OmegaConfBaseException) -> UserError:
    """A mistyped key as one line that lists the keys its parent has."""
    full_key = str(err.full_key)
    parent, _, _ = full_key.rpartition(".")
    if parent == "model":  # an open node: the model's constructor decides its keys
        return UserError(
            f"{full_key} is not set by the model's config; pass an argument of its constructor "
            f"as +{full_key}=VALUE"
        )
    keys = sorted(f.name for f in dataclasses.fields(schema_class(parent)))
    return UserError(f"unknown key {full_key}; {parent or 'the config'} has: {', '.join(keys)}")


def check_hydra_choices(argv: list[str]) -> None:
    """Hydra's own groups (hydra/launcher=joblib, hydra/sweeper=...) composed, so that a choice that
    does not exist is one line listing those that do."""
    choices = [a for a in argv if a.lstrip("+~").startswith("hydra/") and "=" in a]
    if not choices:
        return
    try:
        compose_config(*choices, return_hydra_config=True)
    except MissingConfigException as err:
        lines = str(err).split("Config search path")[0].splitlines()
        options = [line.strip() for line in lines if line.startswith("\t")]  # "Available options"
        bad = next((a for a in choices if f"/{a.partition('=')[2]}'" in lines[0]), choices[0])
        key, _, value = bad.lstrip("+~").partition("=")
        raise UserError(
            f"{key}={value!r} is not allowed: one of {', '.join(options)}" if options else lines[0]
        ) from None


def check_command_line(argv: list[str]) -> None:
    """Every job of the command line composed and checked, before anything heavy is imported."""
    check_choices(argv)
    check_hydra_choices(argv)
    for overrides in jobs(argv):
        compose_checked(overrides)
    check_run_folder(argv)


def check_run_folder(argv: list[str]) -> None:
    """The folder Hydra will write this run (or sweep) into can be made: its fixed part, before the
    first ${...} (the time), as the command line and conf/config.yaml set it."""
    key = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in argv) else "hydra.run.dir"
    given = [a.lstrip("+").partition("=")[2] for a in argv if a.lstrip("+").startswith(f"{key}=")]
    if not given:
        hydra_node = compose_config(return_hydra_config=True).hydra
        given = [OmegaConf.to_container(hydra_node, resolve=False)[key.split(".")[1]]["dir"]]
    fixed = given[-1].split("${")[0]
    creatable(key, fixed if fixed.endswith("/") or fixed == given[-1] else Path(fixed).parent, given[-1])


def check_config(cfg: DictConfig) -> None:
    """Refuse wrong values, naming the key, before any work starts (the schema's checks)."""
    try:
        validate(cfg)
    except ValidationError as err:
        raise refusal(err) from None
    except OmegaConfBaseException as err:
        raise UserError(f"{getattr(err, 'full_key', '')}: {first_line(err)}") from None


def versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers, for results.json."""
    names = ["torch", "torchvision", "pytorch-lightning", "scikit-learn", "xgboost", "hydra-core"]
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def run(cfg: DictConfig) -> dict:
    """Run cfg.stage into cfg.paths.output_dir and return what it wrote to results.json: the stage's
    typed result (mnist_probe.stages.results) serialised, with the run's provenance around it."""
    check_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log.info("%s stage: writing into %s", cfg.stage, out_dir)  # said before torch and Lightning load
    stage = import_module(f"mnist_probe.stages.{cfg.stage}")  # only the stage that runs is imported
    result = stage.run(cfg, out_dir)
    results = {
        "format": FORMAT,
        "stage": cfg.stage,
        "overrides": job_overrides(),
        **to_json(result),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "seed": cfg.seed,
        "config_hash": config_key(cfg),
        "versions": versions(),
        "device": describe(),
    }
    write_json(out_dir / "results.json", results)
    log.info("wrote %s", out_dir / "results.json")
    return results


@hydra.main(version_base="1.3", config_path="pkg://mnist_probe.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra's wrapper around run(): a UserError becomes one line on stderr and exit status 2."""
    try:
        with stoppable():
            run(cfg)
    except UserError as err:
        log.error("error: %s", err)
        out_dir = Path(cfg.paths.output_dir)
        if {p.name for p in out_dir.iterdir()} <= {".hydra", "run.log"}:  # refused before any work
            logging.shutdown()
            shutil.rmtree(out_dir, ignore_errors=True)
        sys.exit(2)
    except Stopped as stop:  # Ctrl-C or SIGTERM during a training: its checkpoint kept
        log.warning("%s", stop)
        sys.exit(stop.status)
    except (KeyboardInterrupt, SignalStop) as stop:  # outside a training: what was published is kept
        signum = signal.SIGTERM if isinstance(stop, SignalStop) else signal.SIGINT
        log.warning(
            "stopped by %s; finished cache entries are kept, the same command goes on from them",
            signal_words(signum),
        )
        sys.exit(128 + signum)


def quiet_library_noise() -> None:
    """Drop lines that say nothing about the run: Lightning's advert for its cloud logger, a
    deprecation inside Lightning's own use of torch's pytree API, and one inside onnx2torch's Slice
    (every ONNX file from tf2onnx has a Slice)."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"Using a non-tuple sequence for multidimensional indexing")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )


# A multirun's own process names a folder here; each job that runs in a process of its own (joblib's
# workers) keeps a file named by its pid there while it runs: the processes a stop is passed on to.
JOBS_ENV = "MNIST_PROBE_SWEEP_JOBS"
JOB_STOP_WAIT_S = 120  # how long a stopped sweep waits for its jobs to end


class SignalStop(BaseException):
    """SIGTERM outside a training (which stops on its own, after its step in flight)."""


def _on_sigterm(signum, frame) -> None:
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        return  # called by a training's own handler (Lightning's): it stops after the step in flight
    raise SignalStop


@contextlib.contextmanager
def stoppable():
    """A run that SIGTERM ends in one line, as Ctrl-C does; while it runs as a sweep job in a worker
    process, its pid is in the sweep's job folder, so that a stop of the sweep reaches it."""
    folder = os.environ.get(JOBS_ENV)
    mark = Path(folder) / str(os.getpid()) if folder and Path(folder).is_dir() else None
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    if mark is not None:
        mark.touch()
    try:
        yield
    finally:
        if mark is not None:
            mark.unlink(missing_ok=True)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def pass_stops_to_jobs(folder: Path) -> list[int]:
    """In a multirun's own process: Ctrl-C or SIGTERM is passed on as SIGTERM to the job processes
    that run a job now (their trainings stop after the step in flight, keeping a checkpoint at that
    step; idle workers are left alone), and their ends are waited for; a second signal stops the
    waiting. Returns the signals received so far."""
    received: list[int] = []
    os.environ[JOBS_ENV] = str(folder)

    def on_signal(signum, frame) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        log.warning("stopping the sweep's jobs (%s); a second Ctrl-C ends it at once", signal_words(signum))
        for mark in folder.iterdir():
            with contextlib.suppress(psutil.Error, ValueError):
                psutil.Process(int(mark.name)).send_signal(signal.SIGTERM)
        # Wait here for the jobs to end (each removes its mark), so that joblib, seeing the first
        # job end, does not kill the others before their trainings have saved their checkpoints.
        deadline = time.monotonic() + JOB_STOP_WAIT_S
        while any(folder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return received


def cli() -> None:
    """`python -m mnist_probe.run` / `mnist-probe`: the command line checked first (one line on error,
    exit status 2, nothing written), then Hydra runs it."""
    quiet_library_noise()
    asks_hydra = any(a in ("--help", "-h", "--hydra-help", "-i") or a.startswith("--info") for a in sys.argv)
    if not asks_hydra:
        try:
            check_command_line(sys.argv[1:])
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    if not any(a in ("-m", "--multirun") for a in sys.argv):
        main()
        return
    with tempfile.TemporaryDirectory(prefix="mnist_probe_jobs-") as folder:
        stops = pass_stops_to_jobs(Path(folder))
        try:
            main()
        except BaseException:
            if not stops:
                raise
    if stops:  # the jobs have ended, each keeping what it finished (and a stopped training's checkpoint)
        log.warning(
            "sweep stopped by %s; the same command goes on from what its jobs kept", signal_words(stops[0])
        )
        sys.exit(128 + stops[0])


if __name__ == "__main__":
    cli()
