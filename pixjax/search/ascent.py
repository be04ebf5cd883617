"""Gradient-ascent fooling images (Nguyen, Yosinski & Clune, "Deep Neural Networks are
Easily Fooled", CVPR 2015, the gradient-ascent section and its supplementary figures).

Starting from noise, follow the gradient of one class's softmax probability with respect
to the input, with image regularisers between the steps, until the network is
>= 99.99% sure. Here every (hyperparameter setting, target class) pair runs at once:
one jitted call, a ``lax.scan`` over the steps, each step one batched call of the
network on all ``S * T`` images and a per-example update ``vmap``-ed over targets and
over settings (:func:`fooling_ascent`, :func:`make_ascent`). ``loop="python"`` runs
the same jitted step from a host loop instead: ~2x faster on the CPU, where XLA
compiles convolution gradients worse inside a loop (jax#12868, as
:func:`pixjax.driver.run`'s ``loop``).

What the original does (``caffe/ascent/find_fooling_image.py::find_image`` in
github.com/Evolving-AI-Lab/fooling, driven by ``hyperparam_search.py`` there; the same
loop is ``optimize/gradient_optimizer.py`` in yosinski/deep-visualization-toolbox):

* Space: Caffe's input blob, BGR pixels in ``0..255`` minus the ImageNet mean image,
  so ``X = 0`` is the mean image.
* Start (``start_at="mean_plus"``, the default): ``X0 ~ N(0, 1)`` per pixel and
  channel, i.e. the mean image plus noise of std 1 grey level; ``"randu"``: uniform
  ``0..255`` pixels; ``"zero"``: the mean image itself. ``np.random.seed(rseed)`` with
  ``rseed=0`` for every class and every hyperparameter setting.
* Each of ``N`` (300) iterations ``ii``: clip ``X + mean`` to ``[0, 255]``; forward;
  record the first ``ii`` at which the target's probability is ``> .99``, ``> .999``,
  ``> .9999`` (and at which it is the argmax); backward from the *softmax output*
  (``push_layer="prob"``, a diff of 1 at the target unit: the gradient of the target's
  probability, not its logit nor its log-probability; ``fc8``, the logit, is an
  option of ``hyperparam_search.py``); stop if the gradient is exactly 0. Then, on every
  iteration but the last: ``X += lr * grad``; ``X *= (1 - decay)`` (L2 decay, pulls
  towards the mean image); every ``blur_every``-th iteration (``ii % blur_every ==
  0``) ``scipy.ndimage.gaussian_filter(X[channel], blur_radius)`` on each channel
  (reflect mode, truncate 4; radii ``< 0.3`` refused); zero the entries with
  ``|X| < percentile(|X|, small_val_percentile)`` over the whole image (pseudo-L1).
  Further regularisers there, not ported: per-pixel-norm, "benefit" and
  "abs-benefit" percentiles.
* Step size (``lr_policy="progress"``, the default and what ``hyperparam_search.py``
  used): ``lr = min(max_lr, desired / ||grad||^2)`` with ``desired = min(early_prog,
  late_prog_mult * (1 - p))``: a step whose first-order gain in probability is
  ``desired`` (``early_prog`` 0.03 early on, a fraction ``late_prog_mult`` 0.1 of the
  remaining ``1 - p`` near the end), at most ``max_lr`` (``1e12`` in ``find_image``,
  ``1e7`` in ``hyperparam_search.py``). ``lr_policy="constant"``: ``lr`` fixed.
* Hyperparameters: ``find_image`` defaults decay 0.01, N 300, no blur, no zeroing;
  ``hyperparam_search.py`` draws decay, N, early / late progress, blur radius / every
  and the three pixel-percentile regularisers at random per seed (its
  ``small_val_percentile`` is always 0), and ``run_chosen_supplementary.sh`` reruns the
  chosen seeds -1 (no regulariser: decay 0, N 500), 169, 188 and 360.
* Returned: ``best_X``, meant to be the iterate of highest probability; a key typo
  (``act_best`` is compared, ``acts_best`` is stored) makes it the last iterate.
* Known defects: ``main()`` passes ``lr=``, not a parameter of ``find_image`` (a
  ``TypeError``: ``--lr`` and ``run.sh``'s constant-lr commands never ran as
  written), and ``push_idx=args.push_idx`` (-1 with ``--multi_idx_*``) instead of
  the class of its loop.

Where pixjax differs:

* Space: models take float32 images in ``[0, 1]`` and normalise inside
  (:mod:`pixjax.models`), so the ascent works on ``x = image - centre`` in ``[0, 1]``
  units; ``centre`` (mid-grey 0.5 by default, or a mean image ``[H, W, C]``) plays the
  mean image's part: decay pulls towards it, blur and zeroing act on ``x``, the image
  ``clip(centre + x, 0, 1)`` is what the network sees. Step sizes and learning rates
  convert from ``0..255`` units by ``x = X / 255``: the progress policy is unit-free,
  a learning rate scales by ``1 / 255**2`` (the default ``learning_rate`` is
  ``hyperparam_search.py``'s ``max_lr`` ``1e7`` converted), the ``"normal"`` start's
  std by ``1 / 255``.
* One rule for both step policies: ``lr = min(learning_rate, desired / ||g||^2)``;
  infinite progress targets make it the constant policy (``lr = learning_rate``), so
  policies can be ``vmap``-ed like any other setting.
* The probability's gradient is ``p * grad(log p)`` with ``log p = -softplus(lse_{j !=
  t} z_j - z_t)`` and ``1 - p = sigmoid(lse_{j != t} z_j - z_t)``: the same step,
  computed without the float32 cancellation of ``softmax``'s gradient near ``p = 1``.
  A zero gradient gives a zero gradient step (decay and blur go on) instead of
  stopping.
* The start of target ``t`` depends on ``(key, t)`` only (``fold_in`` of the
  ``"start"`` purpose key with ``t``): every setting starts a target from the same
  image (as the original's fixed seed), and a run on a subset of targets or settings
  equals the corresponding slice of a larger run.
* The returned image is the iterate of highest probability (latest on ties): what
  the original meant; the two agree whenever the probability does not fall.
* Thresholds are strict (``p > threshold``, the original's test) and compared in
  float32; the argmax step is not recorded (a threshold of 0.5 implies argmax).
* The blur is separable and exact to scipy's ``gaussian_filter`` (``mode="reflect"``,
  ``truncate=4.0``, kernel radius ``int(4 * sigma + 0.5)``), done as two small
  matrix products so that ``sigma`` can differ between ``vmap``-ed settings; any
  ``sigma >= 0`` is accepted (the original refuses ``0 < sigma < 0.3``). The
  percentile zeroing is exact to numpy's without sorting (:func:`zero_small`).

On the shipped LeNet-5 (centre 0.5, the ``"normal"`` start, 300 steps), the original's
defaults (progress 0.03 / 0.1, decay 0.01) bring 1 of the 10 classes past 99.99%;
``early_progress=0.1, late_progress=0.3`` with decay 0.001-0.005 (blur sigma 0.3 every
step or not) bring all 10 past 99.99% within 31-84 steps.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.keys import purpose_keys
from pixjax.search.direct import check_image_shape
from pixjax.types import PRNGKey

LogitsFn = Callable[[jax.Array], jax.Array]

STARTS = ("normal", "uniform", "centre")
LOOPS = ("scan", "python")
TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default


class AscentSettings(NamedTuple):
    """Dynamic hyperparameters of the ascent: numbers (one setting) or 1-d arrays with
    one leading axis ``[S]`` (``S`` settings ``vmap``-ed in one call; numbers broadcast
    against the arrays). All in ``[0, 1]`` image units.

    Attributes:
      learning_rate: the largest learning rate ``> 0``, finite (the original's
        ``max_lr``; default ``1e7 / 255**2``, ``hyperparam_search.py``'s ``1e7`` in
        ``0..255`` units); with both progress targets infinite, the constant learning
        rate: the step is ``learning_rate * grad p``.
      early_progress: the first-order probability gain wanted per step, ``> 0``
        (``early_prog``, 0.03); ``inf`` for none.
      late_progress: the fraction ``> 0`` of ``1 - p`` wanted per step near the end
        (``late_prog_mult``, 0.1); ``inf`` for none. The step is ``lr * grad p`` with
        ``lr = min(learning_rate, min(early, late * (1 - p)) / ||grad p||^2)``.
      decay: L2 decay in ``[0, 1)``: ``x <- (1 - decay) x`` after every step, ``x``
        the image minus the centre (0.01).
      blur_sigma: Gaussian blur std in pixels, ``>= 0`` (0: no blur).
      blur_every: blur after steps ``k`` with ``k % blur_every == 0`` (an integer
        ``>= 0``; 0: no blur; 1, the default: every step).
      percentile: after every step zero the entries of ``x`` whose ``|x|`` is below
        this percentile of ``|x|`` over the image, in ``[0, 100)`` (0: none; numpy's
        linear-interpolation percentile).
    """

    learning_rate: Any = 1e7 / 255**2
    early_progress: Any = 0.03
    late_progress: Any = 0.1
    decay: Any = 0.01
    blur_sigma: Any = 0.0
    blur_every: Any = 1
    percentile: Any = 0.0


# find_image's defaults; learning_rate: hyperparam_search.py's max_lr
DEFAULT_SETTINGS = AscentSettings()


class AscentResult(NamedTuple):
    """What :func:`fooling_ascent` returns (``S`` settings, ``T`` targets, ``K``
    thresholds).

    Attributes:
      images: float32 ``[S, T, H, W, C]`` in ``[0, 1]``: per setting and target, the
        iterate of highest target probability (the latest such step on ties).
      probs: float32 ``[S, T]``: the target's softmax probability of ``images``.
      best_step: int32 ``[S, T]``: the step of ``images`` (0 = the start).
      first_step: int32 ``[S, T, K]``: the first step at which the target's
        probability is ``> thresholds[k]`` (0 = the start; -1 = never).
      history: float32 ``[steps, S, T]``: the target's probability at every step
        (row ``k``: after ``k`` updates; with ``stop_early``, the rows after the stop
        repeat the last one).
    """

    images: jax.Array
    probs: jax.Array
    best_step: jax.Array
    first_step: jax.Array
    history: jax.Array


# --------------------------------------------------------------------------- checks


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_settings(settings: AscentSettings) -> dict[str, np.ndarray]:
    """The settings as numpy float64 (``blur_every``: int64) arrays of one common
    shape ``[S]`` (``S = 1`` when every field is a number).

    Raises:
      ValueError: not an :class:`AscentSettings`; a field that is not numeric, has
        more than one axis, or has a leading axis other than the others'; a value
        out of range (the message names the field and the accepted values).
    """
    if not isinstance(settings, AscentSettings):
        raise ValueError(
            f"settings: expected an AscentSettings, got {type(settings).__name__}"
        )
    arrays: dict[str, np.ndarray] = {}
    for name, value in settings._asdict().items():
        try:
            a = np.asarray(value)
        except Exception as e:  # e.g. a tracer: settings must be concrete
            raise ValueError(
                f"{name}: expected concrete numbers (not traced values), got {value!r}"
            ) from e
        if a.dtype == bool or not (
            np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
        ):
            raise ValueError(f"{name}: expected real numbers, got {value!r}")
        if a.ndim > 1:
            raise ValueError(
                f"{name}: expected a number or a 1-d array [S] (one value per setting),"
                f" got shape {a.shape}"
            )
        arrays[name] = a
    sizes = {n: a.shape[0] for n, a in arrays.items() if a.ndim == 1}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"settings: expected one leading axis [S] for every array field, got "
            f"{sizes}"
        )
    if 0 in sizes.values():
        raise ValueError(f"settings: expected at least one setting, got {sizes}")
    size = next(iter(sizes.values()), 1)

    def bad(name: str, accepted: str, ok: np.ndarray) -> None:
        if not np.all(ok):
            a = arrays[name]
            raise ValueError(
                f"{name}: expected {accepted}, got "
                f"{a[~ok].tolist() if a.ndim else a.item()!r}"
            )

    lr = arrays["learning_rate"]
    bad("learning_rate", "a finite number > 0", np.isfinite(lr) & (lr > 0))
    for name in ("early_progress", "late_progress"):
        v = arrays[name]
        bad(name, "a number > 0 (inf: no target)", ~np.isnan(v) & (v > 0))
    d = arrays["decay"]
    bad("decay", "a number in [0, 1)", (d >= 0) & (d < 1))
    s = arrays["blur_sigma"]
    bad("blur_sigma", "a finite number >= 0", np.isfinite(s) & (s >= 0))
    e = arrays["blur_every"]
    bad(
        "blur_every",
        "an integer >= 0 (0: no blur)",
        np.isfinite(e) & (e >= 0) & (np.round(e) == e),
    )
    p = arrays["percentile"]
    bad("percentile", "a number in [0, 100) (0: none)", (p >= 0) & (p < 100))
    out = {n: np.broadcast_to(a.astype(np.float64), (size,)) for n, a in arrays.items()}
    out["blur_every"] = out["blur_every"].astype(np.int64)
    return out


def settings_grid(
    base: AscentSettings = DEFAULT_SETTINGS, **values: Sequence
) -> AscentSettings:
    """Every combination of the given values (row-major over the keywords in the order
    given) as one :class:`AscentSettings` of ``[S]`` arrays, the other fields from
    ``base`` (numbers). E.g. ``settings_grid(decay=[0, 0.01], blur_sigma=[0, 0.5])``
    is ``S = 4`` settings.

    Raises:
      ValueError: an unknown field, an empty list, or ``base`` with array fields.
    """
    unknown = sorted(set(values) - set(AscentSettings._fields))
    if unknown:
        raise ValueError(
            f"settings_grid: unknown fields {unknown}; expected some of "
            f"{list(AscentSettings._fields)}"
        )
    if any(np.ndim(v) for v in base):
        raise ValueError("base: expected numbers only (the grid adds the axis)")
    lists = {n: list(np.atleast_1d(v)) for n, v in values.items()}
    empty = [n for n, v in lists.items() if not v]
    if empty:
        raise ValueError(f"settings_grid: no values for {empty}")
    combos = list(itertools.product(*lists.values()))
    fields = base._asdict()
    for i, name in enumerate(lists):
        fields[name] = np.asarray([c[i] for c in combos])
    for name, v in fields.items():
        if name not in lists:
            fields[name] = np.full(len(combos), v)
    return AscentSettings(**fields)


def _check_targets(targets: Any, num_classes: int) -> np.ndarray:
    a = np.asarray(targets)
    if a.ndim != 1 or a.size == 0 or a.dtype == bool:
        raise ValueError(
            f"targets: expected a non-empty 1-d array of class indices in "
            f"[0, {num_classes}), got {targets!r}"
        )
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"targets: expected integer class indices in [0, {num_classes}), got "
            f"dtype {a.dtype}"
        )
    out = (a < 0) | (a >= num_classes)
    if out.any():
        raise ValueError(
            f"targets: expected class indices in [0, {num_classes}) (the model's "
            f"logits), got {a[out].tolist()}"
        )
    return a.astype(np.int32)


def _check_thresholds(thresholds: Any) -> tuple[float, ...]:
    if not isinstance(thresholds, (tuple, list)) or not all(
        isinstance(t, (int, float, np.floating)) and not isinstance(t, bool)
        for t in thresholds
    ):
        raise ValueError(
            f"thresholds: expected a tuple of probabilities in (0, 1), got "
            f"{thresholds!r}"
        )
    bad = [t for t in thresholds if not 0 < t < 1]
    if bad:
        raise ValueError(
            f"thresholds: expected probabilities in (0, 1), got {bad} in {thresholds!r}"
        )
    return tuple(float(t) for t in thresholds)


def _num_classes(logits_fn: LogitsFn, shape: tuple[int, int, int]) -> int:
    if not callable(logits_fn):
        raise ValueError(f"logits_fn: expected a callable, got {logits_fn!r}")
    try:
        out = jax.eval_shape(logits_fn, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    except Exception as e:
        raise ValueError(
            f"logits_fn / image_shape: logits_fn does not take float32 images "
            f"[1, {', '.join(map(str, shape))}] ({type(e).__name__}: {e})"
        ) from e
    if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != 1:
        raise ValueError(
            f"logits_fn: expected logits [N, num_classes] for images [N, H, W, C], got "
            f"{getattr(out, 'shape', out)!r} for N = 1"
        )
    if out.shape[1] < 2:
        raise ValueError(f"logits_fn: expected >= 2 classes, got {out.shape[1]}")
    return int(out.shape[1])


# ------------------------------------------------------------------- regularisers


def blur_radius(sigma: float) -> int:
    """scipy's Gaussian kernel radius ``int(4.0 * sigma + 0.5)`` (``truncate=4.0``)."""
    return int(TRUNCATE * float(sigma) + 0.5)


