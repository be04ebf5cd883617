"""Train / serve pipeline consistency: are the pixels a model is served the pixels it
was trained on?

A model trained on images resized by Pillow (bilinear) and served images resized by
OpenCV (linear), or re-encoded as JPEG on the way, sees different pixels; the
difference is invisible and can be enough to flip predictions (Parmar, Zhang and
Zhu, "On Aliased Resizing and Surprising Subtleties in GAN Evaluation", CVPR 2022).
:func:`check_pipeline` runs both pipelines (:mod:`pixjax.perturb.pipeline`: strings
such as ``"resize:opencv:linear:64|uint8:round"``, or any callable) on the same
images and reports, per image and overall, whether and how much the outputs differ,
and with a model how many predictions flip and how the top-1 probability moves.
Its ``passed`` (largest difference within a tolerance; with a model and
``max_flip_rate``, also the share of flipped predictions within that rate) is the
verdict a CI job can gate on (``pixjax check-pipeline``).

Everything runs on the host except the model's forward passes (the shared padded
batch loop, :func:`pixjax.evaluation.predict.map_batches`, on the default device).
Images are processed in chunks of ``batch_size``, so memory does not grow with the
number of images beyond the per-image numbers kept.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.data.base import Dataset, check_labels, check_positive_int
from pixjax.evaluation.metrics import mcnemar
from pixjax.evaluation.predict import forward_probs, map_batches
from pixjax.evaluation.summary import Z95, summarize, wilson_interval
from pixjax.perturb import pipeline as pl

__all__ = ["CheckResult", "check_pipeline", "format_markdown", "summary_paragraph"]


class CheckResult(NamedTuple):
    """What :func:`check_pipeline` found.

    Attributes:
      summary: a JSON-ready dict (plain Python values; ``None`` where a number is
        undefined, e.g. ``psnr_db`` of identical outputs, which is infinite). Keys:

        * ``train``, ``serve``: the pipelines' labels (canonical strings, or a
          callable's name); ``images``: where the images came from; ``n``;
          ``input_shape``, ``input_dtype``, ``output_shape``;
          ``dtypes`` (``{"train", "serve"}`` output dtype names) and ``dtypes_differ``
          (itself a finding: the model is fed another kind of input);
        * ``images_differing`` (images with any value differing), ``share_differing``
          and ``share_differing_ci`` (Wilson 95%); ``images_beyond_tolerance``;
        * ``max_abs``, ``mean_abs`` (of ``|train - serve|`` over all values, on the
          0..255 scale, in float64), ``share_values_differing``, ``psnr_db``
          (``None`` when identical), ``exact``;
        * ``tolerance``, ``passed_pixels`` (``max_abs <= tolerance``);
          ``max_flip_rate`` (``None`` unless given), ``passed_flips`` (``None``
          without ``max_flip_rate``, else the model's ``flip_rate <=
          max_flip_rate``); ``passed``: both gates that apply passed;
        * ``versions``: :func:`pixjax.perturb.pipeline.library_versions` (decoders
          and resizers change pixels across versions);
        * ``notes``: sentences for findings that are not numbers (dtypes differ);
        * ``model``: ``None`` without a model, else a dict (see
          :func:`check_pipeline`).
      per_image: one dict per image, in order: ``index``, ``differs``, ``max_abs``,
        ``mean_abs``; with a model also ``train_pred``, ``serve_pred``, ``flipped``,
        ``train_prob`` / ``serve_prob`` (softmax probability of ``train_pred`` under
        each pipeline's output) and ``prob_shift`` (serve minus train); with labels
        ``label``.
      passed: ``summary["passed"]``.
    """

    summary: dict[str, Any]
    per_image: list[dict[str, Any]]
    passed: bool

    def to_markdown(self) -> str:
        """A markdown report: the verdict paragraph, the pixel statistics, the model
        comparison (when there is one), the most different images and the library
        versions."""
        return format_markdown(self.summary, self.per_image)


# --------------------------------------------------------------------------- checks


def _label(fn: Callable) -> str:
    if isinstance(fn, pl.Pipeline):
        return str(fn)
    return getattr(fn, "__name__", None) or repr(fn)


def _check_tolerance(tolerance: Any) -> float:
    value = _as_float(tolerance)
    if value is None or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"tolerance: expected a finite number >= 0 (levels on the 0..255 scale), "
            f"got {tolerance!r}"
        )
    return value


def _as_float(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None; -0.0 as
    0.0."""
    if isinstance(value, bool) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        return None
    try:
        return float(value) + 0.0
    except OverflowError:  # an int beyond float's range
        return None


def _check_flip_rate(rate: Any, model: Any) -> float | None:
    if rate is None:
        return None
    value = _as_float(rate)
    if value is None or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"max_flip_rate: expected a share of images in [0, 1] or None, got {rate!r}"
        )
    if model is None:
        raise ValueError(
            "max_flip_rate: needs a model (the flips are the model's predictions "
            "changing between the two outputs)"
        )
    return value


