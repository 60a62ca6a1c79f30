"""The one way a user's mistake reaches the screen."""


class UserError(Exception):
    """A mistake the user can fix (bad path, bad config value): shown as one line, no traceback."""


def missing_checkpoint(path: object) -> UserError:
    """The refusal of a checkpoint= file that is not there (the config check and load_model)."""
    return UserError(f"checkpoint {path} does not exist; fix the path, or drop checkpoint= to train a CNN")
