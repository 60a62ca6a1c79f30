"""mnist_probe: what did my CNN learn? The study's MNIST CNN, opened up three ways."""

from pathlib import Path

# The Hydra config tree (conf/ beside the package): the entry point, bench and report compose it.
CONF = Path(__file__).resolve().parents[1] / "conf"


class UserError(Exception):
    """A mistake the user can fix (bad path, bad config value): shown as one line, no traceback."""