def _reflect(idx: jax.Array, n: int) -> jax.Array:
    """scipy's ``mode="reflect"`` index map (``d c b a | a b c d | d c b a``), any
    offset."""
    m = jnp.mod(idx, 2 * n)
    return jnp.where(m < n, m, 2 * n - 1 - m)


def blur_matrix(n: int, sigma: jax.Array, radius: int) -> jax.Array:
    """float32 ``[n, n]`` ``B`` with ``B @ v`` = scipy's 1-d Gaussian filter of ``v``
    (reflect mode, truncate 4). ``sigma`` may be traced; ``radius`` (static) must be
    ``>= blur_radius(sigma)``: weights beyond ``int(4 sigma + 0.5)`` are zero, as
    scipy's. ``sigma = 0`` gives the identity."""
    offsets = jnp.arange(-radius, radius + 1)
    sigma = jnp.asarray(sigma, jnp.float32)
    r = jnp.floor(TRUNCATE * sigma + 0.5)
    safe = jnp.where(sigma > 0, sigma, 1.0)
    w = jnp.exp(-0.5 * (offsets / safe) ** 2) * (jnp.abs(offsets) <= r)
    w = jnp.where(sigma > 0, w, (offsets == 0).astype(jnp.float32))
    w = w / jnp.sum(w)
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, offsets.size))
    cols = _reflect(rows + offsets[None, :], n)
    return jnp.zeros((n, n), jnp.float32).at[rows, cols].add(w[None, :])