def _check_images(images: Any, value_range: Any) -> tuple[np.ndarray, Any, str]:
    """``(array, labels or None, description)``; the array's dtype and values are
    checked by :func:`pixjax.perturb.pipeline.apply` (on the first chunk, before
    the rest)."""
    labels, name = None, "array"
    if isinstance(images, Dataset):
        labels, name = images.labels, images.name
        images = images.images
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"images: expected an array [N, H, W, C] (channels last) or a Dataset, "
            f"got shape {images.shape}"
        )
    if images.shape[0] == 0:
        raise ValueError("images: expected at least one image, got 0")
    if min(images.shape) < 1:
        raise ValueError(f"images: expected H, W, C >= 1, got shape {images.shape}")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"images: expected uint8 (0..255) or floating images with a value_range, "
            f"got dtype {images.dtype}"
        )
    if images.dtype != np.uint8:
        # the whole array checked now, not chunk by chunk during the work
        pl.apply("identity", images, value_range=value_range)
    return images, labels, name


def _as_pipeline(fn: Any, argument: str) -> Callable:
    try:
        return pl.as_pipeline(fn)
    except ValueError as e:
        raise ValueError(f"{argument}: {e}") from None


class _Model(NamedTuple):
    apply_fn: Callable
    variables: Any


@functools.lru_cache(maxsize=32)
def _unary(logits_fn: Callable) -> Callable:
    """``logits_fn(images)`` as ``apply_fn(variables, images)`` (one per function,
    so its jitted forward is cached like a module's)."""
    return lambda variables, images: logits_fn(images)


def _check_model(model: Any) -> _Model | None:
    if model is None:
        return None
    try:
        import flax.linen as nn

        if isinstance(model, nn.Module):
            raise ValueError(
                "model: got a Flax module without its variables; pass "
                "(module.apply, variables)"
            )
    except ImportError:  # pragma: no cover - flax is a dependency
        pass
    if isinstance(model, tuple | list) and len(model) == 2 and callable(model[0]):
        return _Model(model[0], model[1])
    if callable(model) and not isinstance(model, tuple | list):
        return _Model(_unary(model), ())
    raise ValueError(
        "model: expected (apply_fn, variables), e.g. (module.apply, variables), or a "
        "function images [B, H, W, C] float32 in [0, 1] -> logits [B, K], got "
        f"{type(model).__name__}"
    )


def _require_uint8(dtype: np.dtype, which: str, label: str) -> None:
    if np.dtype(dtype) != np.uint8:
        raise ValueError(
            f"model: the {which} pipeline {label!r} gives {np.dtype(dtype)} images; a "
            "model is compared on the uint8 pixels it would be served: end the "
            "pipeline with 'uint8:round' (or uint8:trunc)"
        )


# -------------------------------------------------------------------------- the work


