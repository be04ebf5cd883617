"""The CPPN encoding: colour conversion against colorsys, activations and inputs against
hand-computed values, rendering against a numpy evaluation of the graph and at two
resolutions, mutation invariants over many random mutations, each structural operator,
reproducibility, vmap == loop, no retracing, bad input, and a short search on the
shipped LeNet-5 (resumable, as the direct encoding's)."""

import collections
import colorsys
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax import driver
from pixjax.search import init_state, make_generation, target_probs
from pixjax.search.cppn import (
    ACTIVATIONS,
    NUM_INPUTS,
    CPPNGenome,
    CPPNSettings,
    activation,
    coordinate_inputs,
    cppn_encoding,
    hsl_to_rgb,
    init_genome,
    mutate,
    render,
)

SINE, SIGMOID, GAUSSIAN, LINEAR = range(4)
# small limits (reached by random mutation) and tame weights (float32 vs float64)
SMALL = CPPNSettings(max_nodes=12, max_connections=16, weight_range=2.0)
OFF = dict(  # every mutation off; a test turns one on
    weight_rate=0.0,
    activation_rate=0.0,
    add_connection=0.0,
    delete_connection=0.0,
    rewire_connection=0.0,
    add_node=0.0,
    delete_node=0.0,
)


def _at(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def _genome(conns, acts, *, max_nodes=8, max_connections=10, hidden=0):
    """A hand-built genome: ``conns`` [(source, target, weight)], ``acts`` {slot: id};
    hidden nodes in slots 4 .. 4 + hidden - 1, outputs where ``acts`` says (the last
    slots)."""
    node_mask = np.zeros(max_nodes, bool)
    node_mask[: NUM_INPUTS + hidden] = True
    activation_ = np.zeros(max_nodes, np.int32)
    for slot, a in acts.items():
        activation_[slot] = a
        node_mask[slot] = True
    m = max_connections
    source, target = np.zeros(m, np.int32), np.zeros(m, np.int32)
    weight, mask = np.zeros(m, np.float32), np.zeros(m, bool)
    for c, (s, t, w) in enumerate(conns):
        source[c], target[c], weight[c], mask[c] = s, t, w, True
    arrays = (node_mask, activation_, mask, source, target, weight)
    return CPPNGenome(*map(jnp.asarray, arrays))


def _np_act(a, p):
    """af_cppn.hpp, written out in float64."""
    if a == SINE:
        return np.sin(p)
    if a == SIGMOID:
        return (1.0 / (1.0 + np.exp(-p)) - 0.5) * 2.0
    if a == GAUSSIAN:
        return np.exp(-(p**2))
    return np.minimum(np.maximum(p, -3.0), 3.0) / 3.0


def _np_outputs(g, inputs, num_outputs):
    """The network evaluated node by node from its connection list (float64)."""
    g = jax.tree_util.tree_map(np.asarray, g)
    n = g.node_mask.shape[0]
    values = np.zeros((n, inputs.shape[1]))
    values[:NUM_INPUTS] = inputs
    for k in range(NUM_INPUTS, n):
        if not g.node_mask[k]:
            continue
        pre = np.zeros(inputs.shape[1])
        for c in np.flatnonzero(g.conn_mask & (g.target == k)):
            pre += float(g.weight[c]) * values[g.source[c]]
        values[k] = _np_act(int(g.activation[k]), pre)
    return values[n - num_outputs :]


def _invariants(g, num_outputs, settings):
    """Every invariant of a CPPNGenome, for a population (numpy)."""
    g = jax.tree_util.tree_map(np.asarray, g)
    n, first_out = settings.max_nodes, settings.max_nodes - num_outputs
    for b in range(g.node_mask.shape[0]):
        nm, cm = g.node_mask[b], g.conn_mask[b]
        src, dst = g.source[b], g.target[b]
        h = int(nm[NUM_INPUTS:first_out].sum())
        assert nm[:NUM_INPUTS].all() and nm[first_out:].all()
        assert nm[NUM_INPUTS : NUM_INPUTS + h].all()  # hidden nodes packed
        assert h <= n - NUM_INPUTS - num_outputs
        assert cm.sum() <= settings.max_connections
        assert np.all(src[cm] < dst[cm])  # feed-forward in slot order
        assert nm[src[cm]].all() and nm[dst[cm]].all()  # between live nodes
        assert np.all(dst[cm] >= NUM_INPUTS) and np.all(src[cm] < first_out)
        assert not src[~cm].any() and not dst[~cm].any()
        assert not g.weight[b][~cm].any()
        assert np.all(np.abs(g.weight[b]) <= settings.weight_range)
        live = g.activation[b][nm]
        assert np.all((live >= 0) & (live < len(ACTIVATIONS)))
        assert not g.activation[b][~nm].any() and not g.activation[b][:NUM_INPUTS].any()


def _assert_genomes_equal(a, b, atol=0.0):
    for name in CPPNGenome._fields:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        if name == "weight":
            np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


@functools.cache
def _render_fn(height, width, channels, coordinates="centred"):
    draw = functools.partial(
        render, height=height, width=width, channels=channels, coordinates=coordinates
    )
    return jax.jit(jax.vmap(draw))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _grow(key, num, channels, settings, steps):
    """``num`` genomes after ``steps`` random mutations each (no selection)."""
    g = jax.vmap(lambda k: init_genome(k, channels, settings))(
        jax.random.split(key, num)
    )

    def step(t, g):
        keys = jax.random.split(jax.random.fold_in(key, t), num)
        return jax.vmap(lambda k, g: mutate(k, g, channels, settings))(keys, g)

    return jax.lax.fori_loop(0, steps, step, g)


@pytest.fixture(scope="module")
def grown():
    """{channels: 64 genomes after 60 random mutations with SMALL limits}."""
    return {c: _grow(jax.random.key(c), 64, c, SMALL, 60) for c in (1, 3)}


@pytest.fixture(scope="module")
def grey():
    """The (28, 28, 1) encoding with SMALL limits and its jitted ``vary``."""
    enc = cppn_encoding((28, 28, 1), SMALL)
    return enc, jax.jit(enc.vary)


# --- colour, activations, inputs ------------------------------------------------------


def test_hsl_to_rgb_matches_colorsys():
    rng = np.random.default_rng(0)
    hsl = rng.uniform(0, 1, (500, 3))
    edges = [0.0, 1 / 6, 0.5, 2 / 3, 1.0]
    hsl = np.concatenate(
        [hsl, [[h, s, v] for h in edges for s in (0, 1) for v in edges]]
    )
    got = np.asarray(hsl_to_rgb(jnp.asarray(hsl, jnp.float32)))
    # colorsys takes (h, l, s)
    want = np.array([colorsys.hls_to_rgb(h, v, s) for h, s, v in hsl])
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_activations_against_hand_computed_values():
    p = jnp.asarray([-4.0, -1.0, 0.0, 0.5, 2.0, np.pi / 2], jnp.float32)
    hand = {
        SINE: [0.7568025, -0.8414710, 0.0, 0.4794255, 0.9092974, 1.0],
        SIGMOID: [-0.9640276, -0.4621172, 0.0, 0.2449187, 0.7615942, 0.6557942],
        GAUSSIAN: [1.125352e-07, 0.3678794, 1.0, 0.7788008, 0.01831564, 0.08480497],
        LINEAR: [-1.0, -1 / 3, 0.0, 1 / 6, 2 / 3, np.pi / 6],
    }
    for a, want in hand.items():
        np.testing.assert_allclose(np.asarray(activation(a, p)), want, atol=1e-6)
        p64 = np.asarray(p, np.float64)
        np.testing.assert_allclose(want, _np_act(a, p64), atol=1e-6)
    # one id per element
    ids = jnp.asarray([SINE, SIGMOID, GAUSSIAN, LINEAR, LINEAR, GAUSSIAN])
    want = [hand[int(a)][i] for i, a in enumerate(ids)]
    np.testing.assert_allclose(np.asarray(activation(ids, p)), want, atol=1e-6)


def test_coordinate_inputs_centred_and_pixel():
    c = coordinate_inputs(2, 4, "centred").reshape(4, 2, 4)
    np.testing.assert_allclose(c[0], [[-0.75, -0.25, 0.25, 0.75]] * 2)
    np.testing.assert_allclose(c[1], [[-0.5] * 4, [0.5] * 4])
    np.testing.assert_allclose(c[2], np.hypot(c[0], c[1]), rtol=1e-6)
    np.testing.assert_array_equal(c[3], 1.0)
    p = coordinate_inputs(2, 4, "pixel").reshape(4, 2, 4)
    np.testing.assert_array_equal(p[0], [[0, 1, 2, 3]] * 2)  # raw indices
    np.testing.assert_array_equal(p[1], [[0] * 4, [1] * 4])
    xn, yn = np.array([-1, -1 / 3, 1 / 3, 1]), np.array([-1.0, 1.0])  # grid ends
    np.testing.assert_allclose(p[2], np.hypot(xn[None, :], yn[:, None]), rtol=1e-6)
    np.testing.assert_allclose(coordinate_inputs(1, 3, "pixel")[2], [1, 0, 1])
    assert coordinate_inputs(5, 7).dtype == np.float32


# --- rendering ------------------------------------------------------------------------


def _x_linear(max_nodes=8):
    out = max_nodes - 1
    return _genome([(0, out, 1.0)], {out: LINEAR}, max_nodes=max_nodes)


def _images(genomes, height, width, channels, coordinates="centred"):
    """Hand-built genomes (of one shape) rendered in one batch: numpy [G, H, W, C]."""
    batch = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *genomes)
    return np.asarray(_render_fn(height, width, channels, coordinates)(batch))