def _blur(x: jax.Array, bh: jax.Array, bw: jax.Array) -> jax.Array:
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("ij,jwc->iwc", bh, x, precision=hi)
    return jnp.einsum("kw,iwc->ikc", bw, x, precision=hi)


def gaussian_blur(image: jax.Array, sigma: float) -> jax.Array:
    """Per-channel 2-d Gaussian blur of ``image`` ``[H, W, C]`` (float32), std
    ``sigma >= 0`` pixels: scipy's ``gaussian_filter(image, (sigma, sigma, 0))``
    (``mode="reflect"``, ``truncate=4.0``), as the original blurs each channel.

    Raises:
      ValueError: ``image`` not 3-d, or ``sigma`` not a finite number ``>= 0``.
    """
    image = jnp.asarray(image, jnp.float32)
    if image.ndim != 3:
        raise ValueError(f"image: expected [H, W, C], got shape {image.shape}")
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float, np.floating, np.integer))
        or not (math.isfinite(sigma) and sigma >= 0)
    ):
        raise ValueError(f"sigma: expected a finite number >= 0, got {sigma!r}")
    return _gaussian_blur(image, jnp.float32(sigma), blur_radius(sigma))


@functools.partial(jax.jit, static_argnums=2)
def _gaussian_blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
    h, w, _ = image.shape
    return _blur(image, blur_matrix(h, sigma, radius), blur_matrix(w, sigma, radius))


