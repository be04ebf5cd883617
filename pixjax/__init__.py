"""pixjax: how small pixel-level changes break image classifiers, in JAX/Flax.

Stages (each imports only from the ones before it)::

    data -> models -> perturb -> evaluation -> training -> checkpoints

``experiments/`` holds the entry points (``pixjax list`` / ``pixjax run``).
"""

__version__ = "0.1.0"