def check_pipeline(
    train_fn: Any,
    serve_fn: Any,
    images: Any,
    model: Any = None,
    *,
    labels: Any = None,
    value_range: tuple[float, float] | None = None,
    tolerance: float = 0.0,
    max_flip_rate: float | None = None,
    batch_size: int = 256,
) -> CheckResult:
    """Compares a training and a serving image pipeline on the same images.

    Both pipelines run on every image (on the host, in chunks of ``batch_size``);
    their outputs are compared in float64 on the 0..255 scale
    (:func:`pixjax.perturb.pipeline.difference_stats`). Outputs of different dtypes
    (e.g. float32 from ``resize:jax:...`` against uint8) are compared as values and
    the difference of dtypes is reported as a finding of its own.

    With a model, both outputs are classified (:func:`pixjax.evaluation.predict.
    classify`: argmax of the logits, uint8 scaled by 1/255 as everywhere in pixjax)
    and ``summary["model"]`` holds:

    * ``num_classes``; ``flips`` (images whose top-1 class differs between the two
      outputs), ``flip_rate`` and ``flip_rate_ci`` (Wilson 95%, over all images);
    * ``prob_shift_mean``, ``prob_shift_median``, ``prob_shift_max_abs`` and
      ``prob_shift_ci``: the shift of each image's top-1 probability, the softmax
      probability of the class predicted on the **train** output, under the serve
      output minus under the train output (negative: the serving pixels make the
      model less sure of what it learned to say). The interval is the normal
      approximation ``mean +- 1.96 sd / sqrt(n)`` (``sd`` with ``ddof=1``;
      deterministic, no key; ``None`` for one image);
    * with labels: ``train_accuracy`` / ``serve_accuracy`` with ``*_ci`` (Wilson
      95%), ``flips_among_correct`` / ``flip_rate_among_correct`` /
      ``flip_rate_among_correct_ci`` (the images classified correctly under the train
      pipeline whose prediction changed: the flip rate of
      :func:`pixjax.evaluation.summary.summarize`), and ``mcnemar``
      (:func:`pixjax.evaluation.metrics.mcnemar`, correct under train vs under
      serve).

    Args:
      train_fn, serve_fn: pipelines as :func:`pixjax.perturb.pipeline.as_pipeline`
        takes them: spec strings (``"resize:pillow:bilinear:64|uint8:round"``),
        :class:`~pixjax.perturb.pipeline.Pipeline` / ``Step`` objects, or callables
        ``images -> images`` (given uint8, or float32 on the 0..255 scale; returning
        ``[N, H', W', C']`` uint8 or float images on the 0..255 scale).
      images: uint8 ``[N, H, W, C]`` (``N >= 1``), floating with ``value_range``, or
        a :class:`pixjax.data.Dataset` (its labels are used unless ``labels`` is
        given).
      model: optional; ``(apply_fn, variables)`` as
        :func:`pixjax.evaluation.predict.predict` takes them (``apply_fn(variables,
        x [B, H, W, C] float32 in [0, 1]) -> logits``), or a function ``x -> logits``.
        Both pipelines must then give uint8 images (end them with ``uint8:round``):
        the model is compared on the pixels it would be served.
      labels: optional ``[N]`` integer classes (only used with a model).
      value_range: for floating ``images``: ``(0, 1)`` or ``(0, 255)``.
      tolerance: the largest absolute difference (levels, 0..255 scale) that still
        passes; ``0`` asks for identical outputs; ``255`` lets any pixels pass (a
        gate on predictions only, with ``max_flip_rate``).
      max_flip_rate: optional (needs ``model``): the largest share of images, in
        ``[0, 1]``, whose prediction may flip between the two outputs for the check
        to pass (``0``: no flip allowed); ``None``: flips are reported, not gated.
      batch_size: images per chunk (pipelines and model).

    Returns:
      A :class:`CheckResult`.

    Raises:
      ValueError: naming the argument: a malformed pipeline (``train`` / ``serve``),
        empty or malformed images, a bad ``value_range``, ``tolerance`` negative or
        not finite, ``max_flip_rate`` outside ``[0, 1]`` or without a model,
        ``batch_size`` not a positive integer, a ``model`` of another
        form or that cannot take the outputs, float outputs with a model, labels of
        another shape or outside the model's classes; outputs of different shapes
        (naming both pipelines and shapes).
    """
    # --- everything checked before any work
    train = _as_pipeline(train_fn, "train")
    serve = _as_pipeline(serve_fn, "serve")
    tol = _check_tolerance(tolerance)
    flip_gate = _check_flip_rate(max_flip_rate, model)
    check_positive_int("batch_size", batch_size)
    x, ds_labels, source = _check_images(images, value_range)
    if x.dtype == np.uint8 and value_range is not None:
        pl.apply("identity", x[:1], value_range=value_range)  # the same error
    net = _check_model(model)
    if labels is None:
        labels = ds_labels
    if labels is not None:
        check_labels(labels, num_images=x.shape[0])
        labels = np.asarray(labels, np.int64)
    names = {"train": _label(train), "serve": _label(serve)}
    fns = {"train": train, "serve": serve}
    for which, fn in fns.items():
        if isinstance(fn, pl.Pipeline):
            try:
                dtype = pl.output_dtype(fn, x.dtype)
            except ValueError as e:
                raise ValueError(f"{which}: {e}") from None
            if net is not None:
                _require_uint8(dtype, which, names[which])

    n = x.shape[0]
    chunks: list[dict[str, Any]] = []
    shape = dtypes = None
    num_classes = None
    for start in range(0, n, batch_size):
        block = x[start : start + batch_size]
        outs = {}
        for which, fn in fns.items():
            try:
                outs[which] = pl.apply(fn, block, value_range=value_range)
            except ValueError as e:
                raise ValueError(f"{which}: {e}") from None
        got = {k: o.shape[1:] for k, o in outs.items()}
        if got["train"] != got["serve"]:
            raise ValueError(
                f"train, serve: expected outputs of one shape, got "
                f"{list(got['train'])} from train {names['train']!r} and "
                f"{list(got['serve'])} from serve {names['serve']!r}"
            )
        now = {k: str(o.dtype) for k, o in outs.items()}
        if shape is None:
            shape, dtypes = got["train"], now
            if net is not None:
                for which in fns:
                    _require_uint8(np.dtype(now[which]), which, names[which])
                num_classes = _num_classes(net, shape)
                if labels is not None:
                    check_labels(
                        labels,
                        num_classes,
                        num_images=n,
                        classes_from="the model's {n} logits",
                    )
        elif got["train"] != shape or now != dtypes:
            raise ValueError(
                f"train, serve: the outputs changed shape or dtype between chunks "
                f"({list(shape)} {dtypes} then {list(got['train'])} {now})"
            )
        stats = pl.difference_stats(outs["train"], outs["serve"])
        part: dict[str, Any] = {
            "n": block.shape[0],
            "max_abs": stats["per_image_max_abs"],
            "mean_abs": stats["per_image_mean_abs"],
            "share_values": stats["share_values_differing"],
            "mse": stats["mse"],
        }
        if net is not None:
            part.update(_classify_both(net, outs["train"], outs["serve"], batch_size))
        chunks.append(part)

    return _result(
        chunks,
        names=names,
        source=source,
        input_shape=tuple(x.shape[1:]),
        input_dtype=str(x.dtype),
        output_shape=tuple(shape),
        dtypes=dtypes,
        tolerance=tol,
        max_flip_rate=flip_gate,
        labels=labels,
        num_classes=num_classes,
        with_model=net is not None,
    )


