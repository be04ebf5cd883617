"""The CPPN encoding of the fooling-images search (Nguyen, Yosinski & Clune, CVPR 2015):
a genome is a small feed-forward network (a compositional pattern-producing network,
Stanley 2007) that maps a pixel's coordinates to its intensity (grey) or colour (HSL).

What the original code does (github.com/Evolving-AI-Lab/fooling: sferes2's
``modules/nn2`` ``gen_hyper_nn.hpp`` / ``gen_dnn_ff.hpp`` / ``gen_dnn.hpp`` /
``af_cppn.hpp``, ``exp/images/phen/phen_grayscale_image.hpp`` /
``phen_color_image.hpp``, ``exp/images/dl_map_elites_images*.cpp``), and here:

* **Inputs** ``x`` (column), ``y`` (row), distance from the centre, bias 1. The
  original feeds the raw pixel indices ``0 .. size-1`` as ``x`` and ``y`` and the
  distance of the coordinates rescaled to ``[-1, 1]`` (grid end points included);
  input nodes pass their value on unchanged. Here ``coordinates="centred"`` (the
  default) feeds the pixel centres rescaled to ``(-1, 1)``, so a genome renders the
  same picture at any resolution; ``"pixel"`` is the original's inputs.
* **Initial genome**: no hidden node; every input connected to every output
  (``DnnFF::random`` -> ``_random_ff``), weights uniform in ``[-10, 10]``
  (``phen::Parameters``: a gene uniform in ``[0, 1]`` mapped to ``[min, max] = [-10,
  10]``); each output's activation drawn uniformly from the set.
* **Activations** (``af_cppn.hpp``, the set ``{sine, sigmoid, gaussian, linear}``):
  ``sin(p)``, ``2 / (1 + exp(-p)) - 1`` (``= tanh(p / 2)``), ``exp(-p^2)``,
  ``clip(p, -3, 3) / 3``. Outputs are ordinary nodes: their activation is drawn from
  the same set and mutates like any other. A node's input is the weighted sum of its
  incoming connections (0 with none).
* **Output**: intensity ``|v|`` (the original writes ``int(255 v)``, sign dropped, into
  a uint8 image; here ``clip(|v|, 0, 1)``, not quantised). Colour: three outputs read
  as hue, saturation and lightness ``|v|`` and converted to RGB (:func:`hsl_to_rgb`).
  The original writes them into an 8-bit OpenCV HLS image, whose hue unit is 2
  degrees, so its hue is ``|v| * 510`` degrees wrapped at 360; here ``|v| * 360``.
* **Mutation** (``DnnFF::mutate``, in this order): every weight's gene mutates with
  probability 0.1 by polynomial mutation (eta 15) in ``[0, 1]``
  (:func:`pixjax.search.operators.polynomial_mutation`; the gene is ``(w + 10) /
  20``); every node's activation is redrawn uniformly from the set (possibly the same)
  with probability 0.1 (sferes2 ``Sampled``); then, each with its own probability,
  add a connection (0.5), delete a connection (0.3), add a node by splitting a
  connection (0.5; both halves keep the split connection's weight, the new node's
  activation is drawn at random), delete a hidden node with its connections (0.2).
  The *rewire* mutation (0.5, ``Dnn::_change_conns``: one connection moves its source
  or its target) is in ``gen_dnn.hpp``, but ``DnnFF`` hides it with a weights-only
  ``_change_conns``, so the original CPPN never rewires; it runs here with
  ``rewire_connection`` (0.5, as the issue asks; 0.0 is the original code's
  behaviour): a random connection keeps its weight and moves its source or its target
  (a coin) to a random live node that keeps it feed-forward and duplicates no other
  connection (unchanged when there is none).
* **Crossover** copies the parents (``DnnFF::cross``: no innovation numbers, no
  speciation); both children are then mutated.

Fixed-size genomes. A genome is a :class:`CPPNGenome` of arrays of fixed shapes
(``max_nodes`` node slots, ``max_connections`` connection slots, with masks), so a
population is one pytree with a leading axis. Node slots are in a topological order:
``0..3`` the inputs (x, y, distance, bias), then the live hidden nodes packed from slot
4, then free hidden slots, and the ``num_outputs`` outputs in the last slots. Every live
connection goes from a lower slot to a higher one, so the network is acyclic by
construction; a new node is inserted just after the split connection's source
(later hidden nodes move up one slot), a deleted one closes its gap. The original
allows a new connection to any node that is not an ancestor of its source; here only
to a later node in this order (a subset: every such connection is acyclic). A
duplicate connection is allowed, as in the original (weights add). When a limit is
full, an add is a no-op. Where the original evaluates a fixed number of synchronous
steps (the longest input -> output path + 1), this evaluates the network in
topological order: the same outputs whenever every node is reachable from an input
(a hidden node without inputs outputs ``act(0)``; the original may read the outputs
before such a node's value has travelled through a long chain).

Everything works on one genome and is batched with ``vmap``
(:mod:`pixjax.search.evolve`); rendering is a ``lax.fori_loop`` over hidden node
slots, each a weighted sum over all pixels at once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.keys import purpose_keys
from pixjax.search.direct import check_image_shape
from pixjax.search.evolve import Encoding
from pixjax.search.operators import polynomial_mutation
from pixjax.types import PRNGKey

ACTIVATIONS = ("sine", "sigmoid", "gaussian", "linear")
"""Activation names; a genome stores a node's activation as its index here (the
original's ``nn::cppn::func_e`` numbering)."""

