"""Shared fixtures. Tests run on the CPU; multi-device checks spawn a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before jax is imported."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "TFDS_DATA_DIR", os.path.join(os.path.dirname(__file__), ".no-tfds")
)

import jax  # noqa: E402
import pytest  # noqa: E402

from pixjax import checkpoints, data  # noqa: E402


@pytest.fixture(scope="session")
def mnist_test():
    return data.load("mnist-sample", "test")


@pytest.fixture(scope="session")
def lenet():
    """(module, variables, metadata) of the shipped LeNet-5."""
    root = os.path.join(os.path.dirname(os.path.dirname(__file__)), "checkpoints")
    return checkpoints.load_model(os.path.join(root, "lenet5-mnist"), arch="lenet5")


@pytest.fixture
def key():
    return jax.random.key(0)