def zero_small(x: jax.Array, percentile: jax.Array) -> jax.Array:
    """``x`` with the entries whose ``|x|`` is below the ``percentile``-th percentile
    of ``|x|`` (over all entries) set to 0: the original's ``small_val_percentile``
    (pseudo-L1), ``x - x * (|x| < np.percentile(|x|, percentile))``. ``percentile``
    in ``[0, 100)``, may be traced; 0 zeroes nothing.

    Exact to numpy's default (linear-interpolation) percentile without a sort (XLA's
    CPU sort is ~10x slower here): the order statistic ``a_(i)`` at ``i = floor(q (n
    - 1) / 100)`` is found by bisection over the bit patterns of ``|x|`` (monotonic for
    non-negative floats; 31 counting passes), and the interpolated threshold lies
    strictly above ``a_(i)`` exactly when the fractional rank is positive and
    ``a_(i + 1) > a_(i)``. For finite ``x``, computed (and returned) in float32.
    """
    x = jnp.asarray(x, jnp.float32)
    bits = jax.lax.bitcast_convert_type(jnp.abs(x).reshape(-1), jnp.int32)
    n = bits.size
    r = (jnp.asarray(percentile, jnp.float32) * (n - 1)) / 100
    i = jnp.clip(jnp.floor(r).astype(jnp.int32), 0, n - 1)

    def halve(_, bounds):  # invariant: count(bits <= hi) >= i + 1
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(bits <= mid) >= i + 1
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    inf = jnp.int32(0x7F800000)
    _, ai = jax.lax.fori_loop(0, 31, halve, (jnp.int32(0), inf), unroll=True)
    above_ai = (r > i) & (jnp.sum(bits <= ai) == i + 1)  # threshold > a_(i)
    small = (bits < ai) | ((bits == ai) & above_ai)
    return jnp.where(small.reshape(x.shape), jnp.zeros_like(x), x)


