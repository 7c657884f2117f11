"""argparse types of the command line: a bad value ends in one line that says what to fix."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seed(text: str) -> int:
    """A seed of NumPy's legacy generator: 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"a seed is 0 to {2 ** 32 - 1}, got {value}")
    return value


def device(text: str) -> str:
    """A device this machine can run on: cpu, cuda or cuda:N (checked against the visible GPUs)."""
    import re

    if text == "cpu":
        return text
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; give cpu, cuda or cuda:N")
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise argparse.ArgumentTypeError(f"{text}: no CUDA device is visible here; give cpu")
    if match.group(1) is not None and int(match.group(1)) >= count:
        raise argparse.ArgumentTypeError(f"{text}: this machine shows {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return text
