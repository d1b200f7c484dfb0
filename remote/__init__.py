"""Remote edge hosts: deploy HODE edge workers to real GTX/Jetson machines over SSH and take them away.

``python -m remote deploy|status|logs|teardown topology=<hosts>`` does each step by hand;
``runner=live`` calls :class:`remote.launcher.Launcher` itself when topology nodes have an ``ssh``
section. The inventory format lives in :mod:`remote.inventory`.
"""
from remote.errors import RemoteError

__all__ = ["RemoteError"]
