"""``pixjax run augment-finetune``: small-distance augmentation and its defence tests.

Run directory::

    models/<name>/checkpoints/   orbax CheckpointManager (one step per epoch; resume)
    models/<name>/model/         the finished model (metadata + variables)
    results.json, results.csv, report.md, robustness.png, examples.png

A killed run resumes where it stopped: finished models are reused, the one in progress
continues from its last epoch, and the parameters equal those of an uninterrupted run.

Keys: the root key ``key(seed)`` is split by purpose (:func:`pixjax.keys.purpose_keys`):
``train`` (split by :func:`pixjax.experiments.fitting.fit` into the data order and the
augmentation; the same for every variant, so all see the same batches) and
``evaluation`` (the random pixel changes, the same for every model, so the McNemar
tests compare the models on identical changed images); ``init`` only fills the
argument of :func:`pixjax.training.create_state` (fine-tuning starts from the
checkpoint's weights, so nothing is drawn from it). FGSM draws nothing.

``compute`` returns the results (the examples figure's images are stored in them as
uint8); ``write``, ``plots`` and ``report`` work from ``results.json`` alone, so
``pixjax report WORKDIR`` rebuilds the report and the figures.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import jax
import numpy as np
import optax
from pixjax.experiments import common, reporting
from pixjax.experiments.adversarial import check_dataset_attack, eps_curve, fgsm_dataset
from pixjax.experiments.configs.augment_finetune import Config
from pixjax.experiments.fitting import fit

from pixjax import checkpoints, data, models
from pixjax.attacks import check_args
from pixjax.evaluation import (
    make_sweeper,
    mcnemar,
    run_sweep,
    summarize_pixel_outputs,
    summarize_seeds,
)
from pixjax.evaluation.predict import predict
from pixjax.keys import purpose_keys
from pixjax.perturb import PixelConfig, pixel_change
from pixjax.training import (
    check_batchnorm_batch,
    create_state,
    gaussian_noise,
    identity,
    random_shifts,
    small_distance,
)

DESCRIPTION = (
    "fine-tune Model-N on small-distance samples (+ baselines); defence report"
)
BASELINES = ("noise", "shift", "repeat")
EPS_CURVE = tuple(float(e) for e in np.linspace(0, 0.3, 7))
OPTIMIZERS = ("adam", "sgd")
# the purposes of the subkeys of key(seed) (pixjax.keys.purpose_keys); fit splits the
# "train" key into the data order and the augmentation
PURPOSES = ("init", "train", "evaluation")
EXAMPLES = 6  # transfer examples shown in examples.png (stored in the results)
# what each McNemar test compares: clean images, pixel-changed images (seed 0 of the
# sweep, largest Num), FGSM crafted on the original, FGSM crafted on the model itself
MCNEMAR = ("clean", "changed", "transfer", "white_box")


@dataclasses.dataclass(frozen=True)
class Setup:
    module: Any
    variables: Any
    meta: dict[str, Any]
    train: data.Dataset  # the class-balanced training subset
    test: data.Dataset


def validate(config: Config) -> Setup:
    """Checks the configuration and loads the model and the data (no writes)."""
    common.require_finite(config)
    if not config.nums:
        raise common.ConfigError(
            "nums: expected at least one N (pixels changed), got none"
        )
    bad = [b for b in config.baselines if b not in BASELINES]
    if bad:
        raise common.ConfigError(
            f"baselines: expected a subset of {BASELINES}, got {bad}"
        )
    common.require_positive(
        config,
        "epochs",
        "batch_size",
        "train_images",
        "batch_size_eval",
        "learning_rate",
    )
    if config.optimizer not in OPTIMIZERS:
        raise common.ConfigError(
            f"optimizer: expected one of {OPTIMIZERS}, got {config.optimizer!r}"
        )
    if "noise" in config.baselines and not config.noise_sigma > 0:
        raise common.ConfigError(f"noise_sigma: expected > 0, got {config.noise_sigma}")
    if "shift" in config.baselines and config.max_shift <= 0:
        raise common.ConfigError(f"max_shift: expected > 0, got {config.max_shift}")
    common.require_nonempty(config, "eval_nums", "eval_seeds")
    try:
        check_args(config.eps, "linf", loss=config.loss)
    except ValueError as e:
        raise common.ConfigError(str(e)) from None
    train = data.load(config.dataset, config.train_split)
    test = data.load(config.dataset, config.test_split, limit=config.eval_limit)
    if (train.labels is None or test.labels is None) and not config.labels_from_model:
        raise common.ConfigError(
            f"dataset: {config.dataset!r} has no labels; set labels_from_model=true to "
            "train and evaluate against the original model's clean predictions"
        )
    module, variables, meta = common.load_checkpoint(
        config.model, config.checkpoint, train.image_shape
    )
    if config.labels_from_model:
        # Unlabelled data (photos): the original is right by definition; the question
        # is how far pixel changes, FGSM and fine-tuning move each model from it.
        bs = config.batch_size_eval
        train = train._replace(
            labels=predict(module.apply, variables, train.images, bs)[0]
        )
        test = test._replace(
            labels=predict(module.apply, variables, test.images, bs)[0]
        )
    for eps in (config.eps, EPS_CURVE):
        check_dataset_attack(
            module.apply,
            variables,
            test.images,
            test.labels,
            eps,
            norm="linf",
            loss=config.loss,
            batch_size=config.batch_size_eval,
            one_eps=eps is config.eps,
        )
    data.check_labels(
        train.labels,
        models.num_logits(module.apply, variables, train.image_shape),
        argument=f"labels of {train.name}",
    )
    shape = train.image_shape
    if "shift" in config.baselines and config.max_shift >= min(shape[:2]):
        raise common.ConfigError(
            f"max_shift: expected less than the image size {shape[:2]}, got "
            f"{config.max_shift}"
        )
    common.require_nums(config, "nums", shape)
    common.require_nums(config, "eval_nums", shape)
    try:  # every step trains on the clean batch and its augmented copies
        check_batchnorm_batch(module, variables, 2 * config.batch_size, shape)
    except ValueError as e:
        raise common.ConfigError(str(e)) from None
    subset = balanced_subset(train.labels, config.train_images)
    if config.batch_size > len(subset):
        raise common.ConfigError(
            f"batch_size: expected at most train_images={len(subset)}, got "
            f"{config.batch_size}"
        )
    return Setup(module, variables, meta, train.take(subset), test)


def balanced_subset(labels: np.ndarray, n: int) -> np.ndarray:
    """The first ``n // classes`` images of each class (in index order), sorted; all
    images when ``n`` is at least their number."""
    if n >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    per = n // len(classes)
    if per == 0:
        raise common.ConfigError(
            f"train_images: expected at least one per class ({len(classes)}), got {n}"
        )
    idx = []
    for c in classes:
        have = np.flatnonzero(labels == c)
        if len(have) < per:
            raise common.ConfigError(
                f"train_images: class {c} has only {len(have)} training images, "
                f"{per} needed"
            )
        idx.append(have[:per])
    return np.sort(np.concatenate(idx))


def variants(config: Config, shape) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [
        (f"model-{n}", small_distance(shape, n)) for n in config.nums
    ]
    for b in config.baselines:
        if b == "noise":
            out.append(
                (f"noise-{config.noise_sigma:g}", gaussian_noise(config.noise_sigma))
            )
        elif b == "shift":
            out.append((f"shift-{config.max_shift}", random_shifts(config.max_shift)))
        else:
            out.append(("repeat", identity()))
    return out


def train_variants(
    config: Config,
    setup: Setup,
    run_dir: pathlib.Path,
    keys: dict[str, jax.Array],
    command: str,
) -> dict[str, Any]:
    """The original's variables and every variant's, fine-tuned (or reloaded from a
    finished ``models/<name>/model``; an unfinished one resumes from its checkpoints).
    Every variant uses ``keys["train"]``: the same batches (equal budget)."""
    module, variables, train = setup.module, setup.variables, setup.train
    shape = train.image_shape
    tx = (
        optax.adam(config.learning_rate)
        if config.optimizer == "adam"
        else optax.sgd(config.learning_rate, momentum=0.9)
    )
    trained = {"original": variables}
    for name, augment in variants(config, shape):
        model_dir = pathlib.Path(run_dir) / "models" / name
        if (model_dir / "model" / checkpoints.METADATA).exists():
            _, trained[name], _ = checkpoints.load_model(
                model_dir / "model", arch=config.model
            )
            continue
        state = create_state(
            module,
            keys["init"],  # unused: the weights come from the checkpoint
            shape,
            tx,
            variables["params"],
            variables.get("batch_stats"),
        )
        state, _ = fit(
            state,
            train.images,
            train.labels,
            run_dir=model_dir,
            epochs=config.epochs,
            batch_size=config.batch_size,
            key=keys["train"],
            augment=augment,
            paired=True,
            desc=name,
            progress=config.progress,
        )
        trained[name] = state.variables
        model_meta = {
            **common.run_metadata(config, command=command),
            "arch": config.model,
            "model_kwargs": setup.meta.get("model_kwargs", {}),
            "input_shape": list(shape),
            "class_names": setup.meta.get("class_names", []),
            "variant": name,
            "fine_tuned_from": str(config.checkpoint),
            "train_images": len(train.images),
            "seed": config.seed,
        }
        checkpoints.save_model(model_dir / "model", trained[name], model_meta)
    return trained


def _pixel_changes(config: Config, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per Num: the seed summary (mean, sample sd ddof=1, pooled Wilson interval) of
    the accuracy, the flip rate and the Pixel-index over the sweep's seeds."""
    k_total = len(config.eval_nums)
    return {
        str(n): summarize_seeds(
            rows[k::k_total],  # row s * K + k: configuration k, every seed
            {
                "accuracy": ("correct", "n"),
                "flip_rate": ("flips", "clean_correct"),
                "pixel_index": None,
            },
        )
        for k, n in enumerate(config.eval_nums)
    }