# ------------------------------------------------------------------------ ascent


def _log_prob(z: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log p_t, d)`` of one example's logits ``z`` ``[C]``, with ``d = lse_{j != t}
    z_j - z_t = log((1 - p_t) / p_t)`` (so ``1 - p_t = sigmoid(d)``, exact near 1)."""
    z = z.astype(jnp.float32)
    others = jnp.where(jnp.arange(z.shape[0]) == target, -jnp.inf, z)
    d = jax.nn.logsumexp(others) - z[target]
    return -jax.nn.softplus(d), d


def _update(
    x: jax.Array,
    g_log: jax.Array,
    lp: jax.Array,
    d: jax.Array,
    s: dict[str, jax.Array],
    bh: jax.Array,
    bw: jax.Array,
    k: jax.Array,
    use_blur: bool,
    use_percentile: bool,
) -> jax.Array:
    """One example's update after step ``k``: gradient step on ``p``, decay, blur,
    zeroing. ``x``: image minus centre ``[H, W, C]``; ``g_log``: ``grad log p`` at
    ``x``; ``lp``, ``d``: :func:`_log_prob`'s values; ``s``: one setting."""
    p, q = jnp.exp(lp), jax.nn.sigmoid(d)  # grad p = p * g_log; q = 1 - p
    # lr * grad p = coef * u with u = g_log / max|g_log| (||grad p||^2 can underflow)
    m = jnp.max(jnp.abs(g_log))
    ok = (m > 0) & (p > 0)
    u = g_log / jnp.where(ok, m, 1.0)
    pm = jnp.where(ok, p * m, 1.0)
    desired = jnp.minimum(s["early_progress"], s["late_progress"] * q)
    coef = jnp.minimum(s["learning_rate"] * pm, desired / (pm * jnp.sum(u * u)))
    x = (1.0 - s["decay"]) * (x + jnp.where(ok, coef, 0.0) * u)
    if use_blur:
        every = s["blur_every"]
        on = (every > 0) & (s["blur_sigma"] > 0) & (k % jnp.maximum(every, 1) == 0)
        x = jnp.where(on, _blur(x, bh, bw), x)
    if use_percentile:
        x = zero_small(x, s["percentile"])
    return x


class _Carry(NamedTuple):
    """The state of every (setting, target) ascent between steps."""

    x: jax.Array  # [S, T, H, W, C]: image minus centre, before clipping
    best_image: jax.Array  # [S, T, H, W, C]
    best_lp: jax.Array  # [S, T]: log p of best_image
    best_step: jax.Array  # [S, T] int32
    p: jax.Array  # [S, T]: the last scored probability
    passed: jax.Array  # [S, T] bool: p has been above the stop threshold
    history: jax.Array  # [steps, S, T]: p per step (rows not yet run: 0)


def _init_carry(x0: jax.Array, steps: int) -> _Carry:
    size, num = x0.shape[:2]
    return _Carry(
        x=x0,
        best_image=jnp.zeros_like(x0),
        best_lp=jnp.full((size, num), -jnp.inf, jnp.float32),
        best_step=jnp.zeros((size, num), jnp.int32),
        p=jnp.zeros((size, num), jnp.float32),
        passed=jnp.zeros((size, num), bool),
        history=jnp.zeros((steps, size, num), jnp.float32),
    )


