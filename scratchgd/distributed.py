"""Data parallelism: P processes take exactly the step one process would.

Every rank holds the same model and draws the same global row order; each
global batch of ``B`` rows is cut into P contiguous shards
(:func:`shard`), and rank ``p`` computes the gradient SUM of its shard. One
reduction per training step adds the P sums, in rank order, and leaves the
total on every rank (:meth:`Group.sum_in_rank_order`); every rank then
divides by the global row count and takes the same step::

    g = (1/m) sum_{p=0}^{P-1} sum_{i in shard_p} grad l_i  =  (1/m) sum_{i in batch} grad l_i

Every element is added in the fixed order ``((b_0 + b_1) + b_2) + ...``, by
the rank that owns it, never in the order an MPI library's ``Allreduce``
picks, so replicas never differ by one ulp and the same P repeats the same
bits run after run.

A training run sums through a :meth:`Group.reducer`: when every rank is on
one machine, through memory they all map (:class:`SharedSum`: no message,
no copy between ranks), else by messages (:class:`MessageSum`, the
collectives of :meth:`Group.sum_in_rank_order`). Both add every element in
the same order, so they give the same bits.

The communicator is an mpi4py one (``MPI.COMM_WORLD`` or a sub-communicator),
or :class:`~scratchgd.threadcomm.ThreadComm`, P threads in one process that
implement the few mpi4py methods used here, so the identity is tested without
MPI (:func:`~scratchgd.threadcomm.run_threads`, re-exported here). mpi4py itself is imported only when a
:meth:`Group.reducer` looks for memory the ranks share, by
:meth:`Group.allreduce_sum` (the benchmark's comparison) and by the command
line's ``--distributed``: ``import scratchgd`` never starts MPI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .threadcomm import ThreadComm, run_threads

__all__ = ["GATHER_UP_TO", "MPI_HINT", "Group", "MessageSum", "Reduction", "SharedSum",
           "ThreadComm", "add_in_rank_order", "add_rows", "collective", "run_threads", "shard",
           "sum_dtype", "world"]

MPI_HINT = 'install the "mpi" extra: pip install "scratchgd[mpi]"'

GATHER_UP_TO = 2
"""Up to this many ranks :meth:`Group.sum_in_rank_order` uses one Allgather (see there)."""


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


def add_in_rank_order(rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``((rows[0] + rows[1]) + rows[2]) + ...``: a ``(P, n)`` array's rows added left to right.

    One elementwise addition per row, in row order, never a pairwise or
    blocked sum, so the bits depend on the rows alone. The result goes into
    ``out`` (``n`` elements) when given, and the additions are done in
    ``out``'s dtype: float32 rows into a float64 ``out`` are added in float64.
    """
    out = np.empty(rows.shape[1:], rows.dtype) if out is None else out
    if len(rows) == 1:
        np.copyto(out, rows[0])
    else:
        np.add(rows[0], rows[1], out=out, dtype=out.dtype)
    for row in rows[2:]:
        out += row
    return out


def add_rows(rows: np.ndarray, total: np.ndarray, wide: np.ndarray) -> None:
    """``total <- ((rows[0] + rows[1]) + ...)``, added in ``wide``'s dtype, rounded to ``total``'s.

    ``wide``: an array of ``total``'s size in the dtype of the additions (used
    as the accumulator when it differs from ``total``'s). The bits of casting
    the rows to that dtype, :func:`add_in_rank_order`, and casting back.
    """
    if wide.dtype == total.dtype:
        add_in_rank_order(rows, total)
    else:
        np.copyto(total, add_in_rank_order(rows, wide))


def sum_dtype(buf: np.ndarray) -> type:
    """The dtype a buffer is summed in: float32 if it is float32, else float64."""
    return np.float32 if buf.dtype == np.float32 else np.float64