COORDINATES = ("centred", "pixel")
NUM_INPUTS = 4  # x, y, distance from the centre, bias
INPUT_NAMES = ("x", "y", "distance", "bias")


class CPPNSettings(NamedTuple):
    """Static settings of the CPPN encoding (closed over by :func:`cppn_encoding`).

    Attributes:
      max_nodes: node slots of a genome, inputs (4) and outputs (1 grey, 3 colour)
        included; at least ``4 + outputs``. Hidden nodes: ``max_nodes - 4 - outputs``
        at most. (The original has no limit; a modest one keeps rendering fast.)
      max_connections: connection slots; at least ``4 * outputs`` (the initial
        genome's).
      weight_range: weights lie in ``[-weight_range, weight_range]`` (10, the
        original's ``parameters::min/max``).
      weight_rate: per-connection probability that its weight mutates (0.1).
      eta_mutation: polynomial-mutation distribution index of the weights (15).
      activation_rate: per-node probability that its activation is redrawn (0.1).
      add_connection: probability of adding a connection per mutation (0.5).
      delete_connection: probability of deleting a connection (0.3).
      rewire_connection: probability of moving one connection's source or target
        (0.5; the original CPPN never does it, module docstring).
      add_node: probability of splitting a connection with a new node (0.5).
      delete_node: probability of deleting a hidden node (0.2).
      activations: the activation set new and mutated nodes draw from, names from
        :data:`ACTIVATIONS` (all four).
      coordinates: ``"centred"`` (pixel centres in ``(-1, 1)``) or ``"pixel"`` (the
        original's raw pixel indices), the inputs the search renders with.
    """

    max_nodes: int = 16
    max_connections: int = 40
    weight_range: float = 10.0
    weight_rate: float = 0.1
    eta_mutation: float = 15.0
    activation_rate: float = 0.1
    add_connection: float = 0.5
    delete_connection: float = 0.3
    rewire_connection: float = 0.5
    add_node: float = 0.5
    delete_node: float = 0.2
    activations: tuple[str, ...] = ACTIVATIONS
    coordinates: str = "centred"


class CPPNGenome(NamedTuple):
    """One CPPN (a population: the same with a leading axis ``[P]``).

    Attributes:
      node_mask: bool ``[max_nodes]``: live node slots (inputs, live hidden nodes,
        outputs); hidden ones packed from slot 4.
      activation: int32 ``[max_nodes]``: index into :data:`ACTIVATIONS` (0 for inputs
        and free slots).
      conn_mask: bool ``[max_connections]``: live connection slots.
      source: int32 ``[max_connections]``: source node slot (0 where free).
      target: int32 ``[max_connections]``: target node slot, ``> source`` (0 where
        free).
      weight: float32 ``[max_connections]`` in ``[-weight_range, weight_range]`` (0
        where free).
    """

    node_mask: jax.Array
    activation: jax.Array
    conn_mask: jax.Array
    source: jax.Array
    target: jax.Array
    weight: jax.Array


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, bool
    )


def check_num_outputs(num_outputs: Any) -> int:
    """Raises ``ValueError`` naming ``num_outputs`` unless it is 1 (grey) or 3 (HSL)."""
    if isinstance(num_outputs, bool) or num_outputs not in (1, 3):
        raise ValueError(
            f"num_outputs: expected 1 (grey) or 3 (colour, HSL), got {num_outputs!r}"
        )
    return int(num_outputs)


def check_coordinates(coordinates: Any) -> str:
    """Raises ``ValueError`` naming ``coordinates`` unless it is in
    :data:`COORDINATES`."""
    if not isinstance(coordinates, str) or coordinates not in COORDINATES:
        raise ValueError(
            f"coordinates: expected one of {list(COORDINATES)}, got {coordinates!r}"
        )
    return coordinates