def _step(
    carry: _Carry,
    k: jax.Array,
    targets: jax.Array,
    settings: dict[str, jax.Array],
    bh: jax.Array,
    bw: jax.Array,
    *,
    logits_fn: LogitsFn,
    centre: jax.Array,
    use_blur: bool,
    use_percentile: bool,
    stop_above: float | None,
) -> _Carry:
    """Step ``k`` of every (setting, target) ascent: score the clipped images, then
    update them. ``targets`` ``[T]``; ``settings`` fields ``[S]``; ``bh``, ``bw``:
    blur matrices ``[S, H, H]``, ``[S, W, W]``; ``stop_above``: once every
    probability has been above it, a step only repeats the last probability (no
    model call); ``None``: never.

    The network scores all ``S * T`` images in one batched call; the update is written
    per example and ``vmap``-ed over targets, then settings."""
    size, num = carry.p.shape

    def score(images):  # -> sum of log p, (log p [S, T], d [S, T])
        z = logits_fn(images.reshape(size * num, *images.shape[2:]))
        z = z.reshape(size, num, -1)
        lp, d = jax.vmap(jax.vmap(_log_prob), in_axes=(0, None))(z, targets)
        return jnp.sum(lp), (lp, d)

    update = functools.partial(
        _update, use_blur=use_blur, use_percentile=use_percentile
    )
    update = jax.vmap(update, in_axes=(0, 0, 0, 0, None, None, None, None))
    update = jax.vmap(update, in_axes=(0, 0, 0, 0, 0, 0, 0, None))

    def live(c: _Carry) -> _Carry:
        image = jnp.clip(centre + c.x, 0.0, 1.0)
        g_log, (lp, d) = jax.grad(score, has_aux=True)(image)
        x = update(image - centre, g_log, lp, d, settings, bh, bw, k)
        better = lp >= c.best_lp  # the latest of the best on ties
        p = jnp.exp(lp)
        return _Carry(
            x=x,
            best_image=jnp.where(better[..., None, None, None], image, c.best_image),
            best_lp=jnp.where(better, lp, c.best_lp),
            best_step=jnp.where(better, k, c.best_step),
            p=p,
            passed=c.passed | (p > stop_above) if stop_above is not None else c.passed,
            history=c.history.at[k].set(p),
        )

    if stop_above is None:
        return live(carry)
    frozen = lambda c: c._replace(history=c.history.at[k].set(c.p))
    return jax.lax.cond(jnp.all(carry.passed), frozen, live, carry)


def _start(
    key: PRNGKey, target: jax.Array, centre: jax.Array, init_std: jax.Array, start: str
) -> jax.Array:
    """The start of one target minus ``centre``."""
    key = jax.random.fold_in(key, target)
    if start == "normal":
        return init_std * jax.random.normal(key, centre.shape, jnp.float32)
    if start == "uniform":
        return jax.random.uniform(key, centre.shape, jnp.float32) - centre
    return jnp.zeros_like(centre)


@functools.partial(jax.jit, static_argnames="start")
def _starts(
    key: PRNGKey, targets: jax.Array, centre: jax.Array, init_std: jax.Array, start: str
) -> jax.Array:
    """The starts ``[T, H, W, C]`` minus ``centre``; jitted apart from the ascent (one
    compilation per process and shape, shared by every :func:`make_ascent`: threefry
    is slow to compile on the CPU)."""
    return jax.vmap(_start, in_axes=(None, 0, None, None, None))(
        key, targets, centre, init_std, start
    )


def _first_steps(history: jax.Array, thresholds: tuple[float, ...]) -> jax.Array:
    """int32 ``[S, T, K]``: first row of ``history`` ``[steps, S, T]`` above each
    threshold, -1 if none."""
    thr = jnp.asarray(thresholds, jnp.float32)
    above = history[..., None] > thr  # [steps, S, T, K]
    first = jnp.argmax(above, axis=0).astype(jnp.int32)
    return jnp.where(jnp.any(above, axis=0), first, -1)