class Reduction:
    """The rank-order sum of ``n``-element buffers over a group, its buffers allocated once.

    ``Reduction(group, n, dtype)(buf, out)`` writes ``sum_p buf_p`` into
    ``out``, its buffers kept between calls (:meth:`Group.sum_in_rank_order`
    keeps one per buffer size and dtype; :meth:`Group.gather_sum` and
    :meth:`Group.scatter_sum` make one per call). ``scatter``: the
    reduce-scatter of :meth:`Group.scatter_sum` (True) or the Allgather of
    :meth:`Group.gather_sum` (False); ``None`` chooses as
    :meth:`Group.sum_in_rank_order` does (the Allgather up to
    :data:`GATHER_UP_TO` ranks). float32 buffers are summed in float32 (half
    the bytes), anything else in float64.
    """

    def __init__(self, group: Group, n: int, dtype: type = np.float64,
                 scatter: bool | None = None) -> None:
        self.comm, self.size, self.n, self.dtype = group.comm, group.size, n, dtype
        self.scatter = group.size > GATHER_UP_TO if scatter is None else scatter
        if self.scatter:
            self.chunk = -(-n // group.size)
            self.padded = np.zeros(group.size * self.chunk, dtype)  # the tail stays 0
            self.pieces = np.empty((group.size, self.chunk), dtype)
            self.owned = np.empty(self.chunk, dtype)
            self.gathered = np.empty((group.size, self.chunk), dtype)
        else:
            self.gathered = np.empty((group.size, n), dtype)

    def __call__(self, buf: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``out <- sum_{p=0}^{P-1} buf_p`` added in rank order; returns ``out``.

        ``buf``: this rank's ``n`` elements (cast to the dtype if needed);
        ``out``: ``n`` elements of the dtype, or ``None`` for a new array.
        """
        buf = np.ascontiguousarray(buf, dtype=self.dtype).ravel()
        out = np.empty(self.n, self.dtype) if out is None else out
        if not self.scatter:
            self.comm.Allgather(buf, self.gathered)
            return add_in_rank_order(self.gathered, out)
        self.padded[:self.n] = buf
        self.comm.Alltoall(self.padded, self.pieces)  # pieces[p]: rank p's chunk of this rank
        self.comm.Allgather(add_in_rank_order(self.pieces, self.owned), self.gathered)
        out[:] = self.gathered.ravel()[:self.n]
        return out


class MessageSum:
    """A run's rank-order sums by messages (:meth:`Group.sum_in_rank_order`), buffers kept.

    See :meth:`Group.reducer` for the buffers. ``send`` and ``send_extra``
    travel as one ``sum_dtype`` buffer (``send`` cast into it unless it is
    already of that dtype), are summed, and the total's first ``n`` elements
    are rounded back into ``total``.
    """

    def __init__(self, group: Group, n: int, m: int, dtype: type, sum_dtype: type) -> None:
        self.group, self.n = group, n
        self._buf, self._total = np.zeros(n + m, sum_dtype), np.empty(n + m, sum_dtype)
        self._cast = np.dtype(dtype) != np.dtype(sum_dtype)
        self.send = np.zeros(n, dtype) if self._cast else self._buf[:n]
        self.total = np.empty(n, dtype) if self._cast else self._total[:n]
        self.send_extra, self.total_extra = self._buf[n:], self._total[n:]
        self.nbytes = self._buf.nbytes
        """Bytes of this rank's part as it travels, per call: the ``sum_dtype`` buffer."""

    def __call__(self) -> None:
        if self._cast:
            self._buf[:self.n] = self.send
        self.group.sum_in_rank_order(self._buf, self._total)
        if self._cast:
            self.total[:] = self._total[:self.n]

    def close(self) -> None:
        """Nothing to release."""


class SharedSum:
    """A run's rank-order sums through memory every rank maps (one machine): no message, no copy.

    See :meth:`Group.reducer` for the buffers. The shared block holds one
    ``send`` row per rank and ``total``, and likewise for the extra part.
    Rank ``r`` writes its rows (the compiled span computes straight into
    them); after a barrier it adds chunk ``r`` of the P ``send`` rows in rank
    order, in ``sum_dtype`` (``c = ceil(n / P)`` elements, cut as
    :meth:`Group.scatter_sum` cuts them), and rounds the sums into chunk ``r``
    of ``total``; rank 0 adds the extra rows; after a second barrier every
    rank reads the totals. Element for element the additions of
    :meth:`Group.scatter_sum`, so the same bits; but nothing is sent or
    copied between ranks, and a float32 ``send`` is read as it is (float32
    rows added in float64 and rounded once: the bits of casting them to
    float64 first, with half the bytes). The second barrier also keeps the
    next step's rows and totals from being written while a rank still reads
    these. With one rank its rows are the totals: nothing is added.

    ``add(rows, total, wide)`` adds a chunk as :func:`add_rows` does (the
    compiled span passes its compiled twin).
    """

    def __init__(self, group: Group, n: int, m: int, dtype: type, sum_dtype: type,
                 block: tuple, add: Callable[..., None] = add_rows) -> None:
        memory, self._fence, self._release = block
        P, chunk = group.size, -(-n // group.size)
        rows = np.ndarray((P + 1, P * chunk), dtype, memory)
        extra = np.ndarray((P + 1, m), sum_dtype, memory, offset=_aligned(rows.nbytes))
        self._rows, self._total, self._extra = rows[:P], rows[P], extra
        self._mine = slice(group.rank * chunk, (group.rank + 1) * chunk)
        self._wide, self._add = np.empty(chunk, sum_dtype), add
        self._adds = P > 1
        self._first = group.rank == 0
        self.send, self.send_extra = rows[group.rank, :n], extra[group.rank]
        self.total = rows[P, :n] if self._adds else self.send
        self.total_extra = extra[P] if self._adds else self.send_extra
        rows[group.rank], extra[group.rank] = 0, 0  # the padding too: every value read is a number
        self.nbytes = self.send.nbytes + self.send_extra.nbytes
        """Bytes of this rank's part, per call: its rows in the shared block."""
        self._fence()

    def __call__(self) -> None:
        self._fence()  # every rank's rows written
        if self._adds:
            self._add(self._rows[:, self._mine], self._total[self._mine], self._wide)
            if self._first:
                add_in_rank_order(self._extra[:-1], self.total_extra)
        self._fence()  # every chunk added

    def close(self) -> None:
        """Release the block (every rank, at the same point: it is collective under MPI)."""
        self._release()


def _aligned(nbytes: int) -> int:
    """``nbytes`` rounded up to a multiple of 8 (where the next part of a block may start)."""
    return -(-nbytes // 8) * 8


def _shared_block(comm: Any, nbytes: int) -> tuple | None:
    """``(memory, fence, release)``: ``nbytes`` bytes every rank of ``comm`` maps, or ``None``.

    ``None`` unless every rank runs on one machine. Under MPI an MPI-3 shared
    window on rank 0 (``Win.Allocate_shared``), ``fence`` the
    ``Win.Sync``/``Barrier``/``Win.Sync`` the standard asks for; for
    :class:`ThreadComm` rank 0's array itself and the threads' barrier.
    Collective: every rank calls it at the same point.
    """
    if isinstance(comm, ThreadComm):
        memory = comm.bcast(np.zeros(nbytes, np.uint8) if comm.Get_rank() == 0 else None)
        return memory, comm.Barrier, lambda: None
    if not callable(getattr(comm, "Split_type", None)):
        return None
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    if node.Get_size() != comm.Get_size():  # every rank sees this: they all decide alike
        node.Free()
        return None
    window = MPI.Win.Allocate_shared(nbytes if node.Get_rank() == 0 else 0, 1, comm=node)
    memory = np.ndarray(nbytes, np.uint8, window.Shared_query(0)[0])
    window.Lock_all(MPI.MODE_NOCHECK)

    def fence() -> None:
        window.Sync()
        node.Barrier()
        window.Sync()

    def release() -> None:
        window.Unlock_all()
        window.Free()
        node.Free()

    return memory, fence, release


class Group:
    """The processes that train together: an mpi4py communicator and its figures.

    Parameters
    ----------
    comm : mpi4py communicator or ThreadComm
        Every rank passes its own handle of the same communicator.
    """

    def __init__(self, comm: Any) -> None:
        for method in ("Get_rank", "Get_size", "Allgather", "Alltoall", "allgather", "Bcast",
                       "bcast"):
            if not callable(getattr(comm, method, None)):
                raise TypeError(f"comm must be an mpi4py communicator (such as MPI.COMM_WORLD), "
                                f"got {type(comm).__name__} without {method}()")
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self._reductions: dict[tuple[int, type], Reduction] = {}

    def sum_in_rank_order(self, buf: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``sum_{p=0}^{P-1} buf_p``, added in rank order, the same bits on every rank.

        Every element ``j`` of the result is ``((b_0[j] + b_1[j]) + b_2[j]) + ...``
        in float64 (float32 for a float32 ``buf``), whatever P and the MPI
        library: on P <= 2 ranks by :meth:`gather_sum` (one Allgather, each
        rank receives ``(P - 1) S`` bytes of an ``S``-byte buffer), on more by
        :meth:`scatter_sum` (``2 (P - 1) / P S`` bytes, rounded up to whole
        equal chunks). The two give the same bits; the Allgather is one
        collective instead of two, which is what decides at P = 2, where both
        move ``S`` bytes. ``out``: where to write the result (``buf``'s size
        and the sum's dtype). The buffers of the collectives are kept between
        calls with buffers of one size and dtype (:class:`Reduction`).
        """
        key = (np.size(buf), sum_dtype(buf))
        if key not in self._reductions:
            self._reductions[key] = Reduction(self, *key)
        return self._reductions[key](buf, out)

    def reducer(self, n: int, m: int = 0, dtype: type = np.float64,
                sum_dtype: type = np.float64,
                add: Callable[..., None] = add_rows) -> MessageSum | SharedSum:
        """What a training run sums its buffers through, step after step.

        Buffers (kept for the run): ``send`` (``n`` elements of ``dtype``) and
        ``send_extra`` (``m`` of ``sum_dtype``), this rank's parts; calling the
        reducer writes into ``total`` (``dtype``) and ``total_extra``
        (``sum_dtype``) the sums over ranks, every element added in rank order
        in ``sum_dtype``, ``total`` then rounded to ``dtype``: the bits of
        :meth:`sum_in_rank_order` of the ``sum_dtype`` buffers, on every rank.

        A :class:`SharedSum` when every rank runs on one machine (no message,
        no copy; each rank adds its chunk with ``add``, :func:`add_rows` or a
        twin), else a :class:`MessageSum`. Collective: every rank calls it,
        and the result's ``close``, at the same points.
        """
        chunk = -(-n // self.size)
        nbytes = (_aligned((self.size + 1) * self.size * chunk * np.dtype(dtype).itemsize)
                  + (self.size + 1) * m * np.dtype(sum_dtype).itemsize)
        block = _shared_block(self.comm, nbytes)
        if block is None:
            return MessageSum(self, n, m, dtype, sum_dtype)
        return SharedSum(self, n, m, dtype, sum_dtype, block, add)

    def gather_sum(self, buf: np.ndarray) -> np.ndarray:
        """``sum_p buf_p`` in rank order by one Allgather: every rank adds all P buffers.

        Each rank receives the other ``P - 1`` buffers, ``(P - 1) S`` bytes,
        and computes ``total = buf_0 + buf_1 + ... + buf_{P-1}`` left to right.
        """
        return Reduction(self, np.size(buf), sum_dtype(buf), scatter=False)(buf)

    def scatter_sum(self, buf: np.ndarray) -> np.ndarray:
        """``sum_p buf_p`` in rank order by a reduce-scatter (Alltoall), then an Allgather.

        The ``n`` elements are cut into P chunks of ``c = ceil(n / P)`` (zeros
        pad the last ones; with ``n < P`` some chunks are all padding). Rank
        ``r`` owns chunk ``r``: one Alltoall hands it every rank's chunk ``r``,
        it adds them in rank order, ``t_r = b_0[r] + b_1[r] + ... + b_{P-1}[r]``,
        and one Allgather gives every rank every ``t_r``. Element for element
        the additions are those of :meth:`gather_sum`, done once by the owner
        instead of on every rank, so every rank holds the owner's bits. Each
        rank receives ``(P - 1) c`` elements in each collective:
        ``2 (P - 1) c * 8 <= 2 (P - 1) / P S + 16 (P - 1)`` bytes (float64).
        """
        return Reduction(self, np.size(buf), sum_dtype(buf), scatter=True)(buf)

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


def checked_in_shares(check: Callable[[tuple[int, int]], Any], comm: object) -> Any:
    """``check((p, P))`` on every rank ``p`` of the ``P`` of ``comm``; all return or raise alike.

    The data-parallel layer's agreement on the data: every rank holds the same
    data (or the same memory-mapped file), so each checks only its share of
    the rows and the verdicts are agreed (:meth:`Group.agree`): P ranks read a
    file once between them, and a refusal names the true row on every rank::

        data = checked_in_shares(lambda share: Dataset(X, y, share=share), comm)
    """
    group = Group(comm)
    return group.agree(lambda: check((group.rank, group.size)))
