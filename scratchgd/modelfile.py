"""Model files: :func:`load_model` reads a trained model back from its ``.npz`` file.

``model.save("model.npz")`` (:meth:`scratchgd.MLP.save`) writes the file
through :func:`scratchgd.npzfile.write_model`: the weights ``param_0,
param_1, ...``, the input scaling, if any (``scale_mean``, ``scale_std``), the
target scaling, if any (``target_mean``, ``target_std``, from version 2), and
one JSON text ``meta`` (format, version, and the model's sizes, activation,
loss and dtype); files of version 1 (no target scaling) are read as before.
:func:`load_model` reads it with the validated reader of the same module
(:func:`scratchgd.npzfile.read_npz`): a file that holds pickled objects, is
truncated or forged, or has weights of the wrong shape is refused with a
``ValueError`` that names it, and nothing from it is ever run. A checkpoint
is accepted wherever a model file is: its model part is the same.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _checks
from . import checkpoint as _ckpt
from .activations import ACTIVATIONS
from .kernels import ARRAY_BACKENDS, BACKENDS
from .losses import LOSSES
from .mlp import MLP, check_device
from .npzfile import (
    MODEL_FORMAT,
    MODEL_VERSION,
    is_whole,
    model_entry_bytes,
    parse_meta,
    read_meta,
    read_npz,
    read_scaling,
    read_weights,
)


def load_model(path: str | os.PathLike, backend: str = "numpy", device: str | None = None) -> MLP:
    """The model saved at ``path`` by :meth:`MLP.save`, or the model of a checkpoint.

    It predicts exactly as the saved one did: the same weights, dtype, and
    input and target scaling. ``backend`` chooses the kernels of the loaded
    model, ``device`` where an array-API backend keeps it (see :class:`MLP`):
    the files hold NumPy arrays, whichever backend wrote them.

    Raises
    ------
    ValueError
        Naming the file, if it is not a model file or checkpoint of this
        version, or is damaged, forged or holds pickled data.
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = os.fspath(_checks.path("path", path))
    backend = _checks.choice("backend", backend, tuple(BACKENDS) + ARRAY_BACKENDS)
    check_device(backend, device)  # before the file is read

    def fail(message: str) -> ValueError:
        return ValueError(f"model file {path!r} {message}")

    def entry_bytes(meta_array: np.ndarray | None) -> dict[str, int]:
        meta = parse_meta(meta_array, fail)
        if meta.get("format") == _ckpt.FORMAT:
            return _ckpt.entry_bytes(meta, fail)
        _check_format(meta, fail)
        return model_entry_bytes(meta.get("model"), fail)

    arrays = read_npz(path, "model file", expected=entry_bytes)
    meta = read_meta(arrays, fail)
    if meta.get("format") == _ckpt.FORMAT:
        ck = _ckpt.load(path)
        return _build(ck.meta["model"], ck.params, (ck.scaling, ck.target_scaling), backend,
                      device, fail)
    version = _check_format(meta, fail)
    described = meta.get("model")
    if not isinstance(described, dict):
        raise fail("has a malformed 'model' entry")
    try:
        params = read_weights(arrays, described, ("param",), fail)["param"]
    except KeyError as exc:
        raise fail(f"misses the entry {exc}") from None
    sizes = described["sizes"]
    scalings = (read_scaling(arrays, sizes[0], fail),
                read_scaling(arrays, sizes[-1], fail, "target") if version >= 2 else None)
    if arrays:
        raise fail(f"holds unexpected entries {sorted(arrays)}")
    return _build(described, params, scalings, backend, device, fail)


def _check_format(meta: dict, fail: Any) -> int:
    """The format version of a model file's ``meta``, if it is a model file of a version read."""
    if meta.get("format") != MODEL_FORMAT:
        raise fail("is neither a scratchgd model file nor a checkpoint")
    version = meta.get("version")
    if not is_whole(version, 1, MODEL_VERSION):
        raise fail(f"has format version {version!r}; this scratchgd reads versions 1 to "
                   f"{MODEL_VERSION}")
    return version


def _build(described: dict, params: list[np.ndarray], scalings: tuple, backend: str,
           device: str | None, fail: object) -> MLP:
    """The model ``described``, with ``params`` and ``scalings`` (input, target)."""
    for kind, registry in (("activation", ACTIVATIONS), ("loss", LOSSES)):
        name = described.get(kind)
        if isinstance(name, str) and name not in registry:
            raise fail(f"names the {kind} {name!r}, which is not registered in this scratchgd "
                       f"(registered: {', '.join(registry)})")
    try:
        model = MLP(described["sizes"], described["activation"], described["loss"],
                    dtype=np.dtype(described["dtype"]).type, backend=backend, device=device)
    except (KeyError, TypeError, ValueError, OverflowError, MemoryError) as exc:
        raise fail(f"describes an impossible model: {str(exc) or type(exc).__name__}") from None
    model.params = model.to_device([np.array(p) for p in params])
    model.scaling = scalings[0]
    try:
        model.target_scaling = scalings[1]
    except ValueError as exc:
        raise fail(f"has an unusable target scaling: {exc}") from None
    return model
