"""Model files: a trained model in one pickle-free ``.npz`` file.

``model.save("model.npz")`` writes, and :func:`load_model` reads back:

* the weights ``param_0, param_1, ...`` (``[W_1, b_1, ...]``);
* the input scaling, if any (``scale_mean``, ``scale_std``, float64);
* one JSON text ``meta``: format, version, and the model's sizes,
  activation, loss and dtype.

It is the format family of checkpoints (:mod:`scratchgd.checkpoint`), read by
the same validated reader (:func:`scratchgd.checkpoint.read_npz`): a file that
holds pickled objects, is truncated or forged, or has weights of the wrong
shape is refused with a ``ValueError`` that names it, and nothing from it is
ever run. A checkpoint is accepted wherever a model file is: its model part
is the same.
"""

from __future__ import annotations

import json
import os

import numpy as np

from . import _checks
from . import checkpoint as _ckpt
from .mlp import MLP

FORMAT = "scratchgd-model"
VERSION = 1


def save_model(model: MLP, path: str | os.PathLike) -> None:
    """Write ``model`` (weights, description, scaling) to ``path`` atomically."""
    _checks.instance("model", model, MLP)
    _checks.path("path", path)
    arrays = {f"param_{i}": p for i, p in enumerate(model.params)}
    arrays.update(_ckpt.scaling_arrays(model))
    meta = {"format": FORMAT, "version": VERSION,
            "model": {"sizes": list(model.sizes), "activation": model.activation,
                      "loss": model.loss, "dtype": np.dtype(model.dtype).name}}
    arrays["meta"] = np.array(json.dumps(meta))
    _ckpt.write_npz_atomic(path, arrays)


def load_model(path: str | os.PathLike, backend: str = "numpy") -> MLP:
    """The model saved at ``path`` by :meth:`MLP.save`, or the model of a checkpoint.

    It predicts exactly as the saved one did: the same weights, dtype and
    input scaling. ``backend`` chooses the kernels of the loaded model.

    Raises
    ------
    ValueError
        Naming the file, if it is not a model file or checkpoint of this
        version, or is damaged, forged or holds pickled data.
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = os.fspath(_checks.path("path", path))
    backend = _checks.choice("backend", backend, ("numpy", "numba"))
    arrays = _ckpt.read_npz(path, "model file")

    def fail(message: str) -> ValueError:
        return ValueError(f"model file {path!r} {message}")

    meta = _ckpt.read_meta(arrays, fail)
    if meta.get("format") == _ckpt.FORMAT:
        ck = _ckpt.load(path)
        return _build(ck.meta["model"], ck.params, ck.scaling, backend, fail)
    if meta.get("format") != FORMAT:
        raise fail("is neither a scratchgd model file nor a checkpoint")
    if meta.get("version") != VERSION:
        raise fail(f"has format version {meta.get('version')!r}; this scratchgd reads "
                   f"version {VERSION} only")
    described = meta.get("model")
    if not isinstance(described, dict):
        raise fail("has a malformed 'model' entry")
    try:
        params = _ckpt.read_weights(arrays, described, ("param",), fail)["param"]
    except KeyError as exc:
        raise fail(f"misses the entry {exc}") from None
    sizes = described["sizes"]
    scaling = _ckpt.read_scaling(arrays, sizes[0], fail)
    if arrays:
        raise fail(f"holds unexpected entries {sorted(arrays)}")
    return _build(described, params, scaling, backend, fail)


def _build(described: dict, params: list[np.ndarray], scaling: object, backend: str,
           fail: object) -> MLP:
    try:
        model = MLP(described["sizes"], described["activation"], described["loss"],
                    dtype=np.dtype(described["dtype"]).type, backend=backend)
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"describes an impossible model: {exc}") from None
    model.params = [np.array(p) for p in params]
    model.scaling = scaling
    return model
