"""Supervised training of any registered classifier with optax.

Everything random is keyed explicitly: the epoch order is ``fold_in(key, epoch)`` and the
augmentation of step ``t`` is ``fold_in(key, t)``, so a run resumed from a checkpoint
reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from pixjax.data.base import to_float
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
        from pixjax.models import init_variables

        variables = init_variables(model, key, input_shape)
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
    jit: bool = True,
) -> Callable[[TrainState, jax.Array, jax.Array, PRNGKey], tuple[TrainState, dict]]:
    """Returns ``step(state, images_u8 [B,H,W,C], labels [B], key) -> (state,
    {"loss", "accuracy"})``, jitted (the state donated) unless ``jit=False`` (the pure
    function, for use inside another jitted loop such as :func:`make_epoch_step`).

    ``key`` is the key of this step (the caller passes ``fold_in(base, state.step)``);
    image ``i`` of the batch is augmented with ``fold_in(key, i)``. With ``paired``, the
    step trains on the ``B`` clean images *and* their ``B`` augmented copies (the
    small-distance scheme of Zhang & Cai 2021: originals plus changed copies);
    otherwise the augmented images replace the clean ones.
    """
    if paired and augment is None:
        raise ValueError("paired: needs an augment function, got None")

    def step(state: TrainState, images_u8, labels, key):
        x = to_float(images_u8)
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

    return jax.jit(step, donate_argnums=0) if jit else step


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


def _check_batch_size(n: int, batch_size: int) -> None:
    if batch_size <= 0 or batch_size > n:
        raise ValueError(
            f"batch_size: expected 1..{n} (the dataset size), got {batch_size}"
        )


def epoch_order(key: PRNGKey, n: int, batch_size: int) -> jax.Array:
    """The shuffled index batches of one epoch: ``[n // batch_size, batch_size]``
    int32, a permutation of ``0..n-1`` cut to whole batches (drop-last, so every step
    has the same shape). Pure and jit-able (``n`` and ``batch_size`` static).

    Raises:
      ValueError: ``batch_size`` outside ``1..n``.
    """
    _check_batch_size(n, batch_size)
    steps = n // batch_size
    perm = jax.random.permutation(key, n)
    return perm[: steps * batch_size].reshape(steps, batch_size)


def epoch_batches(key: PRNGKey, n: int, batch_size: int) -> np.ndarray:
    """:func:`epoch_order` as a host array (``[n // batch_size, batch_size]``)."""
    return np.asarray(epoch_order(key, n, batch_size))


class FitData(NamedTuple):
    """What every step of :func:`make_fit_step` reads (unchanged during a run).

    Attributes:
      images: ``[N, H, W, C]`` uint8 training images.
      labels: ``[N]`` int32 classes.
      order: ``[E, S, B]`` int32, batch ``s`` of epoch ``e`` (:func:`fit_order`).
      augment_key: optimiser step ``t`` augments with ``fold_in(augment_key, t)``.
    """

    images: jax.Array
    labels: jax.Array
    order: jax.Array
    augment_key: PRNGKey


class FitState(NamedTuple):
    """The evolving state of :func:`make_fit_step`.

    Attributes:
      train: the :class:`TrainState` (its ``step`` counts optimiser steps).
      batch: int32 scalar, the batches done in this run (batch ``b`` is batch
        ``b % S`` of epoch ``b // S``).
    """

    train: TrainState
    batch: jax.Array


def fit_order(order_key: PRNGKey, epochs: int, n: int, batch_size: int) -> jax.Array:
    """The batches of ``epochs`` epochs: ``[epochs, n // batch_size, batch_size]``
    int32; epoch ``e`` is ``epoch_order(fold_in(order_key, e), n, batch_size)``.

    Raises:
      ValueError: ``batch_size`` outside ``1..n``; ``epochs`` not positive.
    """
    _check_batch_size(n, batch_size)
    if epochs <= 0:
        raise ValueError(f"epochs: expected a positive integer, got {epochs}")
    epoch = lambda e: epoch_order(jax.random.fold_in(order_key, e), n, batch_size)  # noqa: E731
    return jax.jit(jax.vmap(epoch))(jnp.arange(epochs))


def make_fit_step(
    augment: Augment | None = None, *, paired: bool = False
) -> Callable[[FitState, FitData], tuple[FitState, dict[str, jax.Array]]]:
    """Returns the pure ``step(state, data) -> (state, metrics)`` of training, one
    optimiser step per call, for :func:`pixjax.driver.run` (one driver step = one
    batch, one chunk = one epoch): step ``b`` trains on batch ``data.order[b // S,
    b % S]`` with the augmentation key ``fold_in(data.augment_key, state.train.step)``,
    so a run gives the same numbers however it is split or resumed.

    Returns:
      ``step`` with ``metrics = {"loss": [], "accuracy": []}`` float32, the loss
      before the update.
    """
    train_step = make_train_step(augment, paired=paired, jit=False)

    def step(state: FitState, data: FitData):
        per_epoch = data.order.shape[1]
        idx = data.order[state.batch // per_epoch, state.batch % per_epoch]
        key = jax.random.fold_in(data.augment_key, state.train.step)
        train, metrics = train_step(
            state.train, data.images[idx], data.labels[idx], key
        )
        return FitState(train, state.batch + 1), metrics

    return step