def test_render_known_functions_at_two_resolutions():
    out = 7
    genomes = [
        _x_linear(),  # intensity |clip(x, -3, 3) / 3| = |x| / 3
        _genome([(0, out, 1.0), (3, out, 1.0)], {out: LINEAR}),  # (x + 1) / 3
        _genome([(1, out, 2.0)], {out: GAUSSIAN}),  # exp(-(2 y)^2)
        _genome([(2, out, 1.0)], {out: LINEAR}),  # distance / 3
        # x -> h4 (sine) -> h5 (gaussian) -> out (linear), x -> out; h6 has no input
        _genome(
            [(0, 4, 3.0), (4, 5, 1.5), (5, out, 2.0), (0, out, -0.5), (6, out, 0.7)],
            {4: SINE, 5: GAUSSIAN, 6: GAUSSIAN, out: LINEAR},
            hidden=3,
        ),
    ]
    small = _images(genomes, 28, 20, 1)[..., 0]
    big = _images(genomes, 112, 80, 1)[..., 0]
    for img in (small, big):
        h, w = img.shape[1:]
        x = np.tile((2 * np.arange(w) + 1) / w - 1, (h, 1))
        y = np.tile(((2 * np.arange(h) + 1) / h - 1)[:, None], (1, w))
        chain = 2.0 * np.exp(-((1.5 * np.sin(3 * x)) ** 2)) - 0.5 * x + 0.7
        for got, want in zip(
            img,
            [
                np.abs(x) / 3,
                (x + 1) / 3,
                np.exp(-((2 * y) ** 2)),
                np.hypot(x, y) / 3,
                np.abs(np.clip(chain, -3, 3) / 3),
            ],
            strict=True,
        ):
            np.testing.assert_allclose(got, want, atol=1e-6)
    # pixel-centre coordinates sample one picture: where it is linear ((x + 1) / 3),
    # each 4x4 block of the 4x image averages to the 1x pixel
    np.testing.assert_allclose(
        big[1].reshape(28, 4, 20, 4).mean((1, 3)), small[1], atol=1e-6
    )


