"""scikit-learn estimators: scratchgd's :class:`~scratchgd.MLP` and :func:`~scratchgd.fit`
behind scikit-learn's API, for ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``::

    from scratchgd.estimators import MLPClassifier
    search = GridSearchCV(MLPClassifier(random_state=0),
                          {"batch_size": [1, 32, "full"], "learning_rate_init": [0.01, 0.1]})

Thin wrappers with no training loop of their own: ``fit`` builds an ``MLP`` and
an optimizer and calls ``scratchgd.fit``, so everything proved about
``scratchgd.fit`` holds here. With an integer ``random_state=r``,
``MLPClassifier(..., random_state=r).fit(X, y)`` ends with exactly the weights of::

    model = sg.MLP([d, *hidden_layer_sizes, len(classes_)], activation,
                   "cross_entropy", seed=r, dtype=dtype, backend=backend)
    optimizer = sg.MiniBatchSGD(learning_rate_init, batch_size, momentum, shuffle)
                # sg.GD(learning_rate_init, momentum) for batch_size="full"
    sg.fit(model, sg.Dataset(X, codes), optimizer, epochs=max_iter,
           accumulate=accumulate, seed=r)

where ``codes[i]`` is the position of ``y[i]`` in ``classes_ = np.unique(y)``
(``MLPRegressor``: loss ``"mse"``, targets ``y`` as ``(n, k)``, and with
``scale_targets=True``, its default, ``sg.standardize_targets(model, y)``
before ``sg.fit``). ``r`` seeds both
the weight initialisation and the data loader's shuffling. ``random_state=None``
or a ``np.random.RandomState`` draws one integer seed from that generator
(``None``: NumPy's global one) through ``sklearn.utils.check_random_state``, as
scikit-learn's own estimators do, and uses it for both.

This module imports scikit-learn (the extra ``sklearn``); ``import scratchgd``
does not import this module.

Pickling: scikit-learn's workflows (``clone``, the ``joblib`` workers of
``GridSearchCV``, saving a fitted estimator) need estimators to pickle, so
these do. Unpickling a file runs code it names: never unpickle a file from an
untrusted source. scratchgd's own model and checkpoint files are ``.npz``
archives read with ``allow_pickle=False``; they are the format to exchange.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _checks, kernels, train
from .activations import ACTIVATIONS
from .data import Dataset
from .history import History
from .losses import log_softmax
from .mlp import MLP, standardize_targets
from .optim import GD, MiniBatchSGD, Optimizer

__all__ = ["ACTIVATION_ALIASES", "MLPClassifier", "MLPRegressor"]

ACTIVATION_ALIASES = {"logistic": "sigmoid"}
"""scikit-learn's names of activations that scratchgd names otherwise."""

