"""What every compiled kernel shares: the one decorator, the codes, and BLAS or loops.

The reference passes names (``activation="relu"``, ``loss="mse"``) and leaves the
products to NumPy. The kernels take integer codes instead, which numba compiles
into constants, and multiply either through BLAS or through hand-written loops,
chosen by the rows of the batch:

==============================  ==================================================
reference (NumPy)               here
==============================  ==================================================
``ACTIVATIONS[activation]``     :func:`activation_code` (:data:`LINEAR`: no ``f``)
``LOSSES[loss]``                :func:`loss_code`
``a @ W`` (NumPy's BLAS)        :func:`use_blas` (BLAS or the loops), run inside
                                :func:`blas_limit` (BLAS threads for the size)
``numba.njit`` in one place     :data:`jit`
(none: NumPy counts references  :func:`borrowed` (views whose references
at no extra cost)               are not counted, for the spans' loops)
==============================  ==================================================
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any

import numba
from numba.core import types
from numba.extending import intrinsic
from threadpoolctl import ThreadpoolController

from ...activations import ACTIVATIONS
from ...losses import LOSSES

jit = functools.partial(numba.njit, cache=True, nogil=True)
"""The one place where kernels are compiled: ``numba.njit(cache=True, nogil=True)``."""


@intrinsic
def _data_pointer(typingctx: Any, a: types.Array) -> tuple:
    """The address of the C-contiguous array ``a``'s first element, as a pointer to its dtype."""
    if not isinstance(a, types.Array) or a.layout != "C":
        raise numba.core.errors.TypingError(f"borrowed needs a C-contiguous array, got {a}")

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return context.make_array(signature.args[0])(context, builder, args[0]).data

    return types.CPointer(a.dtype)(a), codegen


@jit(inline="always")
def borrowed(a: Any) -> Any:
    """A view of the C-contiguous array ``a`` that holds no reference to its memory.

    Numba counts the references to every array it handles, and each count
    changes by an atomic instruction (about 20 cycles) whenever a loop takes an
    array out of a list or tuple, slices it or hands it to a function: about
    200 times per training step of the digits' network, a sixth of a step at
    batch 8. A view made by ``numba.carray`` from the data pointer has no
    count, so the spans' loops run on such views and those instructions are
    skipped (issue 29: the same bits, faster at small batches). The caller
    keeps ``a`` itself alive for as long as the view is used: numba frees an
    array on a path where it is no longer used, so a ``return`` between the
    view's making and its last use may free ``a`` first. The spans have one
    exit, after a last use of the owned arrays (``span._keep``).
    """
    return numba.carray(_data_pointer(a), a.shape)


REASSOCIATE = {"reassoc", "contract"}
"""Fast-math flags of the kernels with sums over a row: the additions may be
reordered (so they vectorize) and fused into FMAs. NaN and inf keep their IEEE
meaning (no ``nnan``/``ninf``), so divergence is still seen."""

RELU, TANH, SIGMOID, LINEAR = 0, 1, 2, 3
ACTIVATION_KERNELS = (RELU, TANH, SIGMOID)
"""The activation codes the kernels of :mod:`.layers` implement (``Activation.compiled``)."""
CROSS_ENTROPY, MSE = 0, 1
LOSS_KERNELS = (CROSS_ENTROPY, MSE)
"""The loss codes the kernels implement (``Loss.compiled``)."""


def activation_code(activation: str) -> int:
    """The kernels' code of a registered activation (``ACTIVATIONS[activation].compiled``).

    Raises ``ValueError`` if it has none the kernels implement: no kernel ever
    computes another function than the one asked for.
    """
    code = ACTIVATIONS[activation].compiled
    if code not in ACTIVATION_KERNELS:
        raise ValueError(f"activation {activation!r} has no compiled twin (code {code})")
    return code


def loss_code(loss: str) -> int:
    """The kernels' code of a registered loss (``LOSSES[loss].compiled``); ``ValueError`` if none."""
    code = LOSSES[loss].compiled
    if code not in LOSS_KERNELS:
        raise ValueError(f"loss {loss!r} has no compiled twin (code {code})")
    return code


def has_twins(activation: str, loss: str) -> bool:
    """Whether the kernels implement both ``activation`` and ``loss``."""
    return (ACTIVATIONS[activation].compiled in ACTIVATION_KERNELS
            and LOSSES[loss].compiled in LOSS_KERNELS)

