"""Forward and backward pass of an MLP compiled by Numba: the twin of ``reference``.

The same notation as :mod:`scratchgd.kernels.reference` (``a_0 = X``,
``z_l = a_{l-1} W_l + b_l``, ``a_l = f(z_l)`` for hidden layers, ``params =
[W_1, b_1, ..., W_L, b_L]``) and the same two public functions, ``forward`` and
``loss_and_grads``, with the same arguments and results. Each NumPy expression
of the reference becomes one kernel, in the module of its concern; each module
opens with its part of this table:

===========================  ==============================================  ==========
reference (NumPy)            compiled kernel                                 module
===========================  ==============================================  ==========
``f(a @ W + b)``             :func:`dense_forward` (bias and ``f`` fused)    ``layers``
``a.T @ delta``, ...         :func:`dense_backward` (``f'`` fused)           ``layers``
``losses.cross_entropy``     :func:`cross_entropy` (stable softmax)          ``layers``
``losses.mse``               :func:`mse`                                     ``layers``
``noise.layer_sq_norms``     :func:`dense_sq_norms` (per-example gradient    ``layers``
                             norms)
``reference.apply_scaling``  :func:`gather_batch` (scaling while gathering)  ``gather``
``X.astype(dtype)``          :func:`decode_row` (ints, float16, big-endian   ``gather``
                             values decoded from their bytes)
``Optimizer.step``           :func:`sgd_step` (in place, checked first);     ``step``
                             :func:`plain_step_into` (momentum 0, one pass);
                             :func:`rank_one_step` (batch 1, in place)
``engines.python``'s loop    :func:`train_iterations_kernel` (many            ``span``
                             iterations, one call);
                             :func:`train_iterations_rows_kernel` (batch 1:
                             the article's SGD, no gradient arrays)
``engines.data_parallel``'s  :func:`train_iterations_parallel_kernel` (one    ``parallel``
loop                         rank's steps, the collective called between
                             them)
===========================  ==============================================  ==========

:mod:`.base` holds what they share: the decorator :data:`jit`, the activation
and loss codes, and the choice between BLAS and loops (:func:`use_blas`). This
package is the numba backend (``kernels.load("numba")``): it exposes each
module's public names.

Every kernel is compiled by the one decorator :data:`jit` (``numba.njit`` with
``cache=True``, so compiled code is stored in ``__pycache__`` and later runs
start warm). Numba checks a cached kernel against its own file only, while a
kernel's machine code includes the kernels it calls from sibling modules, so
after an edit of one module a caller could run the old code of its callee:
:func:`~.cache.drop_stale_cache` (run when this package is imported) empties
the package's cache whenever any of its modules changed. No kernel runs in
parallel (``prange``), so no two iterations ever add into the same output.

To step through a kernel in a debugger, run with ``NUMBA_DISABLE_JIT=1``: the
decorator then returns the plain Python functions (slow, but the same results).
"""

from .base import (
    ACTIVATION_KERNELS,
    BLAS_MIN_ROWS,
    BLAS_THREADED_MIN_WORK,
    CROSS_ENTROPY,
    LINEAR,
    LOSS_KERNELS,
    MSE,
    OPENBLAS_ONE_THREAD_WORK,
    REASSOCIATE,
    RELU,
    SIGMOID,
    TANH,
    activation_code,
    blas_limit,
    blas_threads_for,
    has_twins,
    jit,
    loss_code,
    use_blas,
)
from .cache import drop_stale_cache
from .gather import (
    AS_IS,
    FLOAT,
    SIGNED,
    UNSIGNED,
    decode_row,
    gather_batch,
    ieee_float64,
    scaling_inputs,
    span_input,
    value_bits,
    x_input,
)
from .layers import (
    activate,
    cross_entropy,
    dense_backward,
    dense_delta,
    dense_delta_row,
    dense_forward,
    dense_forward_row,
    dense_sq_norms,
    forward,
    loss_and_grads,
    mse,
    nonzero,
    times_derivative,
)
from .parallel import (
    COLLECTIVE_FAILED,
    add_rows,
    train_iterations_parallel,
    train_iterations_parallel_kernel,
)
from .span import (
    DONE,
    LOSS_NOT_FINITE,
    UPDATE_NOT_FINITE,
    SpanInputs,
    run_iterations,
    span_inputs,
    train_iterations,
    train_iterations_kernel,
    train_iterations_rows_kernel,
)
from .step import plain_step_into, rank_one_step, sgd_step, take_step

drop_stale_cache(train_iterations_kernel)

__all__ = [
    "ACTIVATION_KERNELS", "AS_IS", "BLAS_MIN_ROWS", "BLAS_THREADED_MIN_WORK", "COLLECTIVE_FAILED",
    "CROSS_ENTROPY", "DONE", "FLOAT", "LINEAR", "LOSS_KERNELS", "LOSS_NOT_FINITE", "MSE",
    "OPENBLAS_ONE_THREAD_WORK", "REASSOCIATE", "RELU", "SIGMOID", "SIGNED", "SpanInputs", "TANH",
    "UNSIGNED", "UPDATE_NOT_FINITE", "activate", "activation_code", "add_rows", "blas_limit",
    "blas_threads_for", "cross_entropy", "decode_row", "dense_backward", "dense_delta",
    "dense_delta_row", "dense_forward", "dense_forward_row", "dense_sq_norms", "forward",
    "gather_batch", "has_twins", "ieee_float64", "jit", "loss_and_grads", "loss_code", "mse",
    "nonzero", "plain_step_into", "rank_one_step", "run_iterations", "scaling_inputs", "sgd_step",
    "span_input", "span_inputs", "take_step", "times_derivative", "train_iterations",
    "train_iterations_kernel", "train_iterations_parallel", "train_iterations_parallel_kernel",
    "train_iterations_rows_kernel", "use_blas", "value_bits", "x_input",
]
