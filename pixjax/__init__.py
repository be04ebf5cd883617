"""pixjax: how small pixel-level changes break image classifiers, in JAX/Flax.

Stages (each imports only from the ones before it)::

    data -> models -> perturb -> evaluation -> training -> checkpoints

``experiments/`` holds the entry points (``pixjax list`` / ``pixjax run``).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "check_pipeline"]


def __getattr__(name: str):
    # Imported on first use, so that `import pixjax` stays cheap (no jax import).
    if name == "check_pipeline":
        from pixjax.evaluation.consistency import check_pipeline

        return check_pipeline
    raise AttributeError(f"module 'pixjax' has no attribute {name!r}")
