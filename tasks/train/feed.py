"""Batches ready before the step that needs them.

A step's host work (cutting the batch into micro-batches, collating them into tensors, pinning them for a
GPU) runs on a background thread, a few batches ahead, while the device computes the step before: the GPU no
longer waits for Python between steps, and pinned host memory lets the copy to the device run asynchronously.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator

from tasks.train import batching

DEPTH = 2  # batches prepared ahead: enough to hide collation, little memory held


@dataclass(frozen=True)
class Piece:
    """One micro-batch: its CPU tensors (batching.collate's) and how many target tokens it holds."""

    tensors: dict
    target_tokens: int

    def to(self, device) -> dict:
        # Asynchronous from pinned memory; from pageable memory (CPU training) it is an ordinary copy.
        return {name: value.to(device, non_blocking=True) for name, value in self.tensors.items()}


def prepare(data: batching.Encoded, batch: list[int], micro_tokens: int, pad_id: int, start_id: int,
            multiple: int, pin: bool = False) -> list[Piece]:
    """`batch` as the micro-batches one optimizer step runs through."""
    pieces = []
    for piece in batching.micro_batches(data, batch, micro_tokens, multiple):
        tensors = batching.collate(data, piece, pad_id, start_id, multiple)
        if pin:
            tensors = {name: value.pin_memory() for name, value in tensors.items()}
        pieces.append(Piece(tensors, sum(len(data.targets[i]) for i in piece)))
    return pieces


class Prefetch:
    """Iterates (batch, its pieces) over `batches`, preparing up to DEPTH batches ahead on a thread.

    Use it as a context manager: leaving early (training stopped within the epoch) stops the thread. An error
    while preparing is raised where the batch would have been yielded.
    """

    _END = object()

    def __init__(self, data: batching.Encoded, batches: list[list[int]], *, micro_tokens: int, pad_id: int,
                 start_id: int, multiple: int, pin: bool):
        self._args = (data, micro_tokens, pad_id, start_id, multiple, pin)
        self._batches = batches
        self._queue: queue.Queue = queue.Queue(maxsize=DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-prefetch", daemon=True)

    def __enter__(self) -> "Prefetch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __iter__(self) -> Iterator[tuple[list[int], list[Piece]]]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        data, micro_tokens, pad_id, start_id, multiple, pin = self._args
        try:
            for batch in self._batches:
                if not self._put((batch, prepare(data, batch, micro_tokens, pad_id, start_id, multiple, pin))):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the training thread, not swallowed
            self._put(err)
            return
        self._put(self._END)
