"""Test accuracy of scratchgd and of idiomatic PyTorch on the same digits task.

Set-up (the core issue's): digits split 1,437 / 360 (seed 0), MLP 64-128-10
relu, cross-entropy, mini-batch SGD lr=0.1, batch 32, 20 epochs. PyTorch uses
its own defaults (nn.Linear initialisation, DataLoader shuffling, float32);
scratchgd its own (He initialisation, float64). Five seeds each.

    pip install -e ".[oracle]"
    python benchmarks/accuracy_vs_pytorch.py [--epochs 20] [--seeds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import scratchgd as sg


def scratchgd_accuracy(train: sg.Dataset, test: sg.Dataset, epochs: int, seed: int) -> float:
    model = sg.MLP([64, 128, 10], "relu", seed=seed)
    sg.fit(model, train, sg.MiniBatchSGD(0.1, 32), epochs=epochs, progress=False, seed=seed)
    return sg.evaluate(model, test)[1]


def pytorch_accuracy(train: sg.Dataset, test: sg.Dataset, epochs: int, seed: int) -> float:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    data = TensorDataset(torch.tensor(train.X, dtype=torch.float32), torch.tensor(train.y))
    loader = DataLoader(data, batch_size=32, shuffle=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for X, y in loader:
            opt.zero_grad()
            loss_fn(net(X), y).backward()
            opt.step()
    with torch.no_grad():
        pred = net(torch.tensor(test.X, dtype=torch.float32)).argmax(1).numpy()
    return float(np.mean(pred == test.y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    rows = {"scratchgd": scratchgd_accuracy, "pytorch": pytorch_accuracy}
    results = {name: [] for name in rows}
    for seed in range(args.seeds):
        for name, run in rows.items():
            start = time.perf_counter()
            results[name].append(run(train, test, args.epochs, seed))
            print(f"seed {seed}  {name:<10} test accuracy {results[name][-1]:.4f}  "
                  f"({time.perf_counter() - start:.2f} s)")
    for name, accs in results.items():
        print(f"{name:<10} mean {statistics.mean(accs):.4f}  min {min(accs):.4f}  "
              f"max {max(accs):.4f}")
    gap = statistics.mean(results["scratchgd"]) - statistics.mean(results["pytorch"])
    print(f"difference of means (scratchgd - pytorch): {gap:+.4f}")


if __name__ == "__main__":
    main()