def test_render_pixel_coordinates():
    out = 7
    g = _genome([(0, out, 0.1), (1, out, -0.05)], {out: LINEAR})
    img = _images([g], 28, 20, 1, "pixel")[0, ..., 0]
    i, j = np.meshgrid(np.arange(20), np.arange(28))
    want = np.abs(np.clip(0.1 * i - 0.05 * j, -3, 3) / 3)
    np.testing.assert_allclose(img, want, atol=1e-6)


def test_render_colour_reads_hue_saturation_lightness():
    n = 10
    h, s, l_ = n - 3, n - 2, n - 1  # the outputs, in this order
    g = _genome(
        [(3, h, 0.6 * 3), (3, s, -0.9 * 3), (3, l_, 0.4 * 3)],  # bias weights
        {h: LINEAR, s: LINEAR, l_: LINEAR},
        max_nodes=n,
        max_connections=12,
    )
    img = _images([g], 7, 13, 3)[0]
    assert img.shape == (7, 13, 3) and img.dtype == np.float32
    want = colorsys.hls_to_rgb(0.6, 0.4, 0.9)  # |v| of the saturation output
    np.testing.assert_allclose(img, np.broadcast_to(want, img.shape), atol=1e-6)


def test_render_grown_genomes_equals_a_numpy_evaluation(grown):
    inputs = coordinate_inputs(7, 13)
    for channels, pop in grown.items():
        imgs = np.asarray(_render_fn(7, 13, channels)(pop))
        for b in range(0, 64, 4):
            v = np.clip(np.abs(_np_outputs(_at(pop, b), inputs, channels)), 0, 1).T
            if channels == 3:
                v = np.array([colorsys.hls_to_rgb(h, li, s) for h, s, li in v])
            np.testing.assert_allclose(imgs[b].reshape(-1, channels), v, atol=2e-5)


