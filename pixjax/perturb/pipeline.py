"""Host-side image-pipeline operations: resizing by several libraries, JPEG and PNG
round trips, dtype conversions, channel order, crops and shifts.

The same image resized by OpenCV and by Pillow (both "bilinear"), re-encoded as JPEG,
or converted from float to uint8 by rounding instead of truncation changes in ways no
one sees, and enough to flip a CNN's prediction (Parmar, Zhang and Zhu, "On Aliased
Resizing and Surprising Subtleties in GAN Evaluation", CVPR 2022, show the resizing
part for FID). This module gives every such operation as a step of a
:class:`Pipeline`, batched over ``[N, H, W, C]`` numpy arrays, so an experiment can
feed a classifier the pixels a given serving stack would produce, and
:func:`parity_table` measures how far apart the stacks are.

Everything here runs on the host: plain numpy, Pillow, OpenCV, torchvision, and
eager (not jitted by this module) ``jax.image.resize`` / :mod:`pixjax.data.resample`
calls on the CPU device. Keep it out of jitted code; precompute the variants and sweep
over them.

**Images in a pipeline** are numpy arrays ``[N, H, W, C]`` (``C = 1`` grey, ``3`` RGB;
other ``C >= 1`` where the library allows), either uint8 ``0..255`` or float32 on the
``0..255`` scale (not clipped: bicubic and Lanczos overshoot). :func:`apply` converts
other inputs (floats in ``[0, 1]``) into this form first.

**String form** (usable from the CLI): steps separated by ``|``, fields by ``:``,
e.g. ``"resize:opencv:linear:64|jpeg:75|uint8:round"``; ``"identity"`` (or
``"none"``) is the empty pipeline. Whitespace around fields is ignored and the op,
library, method and mode names are case-insensitive; ``str(parse(spec))`` is the
canonical form and ``parse(str(p)) == p``.

==========================================  ============================================
step                                        what it does
==========================================  ============================================
``resize:LIB:METHOD:SIZE[:aa|:noaa]``       resize to ``SIZE`` = ``S`` (``S x S``) or
                                            ``HxW`` (height x width) with library
                                            ``LIB`` (see :data:`LIBRARIES`)
``jpeg:QUALITY[:SUBSAMPLING]``              Pillow JPEG save / reload in memory,
                                            quality ``1..100``, chroma subsampling
                                            ``444`` / ``422`` / ``420`` (default:
                                            Pillow's, 4:2:0); uint8 grey or RGB only
``png``                                     Pillow PNG save / reload (lossless);
                                            uint8 with 1, 3 or 4 channels
``uint8:round|trunc|wrap``                  float32 -> uint8 (identity on uint8)
``float``                                   uint8 -> float32, values unchanged
``clip``                                    float32 clipped to ``[0, 255]`` (identity
                                            on uint8)
``bgr``                                     channel order reversed (RGB <-> BGR)
``crop:T:B:L:R``                            removes ``T`` rows at the top, ``B`` at the
                                            bottom, ``L`` columns left, ``R`` right
``shift:DY:DX``                             content moved ``DY`` rows down, ``DX``
                                            columns right, vacated pixels 0
==========================================  ============================================

Resize libraries (each imported only when a step uses it):

* ``pillow``: ``Image.fromarray(image).resize((W, H), filter)`` per image
  (``PIL.Image.Resampling``; antialiased when shrinking, as Pillow always is). uint8
  grey / RGB images are resized as modes ``"L"`` / ``"RGB"``; other channel counts,
  and float32 images, channel by channel as ``"L"`` (uint8) or ``"F"`` (float32).
* ``opencv``: ``cv2.resize(image, (W, H), interpolation=cv2.INTER_*)`` per image
  (images with more than 4 channels channel by channel: OpenCV's limit); dtype kept.
  No antialiasing except ``area``. Needs ``pip install "pixjax[opencv]"``.
* ``torchvision``: ``torchvision.transforms.v2.functional.resize`` on ``[N, C, H, W]``
  tensors (in chunks of the batch); dtype kept (uint8 output rounded by torchvision).
  ``aa`` (the default, as torchvision >= 0.17) / ``noaa`` set ``antialias`` for
  bilinear and bicubic. Needs ``pip install "pixjax[torch]"``.
* ``jax``: ``jax.image.resize`` on the whole batch on the CPU device; ``aa`` (jax's
  default) / ``noaa`` set ``antialias`` for every method but nearest. The output is
  **always float32 and not rounded**, also for uint8 input: that is what
  ``jax.image.resize`` gives uint8 images (so a model fed by it sees values such as
  ``127.4``), and it is the point of the step; add ``uint8:round`` to quantise.
  (``nearest``, which jax leaves uint8, gives the input's values as float32.)
* ``pixjax``: :func:`pixjax.data.resample.resize`, Pillow's filters in JAX, made
  to give Pillow's bytes for uint8 images (mode ``"uint8"``; float32 images: mode
  ``"float"``, Pillow's mode ``"F"``), on the CPU device.

Errors are ``ValueError`` naming the step (its 1-based index and text) and the
accepted values, raised by :func:`parse` / :func:`apply` before any image is touched.
"""

from __future__ import annotations

import importlib.metadata
import io
import math
import re
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

# The Pillow-exact JAX resize (jit-able; see pixjax.data.resample), exposed here as
# the pipeline module's in-graph counterpart of the "resize:pillow:..." step.
from pixjax.data.resample import MAX_SIDE, resize