_PARAMETERS = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Widths of the hidden layers; the input and output widths come from the data.
    activation : {"relu", "tanh", "sigmoid", "logistic"}, default="relu"
        Activation of every hidden layer; ``"logistic"`` (scikit-learn's word)
        is ``"sigmoid"``.
    batch_size : int or "full", default=32
        Rows per iteration: 1 is SGD, ``"full"`` is full-batch gradient descent
        (``sg.GD``: every epoch one batch of all rows, in order). A batch size
        above the number of rows takes all rows.
    learning_rate_init : float, default=0.1 (MLPRegressor: 0.002)
        The constant learning rate ``lr`` of ``w <- w - lr v``. The regressor's
        is lower because the squared error curves far more sharply than
        cross-entropy (see ``docs/estimators.md``).
    momentum : float, default=0.0
        ``mu`` of ``v <- mu v + g`` (PyTorch's convention); 0 is plain SGD.
    max_iter : int, default=20
        Epochs of ``fit`` (scikit-learn counts epochs as iterations). Training
        always runs every epoch: there is no early stopping.
    accumulate : int or "epoch", default=1
        Iterations per training step (gradient accumulation, as in ``sg.fit``).
    shuffle : bool or "chunks", default=True
        How the data loader orders the rows each epoch (ignored for ``"full"``).
    random_state : int, RandomState instance or None, default=None
        Seed of the weight initialisation and of the loader's shuffling (see
        the module docstring for the mapping).
    dtype : {"float64", "float32"}, default="float64"
        Dtype of the weights and of the computation; ``X`` is cast to it.
    backend : {"numpy", "numba"}, default="numpy"
        ``"numpy"`` is the readable reference, ``"numba"`` the compiled one
        (equal to it within 1e-10 in float64).
    warm_start : bool, default=False
        ``fit`` continues from the current weights, momentum buffers and data
        loader state instead of starting afresh: ``fit`` with ``max_iter=a``
        then ``max_iter=b`` equals one ``fit`` with ``max_iter=a + b``.
    verbose : bool, default=False
        Show ``sg.fit``'s progress bar and one line per epoch.
"""

_ATTRIBUTES = """
    Attributes
    ----------
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names (a DataFrame).
    n_iter_ : int
        Epochs trained (over every call since the model was created).
    t_ : int
        Samples seen in training, counting every epoch.
    loss_curve_ : list of float
        Training loss of each epoch, measured on the fly (``History.epoch_loss``).
    coefs_, intercepts_ : list of ndarray
        ``W_l`` of shape ``(fan_in, fan_out)`` and ``b_l`` of shape
        ``(fan_out,)``, scikit-learn's layout: the live weights of ``model_``,
        so current after every ``fit``, ``partial_fit`` and unpickling.
    history_ : scratchgd.History
        Counters and curves of the whole training so far (the ``History`` of
        every ``sg.fit`` call joined; ``partial_fit`` adds one epoch each).
    model_ : scratchgd.MLP
        The trained network.
"""

_NOTES = """
    Notes
    -----
    Differences from ``sklearn.neural_network``'s MLP: the default is plain SGD
    with a constant rate (not Adam), no L2 penalty (``alpha=0``), no early
    stopping, and no ``sample_weight``. Pickle these estimators only for
    scikit-learn's workflows and trusted files (see the module docstring).
"""


class _MLPEstimator(BaseEstimator):
    """What the classifier and the regressor share: parameters, training, weights."""

    _loss = ""  # "cross_entropy" or "mse", set by each subclass

    def __init__(self, hidden_layer_sizes: int | tuple[int, ...] = (100,),
                 activation: str = "relu", batch_size: int | str = 32,
                 learning_rate_init: float = 0.1, momentum: float = 0.0, max_iter: int = 20,
                 accumulate: int | str = 1, shuffle: bool | str = True,
                 random_state: int | np.random.RandomState | None = None,
                 dtype: str = "float64", backend: str = "numpy", warm_start: bool = False,
                 verbose: bool = False) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.max_iter = max_iter
        self.accumulate = accumulate
        self.shuffle = shuffle
        self.random_state = random_state
        self.dtype = dtype
        self.backend = backend
        self.warm_start = warm_start
        self.verbose = verbose

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices ``W_l``, ``(fan_in, fan_out)``, of ``model_`` (live)."""
        return self.model_.params[0::2]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors ``b_l``, ``(fan_out,)``, of ``model_`` (live)."""
        return self.model_.params[1::2]

    def _new_optimizer(self) -> Optimizer:
        """A fresh optimizer from ``batch_size``, ``learning_rate_init``, ``momentum``, ``shuffle``."""
        if isinstance(self.batch_size, str):
            _checks.choice("batch_size", self.batch_size, ("full",))
            return GD(self.learning_rate_init, momentum=self.momentum)
        return MiniBatchSGD(self.learning_rate_init, batch_size=self.batch_size,
                            momentum=self.momentum, shuffle=self.shuffle)

    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        if isinstance(sizes, str | bytes) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"hidden_layer_sizes must be an int or a tuple of ints, "
                            f"got {sizes!r}")
        return [_checks.positive_int(f"hidden_layer_sizes[{i}]", s) for i, s in enumerate(sizes)]

    def _train(self, X: object, y: object, epochs: object, continuing: bool,
               classes: object = None) -> _MLPEstimator:
        """Validate everything, then train for ``epochs`` epochs with ``sg.fit``.

        ``continuing``: go on from the fitted model, its optimizer's momentum
        buffers and its loader generator (``partial_fit``, ``warm_start``);
        otherwise build a fresh model seeded from ``random_state``.
        """
        epochs = _checks.positive_int("max_iter", epochs)
        optimizer = self._new_optimizer()
        hidden = self._hidden()
        activation = ACTIVATION_ALIASES.get(self.activation, self.activation)
        _checks.choice("activation", activation, (*ACTIVATIONS, *ACTIVATION_ALIASES))
        dtype = _checks.float_dtype("dtype", self.dtype)
        backend = _checks.choice("backend", self.backend, tuple(kernels.BACKENDS))
        accumulate = _checks.count_or_epoch("accumulate", self.accumulate)
        progress = _checks.boolean("verbose", self.verbose)
        _checks.boolean("warm_start", self.warm_start)
        scaled = self._scales_targets()
        continuing = continuing and hasattr(self, "model_")
        if not continuing:
            seed = _seed(self.random_state)
        X, y = validate_data(self, X, y, reset=not continuing, dtype=dtype, order="C",
                             multi_output=self._loss == "mse", y_numeric=self._loss == "mse")
        targets, outputs, fitted = self._targets(y, continuing, classes)
        sizes = [X.shape[1], *hidden, outputs]
        if continuing:
            model, rng = self.model_, self._rng
            now = (model.sizes, model.activation, model.dtype, model.backend,
                   model.target_scaling is not None)
            if now != (sizes, activation, dtype, backend, scaled):
                raise ValueError(
                    f"cannot continue training the fitted network (sizes, activation, dtype, "
                    f"backend, targets scaled) = {now} as "
                    f"{(sizes, activation, dtype, backend, scaled)}: fit afresh with "
                    f"warm_start=False")
            optimizer.velocity = self._optimizer.velocity
        else:
            model = MLP(sizes, activation, self._loss, seed=seed, dtype=dtype, backend=backend)
            if scaled:  # the statistics of the first fit's targets, kept when continuing
                standardize_targets(model, targets)
            rng = np.random.default_rng(seed)
        history = train.fit(model, Dataset(X, targets), optimizer, epochs=epochs,
                            accumulate=accumulate, progress=progress, rng=rng)
        for name, value in fitted.items():
            setattr(self, name, value)
        self.model_, self._optimizer, self._rng = model, optimizer, rng
        self.history_ = _joined(self.history_, history) if continuing else history
        self.n_iter_ = self.history_.epochs
        self.t_ = self.history_.samples_seen
        self.loss_curve_ = list(self.history_.epoch_loss)
        return self

    def _scales_targets(self) -> bool:
        """Whether the network is trained on standardized targets (the regressor's choice)."""
        return False

    def _checked(self, X: object) -> np.ndarray:
        """``X`` validated for the fitted network (``NotFittedError`` before ``fit``)."""
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=self.model_.dtype, order="C")


class MLPClassifier(ClassifierMixin, _MLPEstimator):
    __doc__ = ("""A classifier trained by scratchgd: an MLP with softmax cross-entropy.

    One output per class, also for two classes (scikit-learn's MLP has one
    logistic output there). ``predict`` is ``classes_[argmax(predict_proba)]``.
    """ + _PARAMETERS + _ATTRIBUTES + """    classes_ : ndarray
        The class labels, sorted; output ``j`` of the network is ``classes_[j]``.
""" + _NOTES)

    _loss = "cross_entropy"

    def fit(self, X: object, y: object) -> MLPClassifier:
        """Train ``max_iter`` epochs on ``X: (n, d)`` and labels ``y: (n,)``; return ``self``."""
        return self._train(X, y, self.max_iter, continuing=self.warm_start)

    def partial_fit(self, X: object, y: object, classes: object = None) -> MLPClassifier:
        """Train one epoch, continuing from the last call; ``classes`` is needed on the first.

        ``N`` calls on the same data equal one ``fit`` with ``max_iter=N``: the
        weights, momentum buffers and the data loader's generator carry over.
        """
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit "
                             "(every label y may ever hold)")
        if not first and classes is not None and not np.array_equal(np.unique(classes),
                                                                    self.classes_):
            raise ValueError(f"classes={classes!r} differs from classes_={self.classes_!r} "
                             f"of the first call to partial_fit")
        return self._train(X, y, 1, continuing=True, classes=classes)

    def _targets(self, y: np.ndarray, continuing: bool,
                 classes: object) -> tuple[np.ndarray, int, dict]:
        """Class codes ``0..k-1`` of ``y``, ``k``, and ``classes_``: the sorted labels."""
        check_classification_targets(y)
        if continuing:
            labels = self.classes_
        else:
            labels = np.unique(y if classes is None else np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(f"MLPClassifier needs at least 2 classes to learn from; y holds "
                                 f"1 class: {labels[0]!r}")
        unknown = np.setdiff1d(y, labels)
        if len(unknown):
            raise ValueError(f"y holds labels {unknown.tolist()[:5]} that are not among the "
                             f"classes {labels.tolist()}")
        return np.searchsorted(labels, y), len(labels), {"classes_": labels}

    def predict_proba(self, X: object) -> np.ndarray:
        """``softmax(z)``, ``(n, k)``: column ``j`` is the probability of ``classes_[j]``."""
        X = self._checked(X)  # first: it raises NotFittedError if unfitted
        return np.exp(log_softmax(self.model_.forward(X)))

    def predict(self, X: object) -> np.ndarray:
        """The most probable class of each row: ``classes_[argmax(predict_proba(X))]``."""
        probability = self.predict_proba(X)  # first: it raises NotFittedError if unfitted
        return self.classes_[probability.argmax(axis=1)]


class MLPRegressor(RegressorMixin, _MLPEstimator):
    __doc__ = ("""A regressor trained by scratchgd: an MLP with mean squared error.

    The loss is ``(1/k) sum_j (z_ij - y_ij)**2`` per row, without scikit-learn's
    factor 1/2: at the same ``learning_rate_init`` each step is twice as long
    as that of scikit-learn's ``MLPRegressor``. Targets ``y: (n,)`` or ``(n, k)``;
    ``predict`` returns ``(n,)`` when ``k == 1``. By default the targets are
    standardized with the model (``scale_targets``), so the same learning
    rate suits targets of any size.
    """ + _PARAMETERS + """    scale_targets : bool, default=True
        Train on the standardized targets ``t = (y - mean) / std`` (each
        target's statistics over the rows of the first ``fit``; kept by
        ``partial_fit`` and ``warm_start``), the model's own target scaling
        (``sg.standardize_targets``, ``model_.target_scaling``); ``predict``
        maps back, ``z * std + mean``. ``loss_curve_`` is then in the scaled
        units. ``False``: train on ``y`` as it is.
""" + _ATTRIBUTES + _NOTES)

    _loss = "mse"

    def __init__(self, hidden_layer_sizes: int | tuple[int, ...] = (100,),
                 activation: str = "relu", batch_size: int | str = 32,
                 learning_rate_init: float = 0.002, momentum: float = 0.0, max_iter: int = 20,
                 accumulate: int | str = 1, shuffle: bool | str = True,
                 random_state: int | np.random.RandomState | None = None,
                 dtype: str = "float64", backend: str = "numpy", warm_start: bool = False,
                 verbose: bool = False, scale_targets: bool = True) -> None:
        super().__init__(hidden_layer_sizes, activation, batch_size, learning_rate_init,
                         momentum, max_iter, accumulate, shuffle, random_state, dtype, backend,
                         warm_start, verbose)
        self.scale_targets = scale_targets

    def _scales_targets(self) -> bool:
        return _checks.boolean("scale_targets", self.scale_targets)

    def fit(self, X: object, y: object) -> MLPRegressor:
        """Train ``max_iter`` epochs on ``X: (n, d)`` and targets ``y``; return ``self``."""
        return self._train(X, y, self.max_iter, continuing=self.warm_start)

    def partial_fit(self, X: object, y: object) -> MLPRegressor:
        """Train one epoch, continuing from the last call (``N`` calls equal ``max_iter=N``)."""
        return self._train(X, y, 1, continuing=True)

    def _targets(self, y: np.ndarray, continuing: bool,
                 classes: object) -> tuple[np.ndarray, int, dict]:
        """``y`` as ``(n, k)``, ``k``, and no further fitted attribute."""
        y = y.reshape(len(y), -1)
        if continuing and y.shape[1] != self.model_.n_outputs:
            raise ValueError(f"y has {y.shape[1]} target columns but the fitted network "
                             f"predicts {self.model_.n_outputs}")
        return y, y.shape[1], {}

    def predict(self, X: object) -> np.ndarray:
        """The predicted targets as float64: ``(n,)`` for one target, ``(n, k)`` for ``k``.

        ``model_.predict``: the network's outputs, mapped back through the
        target scaling (``z * std + mean``) when ``scale_targets``.
        """
        X = self._checked(X)  # first: it raises NotFittedError if unfitted
        y = self.model_.predict(X).astype(np.float64, copy=False)
        return y.ravel() if y.shape[1] == 1 else y

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _seed(random_state: object) -> int:
    """The integer seed ``random_state`` stands for (see the module docstring).

    An int is the seed itself; ``None`` or a ``RandomState`` gives one draw
    ``check_random_state(random_state).randint(2**31 - 1)``.
    """
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return _checks.seed("random_state", random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _joined(before: History, after: History) -> History:
    """One :class:`History` of two consecutive runs: counters added, lists joined.

    The per-epoch counters of ``after`` (``steps_at_epoch_end``,
    ``iterations_at_epoch_end``, ``samples_at_epoch_end``) are shifted by ``before``'s totals.
    """
    joined = History(**{f.name: getattr(before, f.name) + getattr(after, f.name)
                        for f in dataclasses.fields(History)})
    joined.steps_at_epoch_end = (before.steps_at_epoch_end
                                 + [before.steps + s for s in after.steps_at_epoch_end])
    joined.iterations_at_epoch_end = (before.iterations_at_epoch_end
                                      + [before.iterations + i
                                         for i in after.iterations_at_epoch_end])
    joined.samples_at_epoch_end = (before.samples_at_epoch_end
                                   + [before.samples_seen + n for n in after.samples_at_epoch_end])
    return joined