def test_render_shapes_dtype_range(grown):
    for channels, hw in ((1, (1, 1)), (1, (7, 13)), (3, (7, 13))):
        imgs = _render_fn(*hw, channels)(grown[channels])
        assert imgs.shape == (64, *hw, channels) and imgs.dtype == jnp.float32
        assert np.isfinite(imgs).all() and imgs.min() >= 0 and imgs.max() <= 1
    enc = cppn_encoding((7, 13, 1), SMALL)  # the encoding renders as render does
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(enc.render))(grown[1]), _render_fn(7, 13, 1)(grown[1])
    )


# --- genomes and mutation -------------------------------------------------------------


def test_initial_genome():
    s = CPPNSettings(max_nodes=9, max_connections=14)
    keys = jax.random.split(jax.random.key(1), 500)
    many = jax.jit(jax.vmap(lambda k: init_genome(k, 3, s)))(keys)
    g = _at(many, 0)
    np.testing.assert_array_equal(g.node_mask, [1, 1, 1, 1, 0, 0, 1, 1, 1])
    assert int(g.conn_mask.sum()) == 12  # every input -> every output
    np.testing.assert_array_equal(g.source[:12], np.tile(np.arange(4), 3))
    np.testing.assert_array_equal(g.target[:12], np.repeat([6, 7, 8], 4))
    _invariants(many, 3, s)
    w = np.asarray(many.weight)[:, :12]
    assert w.min() >= -10 and w.max() <= 10 and w.min() < -9.9 and w.max() > 9.9
    used = np.bincount(np.asarray(many.activation)[:, -3:].ravel(), minlength=4)
    assert used.min() > 300  # the outputs' activations uniform over the four


