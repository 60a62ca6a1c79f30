"""The one way a user's mistake reaches the screen."""


class UserError(Exception):
    """A mistake the user can fix (bad path, bad config value): shown as one line, no traceback."""
