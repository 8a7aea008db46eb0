"""PyTorch autograd and torch.optim.SGD as an independent oracle (float64).

Skipped cleanly when torch is not installed (it comes with the ``oracle`` extra).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import problems

import scratchgd as sg

torch = pytest.importorskip("torch", reason="needs the 'oracle' extra")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: threads only add spin-waiting, which on a busy 2-core
    machine made one test take a minute instead of seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

ACT = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def torch_params(model):
    return [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in model.params]


def torch_loss(params, X, y, activation, loss):
    a = torch.tensor(X, dtype=torch.float64)
    n_layers = len(params) // 2
    for layer in range(n_layers):
        a = a @ params[2 * layer] + params[2 * layer + 1]
        if layer < n_layers - 1:
            a = ACT[activation](a)
    if loss == "cross_entropy":
        return torch.nn.CrossEntropyLoss()(a, torch.tensor(y, dtype=torch.long))
    return torch.nn.MSELoss()(a, torch.tensor(y, dtype=torch.float64))


@settings(max_examples=50)
@given(problems())
def test_loss_and_grads_equal_autograd(problem):
    sizes, activation, loss, X, y, seed = problem
    model = sg.MLP(sizes, activation, loss, seed=seed)
    ours, grads = model.loss_and_grads(X, y, reduction="mean")
    params = torch_params(model)
    theirs = torch_loss(params, X, y, activation, loss)
    theirs.backward()
    assert ours == pytest.approx(theirs.item(), rel=1e-12, abs=1e-14)
    for g, p in zip(grads, params, strict=True):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_momentum_steps_equal_torch_optim_sgd():
    data = sg.datasets.blobs(n=30, centers=3, n_features=4, seed=0)
    model = sg.MLP([4, 8, 3], "tanh", seed=0)
    params = torch_params(model)
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        torch_loss(params, data.X, data.y, "tanh", "cross_entropy").backward()
        opt.step()
    sg.fit(model, data, sg.GD(0.1, momentum=0.9), epochs=3, progress=False)
    for ours, theirs in zip(model.params, params, strict=True):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-13)


def test_digits_accuracy_matches_pytorch():
    """The core issue's set-up: MiniBatchSGD(0.1, 32), [64, 128, 10] relu, 20 epochs.

    PyTorch trains a copy of the same initial weights on the same batches (the
    loader's order); test accuracies must agree within 0.02.
    """
    train, test = sg.datasets.digits()
    model = sg.MLP([64, 128, 10], seed=0)
    params = torch_params(model)
    opt = torch.optim.SGD(params, lr=0.1)
    loader = sg.DataLoader(train, batch_size=32, shuffle=True, seed=0)
    for _ in range(20):
        for X, y in loader:
            opt.zero_grad()
            torch_loss(params, X, y, "relu", "cross_entropy").backward()
            opt.step()
    sg.fit(model, train, sg.MiniBatchSGD(0.1, 32), epochs=20, progress=False, seed=0)
    with torch.no_grad():
        h = torch.relu(torch.tensor(test.X) @ params[0] + params[1]) @ params[2] + params[3]
    torch_acc = float((h.argmax(1).numpy() == test.y).mean())
    ours = sg.evaluate(model, test)[1]
    assert ours > 0.9
    assert abs(ours - torch_acc) <= 0.02
