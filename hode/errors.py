"""User-facing errors: one clear line naming the thing that is wrong, no traceback.

``run.py`` catches :class:`HodeError` (and the causes Hydra wraps around it), prints
``error: <message>`` to stderr and exits with status 2.
"""


class HodeError(Exception):
    """Base class of every error the user can fix (bad input, bad config, missing file)."""


class ConfigError(HodeError):
    """A config value is invalid (wrong type, out of range, unknown option)."""


class DataError(HodeError):
    """A dataset, image, video or annotation file is missing or malformed."""


class WeightsError(HodeError):
    """A weights/checkpoint file is missing, not a checkpoint, or for another architecture."""


def check(cond: bool, message: str, kind: type[HodeError] = ConfigError) -> None:
    """Raise ``kind(message)`` unless ``cond`` holds (for validating constructor arguments)."""
    if not cond:
        raise kind(message)
