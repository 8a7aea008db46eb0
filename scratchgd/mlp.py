"""The multilayer perceptron: weights, forward pass, loss and gradients; its input and target scaling."""

from __future__ import annotations

import warnings

import numpy as np

from . import _checks, kernels, npzfile
from ._arrays import NUMPY
from .activations import ACTIVATIONS
from .data import Dataset
from .errors import CompiledFallbackWarning
from .kernels import reference
from .losses import LOSSES
from .scaling import Scaling, fit_scaling


class MLP:
    """A fully connected network with hand-written backpropagation.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[d, h_1, ..., k]``: input width, hidden widths, outputs.
    activation : str
        Activation of every hidden layer, a name of ``activations.ACTIVATIONS``
        (``"relu"``, ``"tanh"``, ``"sigmoid"``, and any registered since). The
        output layer is linear.
    loss : str
        A name of ``losses.LOSSES``: ``"cross_entropy"``, cross-entropy on
        softmax of the outputs (integer labels), or ``"mse"``, mean squared
        error (real targets ``(n, k)``), or any registered since.
    seed : int
        Seed of the weight initialisation.
    dtype : numpy.float32 or numpy.float64
        Dtype of weights and computation.
    backend : {"numpy", "numba", "torch", "cupy", "array_api_strict"}
        ``"numpy"`` is the readable reference in ``scratchgd.kernels.reference``.
        ``"numba"`` with an activation or loss that has no compiled twin runs
        the reference kernels, with a :class:`~scratchgd.CompiledFallbackWarning`.
        ``"torch"``, ``"cupy"`` and ``"array_api_strict"`` run the same
        reference on that library's arrays (:mod:`scratchgd.kernels.array_api`,
        extra ``array-api``; see docs/gpu.md): ``params`` are its arrays, on
        ``device``.
    device : str or None
        Where an array-API backend keeps the weights and computes: ``"cpu"``,
        ``"cuda"``, ``"cuda:1"``, ... (torch, cupy) or a device name of
        array_api_strict (``"device1"``, ``"no_float64"``, ...); ``None``: the
        library's default. A device without the model's dtype is refused.
        ``None`` or ``"cpu"`` for numpy and numba.

    Attributes
    ----------
    xp : module
        The array namespace of ``params``: for numpy and numba NumPy's
        (``scratchgd._arrays.NUMPY``), else the library's (array-api-compat).
    kernels : module
        The backend's kernel module (:func:`scratchgd.kernels.for_model`):
        ``kernels.forward`` and ``kernels.loss_and_grads`` do the arithmetic
        of :meth:`forward` and :meth:`loss_and_grads`, and the engines call them.
    scaling : Scaling or None
        The input scaling, a fixed (untrained) first operation
        ``a_0 = (x - mean) / std`` applied to every input, in training and
        prediction alike (see :func:`scratchgd.standardize`). ``None`` (the
        default): ``a_0 = x``.
    target_scaling : Scaling or None
        mse only: the target scaling, per output ``t = (y - mean) / std`` with
        the statistics of the training targets (see
        :func:`scratchgd.standardize_targets`). The network is trained to
        output ``t``: :meth:`forward`, :meth:`loss_and_grads`,
        :func:`scratchgd.evaluate` and the losses of ``History`` are in these
        scaled units, and :meth:`predict` maps back, ``y_hat = z * std + mean``.
        ``None`` (the default): ``t = y``.

    Notes
    -----
    Initialisation, as the activation asks (``Activation.init``): ``W_l`` is
    drawn as He normal, ``N(0, 2 / fan_in)`` (relu), or as Glorot uniform,
    ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))`` (tanh, sigmoid);
    biases start at zero. Draws are made in float64 and
    cast, so a float32 and a float64 model with one seed start at the same point.

    Examples
    --------
    >>> model = sg.MLP([64, 128, 10], activation="relu", loss="cross_entropy", seed=0)
    >>> [w.shape for w in model.params]                # [W1, b1, W2, b2]
    [(64, 128), (128,), (128, 10), (10,)]
    >>> model.forward(np.zeros((5, 64))).shape         # logits of 5 rows
    (5, 10)
    """

    def __init__(self, sizes: list[int], activation: str = "relu", loss: str = "cross_entropy",
                 seed: int = 0, dtype: type = np.float64, backend: str = "numpy",
                 device: str | None = None) -> None:
        try:
            if isinstance(sizes, str | bytes) or not hasattr(sizes, "__len__"):
                raise TypeError
            sizes = list(sizes)
        except TypeError:  # a number, a 0-d array, a string
            raise TypeError(f"sizes must be a list of layer widths, got {sizes!r}") from None
        sizes = [_checks.positive_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output width, got {sizes}")
        n_params = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:], strict=True))
        _checks.fits_in_memory("sizes", sizes, 2 * 8 * n_params)  # float64 draws + the cast
        self.activation = _checks.choice("activation", activation, tuple(ACTIVATIONS))
        self.loss = _checks.choice("loss", loss, tuple(LOSSES))
        if LOSSES[self.loss].classes and sizes[-1] < 2:
            raise ValueError(f"{self.loss} needs at least 2 outputs, got sizes={sizes}")
        seed = _checks.seed("seed", seed)
        dtype = _checks.float_dtype("dtype", dtype)
        self.backend = _checks.choice("backend", backend,
                                      tuple(kernels.BACKENDS) + kernels.ARRAY_BACKENDS)
        self.sizes = sizes
        self.dtype = dtype
        self.seed = seed
        self._place(device)
        self._attach_kernels()
        self.params = self.to_device(self._init_params(np.random.default_rng(self.seed)))
        self._scaling: Scaling | None = None
        self._target_scaling: Scaling | None = None

    def _attach_kernels(self) -> None:
        """``self.kernels``: the backend's kernel module, or the reference's with a warning
        when the backend has no compiled twin of the activation or loss (``kernels.for_model``)."""
        self.kernels, missing = kernels.for_model(self.backend, self.activation, self.loss)
        if missing is not None:
            warnings.warn(CompiledFallbackWarning(
                f"MLP(backend={self.backend!r}): {missing}, so this model runs the NumPy "
                f"reference kernels (its results are backend='numpy''s)"), stacklevel=3)

    def _place(self, device: str | None) -> None:
        """Resolve the namespace ``xp``, the ``device`` and its dtype, once, for the backend."""
        self.device = check_device(self.backend, device)
        if self.backend not in kernels.ARRAY_BACKENDS:
            self.xp, self._xp_dtype = NUMPY, self.dtype
            return
        from .kernels import array_api
        self.xp = array_api.kernels(self.backend).xp
        self._xp_dtype = array_api.check_dtype(self.backend, self.xp, self.device, self.dtype)

    def to_device(self, arrays: list[np.ndarray]) -> list:
        """Host (NumPy) arrays as arrays of the model's namespace on its device (the same for numpy).

        Copies (torch on the CPU would otherwise share the NumPy array's memory).
        """
        if self.xp is NUMPY:
            return arrays
        return [self.xp.asarray(a, device=self.device, copy=True) for a in arrays]

    def to_host(self, arrays: list) -> list[np.ndarray]:
        """Arrays of the model's namespace as NumPy arrays (copies from a device; the same for numpy)."""
        if self.xp is NUMPY:
            return arrays
        return [to_numpy(a) for a in arrays]

    @property
    def scaling(self) -> Scaling | None:
        """The input scaling ``a_0 = (x - mean) / std``, or ``None``."""
        return self._scaling

    @scaling.setter
    def scaling(self, value: Scaling | None) -> None:
        self._scaling = _fitting("scaling", value, self.n_inputs,
                                 f"features but the model takes {self.n_inputs}")

    @property
    def target_scaling(self) -> Scaling | None:
        """The target scaling ``t = (y - mean) / std`` (mse), or ``None``."""
        return self._target_scaling

    @target_scaling.setter
    def target_scaling(self, value: Scaling | None) -> None:
        if value is not None and self.classifier:
            raise ValueError(f"target_scaling needs a regressor (loss mse); this model has "
                             f"loss={self.loss!r}, whose labels are classes")
        self._target_scaling = _fitting("target_scaling", value, self.n_outputs,
                                        f"targets but the model has {self.n_outputs} outputs")

    def inputs(self, X: np.ndarray, fresh: bool = False) -> np.ndarray:
        """``a_0``, the network's input for raw rows ``X``, in the model's dtype.

        With ``scaling``: ``a_0 = (X - mean) / std``
        (:func:`scratchgd.kernels.reference.apply_scaling`, a copy of the rows,
        or with ``fresh`` -- ``X`` a batch just gathered, which nothing else
        holds -- ``X`` itself scaled in place); without: ``X`` cast (no copy if
        it already has the model's dtype).
        """
        if self._scaling is not None:
            return reference.apply_scaling(X, self._scaling.mean, self._scaling.std, self.dtype,
                                         fresh)
        return np.asarray(X, dtype=self.dtype)

    def targets(self, y: np.ndarray) -> np.ndarray:
        """``t``, what the network is trained to output for checked targets ``y`` (:meth:`check_y`).

        With ``target_scaling``: ``t = (y - mean) / std`` per output
        (:func:`scratchgd.kernels.reference.apply_scaling`, a copy); without it,
        and for class labels: ``y`` itself.
        """
        if self._target_scaling is not None:
            s = self._target_scaling
            return reference.apply_scaling(y, s.mean, s.std, self.dtype)
        return y

    def _init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        params = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            if ACTIVATIONS[self.activation].init == "he":
                W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                W = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            params += [W.astype(self.dtype), np.zeros(fan_out, dtype=self.dtype)]
        return params

    @property
    def classifier(self) -> bool:
        """Whether the loss takes class labels (``LOSSES[loss].classes``), not real targets."""
        return LOSSES[self.loss].classes

    @property
    def n_inputs(self) -> int:
        """``d``, the input width."""
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        """``k``, the output width."""
        return self.sizes[-1]

    def copy(self, dtype: type | None = None) -> MLP:
        """An independent model with the same settings and a copy of the weights.

        ``dtype`` casts the copy (for instance to float64 for a gradient check).
        """
        dtype = self.dtype if dtype is None else dtype
        other = MLP(self.sizes, self.activation, self.loss, self.seed, dtype, self.backend,
                    self.device)
        other.params = other.to_device([p.astype(other.dtype) for p in self.to_host(self.params)])
        other.scaling = self.scaling
        other.target_scaling = self.target_scaling
        return other

    def check_X(self, X: object, name: str = "X") -> np.ndarray:
        """``X`` validated (real, finite, ``(n, d)``), as the network's input :meth:`inputs`."""
        X = _checks.real_matrix(name, X, ndim=(2,))
        if X.shape[1] != self.n_inputs:
            raise ValueError(f"{name} must have {self.n_inputs} columns for this model, "
                             f"got shape {X.shape}")
        _checks.all_finite(name, X)
        self.check_range(name, X)
        return self.inputs(X)

    def check_range(self, name: str, X: np.ndarray) -> None:
        """Raise ``ValueError`` if ``X`` holds values the model's dtype cannot hold.

        ``1e39`` is finite in float64 but ``inf`` in float32. Streams over ``X``
        (``min`` and ``max``, no copy), so a memory map stays on disk.
        """
        limit = np.finfo(self.dtype).max
        if X.size and X.dtype.kind == "f" and np.finfo(X.dtype).max > limit:
            low, high = X.min(), X.max()
            if low < -limit or high > limit:
                raise ValueError(f"{name} holds {low if low < -limit else high}, beyond the "
                                 f"range of {np.dtype(self.dtype).name} (+-{limit:.3g})")

    def check_y(self, y: object, n: int, name: str = "y") -> np.ndarray:
        """``y`` validated against the loss and ``n`` rows, in the form the loss takes.

        cross_entropy: integer labels ``(n,)`` in ``[0, k)``. mse: real targets
        ``(n, k)``, or ``(n,)`` when ``k == 1``, cast to the model's dtype.
        """
        y = _checks.real_matrix(name, y, ndim=(1, 2))
        if len(y) != n:
            raise ValueError(f"{name} must have {n} rows to match X, got shape {y.shape}")
        _checks.all_finite(name, y)
        k = self.n_outputs
        if self.classifier:
            if y.ndim != 1 or not _checks.whole_numbers(y):
                raise ValueError(f"{name} must be integer class labels of shape (n,) for "
                                 f"{self.loss}, got {y.dtype} {y.shape}")
            if n and (y.min() < 0 or y.max() >= k):
                raise ValueError(f"{name} labels must be in [0, {k}), found "
                                 f"{y.min() if y.min() < 0 else y.max()}")
            return y.astype(np.intp, copy=False)
        if y.ndim == 1 and k == 1:
            y = y[:, None]
        if y.shape[1:] != (k,):
            raise ValueError(f"{name} must be targets of shape (n, {k}) for {self.loss}, got "
                             f"{y.shape}")
        return np.asarray(y, dtype=self.dtype)

    def check_data(self, data: object, name: str = "data") -> np.ndarray:
        """Raise unless ``data`` is a :class:`~scratchgd.Dataset` this model can take.

        Its features must number ``d`` and fit the model's dtype, its labels or
        targets must suit the loss. Returns ``data.y`` as the loss takes it
        (:meth:`check_y`).
        """
        _checks.instance(name, data, Dataset)
        if data.n_features != self.n_inputs:
            raise ValueError(f"{name} has {data.n_features} features but the model takes "
                             f"{self.n_inputs}")
        y = self.check_y(data.y, len(data), name=f"{name}.y")
        self.check_range(f"{name}.X", data.X)
        return y

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Raw outputs ``z_L``, shape ``(n, k)``: logits for cross_entropy, values for mse.

        ``X`` holds raw rows: the model's ``scaling``, if any, is applied first.
        With a ``target_scaling`` the values are in its scaled units ``t``;
        :meth:`predict` gives them in the targets' own. A NumPy array, whatever
        the backend (the rows are moved to the model's device and back).
        """
        X, = self.to_device([self.check_X(X)])
        z = self.kernels.forward(self.params, X, self.activation)[-1]
        return z if self.xp is NUMPY else to_numpy(z)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels ``argmax_j z_ij`` (cross_entropy) or values (mse, in the model's dtype).

        mse: the outputs ``z``, or with a ``target_scaling`` the outputs mapped
        back to the targets' units, ``y_hat = z * std + mean`` (computed in float64).
        """
        return self.predictions(self.forward(X))

    def predictions(self, z: np.ndarray) -> np.ndarray:
        """What :meth:`predict` gives for the rows whose raw outputs (:meth:`forward`) are ``z``."""
        if self.classifier:
            return z.argmax(axis=1)
        if self._target_scaling is None:
            return z
        s = self._target_scaling
        return (z * s.std + s.mean).astype(self.dtype, copy=False)

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray,
                       reduction: str = "mean") -> tuple[float, list[np.ndarray]]:
        """Loss of the batch and its gradient with respect to every parameter.

        ``reduction="sum"``: ``L = sum_i l_i``; ``reduction="mean"``:
        ``L = (1/n) sum_i l_i``, which is PyTorch's ``CrossEntropyLoss()`` /
        ``MSELoss()``. Pure: the weights are not changed. ``y`` holds raw
        targets; with a ``target_scaling`` the loss is that of the scaled
        targets ``t = (y - mean) / std``, the loss training minimizes.

        Returns
        -------
        loss : float
        grads : list of arrays shaped like ``params``, ``dL/dparams`` (of the
            model's namespace, on its device).
        """
        reduction = _checks.choice("reduction", reduction, ("mean", "sum"))
        X = self.check_X(X)
        n = len(X)
        if n == 0:
            raise ValueError("X must have at least one row to compute a loss, got shape (0, d)")
        X, y = self.to_device([X, self.targets(self.check_y(y, n))])
        loss_sum, grads, _ = self.kernels.loss_and_grads(self.params, X, y, self.activation,
                                                          self.loss)
        loss_sum = float(loss_sum)
        if reduction == "sum":
            return loss_sum, grads
        return loss_sum / n, [g / n for g in grads]

    def __getstate__(self) -> dict:
        """What ``pickle`` stores: every attribute but the kernel module (the scaling included).

        Pickling exists for scikit-learn's workflows (``clone``, ``joblib``
        workers of ``GridSearchCV``, a fitted estimator saved by its user).
        Unpickling runs code the file names, so never unpickle a file from an
        untrusted source: for those, use scratchgd's own pickle-free model and
        checkpoint files (``.npz``, read with ``allow_pickle=False``).
        """
        state = self.__dict__.copy()
        del state["kernels"], state["xp"]
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled model, looking its backend's kernel module up again."""
        self.__dict__.update(state)
        self.__dict__.setdefault("_scaling", None)  # pickled before scaling existed
        self.__dict__.setdefault("_target_scaling", None)  # before target scaling existed
        self.__dict__.setdefault("device", None)  # before the array-API backends
        self.__dict__.setdefault("_xp_dtype", self.dtype)
        self._attach_kernels()
        self.xp = getattr(self.kernels, "xp", NUMPY)  # an array backend's namespace, or NumPy

    def save(self, path: str) -> None:
        """Write the model to the ``.npz`` file ``path``; read it back with :func:`scratchgd.load_model`.

        Pickle-free (see :mod:`scratchgd.npzfile`): the weights, the sizes,
        activation, loss and dtype, and the input and target scaling. Written
        atomically.
        """
        npzfile.write_model(_checks.path("path", path), self)

    def __repr__(self) -> str:
        scaled = ", scaling=standard" if self._scaling is not None else ""
        scaled += ", target_scaling=standard" if self._target_scaling is not None else ""
        scaled += "" if self.device is None else f", device={str(self.device)!r}"
        return (f"MLP({self.sizes}, activation={self.activation!r}, loss={self.loss!r}, "
                f"dtype={np.dtype(self.dtype).name}, backend={self.backend!r}{scaled})")