def check_settings(settings: CPPNSettings, num_outputs: int = 1) -> None:
    """Raises ``ValueError`` naming the first bad setting and the accepted values, for
    genomes of ``num_outputs`` outputs (1 grey, 3 colour)."""
    s = settings
    n_out = check_num_outputs(num_outputs)
    for name in (
        "weight_rate",
        "activation_rate",
        "add_connection",
        "delete_connection",
        "rewire_connection",
        "add_node",
        "delete_node",
    ):
        v = getattr(s, name)
        if not _is_number(v) or not 0 <= v <= 1:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {v!r}")
    for name in ("eta_mutation", "weight_range"):
        v = getattr(s, name)
        if not _is_number(v) or not 0 < v < float("inf"):
            raise ValueError(f"{name}: expected a finite positive number, got {v!r}")
    for name, minimum, what in (
        ("max_nodes", NUM_INPUTS + n_out, f"{NUM_INPUTS} inputs + {n_out} outputs"),
        (
            "max_connections",
            NUM_INPUTS * n_out,
            f"{NUM_INPUTS} inputs x {n_out} outputs",
        ),
    ):
        v = getattr(s, name)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
            raise ValueError(
                f"{name}: expected an integer >= {minimum} (the initial genome's "
                f"{what}), got {v!r}"
            )
    acts = s.activations
    if (
        not isinstance(acts, (tuple, list))
        or not acts
        or any(a not in ACTIVATIONS for a in acts)
        or len(set(acts)) != len(acts)
    ):
        raise ValueError(
            f"activations: expected a non-empty sequence of distinct names from "
            f"{list(ACTIVATIONS)}, got {acts!r}"
        )
    check_coordinates(s.coordinates)


# --- activations and colour -----------------------------------------------------------


def activation(ids: jax.Array, p: jax.Array) -> jax.Array:
    """The CPPN activation ``ids`` (indices into :data:`ACTIVATIONS`, broadcast
    against ``p``) applied to pre-activations ``p`` (float, any shape).

    ``sine``: ``sin(p)``; ``sigmoid``: ``2 / (1 + exp(-p)) - 1`` in ``(-1, 1)``
    (computed as ``tanh(p / 2)``); ``gaussian``: ``exp(-p^2)``; ``linear``:
    ``clip(p, -3, 3) / 3`` (sferes2 ``af_cppn.hpp``). All in ``[-1, 1]``; an id
    outside ``0..3`` acts as ``linear``.
    """
    ids = jnp.asarray(ids)
    return jnp.select(
        [ids == 0, ids == 1, ids == 2],
        [jnp.sin(p), jnp.tanh(0.5 * p), jnp.exp(-p * p)],
        jnp.clip(p, -3.0, 3.0) / 3.0,
    )


def hsl_to_rgb(hsl: jax.Array) -> jax.Array:
    """HSL -> RGB, as Python's ``colorsys.hls_to_rgb`` (note its ``(h, l, s)``
    argument order; here the last axis is ``(h, s, l)``).

    Args:
      hsl: float ``[..., 3]``: hue in ``[0, 1]`` (a full turn; wraps), saturation and
        lightness in ``[0, 1]``.

    Returns:
      float ``[..., 3]`` RGB in ``[0, 1]``.
    """
    h, s, l_ = hsl[..., 0], hsl[..., 1], hsl[..., 2]
    m2 = jnp.where(l_ <= 0.5, l_ * (1.0 + s), l_ + s - l_ * s)
    m1 = 2.0 * l_ - m2

    def channel(hue):
        hue = jnp.mod(hue, 1.0)
        rising = m1 + (m2 - m1) * hue * 6.0
        falling = m1 + (m2 - m1) * (2.0 / 3.0 - hue) * 6.0
        return jnp.where(
            hue < 1.0 / 6.0,
            rising,
            jnp.where(hue < 0.5, m2, jnp.where(hue < 2.0 / 3.0, falling, m1)),
        )

    rgb = jnp.stack([channel(h + 1.0 / 3.0), channel(h), channel(h - 1.0 / 3.0)], -1)
    return jnp.clip(rgb, 0.0, 1.0)


# --- inputs and rendering -------------------------------------------------------------


def _check_resolution(height: Any, width: Any) -> None:
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")


