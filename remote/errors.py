"""The launcher's user-facing error: one line naming the host and what failed."""
from __future__ import annotations

from hode.errors import HodeError


class RemoteError(HodeError):
    """Something on (or on the way to) a remote edge host failed; the message names the host."""