def _num_classes(net: _Model, shape: Sequence[int]) -> int:
    """The model's number of logits for uint8 images of ``shape`` (shape-only)."""
    try:
        out = jax.eval_shape(
            forward_probs(net.apply_fn),
            net.variables,
            jax.ShapeDtypeStruct((1, *shape), jnp.uint8),
        )
    except Exception as e:  # noqa: BLE001 - any trace error of a foreign model
        first = (str(e).splitlines() or [type(e).__name__])[0]
        first = re.sub(r"\s*\(https?://.*$", "", first)[:200]  # no doc links
        raise ValueError(
            f"model: cannot take the pipelines' output images of shape (H, W, C) = "
            f"{tuple(shape)}: {first}"
        ) from None
    return int(out[2].shape[-1])


def _classify_both(
    net: _Model, train: np.ndarray, serve: np.ndarray, batch_size: int
) -> dict[str, np.ndarray]:
    fwd = forward_probs(net.apply_fn)
    kw = {"batch_size": batch_size, "broadcast": (net.variables,)}
    t_pred, _, t_probs = map_batches(fwd, [train], **kw)
    s_pred, s_conf, s_probs = map_batches(fwd, [serve], **kw)
    rows = np.arange(train.shape[0])
    return {
        "train_pred": t_pred.astype(np.int64),
        "serve_pred": s_pred.astype(np.int64),
        "serve_conf": s_conf,
        # the probability of the train-output top-1 class under each output
        "train_prob": t_probs[rows, t_pred].astype(np.float64),
        "serve_prob": s_probs[rows, t_pred].astype(np.float64),
    }


