"""The reference kernels on PyTorch, CuPy and array_api_strict arrays, through the array API.

There is no third copy of the math here: :class:`ArrayKernels` hands
:mod:`scratchgd.kernels.reference` the namespace of a library, found once
(``array_api_compat.array_namespace``, when a model is made), and the
reference's lines run on that library's arrays, on its device. This module
also resolves what a model's ``device=`` names and checks that the device holds
the model's dtype. The libraries are imported here only, when a model asks for
them (the extra ``array-api``: ``pip install scratchgd[array-api]``). See
docs/gpu.md.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

import numpy as np

from .._arrays import Array, Namespace
from .._files import memory_limit
from . import reference

LIBRARIES = {"torch": "torch", "cupy": "cupy", "array_api_strict": "array_api_strict"}
"""The array-API backends of ``MLP(backend=...)``, by the library each imports."""

EXTRA = "array-api"
"""The extra that installs array-api-compat, array-api-strict and torch (CPU)."""


class ArrayKernels:
    """``forward`` and ``loss_and_grads`` of :mod:`~scratchgd.kernels.reference` on one namespace.

    What a kernel module provides (see :mod:`scratchgd.kernels`), with ``xp``
    bound once, so the engines call it as they call the NumPy reference.
    """

    def __init__(self, xp: Namespace) -> None:
        self.xp = xp

    def forward(self, params: list[Array], X: Array, activation: str) -> list[Array]:
        """:func:`reference.forward <scratchgd.kernels.reference.forward>` on ``xp``."""
        return reference.forward(params, X, activation, self.xp)

    def loss_and_grads(self, params: list[Array], X: Array, y: Array, activation: str,
                       loss: str, observe: reference.LayerObserver | None = None
                       ) -> tuple[Array, list[Array], Array]:
        """:func:`reference.loss_and_grads <scratchgd.kernels.reference.loss_and_grads>` on ``xp``."""
        return reference.loss_and_grads(params, X, y, activation, loss, observe, self.xp)

    def __repr__(self) -> str:
        return f"ArrayKernels({self.xp.__name__})"


def library(backend: str) -> ModuleType:
    """Import the library of ``backend``, or raise ``ImportError`` naming the extra."""
    try:
        importlib.import_module("array_api_compat")
        return importlib.import_module(LIBRARIES[backend])
    except ImportError as error:
        raise ImportError(f"backend={backend!r} needs {error.name!r}: pip install "
                          f"'scratchgd[{EXTRA}]' (torch, array-api-strict, array-api-compat; "
                          f"CuPy from its own wheel for your CUDA)") from None


@functools.cache
def kernels(backend: str) -> ArrayKernels:
    """The kernels of ``backend``: the reference on its namespace, resolved once."""
    import array_api_compat

    lib = library(backend)
    return ArrayKernels(array_api_compat.array_namespace(lib.asarray(0.0)))


def resolve_device(backend: str, device: object) -> object:
    """The device object ``device`` names for ``backend`` (its default for ``None``).

    torch: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... (a build without CUDA
    refuses ``"cuda"``); cupy: ``"cuda"`` or ``"cuda:N"``; array_api_strict:
    the names of its devices (``"CPU_DEVICE"``, ``"device1"``, ``"no_float64"``, ...).
    """
    lib = library(backend)
    if backend == "torch":
        if device is None:
            return lib.get_default_device()
        try:
            resolved = lib.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device={device!r} is not a torch device: {error}") from None
        if resolved.type == "cuda" and not lib.cuda.is_available():
            raise ValueError(f"device={device!r}: this torch build has no CUDA device "
                             f"(torch.cuda.is_available() is False); use device='cpu'")
        return resolved
    if backend == "cupy":
        if isinstance(device, lib.cuda.Device):
            return device
        text = "cuda:0" if device in (None, "cuda") else str(device)
        if not text.startswith("cuda:") or not text[5:].isdigit():
            raise ValueError(f"device={device!r} is not a CuPy device: use 'cuda' or 'cuda:N'")
        return lib.cuda.Device(int(text[5:]))
    info = lib.__array_namespace_info__()
    if device is None:
        return info.default_device()
    if device in info.devices():
        return device
    try:
        return lib.Device(str(device))
    except ValueError:
        raise ValueError(f"device={device!r} is not a device of {backend}: one of "
                         f"{list(info.devices())}") from None


def check_dtype(backend: str, xp: Namespace, device: object, dtype: type) -> object:
    """``xp``'s dtype of the NumPy ``dtype``, or ``ValueError`` if ``device`` has none.

    A device without float64 (array_api_strict's ``"no_float64"``, Apple's MPS)
    refuses a float64 model: never a silent cast to float32.
    """
    name = np.dtype(dtype).name
    held = xp.__array_namespace_info__().dtypes(device=device, kind="real floating")
    if name not in held:
        raise ValueError(f"dtype={name}: the {backend} device {device} has no {name} "
                         f"(it holds {sorted(held)}); use dtype=np.float32")
    return held[name]


def free_memory(backend: str, device: object) -> int:
    """Bytes free on ``device``, by the library's own query; the host's for a CPU device.

    ``torch.cuda.mem_get_info``, ``cupy.cuda.runtime.memGetInfo``; for a CPU
    (torch's, array_api_strict's) the memory available to this process.
    """
    lib = library(backend)
    if backend == "torch" and device.type == "cuda":
        return int(lib.cuda.mem_get_info(device)[0])
    if backend == "cupy":
        with device:
            return int(lib.cuda.runtime.memGetInfo()[0])
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(available, memory_limit())
