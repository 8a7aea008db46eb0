"""scratchgd: epochs, iterations and batch sizes, made readable.

An MLP with hand-written backpropagation, trained by full-batch gradient
descent (``GD``), stochastic gradient descent (``SGD``) and mini-batch SGD
(``MiniBatchSGD``), all drawing from one ``DataLoader``.
"""

from . import datasets
from .data import DataLoader, Dataset
from .errors import CompiledFallbackWarning, StopTraining, TrainingDiverged
from .gradcheck import gradient_check, numerical_grads
from .metrics import (
    ClassificationReport,
    RegressionReport,
    classification_report,
    regression_report,
)
from .mlp import MLP, standardize, standardize_targets
from .modelfile import load_model
from .noise import GradientNoise, advise_batch_size, gradient_noise
from .optim import GD, SGD, MiniBatchSGD, Optimizer
from .scaling import Scaling
from .train import History, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "GD", "MLP", "SGD", "ClassificationReport", "CompiledFallbackWarning", "DataLoader", "Dataset",
    "GradientNoise", "History", "MiniBatchSGD", "Optimizer", "RegressionReport", "Scaling",
    "StopTraining", "TrainingDiverged",
    "advise_batch_size", "classification_report", "datasets", "evaluate", "fit",
    "gradient_check", "gradient_noise", "load_model", "numerical_grads", "regression_report",
    "standardize", "standardize_targets",
]
