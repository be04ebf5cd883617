"""The resumable driver's two loops on the shipped training recipe: a chunk (one
epoch of LeNet-5 training on the bundled 3000 MNIST training digits) as one compiled
``lax.scan`` against a host loop of the jitted step, same run, same numbers.

XLA:CPU compiles convolution gradients inside a ``scan`` worse (jax#12868), which is
why ``experiments/fitting.fit`` uses ``loop="python"`` on the CPU and ``"scan"``
elsewhere. Usage::

    python benchmarks/bench_driver.py [--epochs 2] [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks._common import publish
from pixjax import data, driver, models
from pixjax.training import FitData, FitState, create_state, fit_order, make_fit_step


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--write", action="store_true", help="store in RESULTS.md")
    args = p.parse_args(argv)

    ds = data.load("mnist-sample", "train")
    module = models.get_model("lenet5")
    order = fit_order(jax.random.key(1), args.epochs, len(ds.images), args.batch_size)
    per_epoch = int(order.shape[1])
    fit_data = FitData(
        jnp.asarray(ds.images),
        jnp.asarray(ds.labels, jnp.int32),
        order,
        jax.random.key(2),
    )
    step = make_fit_step()
    times: dict[str, list[float]] = {"python": [], "scan": []}
    losses = {}
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        for loop in times:
            state = FitState(
                create_state(module, jax.random.key(0), (28, 28, 1), optax.adam(1e-3)),
                jnp.zeros((), jnp.int32),
            )
            t = time.perf_counter()
            final, metrics = driver.run(
                step,
                state,
                fit_data,
                num_steps=args.epochs * per_epoch,
                chunk_size=per_epoch,
                loop=loop,
                progress=False,
            )
            jax.block_until_ready(final)
            times[loop].append(time.perf_counter() - t)
            losses[loop] = np.asarray(metrics["loss"], np.float64)
    med = {k: statistics.median(v) for k, v in times.items()}
    gap = float(np.max(np.abs(losses["python"] - losses["scan"])))
    body = "\n".join(
        [
            f"LeNet-5, {len(ds.images)} images, batch {args.batch_size}, "
            f"{args.epochs} epochs ({args.epochs * per_epoch} steps), one chunk per "
            f"epoch, compile included; median of {args.repeats} interleaved runs "
            f"({time.strftime('%Y-%m-%d')}):",
            "",
            "| loop | seconds | vs scan |",
            "|---|---:|---:|",
            f"| python (host loop of the jitted step) | {med['python']:.2f} | "
            f"{med['scan'] / med['python']:.2f}x |",
            f"| scan (one lax.scan per chunk) | {med['scan']:.2f} | 1.00x |",
            "",
            f"Largest per-step loss difference between the two: {gap:.2e} (float "
            "rounding).",
        ]
    )
    publish("Resumable driver: host loop vs lax.scan (training)", body, args.write)


if __name__ == "__main__":
    main()