def _interval(successes: int, total: int) -> list[float]:
    return list(wilson_interval(successes, total))


def _result(
    chunks: list[dict[str, Any]],
    *,
    names: dict[str, str],
    source: str,
    input_shape: tuple[int, ...],
    input_dtype: str,
    output_shape: tuple[int, ...],
    dtypes: dict[str, str],
    tolerance: float,
    max_flip_rate: float | None,
    labels: np.ndarray | None,
    num_classes: int | None,
    with_model: bool,
) -> CheckResult:
    def cat(key: str) -> np.ndarray:
        return np.concatenate([c[key] for c in chunks])

    sizes = np.array([c["n"] for c in chunks], np.float64)
    n = int(sizes.sum())
    max_abs = cat("max_abs")
    mean_abs = cat("mean_abs")
    differs = max_abs > 0
    k = int(differs.sum())
    # every image has the same number of values, so chunk means weigh by images
    mse = float(np.dot(sizes, [c["mse"] for c in chunks]) / n)
    overall_max = float(max_abs.max())
    notes = []
    if dtypes["train"] != dtypes["serve"]:
        notes.append(
            f"the outputs' dtypes differ: train gives {dtypes['train']}, serve gives "
            f"{dtypes['serve']} (compared as values on the 0..255 scale); a model fed "
            "both sees two kinds of input"
        )
    summary: dict[str, Any] = {
        "train": names["train"],
        "serve": names["serve"],
        "images": source,
        "n": n,
        "input_shape": list(input_shape),
        "input_dtype": input_dtype,
        "output_shape": list(output_shape),
        "dtypes": dict(dtypes),
        "dtypes_differ": dtypes["train"] != dtypes["serve"],
        "images_differing": k,
        "share_differing": k / n,
        "share_differing_ci": _interval(k, n),
        "images_beyond_tolerance": int(np.sum(max_abs > tolerance)),
        "max_abs": overall_max,
        "mean_abs": float(np.mean(mean_abs)),
        "share_values_differing": float(
            np.dot(sizes, [c["share_values"] for c in chunks]) / n
        ),
        "psnr_db": None if mse == 0 else 10 * math.log10(255.0**2 / mse),
        "exact": overall_max == 0,
        "tolerance": tolerance,
        "passed_pixels": overall_max <= tolerance,
        "max_flip_rate": max_flip_rate,
        "passed_flips": None,
        "passed": overall_max <= tolerance,
        "versions": pl.library_versions(),
        "notes": notes,
        "model": None,
    }
    per_image = [
        {
            "index": i,
            "differs": bool(differs[i]),
            "max_abs": float(max_abs[i]),
            "mean_abs": float(mean_abs[i]),
        }
        for i in range(n)
    ]
    if with_model:
        summary["model"] = _model_summary(
            {key: cat(key) for key in chunks[0] if key not in _PIXEL_KEYS},
            labels,
            num_classes,
        )
        t_pred, s_pred = cat("train_pred"), cat("serve_pred")
        t_prob, s_prob = cat("train_prob"), cat("serve_prob")
        for i, row in enumerate(per_image):
            row.update(
                train_pred=int(t_pred[i]),
                serve_pred=int(s_pred[i]),
                flipped=bool(t_pred[i] != s_pred[i]),
                train_prob=float(t_prob[i]),
                serve_prob=float(s_prob[i]),
                prob_shift=float(s_prob[i] - t_prob[i]),
            )
            if labels is not None:
                row["label"] = int(labels[i])
        if max_flip_rate is not None:
            summary["passed_flips"] = summary["model"]["flip_rate"] <= max_flip_rate
            summary["passed"] = summary["passed_pixels"] and summary["passed_flips"]
    return CheckResult(summary, per_image, bool(summary["passed"]))