def check_device(backend: str, device: str | None) -> object:
    """The device ``device`` names for ``backend`` (``None`` for numpy and numba), or ``ValueError``."""
    if backend in kernels.ARRAY_BACKENDS:
        from .kernels import array_api
        return array_api.resolve_device(backend, device)
    if device not in (None, "cpu"):
        raise ValueError(f"device={device!r}: backend={backend!r} runs on the CPU only "
                         f"(device None or 'cpu'); for a GPU use backend='torch' or 'cupy'")
    return None


def to_numpy(a: object) -> np.ndarray:
    """A NumPy copy of an array of NumPy, torch, CuPy or array_api_strict, from any device."""
    if isinstance(a, np.ndarray):
        return a.copy()
    if hasattr(a, "get"):            # CuPy: device to host
        return a.get()
    if hasattr(a, "cpu"):            # torch: to the CPU
        return np.array(a.detach().cpu().numpy())
    info = a.__array_namespace__().__array_namespace_info__()  # array_api_strict: to its CPU
    return np.array(a.to_device(info.default_device()))


def _fitting(name: str, value: Scaling | None, width: int, mismatch: str) -> Scaling | None:
    """``value``, checked to be ``None`` or a :class:`Scaling` of ``width`` statistics.

    ``mismatch`` ends the message of a wrong width: "has statistics of 3 {mismatch}".
    """
    if value is not None:
        _checks.instance(name, value, Scaling)
        if len(value) != width:
            raise ValueError(f"{name} has statistics of {len(value)} {mismatch}")
    return value


