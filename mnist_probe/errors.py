"""The one way a user's mistake reaches the screen."""

import signal


class UserError(Exception):
    """A mistake the user can fix (bad path, bad config value): shown as one line, no traceback."""


def first_line(err: object) -> str:
    """The first line of an error's message: what a one-line refusal quotes of a library's error."""
    lines = str(err).splitlines()
    return lines[0] if lines else ""


def missing_checkpoint(path: object) -> UserError:
    """The refusal of a checkpoint= file that is not there (the config check and load_model)."""
    return UserError(f"checkpoint {path} does not exist; fix the path, or drop checkpoint= to train a CNN")


def pickled_code(path: object, found: str = "") -> UserError:
    """The refusal of a checkpoint= file whose pickle holds objects besides tensors (a whole module, a
    class of the user's): loading it would run their code, so it is not loaded."""
    what = f" ({found})" if found else ""
    return UserError(
        f"checkpoint {path} holds pickled Python objects{what} that would run code if "
        "loaded, so it was not loaded; save the weights alone, torch.save(model.state_dict(), "
        "PATH), and point checkpoint= at that"
    )


def signal_words(signum: int) -> str:
    """How a stop is named to the user: Ctrl-C for SIGINT, else the signal's name (SIGTERM)."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class Stopped(Exception):
    """A training stopped by a signal (Ctrl-C or SIGTERM) with its work kept in a checkpoint: the same
    command resumes it. The process ends with status 128 + the signal's number, as the shell's own."""

    def __init__(self, signum: int, checkpoint: object, where: str) -> None:
        super().__init__(
            f"stopped by {signal_words(signum)} {where}; the training so far is in "
            f"{checkpoint}: run the same command again to resume it"
        )
        self.status = 128 + signum
