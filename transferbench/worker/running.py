"""What runs around a training loop without changing what it computes: stop signals, fetching the
next batch ahead, and a progress bar. The loops (``worker/train.py``, ``worker/fused.py``) use
them as context managers and iterators, so their own text stays the steps of training."""

from __future__ import annotations

import contextlib
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, TypeVar

# Signals that make a run checkpoint and stop: preemption or requeue (TERM), Ctrl-C (INT), a
# user's request (USR1), Slurm's warning before the time limit (USR2, sbatch --signal).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)

T = TypeVar("T")


def signal_name(signum: int) -> str:
    """``SIGINT (Ctrl-C)``, ``SIGTERM``, ...: a stop signal as a user knows it."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
    return name + {"SIGINT": " (Ctrl-C)", "SIGUSR2": " (Slurm's warning before the time limit)"}.get(name, "")


class StopRequested(Exception):
    """A stop signal arrived: a checkpoint was written, the job should be requeued or run again."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopFlag:
    """Set by a stop signal; read by the loop after each step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def raise_if_requested(self, iteration: int) -> None:
        if self.signum is not None:
            raise StopRequested(f"{signal_name(self.signum)} at iteration {iteration}", self.signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopFlag]:
    """Catch the stop signals for the duration (main thread only: Python delivers signals there)."""
    flag = StopFlag()

    def on_signal(signum, _frame):
        if flag.signum is None:  # the first one says why (Ctrl-C, then the local submit's SIGTERM: SIGINT)
            flag.signum = signum

    previous = ({s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def fetched_ahead(fetch: Callable[[int], T], start: int, stop: int, ahead: bool) -> Iterator[tuple[int, T]]:
    """(i, fetch(i)) for i in start..stop-1; with ``ahead``, batch i + 1 is fetched in a thread while
    the caller works on batch i (worth it when fetching reads the disk)."""
    if not ahead:
        for iteration in range(start, stop):
            yield iteration, fetch(iteration)
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
    try:
        upcoming = pool.submit(fetch, start) if start < stop else None
        for iteration in range(start, stop):
            current = upcoming.result()
            upcoming = pool.submit(fetch, iteration + 1) if iteration + 1 < stop else None
            yield iteration, current
    finally:
        pool.shutdown(cancel_futures=True)


class _NoBar:
    def update(self, _count: int = 1) -> None:
        pass

    def set_postfix(self, **_values: Any) -> None:
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, initial: int, label: str) -> Iterator[Any]:
    """A tqdm bar over the iterations (a silent stand-in when not ``enabled``)."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=label, unit="it", leave=False)
    try:
        yield bar
    finally:
        bar.close()