def standardize(model: MLP, data: Dataset | np.ndarray) -> Scaling:
    """Give ``model`` the input scaling of ``data``: ``a_0 = (x - mean) / std``.

    ``mean`` and ``std`` are the per-feature statistics of ``data`` (a
    :class:`~scratchgd.Dataset` or an ``(n, d)`` array: the TRAINING rows),
    computed by :func:`scratchgd.scaling.fit_scaling` without copying it. From
    then on the model scales every input itself, in training, evaluation and
    prediction, and saves the statistics with its weights. Set
    ``model.scaling = None`` to remove it. Returns the :class:`Scaling`.
    """
    _checks.instance("model", model, MLP)
    X = data.X if isinstance(data, Dataset) else data
    scaling = fit_scaling(X)
    model.scaling = scaling
    return scaling


def standardize_targets(model: MLP, data: Dataset | np.ndarray) -> Scaling:
    """Give the regressor ``model`` the target scaling of ``data``: ``t = (y - mean) / std``.

    The sibling of :func:`standardize` for the other end of the network:
    ``mean`` and ``std`` are the per-output statistics of the targets of
    ``data`` (a :class:`~scratchgd.Dataset`, or the targets ``(n, k)`` or
    ``(n,)`` themselves: the TRAINING targets), computed by
    :func:`scratchgd.scaling.fit_scaling`; a constant target gets ``std = 1``.
    From then on the model is trained to output ``t`` (:meth:`MLP.targets`,
    applied once when a run starts), its losses are measured in those units,
    :meth:`MLP.predict` maps its outputs back, ``y_hat = z * std + mean``, and
    the statistics are saved with the weights. Set ``model.target_scaling =
    None`` to remove it. Returns the :class:`Scaling`.

    Raises
    ------
    ValueError
        If ``model`` does not have loss mse, or the targets do not suit it.
    """
    _checks.instance("model", model, MLP)
    if model.classifier:
        raise ValueError(f"standardize_targets needs a regressor (loss mse); this model has "
                         f"loss={model.loss!r}, whose labels are classes")
    y = _checks.real_matrix("targets", data.y if isinstance(data, Dataset) else data,
                            ndim=(1, 2))
    if len(y) == 0:
        raise ValueError(f"targets must have at least one row to compute statistics, got "
                         f"shape {y.shape}")
    shape = model.check_y(y, len(y), name="targets").shape   # (n, k)
    scaling = fit_scaling(np.asarray(y, dtype=np.float64).reshape(shape))
    model.target_scaling = scaling
    return scaling
