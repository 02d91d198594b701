"""One helper shared by the hw4 modules: run torch on a single thread."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def single_thread():
    """Run torch ops on one intra-op thread inside the block, then restore the count.

    Usable as ``with single_thread():`` or as a decorator ``@single_thread()``.
    The evidence in the notebooks uses tiny tensors: on a busy 2-core machine,
    synchronising two threads costs far more than it saves.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
