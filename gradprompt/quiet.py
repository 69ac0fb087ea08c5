"""Third-party output that would interleave with gradprompt's own progress display, switched off.
Model loading and the trajectory store's embedding model both load through transformers, so this
sits below both."""

from __future__ import annotations

import functools


def quiet_transformers() -> None:
    """Transformers' own per-tensor progress bars would interleave with the run's progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # The GGUF reader draws a plain tqdm bar that the switch above does not reach.
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # a transformers without GGUF support has no such bar either
        return
    if not isinstance(gguf_utils.tqdm, functools.partial):
        gguf_utils.tqdm = functools.partial(gguf_utils.tqdm, disable=True)