_PIXEL_KEYS = ("n", "max_abs", "mean_abs", "share_values", "mse")


def _model_summary(
    m: dict[str, np.ndarray], labels: np.ndarray | None, num_classes: int
) -> dict[str, Any]:
    t_pred, s_pred = m["train_pred"], m["serve_pred"]
    n = int(t_pred.size)
    flipped = t_pred != s_pred
    flips = int(flipped.sum())
    shift = m["serve_prob"] - m["train_prob"]
    mean = float(np.mean(shift))
    if n > 1:
        half = Z95 * float(np.std(shift, ddof=1)) / math.sqrt(n)
        ci = [mean - half, mean + half]
    else:
        ci = None
    out: dict[str, Any] = {
        "num_classes": int(num_classes),
        "flips": flips,
        "flip_rate": flips / n,
        "flip_rate_ci": _interval(flips, n),
        "prob_shift_mean": mean,
        "prob_shift_median": float(np.median(shift)),
        "prob_shift_max_abs": float(np.max(np.abs(shift))),
        "prob_shift_ci": ci,
        "prob_shift_ci_method": "normal approximation, mean +- 1.96 sd/sqrt(n), "
        "sd with ddof=1",
        "labelled": labels is not None,
    }
    if labels is None:
        return out
    s = summarize(labels, t_pred, s_pred, m["serve_conf"], num_classes)
    train_correct = t_pred == labels
    serve_correct = s_pred == labels
    out.update(
        train_correct=s["clean_correct"],
        train_accuracy=s["clean_accuracy"],
        train_accuracy_ci=_interval(s["clean_correct"], n),
        serve_correct=s["correct"],
        serve_accuracy=s["accuracy"],
        serve_accuracy_ci=list(s["accuracy_ci"]),
        flips_among_correct=s["flips"],
        flip_rate_among_correct=(s["flip_rate"] if s["clean_correct"] else None),
        flip_rate_among_correct_ci=list(s["flip_rate_ci"]),
        mcnemar=mcnemar(train_correct, serve_correct),
    )
    return out


# ------------------------------------------------------------------------ reporting


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _rate(x: float) -> str:
    """A share as a percentage with every digit that tells two rates apart."""
    return f"{100 * x:.8g}%"


def _ci(ci: Sequence[float] | None, fmt=_pct) -> str:
    if ci is None:
        return "n/a"
    return f"{fmt(ci[0])} to {fmt(ci[1])}"


def _num(x: float) -> str:
    return f"{x:.4g}"