def coordinate_inputs(
    height: int, width: int, coordinates: str = "centred"
) -> np.ndarray:
    """The CPPN's inputs at every pixel of a ``height x width`` image.

    Args:
      height, width: positive integers.
      coordinates: ``"centred"``: ``x = (2 i + 1) / width - 1`` for column ``i`` and
        ``y = (2 j + 1) / height - 1`` for row ``j`` (pixel centres, in ``(-1, 1)``;
        the same continuous picture at every resolution); ``"pixel"``: the original
        code's ``x = i``, ``y = j`` (raw indices) with the distance computed from
        ``-1 + 2 i / (width - 1)`` (0 for a width of 1), likewise for ``y``.

    Returns:
      float32 numpy ``[4, height * width]``: rows x, y, distance from the centre
      ``sqrt(x^2 + y^2)`` (of the rescaled coordinates), bias 1; pixels in row-major
      order (``j * width + i``).

    Raises:
      ValueError: a bad ``height``, ``width`` or ``coordinates``.
    """
    _check_resolution(height, width)
    check_coordinates(coordinates)
    i = np.arange(width, dtype=np.float64)
    j = np.arange(height, dtype=np.float64)
    if coordinates == "centred":
        xs, ys = (2 * i + 1) / width - 1, (2 * j + 1) / height - 1
        xn, yn = xs, ys
    else:
        xs, ys = i, j
        xn = -1 + 2 * i / (width - 1) if width > 1 else np.zeros_like(i)
        yn = -1 + 2 * j / (height - 1) if height > 1 else np.zeros_like(j)
    x, y = np.meshgrid(xs, ys)  # [H, W]
    dx, dy = np.meshgrid(xn, yn)
    d = np.sqrt(dx**2 + dy**2)
    out = np.stack([x, y, d, np.ones_like(x)]).reshape(NUM_INPUTS, height * width)
    return out.astype(np.float32)


def cppn_outputs(genome: CPPNGenome, inputs: jax.Array, num_outputs: int) -> jax.Array:
    """The output nodes' values of one genome at ``P`` points.

    Args:
      genome: one :class:`CPPNGenome` whose last ``num_outputs`` node slots are the
        outputs.
      inputs: float32 ``[4, P]`` (:func:`coordinate_inputs`).
      num_outputs: static, 1 or 3.

    Returns:
      float32 ``[num_outputs, P]`` in ``[-1, 1]``: the activations of the outputs,
      the network evaluated in node-slot (topological) order; a hidden slot is one
      step of a ``lax.fori_loop``, one weighted sum over all points.
    """
    n = genome.node_mask.shape[0]
    first_out = n - num_outputs
    num_hidden = first_out - NUM_INPUTS
    w = jnp.where(genome.conn_mask, genome.weight, 0.0).astype(jnp.float32)
    # dense incoming weights a[target, source] (duplicates add), as a product of
    # one-hot matrices (no scatter: cheaper under vmap on the CPU)
    slots = jnp.arange(n)
    to = (genome.target[:, None] == slots).astype(jnp.float32) * w[:, None]  # [M, n]
    fro = (genome.source[:, None] == slots).astype(jnp.float32)  # [M, n]
    a = to.T @ fro
    x = inputs.astype(jnp.float32)
    from_inputs = a[NUM_INPUTS:, :NUM_INPUTS] @ x  # [n - 4, P]
    hidden = jnp.zeros((num_hidden, x.shape[1]), jnp.float32)
    if num_hidden:
        a_hidden = a[:, NUM_INPUTS:first_out]  # [n, num_hidden]

        def node(k, hidden):
            slot = NUM_INPUTS + k
            pre = from_inputs[k] + a_hidden[slot] @ hidden  # later slots are still 0
            value = activation(genome.activation[slot], pre)
            value = jnp.where(genome.node_mask[slot], value, 0.0)
            return jax.lax.dynamic_update_index_in_dim(hidden, value, k, 0)

        hidden = jax.lax.fori_loop(0, num_hidden, node, hidden)
        pre = from_inputs[num_hidden:] + a[first_out:, NUM_INPUTS:first_out] @ hidden
    else:
        pre = from_inputs
    return activation(genome.activation[first_out:, None], pre)


def _to_image(values: jax.Array, height: int, width: int) -> jax.Array:
    """``[C, P]`` output values -> float32 ``[H, W, C]`` image in ``[0, 1]``."""
    v = jnp.clip(jnp.abs(values), 0.0, 1.0).T  # [P, C]
    if v.shape[1] == 3:
        v = hsl_to_rgb(v)
    return v.reshape(height, width, v.shape[1]).astype(jnp.float32)


