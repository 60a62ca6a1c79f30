"""`mnist-probe --help` names every setting a README example uses, and the environment it reads."""

import re

from omegaconf import OmegaConf

from mnist_probe.config import compose_config
from tests.conftest import REPO

HELP = (REPO / "conf" / "hydra" / "help" / "mnist_probe.yaml").read_text()
README = (REPO / "README.md").read_text()
ABSENT = object()  # what OmegaConf.select gives for a key the config lacks (null keys are there)
GROUPS = {"data", "model", "train", "trainer", "experiment", "hydra/launcher"}


def readme_settings() -> set[str]:
    """The keys README's command lines and inline examples set (KEY=... or +KEY=...) that the
    config has: a class's own arguments (+model.width) and Python keywords left out."""
    code = re.findall(r"```bash\n(.*?)```", README, re.S) + re.findall(r"`([^`\n]+)`", README)
    keys = {
        k for chunk in code for k in re.findall(r"(?:^|[\s`'\"])\+?([a-z_]\w*(?:\.\w+)*|hydra/\w+)=", chunk)
    }
    cfg = compose_config("+experiment=report")

    def a_setting(key: str) -> bool:
        if key in GROUPS or key.startswith(("hydra.", "interpreters.catalog.")):
            return True
        # a class's own argument (+model.width) or a Python keyword is not in the config
        return OmegaConf.select(cfg, key, default=ABSENT) is not ABSENT

    return {k for k in keys if a_setting(k)}


def test_help_names_every_setting_a_readme_example_uses():
    settings = readme_settings()
    assert {"report.page", "code_layer", "hydra/launcher", "model.input.mean"} <= settings  # README is read
    assert "shift.dyy" not in settings  # README's example of a refused key
    # what --help shows as KEY=VALUE, its capitals (NAME, ARG) standing for any name
    shown = re.findall(r"\+?([A-Za-z_][\w.]*|hydra/\w+)=", HELP)
    parts = [[r"\w+" if p.isupper() else re.escape(p) for p in key.split(".")] for key in shown]
    patterns = [re.compile(r"\.".join(p)) for p in parts]
    named = {k for k in settings if any(p.fullmatch(k) for p in patterns)}
    assert sorted(settings - named) == []


def test_help_names_the_environment_it_reads():
    for variable in ("MNIST_ROOT", "MNIST_PROBE_CACHE"):
        assert variable in HELP and variable in README
