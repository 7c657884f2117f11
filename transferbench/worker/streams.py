"""Random streams of one training run, from one tree keyed by (seed, retry, purpose, index).

Every random draw of a run comes from a stream named by what it is for and when:

| purpose   | index      | what it draws                                             |
|-----------|------------|-----------------------------------------------------------|
| init      | 0          | the initial weights of every layer that is not copied     |
| order     | epoch e    | the order of the training images in epoch e               |
| augment   | iteration i| the random crops and mirror flags of batch i              |
| dropout   | iteration i| the dropout masks of step i                               |
| holdout   | 0          | which training images are held out (``train.holdout``)   |

Each stream's seed is drawn from ``numpy.random.SeedSequence(entropy=seed, spawn_key=(retry,
purpose, index))``: distinct keys give independent streams, so no two purposes (and no two
epochs or iterations of one purpose) ever share one, whatever the seed. ``retry`` counts the
attempts of a stalled network trained again (``submit --retry-stalled``); 0 for the planned one.
A run resumed from a checkpoint at iteration i draws exactly what an uninterrupted run draws
from i on, since every stream is a function of its key alone.
"""

from __future__ import annotations

import numpy as np
import torch

VERSION = "seedsequence/1"  # written into every record: which scheme drew its random numbers
PURPOSES = {"init": 1, "order": 2, "augment": 3, "dropout": 4, "holdout": 5}


def stream_seed(seed: int, purpose: str, index: int = 0, retry: int = 0) -> int:
    """The 63-bit seed of stream (``seed``, ``retry``, ``purpose``, ``index``)."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(retry, PURPOSES[purpose], index))
    low, high = (int(word) for word in sequence.generate_state(2, np.uint32))
    return (high << 32 | low) & (2 ** 63 - 1)


def generator(seed: int, purpose: str, index: int = 0, retry: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` on stream (``seed``, ``retry``, ``purpose``, ``index``)."""
    return torch.Generator().manual_seed(stream_seed(seed, purpose, index, retry))


def seed_global(seed: int, purpose: str, index: int = 0, retry: int = 0) -> None:
    """Seed torch's global generators (CPU and CUDA) with a stream: for the draws torch makes from
    them itself (layer initialisation, dropout)."""
    torch.manual_seed(stream_seed(seed, purpose, index, retry))