def render(
    genome: CPPNGenome,
    height: int,
    width: int,
    channels: int,
    coordinates: str = "centred",
) -> jax.Array:
    """One genome's image at any resolution (e.g. 4x the search's, to look at it).

    Intensity is ``clip(|v|, 0, 1)`` of the output ``v``; with 3 channels the three
    outputs are hue, saturation, lightness (:func:`hsl_to_rgb`). Batch with ``vmap``
    (``height``, ``width``, ``channels``, ``coordinates`` static)::

        jax.vmap(lambda g: render(g, 112, 112, 1))(state.archive.genomes)

    Args:
      genome: one :class:`CPPNGenome` (of ``channels`` outputs).
      height, width: the resolution, positive integers.
      channels: 1 (grey) or 3 (RGB).
      coordinates: ``"centred"`` or ``"pixel"`` (:func:`coordinate_inputs`); use the
        search's. With ``"centred"`` the picture is the same at every resolution;
        with ``"pixel"`` (raw indices) a larger image shows more of the pattern at
        the same scale, not the same picture.

    Returns:
      float32 ``[height, width, channels]`` in ``[0, 1]``.

    Raises:
      ValueError: a bad ``height``, ``width``, ``channels`` or ``coordinates``, or a
        genome with fewer than ``4 + channels`` node slots.
    """
    _check_resolution(height, width)
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels: expected 1 (grey) or 3 (RGB), got {channels!r}")
    check_coordinates(coordinates)
    if genome.node_mask.shape[-1] < NUM_INPUTS + channels:
        raise ValueError(
            f"genome: expected at least {NUM_INPUTS + channels} node slots for "
            f"{channels} channel(s), got {genome.node_mask.shape[-1]}"
        )
    inputs = jnp.asarray(coordinate_inputs(height, width, coordinates))
    return _to_image(cppn_outputs(genome, inputs, channels), height, width)


# --- genomes and mutation -------------------------------------------------------------


def _draw_activation(u: jax.Array, settings: CPPNSettings) -> jax.Array:
    """Activation ids uniform over ``settings.activations`` from uniforms ``u`` in
    ``[0, 1)`` (any shape)."""
    ids = [ACTIVATIONS.index(a) for a in settings.activations]
    j = jnp.clip(jnp.floor(u * len(ids)).astype(jnp.int32), 0, len(ids) - 1)
    out = jnp.zeros(jnp.shape(u), jnp.int32)
    for i, a in enumerate(ids):
        out = jnp.where(j == i, a, out)
    return out


def init_genome(
    key: PRNGKey, num_outputs: int, settings: CPPNSettings | None = None
) -> CPPNGenome:
    """One random initial genome: no hidden node, each input connected to each output
    (connection slot ``o * 4 + i``: input ``i`` -> output ``o``) with a weight uniform
    in ``[-weight_range, weight_range]``, each output's activation uniform over
    ``settings.activations`` (sferes2 ``DnnFF::random``).

    Args:
      key: PRNG key (split inside by purpose: ``"weights"``, ``"activations"``).
      num_outputs: 1 (grey) or 3 (colour).
      settings: :class:`CPPNSettings` (``max_nodes``, ``max_connections``,
        ``weight_range``, ``activations``); ``None``: the defaults.

    Raises:
      ValueError: a bad setting or ``num_outputs`` (:func:`check_settings`).
    """
    settings = CPPNSettings() if settings is None else settings
    check_settings(settings, num_outputs)
    n, m = settings.max_nodes, settings.max_connections
    keys = purpose_keys(key, "weights", "activations")
    slots = np.arange(n)
    first_out = n - num_outputs
    node_mask = (slots < NUM_INPUTS) | (slots >= first_out)
    acts = _draw_activation(
        jax.random.uniform(keys["activations"], (num_outputs,)), settings
    )
    activation_ = jnp.zeros((n,), jnp.int32).at[first_out:].set(acts)
    k = NUM_INPUTS * num_outputs
    live = np.arange(m) < k
    source = np.zeros(m, np.int32)
    target = np.zeros(m, np.int32)
    source[:k] = np.tile(np.arange(NUM_INPUTS), num_outputs)
    target[:k] = np.repeat(np.arange(first_out, n), NUM_INPUTS)
    r = settings.weight_range
    weight = jax.random.uniform(keys["weights"], (m,), jnp.float32, -r, r)
    return CPPNGenome(
        node_mask=jnp.asarray(node_mask),
        activation=activation_,
        conn_mask=jnp.asarray(live),
        source=jnp.asarray(source),
        target=jnp.asarray(target),
        weight=jnp.where(live, weight, 0.0),
    )