@pytest.mark.parametrize("channels", [1, 3])
def test_invariants_after_many_random_mutations(grown, channels):
    g = grown[channels]
    _invariants(g, channels, SMALL)
    hidden = np.asarray(g.node_mask).sum(1) - NUM_INPUTS - channels
    conns = np.asarray(g.conn_mask).sum(1)
    # the limits were reached (and held: adds at the limit are no-ops)
    assert hidden.max() == SMALL.max_nodes - NUM_INPUTS - channels
    assert conns.max() == SMALL.max_connections
    assert len(set(hidden.tolist())) > 1 and len(set(conns.tolist())) > 2
    nm = np.asarray(g.node_mask)[:, NUM_INPUTS:]
    acts = np.asarray(g.activation)[:, NUM_INPUTS:][nm]
    assert set(acts.tolist()) == set(range(len(ACTIVATIONS)))


ONE_ON = {  # settings with one mutation on, applied to the grown grey genomes
    "add_connection": SMALL._replace(**{**OFF, "add_connection": 1.0}),
    "delete_connection": SMALL._replace(**{**OFF, "delete_connection": 1.0}),
    "add_node": SMALL._replace(**{**OFF, "add_node": 1.0}),
    "delete_node": SMALL._replace(**{**OFF, "delete_node": 1.0}),
    "rewire": SMALL._replace(**{**OFF, "rewire_connection": 1.0}),
    "weights": SMALL._replace(**{**OFF, "weight_rate": 1.0}),
    "restricted": SMALL._replace(
        **{**OFF, "activation_rate": 1.0, "add_node": 1.0},
        activations=("sine", "gaussian"),
    ),
}


@pytest.fixture(scope="module")
def one_on(grown):
    """{name: the grown grey genomes after one mutation with ONE_ON[name]} (one
    compiled call)."""

    @jax.jit
    def run(keys, g):
        out = {
            name: jax.vmap(lambda k, g, s=s: mutate(k, g, 1, s))(keys, g)
            for name, s in ONE_ON.items()
        }
        s = ONE_ON["restricted"]
        out["init_restricted"] = jax.vmap(lambda k: init_genome(k, 1, s))(keys)
        return out

    out = run(jax.random.split(jax.random.key(3), 64), grown[1])
    for name, g in out.items():
        _invariants(g, 1, ONE_ON[name.replace("init_", "")])
    return out


def test_restricted_activation_set(one_on):
    g = one_on["init_restricted"]
    assert set(np.asarray(g.activation)[:, -1].tolist()) == {SINE, GAUSSIAN}
    g = one_on["restricted"]
    nm = np.array(g.node_mask)
    nm[:, :NUM_INPUTS] = False
    assert set(np.asarray(g.activation)[nm].tolist()) == {SINE, GAUSSIAN}


def test_each_structural_mutation(grown, one_on):
    start = grown[1]
    limit = SMALL.max_connections

    def counts(g):
        return np.asarray(g.node_mask).sum(1), np.asarray(g.conn_mask).sum(1)

    def unchanged(a, b):
        return np.all([np.all(x == y, axis=1) for x, y in zip(a, b, strict=True)], 0)

    n0, c0 = counts(start)
    full_nodes, full_conns = n0 == SMALL.max_nodes, c0 == limit
    assert full_nodes.any() and full_conns.any() and not (full_nodes | full_conns).all()
    b = one_on["add_connection"]
    np.testing.assert_array_equal(counts(b), (n0, np.minimum(c0 + 1, limit)))
    np.testing.assert_array_equal(unchanged(start, b), full_conns)  # full: a no-op
    b = one_on["delete_connection"]
    np.testing.assert_array_equal(counts(b), (n0, np.maximum(c0 - 1, 0)))
    b = one_on["add_node"]
    room = ~full_nodes & ~full_conns & (c0 > 0)
    np.testing.assert_array_equal(counts(b), (n0 + room, c0 + room))
    np.testing.assert_array_equal(unchanged(start, b), ~room)
    for i in range(64):  # the split connection's weight is on both halves
        live_a, live_b = np.asarray(start.conn_mask)[i], np.asarray(b.conn_mask)[i]
        wa = collections.Counter(np.asarray(start.weight)[i][live_a].tolist())
        wb = collections.Counter(np.asarray(b.weight)[i][live_b].tolist())
        extra = wb - wa
        assert not wa - wb and sum(extra.values()) == int(room[i])
        assert all(w in wa for w in extra)
    b = one_on["delete_node"]
    np.testing.assert_array_equal(counts(b)[0], n0 - (n0 > 5))
    b = one_on["rewire"]
    np.testing.assert_array_equal(counts(b), (n0, c0))
    moved = (np.asarray(start.source) != np.asarray(b.source)) | (
        np.asarray(start.target) != np.asarray(b.target)
    )
    assert moved.sum(1).max() == 1 and moved.any(1).mean() > 0.7
    np.testing.assert_array_equal(start.weight, b.weight)
    b = one_on["weights"]
    live = np.asarray(start.conn_mask)
    changed = np.asarray(start.weight) != np.asarray(b.weight)
    assert changed[live].mean() > 0.9 and not changed[~live].any()
    b = one_on["restricted"]  # activations redrawn (and one node added)
    assert (np.asarray(start.activation) != np.asarray(b.activation)).any()
    np.testing.assert_array_equal(np.asarray(b.activation)[:, :NUM_INPUTS], 0)


