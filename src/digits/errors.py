"""One base type for every error this project raises on purpose: the scripts turn it into a message
and exit code 2, so a user sees what to fix instead of a traceback. Each subclass also derives from
the built-in type a caller would expect (ValueError, FileNotFoundError, ...)."""


class DigitsError(Exception):
    """A problem the user can fix: bad config, missing or damaged data, an unusable checkpoint, ..."""


class ConfigError(DigitsError, ValueError):
    """A config value is out of range or of the wrong type (digits.config re-exports it: its checks raise it)."""


def one_line(error: object) -> str:
    """An error's message on one line, as the scripts print it."""
    return " ".join(str(error).split())
