"""Supervised training of any registered classifier with optax.

Everything random is keyed explicitly: the epoch order is ``fold_in(key, epoch)`` and the
augmentation of step ``t`` is ``fold_in(key, t)``, so a run resumed from a checkpoint
reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from pixjax.types import PRNGKey

# ``augment(key, image [H, W, C] in [0, 1]) -> image``, applied per image inside the step.
Augment = Callable[[PRNGKey, jax.Array], jax.Array]


class TrainState(train_state.TrainState):
    """Flax's TrainState (step, params, opt_state; ``apply_fn`` and ``tx`` static) plus
    ``batch_stats`` (BatchNorm running statistics; an empty dict for models without)."""

    batch_stats: Any = None

    @property
    def variables(self) -> dict[str, Any]:
        """The variables to pass to ``model.apply`` for inference."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}


def create_state(
    model: nn.Module,
    key: PRNGKey,
    input_shape: tuple[int, int, int],
    tx: optax.GradientTransformation,
    params: Any | None = None,
    batch_stats: Any | None = None,
) -> TrainState:
    """Initialises (or wraps given ``params`` / ``batch_stats``) into a
    :class:`TrainState`."""
    if params is None:
        variables = jax.jit(model.init)(key, jnp.zeros((1, *input_shape), jnp.float32))
        params = variables["params"]
        if batch_stats is None:
            batch_stats = variables.get("batch_stats", {})
    return TrainState.create(
        apply_fn=model.apply, params=params, tx=tx, batch_stats=batch_stats or {}
    )


def make_train_step(
    augment: Augment | None = None,
    *,
    paired: bool = False,
) -> Callable[[TrainState, jax.Array, jax.Array, PRNGKey], tuple[TrainState, dict]]:
    """Returns a jitted ``step(state, images_u8 [B,H,W,C], labels [B], key)``.

    ``key`` is the key of this step (the caller passes ``fold_in(base, state.step)``);
    image ``i`` of the batch is augmented with ``fold_in(key, i)``. With ``paired``, the
    step trains on the ``B`` clean images *and* their ``B`` augmented copies (the
    small-distance scheme of Zhang & Cai 2021: originals plus changed copies);
    otherwise the augmented images replace the clean ones.
    """
    if paired and augment is None:
        raise ValueError("paired: needs an augment function, got None")

    def step(state: TrainState, images_u8, labels, key):
        x = images_u8.astype(jnp.float32) / 255.0
        if augment is not None:
            keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(
                jnp.arange(x.shape[0])
            )
            x_aug = jax.vmap(augment)(keys, x)
            if paired:
                x = jnp.concatenate([x, x_aug])
                labels = jnp.concatenate([labels, labels])
            else:
                x = x_aug

        dropout_key = jax.random.fold_in(key, 0x7FFFFFFF)

        def loss_fn(params):
            variables = {"params": params}
            if state.batch_stats:
                variables["batch_stats"] = state.batch_stats
            logits, updates = state.apply_fn(
                variables,
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": dropout_key},
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(
                logits, labels
            ).mean()
            return loss, (logits, updates.get("batch_stats", {}))

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        acc = jnp.mean(jnp.argmax(logits, -1) == labels)
        state = state.apply_gradients(grads=grads)
        if state.batch_stats:
            state = state.replace(batch_stats=stats)
        return state, {"loss": loss, "accuracy": acc}

    return jax.jit(step, donate_argnums=0)


def _is_batchnorm(module: Any, _method: str) -> bool:
    """Flax's ``nn.BatchNorm`` or a port's own (``pixjax.models.resnet.BatchNorm``)."""
    return isinstance(module, nn.BatchNorm) or "BatchNorm" in type(module).__name__


def check_batchnorm_batch(
    model: Any, variables: Any, batch_size: int, image_shape: Sequence[int]
) -> None:
    """Refuses a training batch that leaves a BatchNorm layer one value per channel
    (``batch x H x W == 1`` at that layer, e.g. batch 1 after the last pooling): the
    batch statistics are then the value itself, the normalised output is 0 whatever
    the input, and training silently learns nothing (PyTorch raises "Expected more
    than 1 value per channel when training"). Shape-only: costs a trace.

    Args:
      model: a Linen module taking ``train=True``.
      variables: its variables (arrays or ``jax.ShapeDtypeStruct``); models without
        ``batch_stats`` pass at once.
      batch_size: images per training step as the model sees them.
      image_shape: ``(H, W, C)``.

    Raises:
      ValueError: naming ``batch_size``, the image size and the layer.
    """
    if not variables.get("batch_stats"):
        return

    def bn_outputs(v, x):
        _, state = model.apply(
            v,
            x,
            train=True,
            mutable=["batch_stats", "intermediates"],
            capture_intermediates=_is_batchnorm,
            rngs={"dropout": jax.random.key(0)},
        )
        return state.get("intermediates", {})

    x = jax.ShapeDtypeStruct((batch_size, *image_shape), jnp.float32)
    for path, leaf in jax.tree_util.tree_leaves_with_path(
        jax.eval_shape(bn_outputs, variables, x)
    ):
        if int(np.prod(leaf.shape[:-1])) <= 1:
            h, w = image_shape[:2]
            layer = "/".join(
                str(k.key) for k in path if getattr(k, "key", "__call__") != "__call__"
            )
            raise ValueError(
                f"batch_size: {batch_size} image(s) of {h}x{w} leave BatchNorm layer "
                f"{layer} one value per channel (its input "
                f"is {tuple(leaf.shape)}), so it would output zeros whatever the "
                "input; use a larger batch_size or larger images"
            )


def epoch_batches(key: PRNGKey, n: int, batch_size: int) -> np.ndarray:
    """The shuffled index batches ``[n // batch_size, batch_size]`` of one epoch
    (drop-last, so every step has the same shape)."""
    if batch_size <= 0 or batch_size > n:
        raise ValueError(
            f"batch_size: expected 1..{n} (the dataset size), got {batch_size}"
        )
    perm = np.asarray(jax.random.permutation(key, n))
    steps = n // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size)


@functools.lru_cache(maxsize=32)
def _predict_fn(apply_fn: Callable[..., jax.Array]):
    @jax.jit
    def fwd(v, xb):
        p = jax.nn.softmax(apply_fn(v, xb.astype(jnp.float32) / 255.0), -1)
        return jnp.argmax(p, -1), jnp.max(p, -1)

    return fwd


def predict(
    apply_fn: Callable[..., jax.Array],
    variables: Any,
    images_u8: np.ndarray,
    batch_size: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and softmax confidences ``([N], [N])`` of uint8 images
    (fixed-size batches; compiled once per ``apply_fn`` and batch shape)."""
    fwd = _predict_fn(apply_fn)

    preds, confs = [], []
    n = images_u8.shape[0]
    for s in range(0, n, batch_size):
        block = images_u8[s : s + batch_size]
        pad = batch_size - block.shape[0]
        if pad and n > batch_size:
            block = np.concatenate(
                [block, np.zeros((pad, *block.shape[1:]), block.dtype)]
            )
        p, c = fwd(variables, block)
        preds.append(np.asarray(p)[: min(batch_size, n - s)])
        confs.append(np.asarray(c)[: min(batch_size, n - s)])
    return np.concatenate(preds), np.concatenate(confs)


def evaluate(
    apply_fn: Callable[..., jax.Array],
    variables: Any,
    images_u8: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 1000,
) -> float:
    """Top-1 accuracy of uint8 images."""
    pred, _ = predict(apply_fn, variables, images_u8, batch_size)
    return float(np.mean(pred == np.asarray(labels)))