def test_same_key_same_genome(grown, grey):
    enc, vary = grey
    init = jax.jit(enc.init)
    a = init(jax.random.key(7))
    _assert_genomes_equal(a, init(jax.random.key(7)))
    assert not np.array_equal(a.weight, init(jax.random.key(8)).weight)
    a0, b0 = _at(grown[1], 0), _at(grown[1], 1)
    c1 = vary(jax.random.key(5), a0, b0, jnp.int32(3))
    again = vary(jax.random.key(5), a0, b0, jnp.int32(3))
    c2 = vary(jax.random.key(6), a0, b0, jnp.int32(3))
    for x, y in zip(c1, again, strict=True):
        _assert_genomes_equal(x, y)
    assert any(
        not np.array_equal(x.weight, z.weight) for x, z in zip(c1, c2, strict=True)
    )


def test_vmap_equals_loop_and_no_retrace(grown, grey):
    enc, vary = grey

    @jax.jit
    @chex.assert_max_traces(n=1)
    def children(keys, a, b):
        c1, c2 = jax.vmap(enc.vary, in_axes=(0, 0, 0, None))(keys, a, b, jnp.int32(0))
        return (c1, c2), (jax.vmap(enc.render)(c1), jax.vmap(enc.render)(c2))

    a, b = _at(grown[1], slice(0, 4)), _at(grown[1], slice(4, 8))
    keys = jax.random.split(jax.random.key(2), 4)
    batched, images = children(keys, a, b)
    again = children(jax.random.split(jax.random.key(1), 4), b, a)  # no retrace
    assert again[1][0].shape == (4, 28, 28, 1)
    render_one = jax.jit(enc.render)
    for i in range(4):
        one = vary(keys[i], _at(a, i), _at(b, i), jnp.int32(0))
        for child, batch, image in zip(one, batched, images, strict=True):
            _assert_genomes_equal(child, _at(batch, i), atol=1e-5)
            np.testing.assert_allclose(render_one(child), image[i], atol=1e-5)


# --- bad input ------------------------------------------------------------------------

PROBABILITIES = [
    ("weight_rate", 1.5),
    ("activation_rate", -0.1),
    ("add_connection", 2),
    ("delete_connection", -1),
    ("rewire_connection", 1.01),
    ("add_node", True),
    ("delete_node", "0.5"),
]