__all__ = [
    "resize",
    "output_shape",
    "JPEG_SUBSAMPLING",
    "LIBRARIES",
    "STEPS",
    "UINT8_MODES",
    "Pipeline",
    "Step",
    "apply",
    "as_pipeline",
    "difference_stats",
    "format_parity_table",
    "library_versions",
    "output_dtype",
    "parity_table",
    "parse",
]

# Resize library -> the methods it accepts in ``resize:LIB:METHOD:SIZE``.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "pillow": ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"),
    "opencv": ("nearest", "linear", "cubic", "area", "lanczos4"),
    "torchvision": ("nearest", "nearest-exact", "bilinear", "bicubic"),
    "jax": ("nearest", "linear", "cubic", "lanczos3", "lanczos5"),
    "pixjax": ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"),
}

# The ops of the string form, in the order the module doc lists them.
STEPS: tuple[str, ...] = (
    "resize",
    "jpeg",
    "png",
    "uint8",
    "float",
    "clip",
    "bgr",
    "crop",
    "shift",
)

# ``jpeg:QUALITY:SUBSAMPLING`` -> Pillow's ``subsampling`` argument.
JPEG_SUBSAMPLING: dict[str, int] = {"444": 0, "422": 1, "420": 2}

# float32 -> uint8 conversions of the ``uint8`` step.
UINT8_MODES: tuple[str, ...] = ("round", "trunc", "wrap")

# Libraries whose resize takes an antialias flag, and the methods it applies to.
_ANTIALIAS: dict[str, tuple[str, ...]] = {
    "torchvision": ("bilinear", "bicubic"),
    "jax": ("linear", "cubic", "lanczos3", "lanczos5"),
}

# What installs an optional library.
_INSTALL = {
    "opencv": 'pip install "pixjax[opencv]" (opencv-python-headless)',
    "torchvision": 'pip install "pixjax[torch]" (torch and torchvision)',
}

# Elements per torchvision chunk (float32: 128 MiB), bounding the memory of a batch.
_TORCH_CHUNK_ELEMENTS = 1 << 25


class Step(NamedTuple):
    """One operation of a :class:`Pipeline` (build with :func:`parse`).

    Attributes:
      op: one of :data:`STEPS`.
      args: the parsed fields, hashable: ``resize``: ``(library, method, (height,
        width), antialias)`` with ``antialias`` ``True`` / ``False`` for the libraries
        and methods in which it applies, else ``None``; ``jpeg``: ``(quality,
        subsampling)`` with ``subsampling`` ``"444"`` / ``"422"`` / ``"420"`` or
        ``None`` (Pillow's default); ``uint8``: ``(mode,)``; ``crop``: ``(top,
        bottom, left, right)``; ``shift``: ``(dy, dx)``; the others ``()``.

    ``str(step)`` is the canonical string form; ``step(images)`` applies it to uint8
    or float32 ``[N, H, W, C]`` images (the pipeline form, float32 on the ``0..255``
    scale), as ``Pipeline((step,))(images)``.
    """

    op: str
    args: tuple = ()

    def __str__(self) -> str:
        return _format(self.op, self.args)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return Pipeline((self,))(images)


class Pipeline(NamedTuple):
    """A sequence of :class:`Step` applied left to right (build with :func:`parse`).

    ``str(pipeline)`` joins the steps' canonical forms with ``|`` (``"identity"`` for
    no steps). ``pipeline(images)`` checks ``images`` (uint8, or float32 on the
    ``0..255`` scale, ``[N, H, W, C]``) and every step against the shapes and dtypes
    it will meet, then runs the steps; :func:`apply` does the same for floats in
    ``[0, 1]`` or ``[0, 255]`` of any float dtype.
    """

    steps: tuple[Step, ...] = ()

    def __str__(self) -> str:
        if not self.steps:
            return "identity"
        return "|".join(str(s) for s in self.steps)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        _check_steps(self)
        x = _check_pipeline_images(images, "images")
        _walk(self.steps, x.dtype, x.shape, imports=True)
        return _finish(_run(self.steps, x), images)


# --------------------------------------------------------------------------- parsing


def _format(op: str, args: tuple) -> str:
    """The canonical text of a step (for valid args; anything else may raise)."""
    if op == "resize":
        lib, method, (h, w), antialias = args
        size = f"{h}" if h == w else f"{h}x{w}"
        flag = ":noaa" if antialias is False else ""
        return f"resize:{lib}:{method}:{size}{flag}"
    if op == "jpeg":
        quality, sub = args
        return f"jpeg:{quality}" + ("" if sub is None else f":{sub}")
    return ":".join([op, *(str(a) for a in args)])


class _StepError(ValueError):
    """A reason why one step's text is malformed (wrapped with the step's position)."""


def _int(field: str, what: str, accepted: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]{1,9}", field):  # ASCII digits, no huge ints
        raise _StepError(f"{what} must be {accepted}, got {field!r}")
    return int(field)


def _fields(fields: list[str], n: int | tuple[int, ...], form: str) -> None:
    counts = (n,) if isinstance(n, int) else n
    if len(fields) not in counts:
        got = len(fields) - 1
        raise _StepError(
            f"expected {form}, got {got} field{'' if got == 1 else 's'} after "
            f"{fields[0]!r}"
        )


def _parse_size(field: str) -> tuple[int, int]:
    m = re.fullmatch(r"([+-]?[0-9]{1,9})(?:[xX]([+-]?[0-9]{1,9}))?", field)
    if not m:
        raise _StepError(
            f"size must be S (S x S) or HxW (height x width), integers 1..{MAX_SIDE}, "
            f"got {field!r}"
        )
    h = int(m.group(1))
    w = h if m.group(2) is None else int(m.group(2))
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise _StepError(f"size must be integers 1..{MAX_SIDE}, got {field!r}")
    return h, w


