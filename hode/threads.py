"""Torch on one thread for the camera's tiny networks (flow filter, DQN).

Their forward passes take microseconds; torch's intra-op thread pool only adds hand-offs, and when
the CPU is busy (a loaded machine, or workers running YOLO on the same cores in `runner=live`) a
parallel region waits for a descheduled thread: measured 20 ms median per filter call instead of
0.2 ms. The paper's camera is one core too.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_thread():
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
