"""Where the Hydra config tree is, and composing it outside a Hydra app (notebooks, tests, bench).

conf/ sits at the top of the repository; the package maps it to `mnist_probe.conf` (pyproject's
package-dir), so an editable install and an installed wheel both find it here, and Hydra finds it
as pkg://mnist_probe.conf. Importing this module also stores the config's typed schema
(mnist_probe.schema) in Hydra's ConfigStore.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mnist_probe import schema  # noqa: F401 - stores the typed schema that config.yaml composes onto

CONF = Path(str(files("mnist_probe.conf")))


def compose_config(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """conf/config.yaml composed with Hydra overrides, as the command line would (no run dir);
    with return_hydra_config, the hydra node too (launcher, sweeper, ...). Inside a running Hydra
    app (a stage composing another recipe), with the app's own config tree, which is this one."""
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def job_choice(group: str, default: str) -> str:
    """The option this Hydra job took for a config group (train: study, fast, ...); `default` outside
    a Hydra app, as in tests."""
    try:
        return HydraConfig.get().runtime.choices.get(group) or default
    except ValueError:
        return default


def job_overrides() -> str:
    """The command-line overrides of this Hydra job ('' outside a Hydra app, as in tests)."""
    try:
        return " ".join(HydraConfig.get().overrides.task)
    except ValueError:
        return ""