def _parse_resize(fields: list[str]) -> Step:
    form = "resize:LIB:METHOD:SIZE[:aa|:noaa]"
    _fields(fields, (4, 5), form)
    lib, method = fields[1].lower(), fields[2].lower()
    if lib not in LIBRARIES:
        raise _StepError(
            f"unknown library {fields[1]!r}; expected one of {tuple(LIBRARIES)}"
        )
    if method not in LIBRARIES[lib]:
        raise _StepError(
            f"unknown {lib} method {fields[2]!r}; expected one of {LIBRARIES[lib]}"
        )
    size = _parse_size(fields[3])
    antialias = True if method in _ANTIALIAS.get(lib, ()) else None
    if len(fields) == 5:
        flag = fields[4].lower()
        if flag not in ("aa", "noaa"):
            raise _StepError(
                f"the 5th field must be 'aa' or 'noaa' (antialias), got {fields[4]!r}"
            )
        if lib not in _ANTIALIAS:
            raise _StepError(
                f"{flag!r} (antialias) is accepted only for {tuple(_ANTIALIAS)} "
                f"resizes, not {lib}"
            )
        if antialias is None:
            raise _StepError(
                f"{flag!r} (antialias) does not apply to {lib} {method}; {lib} "
                f"antialiases only {_ANTIALIAS[lib]}"
            )
        antialias = flag == "aa"
    return Step("resize", (lib, method, size, antialias))


def _parse_step(text: str, index: int) -> Step:
    """The :class:`Step` of one ``|``-separated piece (``index`` is 1-based)."""
    text = text.strip()
    try:
        if not text:
            raise _StepError("empty step (two '|' in a row, or one at an end)")
        fields = [f.strip() for f in text.split(":")]
        op = fields[0].lower()
        fields[0] = op
        if op == "resize":
            return _parse_resize(fields)
        if op == "jpeg":
            _fields(fields, (2, 3), "jpeg:QUALITY[:SUBSAMPLING]")
            quality = _int(fields[1], "quality", "an integer 1..100")
            if not 1 <= quality <= 100:
                raise _StepError(
                    f"quality must be an integer 1..100, got {fields[1]!r}"
                )
            sub = None
            if len(fields) == 3:
                sub = fields[2]
                if sub not in JPEG_SUBSAMPLING:
                    raise _StepError(
                        f"subsampling must be one of {tuple(JPEG_SUBSAMPLING)}, got "
                        f"{fields[2]!r}"
                    )
            return Step("jpeg", (quality, sub))
        if op == "uint8":
            _fields(fields, 2, "uint8:" + "|".join(UINT8_MODES))
            mode = fields[1].lower()
            if mode not in UINT8_MODES:
                raise _StepError(
                    f"unknown uint8 mode {fields[1]!r}; expected one of {UINT8_MODES}"
                )
            return Step("uint8", (mode,))
        if op in ("png", "float", "clip", "bgr"):
            _fields(fields, 1, f"{op!r} alone (no fields)")
            return Step(op, ())
        if op == "crop":
            _fields(fields, 5, "crop:T:B:L:R (4 non-negative integers)")
            vals = tuple(
                _int(f, "crop amounts", "non-negative integers") for f in fields[1:]
            )
            if min(vals) < 0:
                raise _StepError(
                    f"crop amounts must be non-negative integers, got {fields[1:]}"
                )
            return Step("crop", vals)
        if op == "shift":
            _fields(fields, 3, "shift:DY:DX (2 integers)")
            return Step(
                "shift", tuple(_int(f, "shifts", "integers") for f in fields[1:])
            )
        raise _StepError(f"unknown step {fields[0]!r}; expected one of {STEPS}")
    except _StepError as e:
        raise ValueError(f"pipeline step {index} {text!r}: {e}") from None


def parse(spec: str) -> Pipeline:
    """Parses the string form (see the module doc) into a :class:`Pipeline`.

    Args:
      spec: ``|``-separated steps, e.g. ``"resize:opencv:linear:64|jpeg:75"``, or
        ``"identity"`` / ``"none"`` for no steps.

    Returns:
      The :class:`Pipeline`; ``parse(str(p)) == p``.

    Raises:
      ValueError: ``spec`` not a non-empty string; or a malformed step, naming its
        1-based index and text and why (unknown op -> :data:`STEPS`, unknown library
        -> :data:`LIBRARIES`, unknown method -> that library's methods, bad numbers
        -> their accepted range).
    """
    if not isinstance(spec, str):
        raise ValueError(
            f"pipeline: expected a spec string such as 'resize:pillow:bilinear:64|"
            f"uint8:round', got {type(spec).__name__}"
        )
    text = spec.strip()
    if text.lower() in ("identity", "none"):
        return Pipeline(())
    if not text:
        raise ValueError("pipeline: empty spec; use 'identity' for no steps")
    return Pipeline(
        tuple(_parse_step(part, i) for i, part in enumerate(text.split("|"), 1))
    )


def _check_steps(pipeline: Pipeline) -> None:
    """A hand-built :class:`Pipeline` must hold steps :func:`parse` would give."""
    steps = pipeline.steps
    if not isinstance(steps, tuple):
        raise ValueError(
            f"pipeline: Pipeline.steps must be a tuple of Step, got "
            f"{type(steps).__name__}"
        )
    for i, step in enumerate(steps, 1):
        if not isinstance(step, Step):
            raise ValueError(
                f"pipeline step {i}: expected a Step (build steps with parse), got "
                f"{type(step).__name__}"
            )
        try:
            text = str(step)
        except Exception:  # noqa: BLE001  -- malformed args of a hand-built step
            text = None
        if text is None or _parse_step(text, i) != step:
            raise ValueError(
                f"pipeline step {i} {step!r}: not a valid step; build steps with "
                f"parse('...'), e.g. parse('jpeg:75').steps[0]"
            )