def make_ascent(
    logits_fn: LogitsFn,
    *,
    image_shape: tuple[int, int, int],
    steps: int = 300,
    thresholds: Sequence[float] = (0.99, 0.999, 0.9999),
    centre: float | np.ndarray = 0.5,
    start: str = "normal",
    init_std: float = 1 / 255,
    stop_early: bool = False,
    loop: str = "scan",
) -> Callable[[PRNGKey, Any, AscentSettings], AscentResult]:
    """The function ``ascend(key, targets, settings) -> AscentResult`` of
    :func:`fooling_ascent` for one network and static settings (the arguments are
    :func:`fooling_ascent`'s). ``ascend`` checks its inputs, then runs the jitted
    ascent, compiled once per number of targets and settings, kernel radius
    (``blur_radius(max sigma)`` rounded up to a power of two) and whether any setting
    blurs or zeroes: keep it to run many calls without recompiling.

    Raises:
      ValueError: a bad argument, as :func:`fooling_ascent`; ``ascend`` raises for bad
        ``targets`` or ``settings``.
    """
    shape = check_image_shape(image_shape)
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    thresholds = _check_thresholds(thresholds)
    if not isinstance(stop_early, bool):
        raise ValueError(f"stop_early: expected True or False, got {stop_early!r}")
    if stop_early and not thresholds:
        raise ValueError("stop_early: needs at least one threshold, got none")
    if start not in STARTS:
        raise ValueError(f"start: expected one of {list(STARTS)}, got {start!r}")
    if loop not in LOOPS:
        raise ValueError(f"loop: expected one of {list(LOOPS)}, got {loop!r}")
    if (
        isinstance(init_std, bool)
        or not isinstance(init_std, (int, float, np.floating, np.integer))
        or not (math.isfinite(init_std) and init_std >= 0)
    ):
        raise ValueError(f"init_std: expected a finite number >= 0, got {init_std!r}")
    try:
        c = np.broadcast_to(np.asarray(centre, np.float32), shape)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"centre: expected a number or an array broadcastable to {shape} in "
            f"[0, 1], got {np.shape(centre)}"
        ) from e
    if not (np.all(np.isfinite(c)) and c.min() >= 0 and c.max() <= 1):
        raise ValueError("centre: expected values in [0, 1]")
    centre_arr = jnp.asarray(c)
    num_classes = _num_classes(logits_fn, shape)
    init_std = float(init_std)
    stop_above = max(thresholds) if stop_early else None
    step_kw = dict(logits_fn=logits_fn, centre=centre_arr, stop_above=stop_above)

    def prepare(starts, settings, radius):
        size = settings["decay"].shape[0]
        x0 = jnp.broadcast_to(starts, (size, *starts.shape))
        h, w, _ = shape
        bh = jax.vmap(lambda v: blur_matrix(h, v, radius))(settings["blur_sigma"])
        bw = jax.vmap(lambda v: blur_matrix(w, v, radius))(settings["blur_sigma"])
        return _init_carry(x0, steps), bh, bw

    def finish(carry: _Carry) -> AscentResult:
        return AscentResult(
            images=carry.best_image,
            probs=jnp.exp(carry.best_lp),
            best_step=carry.best_step,
            first_step=_first_steps(carry.history, thresholds),
            history=carry.history,
        )

    def run_scan(starts, targets, settings, *, radius, use_blur, use_percentile):
        carry, bh, bw = prepare(starts, settings, radius)
        step = functools.partial(
            _step, use_blur=use_blur, use_percentile=use_percentile, **step_kw
        )
        body = lambda c, k: (step(c, k, targets, settings, bh, bw), None)
        carry, _ = jax.lax.scan(body, carry, jnp.arange(steps, dtype=jnp.int32))
        return finish(carry)

    statics = ("use_blur", "use_percentile")
    jit_scan = jax.jit(run_scan, static_argnames=("radius", *statics))
    jit_prepare = jax.jit(prepare, static_argnums=2)
    jit_step = jax.jit(
        functools.partial(_step, **step_kw), static_argnames=statics, donate_argnums=0
    )
    jit_finish = jax.jit(finish)

    def run_python(starts, targets, settings, *, radius, use_blur, use_percentile):
        carry, bh, bw = jit_prepare(starts, settings, radius)
        for k in range(steps):
            carry = jit_step(
                carry,
                jnp.int32(k),
                targets,
                settings,
                bh,
                bw,
                use_blur=use_blur,
                use_percentile=use_percentile,
            )
            if stop_early and k % 10 == 9 and np.all(np.asarray(carry.passed)):
                rest = jnp.broadcast_to(carry.p, (steps - k - 1, *carry.p.shape))
                carry = carry._replace(history=carry.history.at[k + 1 :].set(rest))
                break
        return jit_finish(carry)

    run = jit_scan if loop == "scan" else run_python

    def ascend(key: PRNGKey, targets: Any, settings: AscentSettings) -> AscentResult:
        """:func:`fooling_ascent` of ``targets`` ``[T]`` under ``settings``."""
        t = _check_targets(targets, num_classes)
        s = check_settings(settings)
        keys = purpose_keys(key, "start")
        blurs = (s["blur_sigma"] > 0) & (s["blur_every"] > 0)
        need = max([blur_radius(v) for v in s["blur_sigma"][blurs]], default=0)
        radius = 1 << max(need - 1, 0).bit_length() if need else 0
        arrays = {
            n: jnp.asarray(a, jnp.int32 if n == "blur_every" else jnp.float32)
            for n, a in s.items()
        }
        t = jnp.asarray(t)
        starts = _starts(keys["start"], t, centre_arr, jnp.float32(init_std), start)
        return run(
            starts,
            t,
            arrays,
            radius=radius,
            use_blur=bool(blurs.any()),
            use_percentile=bool((s["percentile"] > 0).any()),
        )

    return ascend