def summary_paragraph(summary: dict[str, Any]) -> str:
    """One paragraph: the verdict, how many images differ and by how much, and with
    a model the flips and the probability shift."""
    s = summary
    verdict = "PASSED" if s["passed"] else "FAILED"
    within = "within" if s["passed_pixels"] else "beyond"
    pair = f"train `{s['train']}` and serve `{s['serve']}`"
    if s["exact"]:
        text = (
            f"check-pipeline {verdict}: {pair} give identical values on all "
            f"{s['n']} images (share differing 0, 95% CI "
            f"{_ci(s['share_differing_ci'])})."
        )
    else:
        text = (
            f"check-pipeline {verdict}: {pair} give different pixels on "
            f"{s['images_differing']} of {s['n']} images "
            f"({_pct(s['share_differing'])}, 95% CI {_ci(s['share_differing_ci'])}); "
            f"largest difference {_num(s['max_abs'])} levels ({within} the "
            f"tolerance {_num(s['tolerance'])}), mean {_num(s['mean_abs'])}, PSNR "
            f"{s['psnr_db']:.1f} dB."
        )
    if s["dtypes_differ"]:
        text += (
            f" The dtypes differ ({s['dtypes']['train']} vs {s['dtypes']['serve']})."
        )
    m = s.get("model")
    if m:
        text += (
            f" The model's prediction flips on {m['flips']} of {s['n']} images "
            f"({_pct(m['flip_rate'])}, 95% CI {_ci(m['flip_rate_ci'])}); the top-1 "
            f"probability shifts by {m['prob_shift_mean']:+.4f} on average (95% CI "
            f"{_ci(m['prob_shift_ci'], lambda v: f'{v:+.4f}')}), at most "
            f"{m['prob_shift_max_abs']:.4f}."
        )
        if s["max_flip_rate"] is not None:
            text += (
                f" The flip rate, {_rate(m['flip_rate'])} ({m['flips']} of "
                f"{s['n']}), is {'within' if s['passed_flips'] else 'beyond'} the "
                f"allowed {_rate(s['max_flip_rate'])}."
            )
        if m["labelled"]:
            text += (
                f" Accuracy {_pct(m['train_accuracy'])} under train, "
                f"{_pct(m['serve_accuracy'])} under serve (McNemar p = "
                f"{m['mcnemar']['p_value']:.3g})."
            )
    return text


def _code(text: str) -> str:
    return f"`{text}`"  # outside tables: a '|' needs no escape