def as_pipeline(spec: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The pipeline a ``spec`` stands for.

    Args:
      spec: a string (:func:`parse`), a :class:`Pipeline` (checked, returned as is),
        a :class:`Step` (a one-step pipeline), or any other callable ``images ->
        images`` (returned as is; :func:`apply` checks what it returns).

    Raises:
      ValueError: a malformed string or pipeline, or anything else (naming its type).
    """
    if isinstance(spec, str):
        return parse(spec)
    if isinstance(spec, Pipeline):
        _check_steps(spec)
        return spec
    if isinstance(spec, Step):
        pipeline = Pipeline((spec,))
        _check_steps(pipeline)
        return pipeline
    if callable(spec):
        return spec
    raise ValueError(
        "pipeline: expected a spec string (e.g. 'resize:pillow:bilinear:64'), a "
        f"Pipeline, a Step or a callable images -> images, got {type(spec).__name__}"
    )


# ------------------------------------------------------------------ static checking


def _where(index: int, steps: Sequence[Step]) -> str:
    return f"pipeline step {index} {str(steps[index - 1])!r}"


def _origin(index: int, steps: Sequence[Step]) -> str:
    if index == 1:
        return "the input"
    return f"the output of step {index - 1} {str(steps[index - 2])!r}"


def _import_library(lib: str, where: str):
    """The module(s) a resize library needs, or a ValueError saying what installs them."""
    if lib == "opencv":
        try:
            import cv2
        except ImportError as e:
            raise ValueError(
                f"{where}: OpenCV is not installed ({e}); {_INSTALL['opencv']}"
            ) from None
        return cv2
    if lib == "torchvision":
        try:
            return _import_torchvision()
        except ImportError as e:
            raise ValueError(
                f"{where}: torchvision is not installed ({e}); "
                f"{_INSTALL['torchvision']}"
            ) from None
    if lib == "pixjax":
        try:
            from pixjax.data import resample
        except ImportError as e:
            raise ValueError(
                f"{where}: pixjax.data.resample is not available ({e})"
            ) from None
        return resample
    return None


def _import_torchvision():
    """``(torch, torchvision.transforms.v2.functional)``.

    A torchvision wheel built for another torch (e.g. a CUDA build next to a CPU-only
    torch) fails to import while registering fake kernels of its detection operators
    (``torchvision::nms`` ...), which resizing never uses. Only then the import is
    retried without those registrations, as pixjax's tests and benchmarks do.
    """
    import torch

    try:
        import torchvision.transforms.v2.functional as F
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [
            m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")
        ]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType(
            "torchvision._meta_registrations"
        )
        import torchvision.transforms.v2.functional as F
    return torch, F


def _walk(
    steps: Sequence[Step],
    dtype: np.dtype,
    shape: tuple[int, ...] | None,
    *,
    imports: bool = False,
) -> tuple[np.dtype, tuple[int, ...] | None]:
    """The dtype and shape the pipeline ends in, checking every step on the way.

    ``shape=None`` checks dtypes only; ``imports=True`` also imports the optional
    libraries the steps need.
    """
    dtype = np.dtype(dtype)
    for i, step in enumerate(steps, 1):
        where = _where(i, steps)
        op, args = step.op, step.args
        c = None if shape is None else shape[3]
        if op == "resize":
            lib, _, (h, w), _ = args
            if imports:
                _import_library(lib, where)
            if shape is not None:
                shape = (shape[0], h, w, c)
            if lib == "jax":
                dtype = np.dtype(np.float32)
        elif op in ("jpeg", "png"):
            if dtype != np.uint8:
                raise ValueError(
                    f"{where}: expects uint8 images, got {dtype} ({_origin(i, steps)}); "
                    "add a 'uint8:round' step (or uint8:trunc / uint8:wrap) before it"
                )
            allowed = (1, 3) if op == "jpeg" else (1, 3, 4)
            if c is not None and c not in allowed:
                kinds = "grey or RGB" if op == "jpeg" else "grey, RGB or RGBA"
                raise ValueError(
                    f"{where}: expects {kinds} images (C in {allowed}), got shape "
                    f"{list(shape)} ({_origin(i, steps)})"
                )
        elif op == "uint8":
            dtype = np.dtype(np.uint8)
        elif op == "float":
            dtype = np.dtype(np.float32)
        elif op == "bgr":
            if c is not None and c != 3:
                raise ValueError(
                    f"{where}: expects 3 channels (RGB or BGR), got shape "
                    f"{list(shape)} ({_origin(i, steps)})"
                )
        elif op == "crop" and shape is not None:
            t, b, left, r = args
            h, w = shape[1], shape[2]
            if t + b >= h or left + r >= w:
                raise ValueError(
                    f"{where}: removes {t + b} of {h} rows and {left + r} of {w} "
                    f"columns of images {list(shape)} ({_origin(i, steps)}); at least "
                    "one row and one column must remain"
                )
            shape = (shape[0], h - t - b, w - left - r, c)
        elif op == "shift" and shape is not None:
            dy, dx = args
            if abs(dy) >= shape[1] or abs(dx) >= shape[2]:
                raise ValueError(
                    f"{where}: expects |DY| < {shape[1]} and |DX| < {shape[2]} (the "
                    f"height and width of images {list(shape)}, {_origin(i, steps)})"
                )
    return dtype, shape


def output_dtype(pipeline: Pipeline | Step | str, input_dtype) -> np.dtype:
    """The dtype a pipeline's output has, known without running it.

    Args:
      pipeline: a :class:`Pipeline`, :class:`Step` or spec string (not an arbitrary
        callable: its output dtype is unknown until it runs).
      input_dtype: uint8, or a floating dtype (:func:`apply` makes it float32).

    Returns:
      ``np.dtype(np.uint8)`` or ``np.dtype(np.float32)``.

    Raises:
      ValueError: a callable ``pipeline``, another input dtype, or a step that cannot
        take the dtype it gets (JPEG / PNG after a float step), naming the step.
    """
    pipeline = as_pipeline(pipeline)
    if not isinstance(pipeline, Pipeline):
        raise ValueError(
            f"pipeline: the output dtype of the callable {_name(pipeline)!r} is known "
            "only by running it; expected a Pipeline, Step or spec string"
        )
    return _walk(pipeline.steps, _pipeline_dtype(input_dtype, "input_dtype"), None)[0]


def output_shape(
    pipeline: Pipeline | Step | str, input_shape: Sequence[int], input_dtype=np.uint8
) -> tuple[int, int, int, int]:
    """The ``[N, H, W, C]`` shape a pipeline's output has, known without running it
    (and every step checked against the shape and dtype it will meet, the optional
    libraries imported).

    Args:
      pipeline: a :class:`Pipeline`, :class:`Step` or spec string.
      input_shape: ``[N, H, W, C]`` of the images it will get.
      input_dtype: uint8, or a floating dtype.

    Raises:
      ValueError: a callable ``pipeline``, a bad shape, or a step that cannot take its
        input (naming the step), or an optional library that is not installed (naming
        the extra that installs it).
    """
    pipeline = as_pipeline(pipeline)
    if not isinstance(pipeline, Pipeline):
        raise ValueError(
            f"pipeline: the output shape of the callable {_name(pipeline)!r} is known "
            "only by running it; expected a Pipeline, Step or spec string"
        )
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(
            f"input_shape: expected [N, H, W, C] positive integers, got {input_shape!r}"
        )
    dtype = _pipeline_dtype(input_dtype, "input_dtype")
    return _walk(pipeline.steps, dtype, shape, imports=True)[1]


def _pipeline_dtype(dtype, argument: str) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(
            f"{argument}: expected uint8 or a floating dtype, got {dtype!r}"
        ) from None
    if dtype == np.uint8:
        return dtype
    if np.issubdtype(dtype, np.floating):
        return np.dtype(np.float32)
    raise ValueError(f"{argument}: expected uint8 or a floating dtype, got {dtype}")


# ----------------------------------------------------------------------- the inputs


def _check_shape(images: np.ndarray, argument: str) -> None:
    if images.ndim != 4 or min(images.shape) < 1:
        raise ValueError(
            f"{argument}: expected a non-empty array [N, H, W, C] (channels last), got "
            f"shape {images.shape}"
        )


def _check_pipeline_images(images, argument: str) -> np.ndarray:
    """uint8 or float32 ``[N, H, W, C]``: the form images take inside a pipeline."""
    images = np.asarray(images)
    _check_shape(images, argument)
    if images.dtype not in (np.uint8, np.float32):
        raise ValueError(
            f"{argument}: expected uint8 (0..255) or float32 on the 0..255 scale, got "
            f"{images.dtype}; use pipeline.apply(..., value_range=(0, 1) or (0, 255)) "
            "for other float images"
        )
    return images


_VALUE_RANGES = ((0.0, 1.0), (0.0, 255.0))


def _prepare(images, value_range) -> tuple[np.ndarray, float]:
    """Checks ``images`` and ``value_range``; returns the array and its scale factor."""
    images = np.asarray(images)
    _check_shape(images, "images")
    accepted = "None (uint8 images), (0, 1) or (0, 255)"
    vr = None
    if value_range is not None:
        try:
            if isinstance(value_range, str | bytes):
                raise TypeError
            vr = tuple(float(v) for v in value_range)
        except (TypeError, ValueError):
            vr = ()
        if vr not in _VALUE_RANGES:
            raise ValueError(f"value_range: expected {accepted}, got {value_range!r}")
    if images.dtype == np.uint8:
        if vr not in (None, (0.0, 255.0)):
            raise ValueError(
                f"value_range: uint8 images are 0..255; expected None or (0, 255), got "
                f"{value_range!r}"
            )
        return images, 1.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"images: expected uint8 (0..255) or floating images with a value_range, "
            f"got dtype {images.dtype}; convert integer levels 0..255 with "
            ".astype(np.uint8) (check the range first)"
        )
    if vr is None:
        raise ValueError(
            f"value_range: {images.dtype} images need their range declared; expected "
            "(0, 1) (scaled by 255) or (0, 255) (taken as is), got None"
        )
    finite = np.isfinite(images)
    if not finite.all():
        raise ValueError(
            f"images: expected finite values in {list(vr)}, got "
            f"{int(images.size - finite.sum())} NaN or infinite entries"
        )
    lo, hi = float(images.min()), float(images.max())
    if lo < vr[0] or hi > vr[1]:
        raise ValueError(
            f"images: expected values in {list(vr)} (value_range), got range "
            f"[{lo:g}, {hi:g}]"
        )
    return images, 255.0 / vr[1]


def _convert(images: np.ndarray, scale: float) -> np.ndarray:
    """uint8 as is; floats as float32 on the 0..255 scale (scaled in float64)."""
    if images.dtype == np.uint8:
        return images
    if scale == 1.0:
        return images.astype(np.float32, copy=False)
    return (images.astype(np.float64) * scale).astype(np.float32)


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def _finish(out: np.ndarray, images) -> np.ndarray:
    """A writeable array that shares no memory with the caller's ``images``."""
    if not out.flags.writeable or np.may_share_memory(out, images):
        out = out.copy()
    return out


def _check_output(out, n: int, fn) -> np.ndarray:
    """A callable pipeline's output as uint8 / float32 ``[N, H', W', C']``."""
    where = f"pipeline {_name(fn)!r}"
    try:
        out = np.asarray(out)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{where}: returned {type(out).__name__}, not an array") from e
    if out.ndim != 4 or out.shape[0] != n or min(out.shape) < 1:
        raise ValueError(
            f"{where}: expected it to return [N, H', W', C'] images with N = {n}, got "
            f"shape {out.shape}"
        )
    if out.dtype == np.uint8:
        return out
    if out.dtype not in (np.float32, np.float64):
        raise ValueError(
            f"{where}: expected it to return uint8 or float32 / float64 images on the "
            f"0..255 scale, got dtype {out.dtype}"
        )
    if not np.isfinite(out).all():
        raise ValueError(f"{where}: returned NaN or infinite values")
    return out.astype(np.float32, copy=False)


def apply(
    pipeline: Any,
    images: np.ndarray,
    *,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Runs a pipeline on a batch of images, on the host.

    Everything is checked first (the whole spec parsed, the images, every step
    against the shape and dtype it will meet, the optional libraries imported), then
    the images are converted to the pipeline form and the steps run.

    Args:
      pipeline: anything :func:`as_pipeline` takes: a spec string, a
        :class:`Pipeline` / :class:`Step`, or a callable ``images -> images`` (given
        uint8, or float32 on the 0..255 scale; it must return ``[N, H', W', C']``
        uint8 or finite float32 / float64 images).
      images: ``[N, H, W, C]`` (``N, H, W, C >= 1``): uint8 ``0..255``, or a floating
        dtype with ``value_range`` declared.
      value_range: ``None`` or ``(0, 255)`` for uint8 images. Required for floats:
        ``(0, 1)`` (multiplied by 255, in float64, then float32) or ``(0, 255)``
        (float32 as is); their values must be finite and inside the range.

    Returns:
      uint8 or float32 (see :func:`output_dtype`) ``[N, H', W', C']`` numpy array,
      sharing no memory with ``images``. Float outputs are on the 0..255 scale and
      not clipped (resizes overshoot; add ``clip`` or ``uint8:...``).

    Raises:
      ValueError: a malformed pipeline (naming the step), images of another shape or
        dtype, a missing, wrong or violated ``value_range``, non-finite floats, a step
        that cannot take what it gets (e.g. JPEG after a float step: add
        ``uint8:round``), a missing optional library (naming the extra that installs
        it), or a callable's output that is not such an array (naming the pipeline).
    """
    fn = as_pipeline(pipeline)
    images_in = images
    images, scale = _prepare(images, value_range)
    x_dtype = np.dtype(np.uint8) if images.dtype == np.uint8 else np.dtype(np.float32)
    if isinstance(fn, Pipeline):
        _walk(fn.steps, x_dtype, images.shape, imports=True)
        out = _run(fn.steps, _convert(images, scale))
    else:
        out = _check_output(fn(_convert(images, scale)), images.shape[0], fn)
    return _finish(out, images_in)


# ------------------------------------------------------------------------- the ops


def _run(steps: Sequence[Step], x: np.ndarray) -> np.ndarray:
    for i, step in enumerate(steps, 1):
        x = _OPS[step.op](x, step.args, _where(i, steps))
    return x


def _per_image_pillow(x: np.ndarray, fn) -> np.ndarray:
    """``fn(PIL image) -> PIL image`` per image: uint8 grey / RGB / RGBA whole."""
    from PIL import Image

    out = []
    for image in x:
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        r = np.asarray(fn(pil))
        out.append(r.reshape(*r.shape[:2], x.shape[3]))
    return np.stack(out)


def _resize_pillow(x: np.ndarray, method: str, h: int, w: int) -> np.ndarray:
    from PIL import Image

    flt = Image.Resampling[method.upper()]
    if x.dtype == np.uint8 and x.shape[3] in (1, 3):
        return _per_image_pillow(x, lambda im: im.resize((w, h), flt))
    # Channel by channel: mode "L" (uint8) or "F" (float32).
    out = np.empty((x.shape[0], h, w, x.shape[3]), x.dtype)
    for n in range(x.shape[0]):
        for k in range(x.shape[3]):
            im = Image.fromarray(np.ascontiguousarray(x[n, :, :, k]))
            out[n, :, :, k] = np.asarray(im.resize((w, h), flt))
    return out


def _resize_opencv(x: np.ndarray, method: str, h: int, w: int, where: str):
    cv2 = _import_library("opencv", where)
    flag = getattr(cv2, "INTER_" + method.upper())
    out = np.empty((x.shape[0], h, w, x.shape[3]), x.dtype)
    for n in range(x.shape[0]):
        if x.shape[3] <= 4:  # OpenCV's resize takes up to 4 channels
            r = cv2.resize(np.ascontiguousarray(x[n]), (w, h), interpolation=flag)
            out[n] = r.reshape(h, w, x.shape[3])  # grey: cv2 drops the channel axis
        else:
            for k in range(x.shape[3]):
                out[n, :, :, k] = cv2.resize(
                    np.ascontiguousarray(x[n, :, :, k]), (w, h), interpolation=flag
                )
    return out


def _resize_torchvision(
    x: np.ndarray, method: str, h: int, w: int, antialias: bool | None, where: str
):
    torch, F = _import_library("torchvision", where)
    mode = F.InterpolationMode[method.upper().replace("-", "_")]
    n, ih, iw, c = x.shape
    chunk = max(1, _TORCH_CHUNK_ELEMENTS // (c * max(ih * iw, h * w)))
    out = []
    for start in range(0, n, chunk):
        t = torch.from_numpy(np.ascontiguousarray(x[start : start + chunk]))
        r = F.resize(
            t.permute(0, 3, 1, 2).contiguous(),
            [h, w],
            interpolation=mode,
            antialias=bool(antialias),
        )
        out.append(r.permute(0, 2, 3, 1).numpy())
    return np.concatenate(out).astype(x.dtype, copy=False)


def _cpu():
    import jax

    try:
        return jax.devices("cpu")[0]
    except RuntimeError:  # no CPU backend (JAX_PLATFORMS without cpu): the default
        return jax.devices()[0]


def _resize_jax(x: np.ndarray, method: str, h: int, w: int, antialias: bool | None):
    import jax

    xs = jax.device_put(x.astype(np.float32, copy=False), _cpu())
    shape = (x.shape[0], h, w, x.shape[3])
    aa = True if antialias is None else antialias  # None: nearest, where it is unused
    return np.asarray(jax.image.resize(xs, shape, method=method, antialias=aa))


def _resize_pixjax(x: np.ndarray, method: str, h: int, w: int) -> np.ndarray:
    import jax

    from pixjax.data.resample import resize

    mode = "uint8" if x.dtype == np.uint8 else "float"
    return np.asarray(resize(jax.device_put(x, _cpu()), (h, w), method, mode=mode))


def _op_resize(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    lib, method, (h, w), antialias = args
    if lib == "pillow":
        return _resize_pillow(x, method, h, w)
    if lib == "opencv":
        return _resize_opencv(x, method, h, w, where)
    if lib == "torchvision":
        return _resize_torchvision(x, method, h, w, antialias, where)
    if lib == "jax":
        return _resize_jax(x, method, h, w, antialias)
    return _resize_pixjax(x, method, h, w)


def _roundtrip(fmt: str, **save_kwargs):
    def fn(im):
        from PIL import Image

        buf = io.BytesIO()
        im.save(buf, format=fmt, **save_kwargs)
        buf.seek(0)
        with Image.open(buf) as back:
            back.load()
            return back.convert(im.mode) if back.mode != im.mode else back.copy()

    return fn


def _op_jpeg(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    quality, sub = args
    kwargs: dict[str, int] = {"quality": quality}
    if sub is not None:
        kwargs["subsampling"] = JPEG_SUBSAMPLING[sub]
    return _per_image_pillow(x, _roundtrip("JPEG", **kwargs))


def _op_png(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    return _per_image_pillow(x, _roundtrip("PNG"))


def _op_uint8(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if not np.isfinite(x).all():
        raise ValueError(
            f"{where}: expected finite values, got {int(x.size - np.isfinite(x).sum())} "
            "NaN or infinite entries"
        )
    (mode,) = args
    if mode == "round":  # half to even, as np.rint
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if mode == "trunc":  # toward zero
        return np.clip(np.trunc(x), 0, 255).astype(np.uint8)
    # wrap: an unchecked C cast of the truncated value, made deterministic (mod 256).
    return np.mod(np.trunc(x.astype(np.float64)), 256.0).astype(np.uint8)


def _op_float(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    return x.astype(np.float32, copy=False)


def _op_clip(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    return np.clip(x, np.float32(0), np.float32(255))


def _op_bgr(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    return x[..., ::-1]


def _op_crop(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    t, b, left, r = args
    return x[:, t : x.shape[1] - b, left : x.shape[2] - r]


def _op_shift(x: np.ndarray, args: tuple, where: str) -> np.ndarray:
    # pixjax.perturb.shifts.shift (zero fill), on the host CPU device
    import jax

    from pixjax.perturb.shifts import shift

    dy, dx = args
    moved = jax.vmap(lambda im: shift(im, dy, dx))(jax.device_put(x, _cpu()))
    return np.asarray(moved)


_OPS: dict[str, Callable[[np.ndarray, tuple, str], np.ndarray]] = {
    "resize": _op_resize,
    "jpeg": _op_jpeg,
    "png": _op_png,
    "uint8": _op_uint8,
    "float": _op_float,
    "clip": _op_clip,
    "bgr": _op_bgr,
    "crop": _op_crop,
    "shift": _op_shift,
}


# --------------------------------------------------------------------- comparisons


def difference_stats(a, b) -> dict[str, Any]:
    """How far apart two batches of images are, computed in float64.

    Args:
      a, b: same-shape ``[N, H, W, C]`` arrays (uint8 or floating, finite), on the
        same scale (the peak for PSNR is 255).

    Returns:
      A dict: ``max_abs``, ``mean_abs`` (of ``|a - b|``), ``share_values_differing``
      (fraction of values with ``a != b``), ``share_images_differing``, ``mse`` (mean
      squared difference), ``psnr_db``
      (``10 log10(255^2 / MSE)``; ``math.inf`` when identical), ``exact`` (bool), all
      Python scalars, plus float64 ``[N]`` arrays ``per_image_max_abs`` and
      ``per_image_mean_abs``.

    Raises:
      ValueError: arrays that are not ``[N, H, W, C]`` with ``N >= 1``, of different
        shapes (naming both), or with NaN / infinite values.
    """
    a64 = np.asarray(a).astype(np.float64)
    b64 = np.asarray(b).astype(np.float64)
    if a64.shape != b64.shape:
        raise ValueError(
            f"a, b: expected the same shape, got {a64.shape} and {b64.shape}"
        )
    _check_shape(a64, "a, b")
    for name, v in (("a", a64), ("b", b64)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name}: expected finite values, got NaN or infinite")
    d = np.abs(a64 - b64)
    per = d.reshape(d.shape[0], -1)
    mse = float(np.mean(d * d))
    max_abs = float(d.max())
    return {
        "max_abs": max_abs,
        "mean_abs": float(d.mean()),
        "share_values_differing": float(np.mean(a64 != b64)),
        "share_images_differing": float(np.mean(per.max(axis=1) > 0)),
        "mse": mse,
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse),
        "exact": max_abs == 0,
        "per_image_max_abs": per.max(axis=1),
        "per_image_mean_abs": per.mean(axis=1),
    }


# Distributions whose version :func:`library_versions` reports, first installed wins.
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "pillow": ("pillow",),
    "opencv": (
        "opencv-python-headless",
        "opencv-python",
        "opencv-contrib-python-headless",
        "opencv-contrib-python",
    ),
    "torchvision": ("torchvision",),
    "torch": ("torch",),
    "jax": ("jax",),
    "numpy": ("numpy",),
}


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose pixels a pipeline depends on.

    Read from the package metadata (nothing is imported, so a broken or missing
    install raises nothing).

    Returns:
      ``{"pillow", "opencv", "torchvision", "torch", "jax", "numpy"}`` -> version
      string, or ``None`` when not installed.
    """
    out: dict[str, str | None] = {}
    for lib, dists in _DISTRIBUTIONS.items():
        out[lib] = None
        for dist in dists:
            try:
                out[lib] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def _label(fn) -> str:
    return str(fn) if isinstance(fn, Pipeline) else _name(fn)


def parity_table(images, specs: Sequence[Any], *, value_range=None) -> dict[str, Any]:
    """Runs several pipelines on the same images and compares every pair of outputs.

    Args:
      images: as :func:`apply` takes them (with ``value_range``).
      specs: at least two pipelines (strings typically, e.g.
        ``["resize:pillow:bilinear:64", "resize:opencv:linear:64"]``), with distinct
        labels (a pipeline's canonical string, a callable's name).
      value_range: as :func:`apply`.

    Returns:
      A dict: ``rows``, one per unordered pair ``(a, b)`` in the order of ``specs``
      (``a`` before ``b``): ``{"a", "b", "exact", "max_abs", "mean_abs",
      "share_values_differing", "share_images_differing", "psnr_db"}`` (see
      :func:`difference_stats`); ``versions``: :func:`library_versions`; ``shape``:
      the outputs' shape; ``input_shape``; ``dtypes``: label -> output dtype name.

    Raises:
      ValueError: fewer than two specs, repeated labels, anything :func:`apply`
        raises (all specs are checked before any runs), or outputs of different
        shapes (naming them).
    """
    if isinstance(specs, str) or len(specs) < 2:
        raise ValueError(
            f"specs: expected a sequence of at least two pipelines, got {specs!r}"
        )
    fns = [as_pipeline(s) for s in specs]
    labels = [_label(f) for f in fns]
    repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
    if repeated:
        raise ValueError(f"specs: expected distinct pipelines, got {repeated} twice")
    x, _ = _prepare(images, value_range)
    x_dtype = np.dtype(np.uint8) if x.dtype == np.uint8 else np.dtype(np.float32)
    shapes = {}
    for lab, fn in zip(labels, fns, strict=True):
        if isinstance(fn, Pipeline):
            shapes[lab] = _walk(fn.steps, x_dtype, x.shape, imports=True)[1]
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"specs: expected pipelines with outputs of one shape, got {shapes}"
        )
    outs = {
        lab: apply(fn, images, value_range=value_range)
        for lab, fn in zip(labels, fns, strict=True)
    }
    got = {lab: o.shape for lab, o in outs.items()}
    if len(set(got.values())) > 1:
        raise ValueError(
            f"specs: expected pipelines with outputs of one shape, got {got}"
        )
    rows = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            stats = difference_stats(outs[a], outs[b])
            del stats["per_image_max_abs"], stats["per_image_mean_abs"]
            exact = stats.pop("exact")
            rows.append({"a": a, "b": b, "exact": exact, **stats})
    return {
        "rows": rows,
        "versions": library_versions(),
        "shape": next(iter(got.values())),
        "input_shape": tuple(x.shape),
        "dtypes": {lab: str(o.dtype) for lab, o in outs.items()},
    }


def format_parity_table(table: dict[str, Any]) -> str:
    """A :func:`parity_table` result as a markdown table plus a line of versions."""
    lines = [
        "| a | b | exact | max abs | mean abs | values differing | images differing "
        "| PSNR (dB) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]

    def cell(label: str) -> str:  # a '|' inside a table cell must be escaped
        return "`" + label.replace("|", "\\|") + "`"

    for r in table["rows"]:
        psnr = "inf" if math.isinf(r["psnr_db"]) else f"{r['psnr_db']:.1f}"
        lines.append(
            f"| {cell(r['a'])} | {cell(r['b'])} | {'yes' if r['exact'] else 'no'} "
            f"| {r['max_abs']:.4g} | {r['mean_abs']:.4g} "
            f"| {r['share_values_differing']:.2%} | {r['share_images_differing']:.0%} "
            f"| {psnr} |"
        )
    versions = ", ".join(
        f"{k} {'not installed' if v is None else v}"
        for k, v in table.get("versions", {}).items()
    )
    shape = table.get("shape")
    extra = f" Output shape {list(shape)}." if shape is not None else ""
    return "\n".join(lines) + f"\n\nVersions: {versions}.{extra}\n"
