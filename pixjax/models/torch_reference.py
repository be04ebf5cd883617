"""PyTorch twins of pixjax models, for parity tests and side-by-side benchmarks.

Needs ``torch`` (the ``torch`` extra); imported lazily so pixjax itself never does.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def lenet5_to_torch(variables: Any, mean: float = 0.1307, std: float = 0.3081):
    """A ``torch.nn.Module`` computing the same logits as :class:`pixjax.models.LeNet5`.

    The torch module takes NCHW images in ``[0, 1]`` (normalisation inside, as in the
    Flax model). Flax convolution kernels are HWIO -> OIHW; dense kernels are
    ``(in, out)`` -> ``(out, in)``; the first dense layer reads a flattened NHWC map in
    Flax, so the torch module permutes to NHWC before flattening.
    """
    import torch
    from torch import nn

    p = variables["params"]

    class TorchLeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(p["conv1"]["kernel"].shape[2], 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(p["fc1"]["kernel"].shape[0], 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, p["fc3"]["kernel"].shape[1])
            self.register_buffer("mean", torch.tensor(mean))
            self.register_buffer("std", torch.tensor(std))

        def forward(self, x):
            x = (x - self.mean) / self.std
            x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
            x = x.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as Flax flattens
            x = torch.relu(self.fc1(x))
            x = torch.relu(self.fc2(x))
            return self.fc3(x)

    m = TorchLeNet5()
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            getattr(m, name).weight.copy_(t(p[name]["kernel"]).permute(3, 2, 0, 1))
            getattr(m, name).bias.copy_(t(p[name]["bias"]))
        for name in ("fc1", "fc2", "fc3"):
            getattr(m, name).weight.copy_(t(p[name]["kernel"]).T)
            getattr(m, name).bias.copy_(t(p[name]["bias"]))
    return m.eval()