BLAS_MIN_ROWS = 4
"""Batches with at least this many rows multiply through BLAS (``np.dot``); smaller
ones use the loops of ``layers``, which pay off only where a batch is a row or two:
no call overhead, and zero inputs are skipped. Where the two cross is measured by
``benchmarks/blas_threshold.py`` (docs/performance.md, "What the numba backend does")."""


def use_blas(rows: int) -> bool:
    """Whether a batch of ``rows`` rows multiplies through BLAS: ``rows >= BLAS_MIN_ROWS``."""
    return rows >= BLAS_MIN_ROWS


BLAS_THREADED_MIN_WORK = 2**22
"""Batches whose largest matrix product has fewer multiply-adds (``m n k``) than this run
BLAS on one thread. OpenBLAS splits a product over all its threads once ``m n k`` reaches
524,288 (digits 64-128-10 at batch 64), and on a small machine the threads' start-up and
synchronisation then cost more than they save: numba float32 fell from 1.2 M to 0.3 M
samples per second between batch 64 and 128. Measured with
``python benchmarks/blas_threads.py`` (see docs/performance.md)."""


OPENBLAS_ONE_THREAD_WORK = 65536 * 4
"""OpenBLAS computes a product of at most this many multiply-adds (``m n k``) on one
thread whatever its thread count (its ``SMP_THRESHOLD_MIN`` times the default
``GEMM_MULTITHREAD_THRESHOLD``, in ``interface/gemm.c``): there :func:`blas_limit`
sets nothing, and a run saves reading and setting the thread counts (see
docs/performance.md). A build that threads smaller products would only be slower:
threads split the rows and columns of a product, never its sums, so the results
are the same."""


def blas_threads_for(work: int) -> int | None:
    """BLAS threads for products of ``work = m n k`` multiply-adds at most.

    1 below :data:`BLAS_THREADED_MIN_WORK`; ``None`` (BLAS's own thread count, no
    limit) from there on.
    """
    return 1 if work < BLAS_THREADED_MIN_WORK else None


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries of this process, found once (``threadpool_limits`` searches each time).

    SciPy's BLAS, the one numba's ``np.dot`` calls, is loaded first: numba loads it
    only when a kernel first needs it, and a library loaded later would not be found.
    """
    import scipy.linalg.cython_blas  # noqa: F401

    return ThreadpoolController()


class BlasThreads:
    """A context in which every BLAS library runs on ``threads`` threads; restored on exit.

    threadpoolctl's ``limit`` does the same through its general machinery (its
    libraries' full descriptions, built again on every call), which cost as
    much as a training step at batch 1, once per kernel call, so once an epoch
    (docs/performance.md). Here it is a read of each library's thread count,
    and a write only where it differs (and its restoration), on the libraries
    :func:`_blas` found once. Inside a context of the same thread count (the compiled
    engine holds one for a whole run, see ``CompiledEngine.running``), it does
    nothing: a kernel call inside a run costs no BLAS call at all.
    """

    _active = threading.local()  # the thread counts of the contexts entered, per thread

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.changed: list[tuple[Any, int]] | None = None

    def __enter__(self) -> BlasThreads:
        stack = self._active.__dict__.setdefault("threads", [])
        if stack and stack[-1] == self.threads:
            return self  # an outer context set it already
        self.changed = []
        for lib in _blas().lib_controllers:
            if lib.user_api == "blas" and (before := lib.num_threads) != self.threads:
                lib.set_num_threads(self.threads)
                self.changed.append((lib, before))
        stack.append(self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.changed is None:
            return
        for lib, before in reversed(self.changed):
            lib.set_num_threads(before)
        self.changed = None
        self._active.threads.pop()


def blas_limit(blas: bool, rows: int, Ws: tuple) -> contextlib.AbstractContextManager:
    """The context a kernel runs in: BLAS limited to :func:`blas_threads_for` threads.

    ``rows``: the widest batch; the largest product is ``rows x (largest W)``.
    Without BLAS (``blas`` false), for products BLAS may thread, or for products
    OpenBLAS runs on one thread by itself (:data:`OPENBLAS_ONE_THREAD_WORK`),
    nothing is limited. The limit is lifted on exit.
    """
    work = rows * max(W.size for W in Ws)
    threads = blas_threads_for(work) if blas else None
    if threads is None or (work <= OPENBLAS_ONE_THREAD_WORK and _only_openblas()):
        return contextlib.nullcontext()
    return BlasThreads(threads)


@functools.cache
def _only_openblas() -> bool:
    """Whether every BLAS library of this process (:func:`_blas`) is OpenBLAS."""
    return all(lib.internal_api == "openblas" for lib in _blas().lib_controllers
               if lib.user_api == "blas")