def format_markdown(
    summary: dict[str, Any], per_image: list[dict[str, Any]], top: int = 10
) -> str:
    """The markdown report of a :class:`CheckResult` (``top``: how many of the most
    different images are listed)."""
    s = summary
    psnr = "inf" if s["psnr_db"] is None else f"{s['psnr_db']:.2f}"
    lines = [
        "# Pipeline consistency check",
        "",
        summary_paragraph(s),
        "",
        f"- train: {_code(s['train'])} -> {s['dtypes']['train']}",
        f"- serve: {_code(s['serve'])} -> {s['dtypes']['serve']}",
        f"- images: {_code(s['images'])}, {s['n']} of shape {s['input_shape']} "
        f"({s['input_dtype']}); outputs {s['output_shape']}",
        "",
        "## Pixels",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| images differing | {s['images_differing']} / {s['n']} |",
        f"| share of images differing | {_pct(s['share_differing'])} "
        f"({_ci(s['share_differing_ci'])}) |",
        f"| images beyond the tolerance | {s['images_beyond_tolerance']} |",
        f"| max abs difference (levels) | {_num(s['max_abs'])} |",
        f"| mean abs difference (levels) | {_num(s['mean_abs'])} |",
        f"| share of values differing | {_pct(s['share_values_differing'])} |",
        f"| PSNR (dB) | {psnr} |",
        f"| tolerance | {_num(s['tolerance'])} |",
        f"| within the tolerance | {'yes' if s['passed_pixels'] else 'no'} |",
        *(
            []
            if s["max_flip_rate"] is None
            else [
                f"| flip rate | {_rate(s['model']['flip_rate'])} |",
                f"| allowed flip rate | {_rate(s['max_flip_rate'])} |",
                f"| flip rate within it | {'yes' if s['passed_flips'] else 'no'} |",
            ]
        ),
        f"| passed | {'yes' if s['passed'] else 'no'} |",
        "",
        "Intervals are Wilson 95%. Differences are |train - serve| in float64 on the "
        "0..255 scale.",
    ]
    for note in s["notes"]:
        lines += ["", f"Note: {note}."]
    m = s.get("model")
    if m:
        lines += [
            "",
            "## Model",
            "",
            "| quantity | value |",
            "|---|---:|",
            f"| flips (all images) | {m['flips']} / {s['n']} |",
            f"| flip rate | {_pct(m['flip_rate'])} ({_ci(m['flip_rate_ci'])}) |",
            f"| top-1 probability shift, mean | {m['prob_shift_mean']:+.4f} "
            f"({_ci(m['prob_shift_ci'], lambda v: f'{v:+.4f}')}) |",
            f"| top-1 probability shift, median | {m['prob_shift_median']:+.3g} |",
            f"| top-1 probability shift, max abs | {m['prob_shift_max_abs']:.4f} |",
        ]
        if m["labelled"]:
            fr = m["flip_rate_among_correct"]
            lines += [
                f"| accuracy under train | {_pct(m['train_accuracy'])} "
                f"({_ci(m['train_accuracy_ci'])}) |",
                f"| accuracy under serve | {_pct(m['serve_accuracy'])} "
                f"({_ci(m['serve_accuracy_ci'])}) |",
                f"| flips among correct under train | {m['flips_among_correct']} / "
                f"{m['train_correct']} |",
                f"| flip rate among correct | "
                f"{'n/a' if fr is None else _pct(fr)} "
                f"({_ci(m['flip_rate_among_correct_ci'])}) |",
                f"| McNemar (b, c, exact p) | {m['mcnemar']['b']}, "
                f"{m['mcnemar']['c']}, {m['mcnemar']['p_value']:.3g} |",
            ]
        lines += [
            "",
            "The shift is the softmax probability of the class predicted on the train "
            "output, under the serve output minus under the train output; its "
            f"interval: {m['prob_shift_ci_method']}.",
        ]
    differing = [r for r in per_image if r["differs"]]
    worst = sorted(differing, key=lambda r: -r["max_abs"])[:top]
    if worst:
        head = "| image | max abs | mean abs |"
        rule = "|---:|---:|---:|"
        if m:
            head += " train pred | serve pred | prob shift |"
            rule += "---:|---:|---:|"
        lines += ["", f"## Most different images (top {len(worst)})", "", head, rule]
        for r in worst:
            row = f"| {r['index']} | {_num(r['max_abs'])} | {_num(r['mean_abs'])} |"
            if m:
                row += (
                    f" {r['train_pred']} | {r['serve_pred']} | {r['prob_shift']:+.3g} |"
                )
            lines.append(row)
    flipped = sorted(
        (r for r in per_image if r.get("flipped")), key=lambda r: r["prob_shift"]
    )[:top]
    if flipped:
        lines += [
            "",
            f"## Flipped images (top {len(flipped)} by probability shift)",
            "",
            "| image | train pred | serve pred | prob shift | max abs |"
            + (" label |" if "label" in flipped[0] else ""),
            "|---:|---:|---:|---:|---:|" + ("---:|" if "label" in flipped[0] else ""),
        ]
        for r in flipped:
            lines.append(
                f"| {r['index']} | {r['train_pred']} | {r['serve_pred']} | "
                f"{r['prob_shift']:+.3g} | {_num(r['max_abs'])} |"
                + (f" {r['label']} |" if "label" in r else "")
            )
    versions = ", ".join(
        f"{k} {'not installed' if v is None else v}" for k, v in s["versions"].items()
    )
    lines += ["", f"Versions: {versions}.", ""]
    return "\n".join(lines)
