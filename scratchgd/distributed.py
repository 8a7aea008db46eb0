"""Data parallelism: P processes take exactly the step one process would.

Every rank holds the same model and draws the same global row order; each
global batch of ``B`` rows is cut into P contiguous shards
(:func:`shard`), and rank ``p`` computes the gradient SUM of its shard. One
collective per training step adds the P sums, in rank order, on every rank
(:meth:`Group.sum_in_rank_order`); every rank then divides by the global row
count and takes the same step::

    g = (1/m) sum_{p=0}^{P-1} sum_{i in shard_p} grad l_i  =  (1/m) sum_{i in batch} grad l_i

The sum runs in a fixed order (row 0, then 1, ... of an Allgather), never in
the order an MPI library's ``Allreduce`` picks, so replicas never differ by
one ulp and the same P repeats the same bits run after run.

The communicator is an mpi4py one (``MPI.COMM_WORLD`` or a sub-communicator),
or :class:`ThreadComm`, P threads in one process that implement the few
mpi4py methods used here (``Get_rank``, ``Get_size``, ``Allgather``,
``allgather``, ``Bcast``, ``bcast``), so the identity is tested without MPI.
mpi4py itself is imported only by :meth:`Group.allreduce_sum` (the
benchmark's comparison) and by the command line's ``--distributed``:
``import scratchgd`` never starts MPI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

MPI_HINT = 'install the "mpi" extra: pip install "scratchgd[mpi]"'


def world() -> Group:
    """The group of every process ``mpiexec`` started (``MPI.COMM_WORLD``); imports mpi4py.

    Raises
    ------
    ValueError
        If mpi4py is not installed (naming what to install).
    """
    try:
        from mpi4py import MPI
    except ImportError:
        raise ValueError(f"distributed training needs mpi4py: {MPI_HINT}") from None
    return Group(MPI.COMM_WORLD)


def collective(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised alike on every rank (``exc.all_ranks = True``) and return it.

    The command line ends a job whose error is not marked with ``MPI.Abort``:
    a rank that fails alone would leave the others waiting in a collective.
    """
    exc.all_ranks = True
    return exc


def shard(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """Positions ``[start, stop)`` of rank ``rank``'s shard of the batch ``[lo, hi)``.

    The ``n = hi - lo`` positions are cut into ``size`` contiguous shards in rank
    order; the first ``n mod size`` shards hold ``floor(n / size) + 1`` rows,
    the others ``floor(n / size)``: sizes differ by at most one, and a shard is
    empty when ``n < size`` and ``rank >= n``.
    """
    base, extra = divmod(hi - lo, size)
    start = lo + rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class Group:
    """The processes that train together: an mpi4py communicator and its figures.

    Parameters
    ----------
    comm : mpi4py communicator or ThreadComm
        Every rank passes its own handle of the same communicator.
    """

    def __init__(self, comm: Any) -> None:
        for method in ("Get_rank", "Get_size", "Allgather", "allgather", "Bcast", "bcast"):
            if not callable(getattr(comm, method, None)):
                raise TypeError(f"comm must be an mpi4py communicator (such as MPI.COMM_WORLD), "
                                f"got {type(comm).__name__} without {method}()")
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())

    def sum_in_rank_order(self, buf: np.ndarray) -> np.ndarray:
        """``sum_{p=0}^{P-1} buf_p``, added in rank order, the same bits on every rank.

        One Allgather of the P flat float64 buffers into a ``(P, n)`` array,
        then ``total = buf_0 + buf_1 + ... + buf_{P-1}``, left to right, on every
        rank: the result depends on the buffers only, never on the MPI
        library's choice of reduction algorithm.
        """
        buf = np.ascontiguousarray(buf, dtype=np.float64)
        gathered = np.empty((self.size, buf.size))
        self.comm.Allgather(buf, gathered)
        total = gathered[0].copy()
        for row in gathered[1:]:
            total += row
        return total

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray:
        """``sum_p buf_p`` by a plain ``MPI.Allreduce``, in whatever order the library picks.

        Not used for training (its bits may differ between ranks and runs):
        ``benchmarks/scaling.py`` times it against :meth:`sum_in_rank_order`.
        """
        from mpi4py import MPI

        buf = np.ascontiguousarray(buf, dtype=np.float64)
        out = np.empty_like(buf)
        self.comm.Allreduce(buf, out, op=MPI.SUM)
        return out

    def check_same(self, description: dict[str, Any]) -> None:
        """Raise ``ValueError`` on every rank unless all ranks pass equal ``description``.

        One allgather of the small dicts; every rank compares them all, so every
        rank reaches the same verdict and none is left waiting in a collective.
        """
        everyone = self.comm.allgather(description)
        for key, mine in everyone[0].items():
            for rank, theirs in enumerate(everyone[1:], start=1):
                if theirs.get(key) != mine:
                    raise collective(ValueError(
                        f"the {self.size} ranks disagree on {key}: rank 0 has {mine!r}, rank "
                        f"{rank} has {theirs.get(key)!r}; every rank must run the same script "
                        f"on the same data"))

    def agree(self, check: Callable[[], Any]) -> Any:
        """``check()`` on every rank; if it raises on any rank, raise on every rank.

        A ``ValueError``, ``TypeError`` or ``FileNotFoundError`` of one rank is
        allgathered: that rank raises its own, the others one naming the rank
        and its message, so no rank goes on into a collective the failed one
        will never join.
        """
        try:
            result, failure, error = check(), None, None
        except (ValueError, TypeError, FileNotFoundError) as exc:
            result, failure, error = None, (type(exc).__name__, str(exc)), exc
        for rank, theirs in enumerate(self.comm.allgather(failure)):
            if theirs is not None:
                if error is not None:
                    raise collective(error)
                kind = TypeError if theirs[0] == "TypeError" else ValueError
                raise collective(kind(f"rank {rank} of {self.size} refused: {theirs[1]}"))
        return result

    def bcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (small Python values: JSON-like, bytes)."""
        return self.comm.bcast(obj, root=0)


class ThreadComm:
    """A communicator of P threads in one process: the mpi4py methods scratchgd calls.

    Create the ranks' handles with :func:`run_threads`. Every collective is
    a barrier, a write of this rank's part into a shared slot, a barrier, a
    read of all slots, and a barrier (so the next collective cannot overwrite
    a slot still being read). A rank that fails aborts the barrier, so the
    others raise ``threading.BrokenBarrierError`` instead of waiting forever.
    """

    def __init__(self, rank: int, size: int, barrier: threading.Barrier, slots: list) -> None:
        self._rank, self._size, self._barrier, self._slots = rank, size, barrier, slots

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

    def allgather(self, obj: Any) -> list:
        return self._exchange(obj)

    def Allgather(self, sendbuf: np.ndarray, recvbuf: np.ndarray) -> None:  # noqa: N802
        for rank, part in enumerate(self._exchange(np.array(sendbuf))):
            recvbuf[rank] = part

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self._exchange(obj)[root]

    def Bcast(self, buf: np.ndarray, root: int = 0) -> None:  # noqa: N802
        buf[...] = self._exchange(np.array(buf))[root]


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
