"""mnist_probe: what did my CNN learn? The study's MNIST CNN, opened up three ways."""


class UserError(Exception):
    """A mistake the user can fix (bad path, bad config value): shown as one line, no traceback."""