def fooling_ascent(
    key: PRNGKey,
    logits_fn: LogitsFn,
    targets: Any,
    settings: AscentSettings = DEFAULT_SETTINGS,
    *,
    image_shape: tuple[int, int, int],
    steps: int = 300,
    thresholds: Sequence[float] = (0.99, 0.999, 0.9999),
    centre: float | np.ndarray = 0.5,
    start: str = "normal",
    init_std: float = 1 / 255,
    stop_early: bool = False,
    loop: str = "scan",
) -> AscentResult:
    """Gradient-ascent fooling images for every target class and hyperparameter
    setting in one jitted call (Nguyen, Yosinski & Clune, CVPR 2015; the original
    ``find_fooling_image.py``; see the module docstring for its loop and where this
    one differs).

    Per (setting, target), with ``x = image - centre``: start at ``centre`` plus
    noise; at each step ``k = 0 .. steps - 1`` clip the image to ``[0, 1]`` and score
    it (``history[k]``), then ``x <- x + lr * grad p_target`` (``lr`` as
    :class:`AscentSettings`), ``x <- (1 - decay) x``, blur if ``blur_every > 0`` and
    ``k % blur_every == 0``, zero below the percentile (the last step's update is
    never scored). Each call compiles anew; :func:`make_ascent` compiles once for
    many calls.

    Args:
      key: a typed PRNG key; the ``"start"`` purpose key, folded with the target
        index, draws each target's start.
      logits_fn: ``images [N, H, W, C] float32 in [0, 1] -> logits [N, num_classes]``
        (``functools.partial(model.apply, variables)``); called on all ``S * T``
        images of a step at once (examples must not interact: no batch statistics).
      targets: int ``[T]`` class indices in ``[0, num_classes)`` (from
        ``jax.eval_shape`` of ``logits_fn``).
      settings: :class:`AscentSettings` of numbers or ``[S]`` arrays
        (:func:`settings_grid`); concrete values.
      image_shape: ``(H, W, C)``, C 1 or 3.
      steps: images scored per run, an integer ``>= 1`` (the original's ``N``, 300):
        ``steps - 1`` updates.
      thresholds: probabilities in ``(0, 1)``; ``first_step`` records the first step
        whose probability is strictly above each.
      centre: the image the ascent is centred on (decay pulls ``x`` towards it, blur
        and zeroing act on ``image - centre``): a number or an array broadcastable to
        ``image_shape``, in ``[0, 1]`` (0.5, mid-grey; the original: its mean image).
      start: ``"normal"`` (``centre + N(0, init_std^2)``, the original's
        ``mean_plus``), ``"uniform"`` (uniform in ``[0, 1]``, ``randu``) or
        ``"centre"`` (``zero``).
      init_std: std of the ``"normal"`` start, ``>= 0`` (``1 / 255``: one grey
        level, as the original's ``N(0, 1)`` in ``0..255`` units).
      stop_early: once every (setting, target) has passed the highest threshold,
        skip the model for the remaining steps (their ``history`` rows repeat the
        last probability; ``images`` / ``probs`` / ``best_step`` are the best up to
        there). ``False``: always ``steps`` steps, as the original.
      loop: ``"scan"``: one jitted call, a ``lax.scan`` over the steps; ``"python"``:
        a host loop of one jitted step (all settings and targets batched; the same
        results up to float rounding), ~2x faster on the CPU (jax#12868).

    Returns:
      :class:`AscentResult`: images ``[S, T, H, W, C]``, probs / best_step ``[S, T]``,
      first_step ``[S, T, len(thresholds)]`` (-1 = never), history ``[steps, S, T]``.

    Raises:
      ValueError, before any ascent, naming the argument and the accepted values:
        ``targets`` not a non-empty 1-d integer array in ``[0, num_classes)``;
        ``steps < 1``; a setting out of range (:func:`check_settings`: learning rate
        not finite > 0, progress targets not > 0, decay outside ``[0, 1)``, blur sigma
        < 0, blur_every not an integer >= 0, percentile outside ``[0, 100)``) or
        array fields with different leading axes; ``thresholds`` outside ``(0, 1)``;
        a bad ``image_shape`` (or one ``logits_fn`` does not take), ``logits_fn``
        (not callable, not ``[N, num_classes >= 2]`` logits), ``centre``, ``start``,
        ``init_std``, ``stop_early`` (not a bool, or no thresholds), ``loop`` or
        ``key`` (not one typed PRNG key).
    """
    check_settings(settings)  # bad settings fail before the model is traced
    ascend = make_ascent(
        logits_fn,
        image_shape=image_shape,
        steps=steps,
        thresholds=thresholds,
        centre=centre,
        start=start,
        init_std=init_std,
        stop_early=stop_early,
        loop=loop,
    )
    return ascend(key, targets, settings)


__all__ = [
    "LOOPS",
    "STARTS",
    "AscentResult",
    "AscentSettings",
    "blur_matrix",
    "blur_radius",
    "check_settings",
    "fooling_ascent",
    "gaussian_blur",
    "make_ascent",
    "settings_grid",
    "zero_small",
]
