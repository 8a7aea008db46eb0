"""P threads in one process standing in for P MPI processes: :class:`ThreadComm`.

The identity of data-parallel training (P ranks take the one-process step,
with the same bits on every rank) is tested without MPI: :func:`run_threads`
runs a function on P threads, each with its own :class:`ThreadComm` handle,
which implements the few mpi4py methods scratchgd calls (``Get_rank``,
``Get_size``, ``Allgather``, ``Alltoall``, ``allgather``, ``Barrier``,
``Bcast``, ``bcast``). :mod:`scratchgd.distributed` re-exports both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np


class ThreadComm:
    """A communicator of P threads in one process: the mpi4py methods scratchgd calls.

    Create the ranks' handles with :func:`run_threads`. Every collective is
    a barrier, a write of this rank's part into a shared slot, a barrier, a
    read of all slots, and a barrier (so the next collective cannot overwrite
    a slot still being read). A rank that fails aborts the barrier, so the
    others raise ``threading.BrokenBarrierError`` instead of waiting forever.

    ``received`` counts the bytes this rank's buffer collectives (``Allgather``,
    ``Alltoall``, ``Bcast``) took from other ranks, as MPI would move them
    (its own block is not counted).
    """

    def __init__(self, rank: int, size: int, barrier: threading.Barrier, slots: list) -> None:
        self._rank, self._size, self._barrier, self._slots = rank, size, barrier, slots
        self.received = 0

    def Get_rank(self) -> int:  # noqa: N802 (mpi4py's name)
        return self._rank

    def Get_size(self) -> int:  # noqa: N802
        return self._size

    def _exchange(self, value: Any) -> list:
        self._barrier.wait()
        self._slots[self._rank] = value
        self._barrier.wait()
        everyone = list(self._slots)
        self._barrier.wait()
        return everyone

    def _receive(self, recvbuf: np.ndarray, parts: list) -> None:
        """Copy one part per rank into the ``P`` equal blocks of ``recvbuf``, counting bytes."""
        blocks = recvbuf.reshape(self._size, recvbuf.size // self._size)
        for rank, part in enumerate(parts):
            blocks[rank] = np.ravel(part)
            if rank != self._rank:
                self.received += blocks[rank].nbytes

    def allgather(self, obj: Any) -> list:
        return self._exchange(obj)

    def Allgather(self, sendbuf: np.ndarray, recvbuf: np.ndarray) -> None:  # noqa: N802
        """Block ``p`` of ``recvbuf`` becomes rank ``p``'s ``sendbuf``."""
        self._receive(recvbuf, self._exchange(np.array(sendbuf)))

    def Alltoall(self, sendbuf: np.ndarray, recvbuf: np.ndarray) -> None:  # noqa: N802
        """Block ``p`` of ``recvbuf`` becomes block ``rank`` of rank ``p``'s ``sendbuf``."""
        mine = np.array(sendbuf)
        everyone = self._exchange(mine.reshape(self._size, mine.size // self._size))
        self._receive(recvbuf, [theirs[self._rank] for theirs in everyone])

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self._exchange(obj)[root]

    def Barrier(self) -> None:  # noqa: N802
        self._barrier.wait()

    def Bcast(self, buf: np.ndarray, root: int = 0) -> None:  # noqa: N802
        buf[...] = self._exchange(np.array(buf))[root]
        if self._rank != root:
            self.received += buf.nbytes


def run_threads(size: int, fn: Callable[[ThreadComm], Any], timeout: float = 60.0) -> list:
    """``[fn(comm_0), ..., fn(comm_{P-1})]``, each call in its own thread with its rank's handle.

    Raises the first exception of a rank (the others are released from their
    barriers); a collective that waits longer than ``timeout`` seconds fails.
    """
    barrier = threading.Barrier(size, timeout=timeout)
    slots: list = [None] * size
    results: list = [None] * size
    errors: list = [None] * size

    def rank_main(rank: int) -> None:
        try:
            results[rank] = fn(ThreadComm(rank, size, barrier, slots))
        except BaseException as exc:  # noqa: BLE001 (handed to the caller below)
            errors[rank] = exc
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for exc in errors:
        if exc is not None and not isinstance(exc, threading.BrokenBarrierError):
            raise exc
    for exc in errors:
        if exc is not None:
            raise exc
    return results