@pytest.mark.parametrize(
    "change, shape, match",
    [
        (dict([(name, v)]), (28, 28, 1), f"{name}: expected a probability in")
        for name, v in PROBABILITIES
    ]
    + [
        (dict(max_nodes=4), (28, 28, 1), "max_nodes: expected an integer >= 5"),
        (dict(max_nodes=6), (28, 28, 3), "max_nodes: expected an integer >= 7"),
        (dict(max_nodes=16.0), (28, 28, 1), "max_nodes: expected an integer >= 5"),
        (dict(max_connections=3), (28, 28, 1), "max_connections: .* >= 4"),
        (dict(max_connections=11), (28, 28, 3), "max_connections: .* >= 12"),
        (dict(coordinates="normalised"), (28, 28, 1), "coordinates: expected one of"),
        (dict(activations=("sine", "relu")), (28, 28, 1), "activations: expected"),
        (dict(activations=()), (28, 28, 1), "activations: expected"),
        (dict(activations=("sine", "sine")), (28, 28, 1), "activations: expected"),
        (dict(activations="sine"), (28, 28, 1), "activations: expected"),
        (dict(eta_mutation=0.0), (28, 28, 1), "eta_mutation: expected a finite"),
        (dict(weight_range=float("inf")), (28, 28, 1), "weight_range: expected a fin"),
    ],
)
def test_bad_settings(change, shape, match):
    with pytest.raises(ValueError, match=match):
        cppn_encoding(shape, CPPNSettings(**change))


@pytest.mark.parametrize(
    "shape", [(28, 28), (0, 28, 1), (28, 28, 2), "28x28", (28.0, 28, 1)]
)
def test_bad_image_shape(shape):
    with pytest.raises(ValueError, match="image_shape: expected"):
        cppn_encoding(shape)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0, 28, 1), {}, "height: expected a positive integer"),
        ((28, -1, 1), {}, "width: expected a positive integer"),
        ((28, 28.0, 1), {}, "width: expected a positive integer"),
        ((28, 28, 2), {}, "channels: expected 1"),
        ((28, 28, 1), dict(coordinates="raw"), "coordinates: expected one of"),
    ],
)
def test_bad_render_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        render(_x_linear(), *args, **kwargs)


def test_bad_genome_arguments():
    with pytest.raises(ValueError, match="genome: expected at least 7 node slots"):
        render(_genome([], {4: LINEAR}, max_nodes=5), 8, 8, 3)
    with pytest.raises(ValueError, match="num_outputs: expected 1"):
        init_genome(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="num_outputs: expected 1"):
        mutate(jax.random.key(0), _x_linear(), 0)
    with pytest.raises(ValueError, match="max_nodes: expected an integer >= 7"):
        init_genome(jax.random.key(0), 3, CPPNSettings(max_nodes=6))
    with pytest.raises(ValueError, match="height: expected"):
        coordinate_inputs(0, 3)


# --- the search -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(lenet):
    module, variables, _ = lenet
    return target_probs(functools.partial(module.apply, variables))


def test_generations_improve_the_archive_and_resume(target, tmp_path):
    enc = cppn_encoding((28, 28, 1), SMALL)
    state = init_state(jax.random.key(0), enc, target, pop_size=32, num_cells=10)
    step = make_generation(enc, target, pop_size=32)
    key = jax.random.key(1)
    final, m = driver.run(step, state, key, num_steps=20, chunk_size=10, progress=False)
    fit = np.asarray(m["fitness"])  # [20, 10]
    start = np.asarray(state.archive.fitness)
    assert np.all(np.diff(np.where(np.isfinite(fit), fit, -1), axis=0) >= 0)
    filled = np.isfinite(start)
    assert np.isfinite(fit[-1]).sum() >= filled.sum()
    assert np.all(fit[-1][filled] >= start[filled])
    assert fit[-1][filled].sum() > start[filled].sum()
    _invariants(final.archive.genomes, 1, SMALL)
    # resumable and reproducible: two chunks with a checkpoint == one call
    again, m2 = driver.run(
        step,
        state,
        key,
        num_steps=20,
        chunk_size=10,
        checkpoint_dir=tmp_path / "ck",
        progress=False,
    )
    np.testing.assert_array_equal(m2["fitness"], m["fitness"])
    _assert_genomes_equal(again.archive.genomes, final.archive.genomes)