def evaluate_models(
    config: Config, module: Any, trained: dict[str, Any], test: data.Dataset, key
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Every model's clean accuracy, pixel-change robustness (the same changes for
    every model, from ``key``), FGSM transfer and white-box results, eps curve and
    McNemar tests against the original; and the transfer examples of the figure."""
    shape = test.image_shape
    labels = test.labels
    grid = [PixelConfig(n) for n in config.eval_nums]
    change = pixel_change(shape, max(config.eval_nums))
    sweeper = make_sweeper(module.apply, change)
    params = change.make_params(grid)  # stacked [K], validated
    orig = trained["original"]
    bs = config.batch_size_eval
    fgsm_args = dict(loss=config.loss, batch_size=bs)
    adv_orig = fgsm_dataset(
        module.apply, orig, test.images, labels, config.eps, **fgsm_args
    )
    transfer = (adv_orig.clean_pred == labels) & (adv_orig.pred != labels)
    num_classes = max(int(labels.max()) + 1, len(test.class_names))
    n_max = str(max(config.eval_nums))
    results, raw, transfer_pred = {}, {}, {}
    for name, v in trained.items():
        out = run_sweep(
            sweeper,
            v,
            test.images,
            params,
            key,
            seeds=config.eval_seeds,
            batch_size=bs,
            progress=False,
        )
        rows = summarize_pixel_outputs(
            out, labels, grid, config.eval_seeds, shape, num_classes
        )
        by_num = _pixel_changes(config, rows)
        adv_own = fgsm_dataset(
            module.apply, v, test.images, labels, config.eps, **fgsm_args
        )
        own_ok = adv_own.clean_pred == labels
        t_pred, _ = predict(module.apply, v, adv_orig.images[transfer], bs)
        still = t_pred != labels[transfer]
        results[name] = {
            "clean_accuracy": float(np.mean(out.clean_pred == labels)),
            "pixel_changes": by_num,
            # at the largest Num, mean over the seeds
            "pixel_index": by_num[n_max]["pixel_index_mean"],
            "fgsm_transfer_still_adversarial": (
                float(np.mean(still)) if len(still) else float("nan")
            ),
            "fgsm_transfer_examples": int(transfer.sum()),
            "fgsm_white_box_success": (
                float(np.mean(adv_own.pred[own_ok] != labels[own_ok]))
                if own_ok.any()
                else float("nan")
            ),
            # images whose input gradient was exactly zero (FGSM could not move
            # them): white-box FGSM on the model itself, and among its correct images
            "fgsm_zero_gradient": int(adv_own.zero_gradient.sum()),
            "fgsm_zero_gradient_attacked": int((adv_own.zero_gradient & own_ok).sum()),
            "fgsm_attacked": int(own_ok.sum()),
            "fgsm_eps_curve": eps_curve(
                module.apply, v, test.images, labels, EPS_CURVE, **fgsm_args
            ),
        }
        k_max = len(grid) - 1  # first seed, largest Num
        raw[name] = {
            "clean": out.clean_pred == labels,
            "changed": out.pred[k_max] == labels,
            "transfer": t_pred == labels[transfer],
            "white_box": adv_own.pred == labels,
        }
        transfer_pred[name] = t_pred
    for name in results:
        results[name]["mcnemar_vs_original"] = {
            what: mcnemar(raw["original"][what], raw[name][what]) for what in MCNEMAR
        }
    return results, _examples(results, test, adv_orig, transfer, transfer_pred)


def _examples(results, test, adv_orig, transfer, transfer_pred) -> dict | None:
    """A few FGSM examples crafted on the original that fool it (uint8 images and
    the predictions of the original and of the small-distance model that resists the
    transfer best), for the examples figure; ``None`` without such examples."""
    idx = np.flatnonzero(transfer)
    if not len(idx):
        return None
    step = max(1, len(idx) // EXAMPLES)
    take = np.arange(0, len(idx), step)[:EXAMPLES]  # positions among transfer images
    pick = idx[take]
    sd = [k for k in results if k.startswith("model-")]
    best = min(sd, key=lambda k: results[k]["fgsm_transfer_still_adversarial"])
    adversarial = common.pack_uint8(adv_orig.images[pick])  # FGSM on the original
    return {  # the layout of reporting.examples_figure
        "index": pick.tolist(),
        "labels": test.labels[pick].tolist(),
        "clean_pred": adv_orig.clean_pred[pick].tolist(),
        "original": common.pack_uint8(test.images[pick]),
        "rows": [
            {
                "title": "FGSM on original\n(original's pred)",
                "images": adversarial,
                "pred": adv_orig.pred[pick].tolist(),
            },
            {
                "title": f"same images\n{best}'s pred",
                "images": adversarial,
                "pred": transfer_pred[best][take].tolist(),
            },
        ],
        "model": best,
    }


def _verdict(results, config: Config) -> dict[str, Any]:
    n_max = str(max(config.eval_nums))
    sd = {k: v for k, v in results.items() if k.startswith("model-")}
    base = {k: v for k, v in results.items() if k not in sd and k != "original"}
    key_pc = lambda item: item[1]["pixel_changes"][n_max]["accuracy_mean"]  # noqa: E731
    key_tr = lambda item: -item[1]["fgsm_transfer_still_adversarial"]  # noqa: E731
    best_sd = max(sd.items(), key=key_pc)
    out = {"best_small_distance_pixel_changes": best_sd[0]}
    original = results["original"]["pixel_changes"][n_max]["accuracy_mean"]
    parts = [
        f"At Num={n_max}: original {100 * original:.2f}%"
        f", best small-distance model {best_sd[0]} "
        f"{100 * key_pc(best_sd):.2f}%"
    ]
    if base:
        best_b = max(base.items(), key=key_pc)
        out["best_baseline_pixel_changes"] = best_b[0]
        out["small_distance_beats_baselines_on_pixel_changes"] = key_pc(
            best_sd
        ) > key_pc(best_b)
        parts.append(f"best baseline {best_b[0]} {100 * key_pc(best_b):.2f}%")
        best_sd_t = max(sd.items(), key=key_tr)
        best_b_t = max(base.items(), key=key_tr)
        out["small_distance_beats_baselines_on_fgsm_transfer"] = key_tr(
            best_sd_t
        ) > key_tr(best_b_t)
        parts.append(
            f"FGSM (eps {config.eps}) transfer still adversarial: original 100%, "
            f"{best_sd_t[0]} {-100 * key_tr(best_sd_t):.1f}%, "
            f"{best_b_t[0]} {-100 * key_tr(best_b_t):.1f}%"
        )
    out["summary"] = "; ".join(parts)
    return out


def compute(
    config: Config, setup: Setup, *, run_dir: pathlib.Path, command: str
) -> dict[str, Any]:
    """Fine-tunes every variant (resumable, under ``run_dir/models``), evaluates them
    and the original; returns the results."""
    t0 = time.perf_counter()
    keys = purpose_keys(jax.random.key(config.seed), *PURPOSES)
    trained = train_variants(config, setup, run_dir, keys, command)
    t_train = time.perf_counter()
    results, examples = evaluate_models(
        config, setup.module, trained, setup.test, keys["evaluation"]
    )
    t_end = time.perf_counter()
    return {
        "metadata": common.run_metadata(
            config,
            command=command,
            model=config.model,
            dataset=setup.test.name,
            train_images=len(setup.train.images),
            test_images=len(setup.test.images),
            class_names=list(setup.test.class_names),
            timings={
                "train_s": t_train - t0,
                "evaluate_s": t_end - t_train,
                "total_s": t_end - t0,
            },
        ),
        "models": results,
        "verdict": _verdict(results, config),
        "examples": examples,
    }


# --- from the results document alone ---------------------------------------------------


def _float(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def write(workdir: pathlib.Path, doc: dict[str, Any]) -> None:
    """``results.csv``: one row per model (accuracy per Num: mean over the seeds)."""
    rows = []
    for name, r in doc["models"].items():
        row = {"model": name, "clean_accuracy": r["clean_accuracy"]}
        for n, v in r["pixel_changes"].items():
            row[f"accuracy_num{n}"] = v["accuracy_mean"]
        row |= {
            "pixel_index": r["pixel_index"],
            "fgsm_transfer_still_adversarial": r["fgsm_transfer_still_adversarial"],
            "fgsm_white_box_success": r["fgsm_white_box_success"],
            "fgsm_zero_gradient": r["fgsm_zero_gradient"],
            "mcnemar_changed_p": r["mcnemar_vs_original"]["changed"]["p_value"],
        }
        rows.append(row)
    common.write_csv_atomic(pathlib.Path(workdir) / "results.csv", rows)


def plots(workdir: pathlib.Path, doc: dict[str, Any]) -> list[str]:
    """``robustness.png`` (accuracy under pixel changes per Num, white-box FGSM per
    eps) and, with transfer examples, ``examples.png``."""
    workdir = pathlib.Path(workdir)
    files = [_robustness_plot(workdir, doc)]
    if doc.get("examples"):
        reporting.examples_figure(
            workdir / "examples.png", doc["examples"], doc["metadata"]["class_names"]
        )
        files.append("examples.png")
    return files


def _robustness_plot(workdir: pathlib.Path, doc: dict[str, Any]) -> str:
    plt = reporting._plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    nums = list(doc["metadata"]["config"]["eval_nums"])
    for name, r in doc["models"].items():
        pc = r["pixel_changes"]
        y = [100 * _float(pc[str(n)]["accuracy_mean"]) for n in nums]
        e = [100 * _float(pc[str(n)]["accuracy_std"]) for n in nums]
        style = "-" if name.startswith("model-") else "--"
        width = 2.5 if name == "original" else 1.2
        axes[0].errorbar(
            nums, y, yerr=e, marker="o", ms=3, capsize=2, ls=style, label=name, lw=width
        )
        c = r["fgsm_eps_curve"]
        axes[1].plot(
            c["eps"],
            [100 * _float(v) for v in c["success_rate"]],
            marker="o",
            ms=3,
            ls=style,
            label=name,
            lw=width,
        )
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(nums, [str(n) for n in nums])
    axes[0].set_xlabel("changed pixels (Num), values 0..255")
    axes[0].set_ylabel("accuracy after change (%), mean +- sample sd over seeds")
    axes[0].set_title("random pixel changes (Table 10)")
    axes[1].set_xlabel("FGSM eps (L-inf)")
    axes[1].set_ylabel("white-box FGSM success among correct (%)")
    axes[1].set_title("FGSM vs eps, each model attacked directly")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    common.save_figure_atomic(fig, workdir / "robustness.png")
    plt.close(fig)
    return "robustness.png"


def _mcnemar_cell(m: dict[str, Any]) -> str:
    p = "n/a" if m["p_value"] is None else f"{m['p_value']:.3g}"
    return f"b={m['b']} c={m['c']} p={p}"


def report(doc: dict[str, Any]) -> str:
    """The Markdown report (Tables 10 and 11, McNemar tests), from the document."""
    f = reporting.fmt_pct
    meta = doc["metadata"]
    cfg = meta["config"]
    res = doc["models"]
    nums = list(cfg["eval_nums"])
    seeds = list(cfg["eval_seeds"])
    b = cfg["batch_size"]
    lines = [
        "# Small-distance augmentation and its defence tests",
        "",
        f"- command: `{meta['command']}`",
        f"- fine-tuned from `{cfg['checkpoint']}` on {meta['train_images']} "
        f"training images, {cfg['epochs']} epochs, {cfg['optimizer']} lr "
        f"{cfg['learning_rate']}, batch {b} clean + {b} augmented copies (every "
        "variant sees the same batches: equal budget)",
        f"- evaluated on {meta['dataset']}; pixel changes: values 0..255 anywhere, "
        f"seeds {seeds}; FGSM L-inf eps {cfg['eps']}, loss {cfg['loss']}, 8-bit",
        *(
            [
                "- labels: the original model's clean predictions "
                "(labels_from_model; the original is right by definition, and training "
                "and test images are the same photos when the dataset has one split)"
            ]
            if cfg["labels_from_model"]
            else []
        ),
        f"- whole run {meta['timings']['total_s']:.1f} s",
        "",
        f"**Verdict:** {doc['verdict']['summary']}.",
        "",
        "## Accuracy under random pixel changes (Table 10)",
        "",
        f"Num columns: accuracy after the change, mean +- sample sd (ddof=1) over the "
        f"seeds {seeds}"
        + (" (0 with a single seed)" if len(seeds) == 1 else "")
        + "; results.json also holds the 95% Wilson interval of the counts pooled "
        f"over the seeds. Pixel-index at Num {max(nums)}, mean over the seeds (lower "
        "is more robust).",
        "",
        reporting.markdown_table(
            ["model", "clean %", *[f"Num {n} %" for n in nums], "Pixel-index"],
            [
                [
                    name,
                    f(r["clean_accuracy"]),
                    *[
                        f"{f(r['pixel_changes'][str(n)]['accuracy_mean'])} +- "
                        f"{f(r['pixel_changes'][str(n)]['accuracy_std'])}"
                        for n in nums
                    ],
                    reporting.fmt_num(r["pixel_index"]),
                ]
                for name, r in res.items()
            ],
        ),
        "",
        "## FGSM (Table 11)",
        "",
        "still adversarial = FGSM examples crafted on the original (that fool it) which "
        "the model still misclassifies (transfer); white-box = FGSM crafted on the model "
        "itself, success among its correctly classified images; zero gradient = "
        "correctly classified images whose input gradient was exactly zero (white-box "
        "FGSM could not move them: not evidence of robustness).",
        "",
        reporting.markdown_table(
            [
                "model",
                "transfer: still adversarial %",
                "white-box success %",
                "white-box zero gradient",
            ],
            [
                [
                    name,
                    f(r["fgsm_transfer_still_adversarial"]),
                    f(r["fgsm_white_box_success"]),
                    f"{r['fgsm_zero_gradient_attacked']} of {r['fgsm_attacked']}",
                ]
                for name, r in res.items()
            ],
        ),
        "",
        "## McNemar tests against the original (exact two-sided p; b = original right "
        "and model wrong, c = the reverse)",
        "",
        reporting.markdown_table(
            [
                "model",
                "clean",
                f"Num {max(nums)} (seed {seeds[0]})",
                "FGSM transfer",
                "FGSM white-box",
            ],
            [
                [
                    name,
                    *[_mcnemar_cell(r["mcnemar_vs_original"][w]) for w in MCNEMAR],
                ]
                for name, r in res.items()
                if name != "original"
            ],
        ),
        "",
        "![robustness](robustness.png)",
    ]
    if doc.get("examples"):
        lines.append("![examples](examples.png)")
    return "\n".join(lines) + "\n"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    return [doc["verdict"]["summary"]]