def _pick(u: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A uniform index among the ``True`` entries of ``mask`` (from iid uniforms ``u``
    of at least its length: the argmax of ``u`` over them) and whether there is one
    (index 0 when there is none)."""
    u = u[: mask.shape[0]]
    return jnp.argmax(jnp.where(mask, u, -1.0)).astype(jnp.int32), jnp.any(mask)


def _select(do: jax.Array, new: CPPNGenome, old: CPPNGenome) -> CPPNGenome:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(do, a, b), new, old)


# Element reads and writes at a traced index as one-hot selects (elementwise under
# vmap, where a gather / scatter would be batched; faster to compile and run).
def _hot(index: jax.Array, size: int) -> jax.Array:
    return jnp.arange(size) == index


def _get(x: jax.Array, index: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(_hot(index, x.shape[0]), x, jnp.zeros_like(x)))


def _put(x: jax.Array, index: jax.Array, value: Any) -> jax.Array:
    return jnp.where(_hot(index, x.shape[0]), value, x)


def _shift_up(x: jax.Array, p: jax.Array, end: int) -> jax.Array:
    """``x`` with entries ``p .. end - 2`` moved to ``p + 1 .. end - 1``."""
    slots = jnp.arange(x.shape[0])
    previous = jnp.concatenate([x[:1], x[:-1]])
    return jnp.where((slots > p) & (slots < end), previous, x)


def _shift_down(x: jax.Array, p: jax.Array, end: int) -> jax.Array:
    """``x`` with entries ``p + 1 .. end - 1`` moved to ``p .. end - 2``."""
    slots = jnp.arange(x.shape[0])
    following = jnp.concatenate([x[1:], x[-1:]])
    return jnp.where((slots >= p) & (slots < end - 1), following, x)


def _set_connection(g, c, source, target, weight) -> CPPNGenome:
    return g._replace(
        conn_mask=_put(g.conn_mask, c, True),
        source=_put(g.source, c, source),
        target=_put(g.target, c, target),
        weight=_put(g.weight, c, weight),
    )


def _clear_connections(g: CPPNGenome, clear: jax.Array) -> CPPNGenome:
    return g._replace(
        conn_mask=g.conn_mask & ~clear,
        source=jnp.where(clear, 0, g.source),
        target=jnp.where(clear, 0, g.target),
        weight=jnp.where(clear, 0.0, g.weight),
    )


def _mutate_weights(key, g: CPPNGenome, s: CPPNSettings) -> CPPNGenome:
    r = s.weight_range
    gene = jnp.clip((g.weight + r) / (2 * r), 0.0, 1.0)
    new = polynomial_mutation(key, gene, rate=s.weight_rate, eta=s.eta_mutation)
    # only mutated weights are mapped back (no rounding drift of the others)
    weight = jnp.where(new != gene, jnp.clip(new * (2 * r) - r, -r, r), g.weight)
    return g._replace(weight=jnp.where(g.conn_mask, weight, 0.0))


def _mutate_activations(u, g: CPPNGenome, s: CPPNSettings) -> CPPNGenome:
    n = g.node_mask.shape[0]
    mutable = g.node_mask & (jnp.arange(n) >= NUM_INPUTS)
    redraw = mutable & (u["activation_which"][:n] < s.activation_rate)
    new = _draw_activation(u["activation_draw"][:n], s)
    return g._replace(activation=jnp.where(redraw, new, g.activation))


def _rewire(u, g: CPPNGenome, first_out: int) -> CPPNGenome:
    """Moves one random connection's source (or, on the other side of a coin, its
    target) to another live node that keeps it feed-forward and does not duplicate
    another connection; unchanged when there is none."""
    n, m = g.node_mask.shape[0], g.conn_mask.shape[0]
    slots = jnp.arange(n)
    c, has = _pick(u["rewire_connection"], g.conn_mask)
    src, dst = _get(g.source, c), _get(g.target, c)
    others = g.conn_mask & (jnp.arange(m) != c)
    linked_to_dst = jnp.any(
        (g.source[None, :] == slots[:, None]) & (others & (g.target == dst))[None, :], 1
    )
    linked_from_src = jnp.any(
        (g.target[None, :] == slots[:, None]) & (others & (g.source == src))[None, :], 1
    )
    src_ok = g.node_mask & (slots < dst) & (slots < first_out) & (slots != src)
    new_src, ok_src = _pick(u["rewire_source"], src_ok & ~linked_to_dst)
    tgt_ok = g.node_mask & (slots > src) & (slots >= NUM_INPUTS) & (slots != dst)
    new_tgt, ok_tgt = _pick(u["rewire_target"], tgt_ok & ~linked_from_src)
    move_source = u["rewire_side"][0] < 0.5
    new = g._replace(
        source=_put(g.source, c, jnp.where(move_source, new_src, src)),
        target=_put(g.target, c, jnp.where(move_source, dst, new_tgt)),
    )
    return _select(has & jnp.where(move_source, ok_src, ok_tgt), new, g)


def _add_connection(u, g: CPPNGenome, first_out: int, s: CPPNSettings):
    """A new connection from a random live non-output node to a random later live
    non-input node, weight uniform in the range, in the first free slot (sferes2
    ``DnnFF::_add_conn``). A no-op without a free slot."""
    n = g.node_mask.shape[0]
    slots = jnp.arange(n)
    src, _ = _pick(u["add_source"], g.node_mask & (slots < first_out))
    later = g.node_mask & (slots > src) & (slots >= NUM_INPUTS)  # never empty
    dst, _ = _pick(u["add_target"], later)
    has_free = jnp.any(~g.conn_mask)
    free = jnp.argmax(~g.conn_mask).astype(jnp.int32)
    r = s.weight_range
    w = (2.0 * u["add_weight"][0] - 1.0) * r
    return _select(has_free, _set_connection(g, free, src, dst, w), g)


def _delete_connection(u, g: CPPNGenome) -> CPPNGenome:
    c, _ = _pick(u["delete_connection"], g.conn_mask)
    return _clear_connections(g, g.conn_mask & (jnp.arange(g.conn_mask.shape[0]) == c))


def _add_node(u, g: CPPNGenome, first_out: int, s: CPPNSettings) -> CPPNGenome:
    """Splits a random connection ``a -> b`` (weight ``w``) into ``a -> new -> b``,
    both of weight ``w`` (sferes2 ``Dnn::_add_neuron_on_conn``); the new node takes
    the slot after ``a`` (after the inputs), later hidden nodes move up one slot.
    A no-op without a connection, a free hidden slot or a free connection slot."""
    n = g.node_mask.shape[0]
    slots = jnp.arange(n)
    hidden = g.node_mask & (slots >= NUM_INPUTS) & (slots < first_out)
    c, has_conn = _pick(u["split_connection"], g.conn_mask)
    has_free = jnp.any(~g.conn_mask)
    free = jnp.argmax(~g.conn_mask).astype(jnp.int32)
    do = has_conn & has_free & (hidden.sum() < first_out - NUM_INPUTS)
    src, dst, w = _get(g.source, c), _get(g.target, c), _get(g.weight, c)
    p = jnp.maximum(src + 1, NUM_INPUTS)

    def up(idx):
        return jnp.where((idx >= p) & (idx < first_out), idx + 1, idx)

    new_act = _draw_activation(u["split_activation"][0], s)
    new = g._replace(
        node_mask=_put(_shift_up(g.node_mask, p, first_out), p, True),
        activation=_put(_shift_up(g.activation, p, first_out), p, new_act),
        source=jnp.where(g.conn_mask, up(g.source), 0),
        target=_put(jnp.where(g.conn_mask, up(g.target), 0), c, p),
    )
    new = _set_connection(new, free, p, up(dst), w)
    return _select(do, new, g)


def _delete_node(u, g: CPPNGenome, first_out: int) -> CPPNGenome:
    """Deletes a random hidden node and its connections (sferes2
    ``Dnn::_del_neuron``); later hidden nodes move down one slot. A no-op without
    hidden nodes."""
    n = g.node_mask.shape[0]
    slots = jnp.arange(n)
    hidden = g.node_mask & (slots >= NUM_INPUTS) & (slots < first_out)
    p, has = _pick(u["delete_node"], hidden)
    touching = g.conn_mask & ((g.source == p) | (g.target == p))
    new = _clear_connections(g, touching)

    def down(idx):
        return jnp.where((idx > p) & (idx < first_out), idx - 1, idx)

    last = first_out - 1  # the last hidden slot becomes free
    new = new._replace(
        node_mask=_shift_down(new.node_mask, p, first_out).at[last].set(False),
        activation=_shift_down(new.activation, p, first_out).at[last].set(0),
        source=down(new.source),
        target=down(new.target),
    )
    return _select(has, new, g)


# The uniforms one mutation draws, one row of a single [rows, max(N, M)] draw per
# purpose (one random-bits computation instead of one per purpose: the mutation
# compiles several times faster).
_UNIFORM_ROWS = (
    "activation_which",
    "activation_draw",
    "coins",
    "rewire_connection",
    "rewire_side",
    "rewire_source",
    "rewire_target",
    "add_source",
    "add_target",
    "add_weight",
    "delete_connection",
    "split_connection",
    "split_activation",
    "delete_node",
)


def mutate(
    key: PRNGKey,
    genome: CPPNGenome,
    num_outputs: int,
    settings: CPPNSettings | None = None,
) -> CPPNGenome:
    """One mutation of one genome, in the original's order (sferes2
    ``DnnFF::mutate``): weights (per connection, polynomial), activations (per node,
    redrawn), rewire, add connection, delete connection, add node, delete node (each
    with its probability in ``settings``). Keeps every invariant of
    :class:`CPPNGenome` (acyclic, connections between live nodes, packed hidden
    nodes, counts within the limits).

    Args:
      key: PRNG key, split by purpose: ``"weights"`` (the polynomial mutation) and
        ``"structure"`` (one draw of uniforms, one named row per purpose).
      genome: one :class:`CPPNGenome` with ``num_outputs`` outputs.
      num_outputs: static, 1 or 3.
      settings: :class:`CPPNSettings`; ``None``: the defaults.

    Returns:
      The mutated genome (same shapes and dtypes).

    Raises:
      ValueError: a bad setting or ``num_outputs`` (:func:`check_settings`).
    """
    s = CPPNSettings() if settings is None else settings
    check_settings(s, num_outputs)
    n, m = genome.node_mask.shape[0], genome.conn_mask.shape[0]
    first_out = n - num_outputs
    keys = purpose_keys(key, "weights", "structure")
    draws = jax.random.uniform(keys["structure"], (len(_UNIFORM_ROWS), max(n, m)))
    u = dict(zip(_UNIFORM_ROWS, draws, strict=True))
    g = _mutate_weights(keys["weights"], genome, s)
    g = _mutate_activations(u, g, s)
    steps = (
        (s.rewire_connection, lambda g: _rewire(u, g, first_out)),
        (s.add_connection, lambda g: _add_connection(u, g, first_out, s)),
        (s.delete_connection, lambda g: _delete_connection(u, g)),
        (s.add_node, lambda g: _add_node(u, g, first_out, s)),
        (s.delete_node, lambda g: _delete_node(u, g, first_out)),
    )
    for i, (probability, op) in enumerate(steps):
        if probability > 0:
            g = _select(u["coins"][i] < probability, op(g), g)
    return g


def cppn_encoding(
    image_shape: tuple[int, int, int], settings: CPPNSettings | None = None
) -> Encoding:
    """The CPPN encoding of images of ``image_shape`` ``(H, W, C)``: genomes are
    :class:`CPPNGenome` with ``C`` outputs (1 grey, 3 HSL), drawn by
    :func:`init_genome`, varied by copying the parents and mutating both
    (:func:`mutate`), rendered at ``H x W`` with ``settings.coordinates``
    (:func:`render`; the inputs are computed once here). ``settings``:
    :class:`CPPNSettings`, ``None`` for the defaults.

    Raises:
      ValueError: a bad ``image_shape`` or setting (:func:`check_settings`, naming the
        minimum ``max_nodes`` / ``max_connections``).
    """
    s = CPPNSettings() if settings is None else settings
    shape = check_image_shape(image_shape)
    height, width, channels = shape
    check_settings(s, channels)
    inputs = coordinate_inputs(height, width, s.coordinates)

    def init(key: PRNGKey) -> CPPNGenome:
        return init_genome(key, channels, s)

    def vary(key: PRNGKey, a: CPPNGenome, b: CPPNGenome, generation: jax.Array):
        # both children mutated by one vmapped call (one copy of the mutation to
        # compile); their keys are the purposes "mutate_a", "mutate_b"
        keys = purpose_keys(key, "mutate_a", "mutate_b")
        pair = jax.tree_util.tree_map(lambda x, y: jnp.stack([x, y]), a, b)
        both = jax.vmap(lambda k, g: mutate(k, g, channels, s))(
            jnp.stack([keys["mutate_a"], keys["mutate_b"]]), pair
        )
        return (
            jax.tree_util.tree_map(lambda x: x[0], both),
            jax.tree_util.tree_map(lambda x: x[1], both),
        )

    def render_(genome: CPPNGenome) -> jax.Array:
        values = cppn_outputs(genome, jnp.asarray(inputs), channels)
        return _to_image(values, height, width)

    return Encoding("cppn", shape, init, vary, render_)


__all__ = [
    "ACTIVATIONS",
    "COORDINATES",
    "INPUT_NAMES",
    "NUM_INPUTS",
    "CPPNGenome",
    "CPPNSettings",
    "activation",
    "check_coordinates",
    "check_num_outputs",
    "check_settings",
    "coordinate_inputs",
    "cppn_encoding",
    "cppn_outputs",
    "hsl_to_rgb",
    "init_genome",
    "mutate",
    "render",
]
