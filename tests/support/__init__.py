"""Helpers shared by the test modules (no tests here): test modules import these, never each other.

- ``support.config``: the composed run config with small defaults (``SMALL_RUN``).
- ``support.run``: ``python run.py`` in a subprocess, and its results.json.
- ``support.edge``: the session's shared edge worker and the ``FAST_PROFILE`` device profile.
- ``support.sim``: hand-made simulator items with cached detections.
- ``support.media``: test images and videos (the street photo pan, crafted PNG headers).
- ``support.sshd``: real sshd instances on loopback as remote hosts.
"""
