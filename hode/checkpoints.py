"""Reading the project's own tagged checkpoints (flow filter, DQN scheduler) with one set of refusals.

A checkpoint is a ``torch.save`` dict with a ``format`` tag and a ``version``; loading goes through
``weights_only=True`` (no pickled code runs). Every refusal is one :class:`WeightsError` line naming
the file and, for a missing one, the command that makes it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from hode.errors import WeightsError


def read_tagged(path: str | Path, fmt: str, version: int, what: str, make_it: str) -> dict:
    """The checkpoint dict at ``path``; refuses a missing file, a file that is not a ``fmt``
    checkpoint (not torch, or no tag) and another ``version``. ``what`` names the kind of checkpoint
    in messages ("DQN scheduler"), ``make_it`` says how to get one."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} checkpoint not found: {path} ({make_it})")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path} is not a {what} checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != fmt:
        raise WeightsError(f"{path} is not a {what} checkpoint (no '{fmt}' format tag)")
    if ck.get("version") != version:
        raise WeightsError(f"{path} is {what} checkpoint version {ck.get('version')}; this code reads version {version}")
    return ck
