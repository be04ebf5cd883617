"""``pixjax run augment-finetune``: small-distance augmentation and its defence tests.

Run directory::

    models/<name>/checkpoints/   orbax CheckpointManager (one step per epoch; resume)
    models/<name>/model/         the finished model (metadata + variables)
    results.json, results.csv, report.md, robustness.png, fgsm_eps.png, examples.png

A killed run resumes where it stopped: finished models are reused, the one in progress
continues from its last epoch, and the parameters equal those of an uninterrupted run.
"""

from __future__ import annotations

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
from pixjax.experiments.pixel_change import load_model
from pixjax import checkpoints, data, models
from pixjax.attacks import check_args
from pixjax.evaluation import make_sweeper, mcnemar, pixel_index, run_sweep, summarize
from pixjax.perturb import PixelConfig, pixel_change
from pixjax.training import (
    check_batchnorm_batch,
    create_state,
    gaussian_noise,
    identity,
    predict,
    random_shifts,
    small_distance,
)

DESCRIPTION = (
    "fine-tune Model-N on small-distance samples (+ baselines); defence report"
)
BASELINES = ("noise", "shift", "repeat")
EPS_CURVE = tuple(float(e) for e in np.linspace(0, 0.3, 7))
OPTIMIZERS = ("adam", "sgd")


def validate(config: Config):
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
    module, variables, meta = load_model(config, train.image_shape)
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
    return module, variables, meta, train.take(subset), test


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


def train_variants(config, module, variables, meta, train, workdir):
    shape = train.image_shape
    tx = (
        optax.adam(config.learning_rate)
        if config.optimizer == "adam"
        else optax.sgd(config.learning_rate, momentum=0.9)
    )
    trained = {"original": variables}
    for name, augment in variants(config, shape):
        run_dir = workdir / "models" / name
        if (run_dir / "model" / checkpoints.METADATA).exists():
            _, trained[name], _ = checkpoints.load_model(
                run_dir / "model", arch=config.model
            )
            continue
        state = create_state(
            module,
            jax.random.key(0),
            shape,
            tx,
            variables["params"],
            variables.get("batch_stats"),
        )
        state, history = fit(
            state,
            train.images,
            train.labels,
            run_dir=run_dir,
            epochs=config.epochs,
            batch_size=config.batch_size,
            key=jax.random.key(config.seed),
            augment=augment,
            paired=True,
            desc=name,
            progress=config.progress,
        )
        trained[name] = state.variables
        model_meta = {
            **common.run_metadata(config),
            "arch": config.model,
            "model_kwargs": meta.get("model_kwargs", {}),
            "input_shape": list(shape),
            "class_names": meta.get("class_names", []),
            "variant": name,
            "fine_tuned_from": str(config.checkpoint),
            "train_images": len(train.images),
            "seed": config.seed,
        }
        checkpoints.save_model(run_dir / "model", trained[name], model_meta)
    return trained


def evaluate_models(config, module, trained, test):
    shape = test.image_shape
    labels = test.labels
    key = jax.random.key(config.seed)
    grid = [PixelConfig(n) for n in config.eval_nums]
    sweeper = make_sweeper(module.apply, pixel_change(shape, max(config.eval_nums)))
    orig = trained["original"]
    adv_orig = fgsm_dataset(
        module.apply,
        orig,
        test.images,
        labels,
        config.eps,
        loss=config.loss,
        batch_size=config.batch_size_eval,
    )
    transfer = (adv_orig.clean_pred == labels) & (adv_orig.pred != labels)
    num_classes = max(int(labels.max()) + 1, len(test.class_names))
    results, raw = {}, {}
    for name, v in trained.items():
        out = run_sweep(
            sweeper,
            v,
            test.images,
            grid,
            key,
            seeds=config.eval_seeds,
            batch_size=config.batch_size_eval,
            progress=False,
        )
        rows = []
        for s_i, _ in enumerate(config.eval_seeds):
            for k in range(len(grid)):
                r = out.pred[s_i * len(grid) + k]
                rows.append(
                    summarize(
                        labels,
                        out.clean_pred,
                        r,
                        out.confidence[s_i * len(grid) + k],
                        num_classes,
                    )
                )
        by_num = {}
        for k, n in enumerate(config.eval_nums):
            rs = [rows[s * len(grid) + k] for s in range(len(config.eval_seeds))]
            acc = [r["accuracy"] for r in rs]
            fr = [r["flip_rate"] for r in rs]
            by_num[n] = {
                "accuracy_mean": float(np.mean(acc)),
                "accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
                "flip_rate_mean": float(np.mean(fr)),
                "flip_rate_std": float(np.std(fr, ddof=1)) if len(fr) > 1 else 0.0,
            }
        n_max = max(config.eval_nums)
        w = by_num[n_max]["flip_rate_mean"]
        adv_own = fgsm_dataset(
            module.apply,
            v,
            test.images,
            labels,
            config.eps,
            loss=config.loss,
            batch_size=config.batch_size_eval,
        )
        own_ok = adv_own.clean_pred == labels
        t_pred, _ = predict(
            module.apply, v, adv_orig.images[transfer], config.batch_size_eval
        )
        still = t_pred != labels[transfer]
        curve = eps_curve(
            module.apply,
            v,
            test.images,
            labels,
            EPS_CURVE,
            loss=config.loss,
            batch_size=config.batch_size_eval,
        )
        results[name] = {
            "clean_accuracy": float(np.mean(out.clean_pred == labels)),
            "pixel_changes": {str(n): by_num[n] for n in config.eval_nums},
            "pixel_index": pixel_index(w, n_max, shape[:2]) if w == w else float("nan"),
            "fgsm_transfer_still_adversarial": float(np.mean(still))
            if len(still)
            else float("nan"),
            "fgsm_transfer_examples": int(transfer.sum()),
            "fgsm_white_box_success": float(
                np.mean(adv_own.pred[own_ok] != labels[own_ok])
            )
            if own_ok.any()
            else float("nan"),
            # images whose input gradient was exactly zero (FGSM could not move
            # them): white-box FGSM on the model itself, and among its correct images
            "fgsm_zero_gradient": int(adv_own.zero_gradient.sum()),
            "fgsm_zero_gradient_attacked": int((adv_own.zero_gradient & own_ok).sum()),
            "fgsm_attacked": int(own_ok.sum()),
            "fgsm_eps_curve": curve,
        }
        k_max = len(grid) - 1  # seed 0, largest Num
        raw[name] = {
            "clean": out.clean_pred == labels,
            "changed": out.pred[k_max] == labels,
            "transfer": t_pred == labels[transfer],
            "white_box": adv_own.pred == labels,
        }
    for name in results:
        results[name]["mcnemar_vs_original"] = {
            what: mcnemar(raw["original"][what], raw[name][what])
            for what in ("clean", "changed", "transfer", "white_box")
        }
    return results, adv_orig, transfer


def run(
    config: Config, workdir: pathlib.Path, *, overwrite: bool = False
) -> dict[str, Any]:
    t0 = time.perf_counter()
    module, variables, meta, train, test = validate(config)
    workdir = common.prepare_workdir(
        workdir, config, experiment="augment-finetune", overwrite=overwrite
    )
    trained = train_variants(config, module, variables, meta, train, workdir)
    results, adv_orig, transfer = evaluate_models(config, module, trained, test)
    verdict = _verdict(results, config)
    out = {
        "metadata": common.run_metadata(
            config,
            model=config.model,
            dataset=test.name,
            train_images=len(train.images),
        ),
        "models": results,
        "verdict": verdict,
    }
    common.write_json_atomic(workdir / "results.json", common.to_jsonable(out))
    rows = []
    for name, r in results.items():
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
    common.write_csv_atomic(workdir / "results.csv", rows)
    _plots(workdir, results, config)
    _examples(workdir, module, trained, test, adv_orig, transfer, results)
    common.write_text_atomic(
        workdir / "report.md", _report(out, config, time.perf_counter() - t0)
    )
    print(verdict["summary"])
    print(f"wrote {workdir}/report.md, results.json, results.csv and plots")
    return out


def _verdict(results, config) -> dict[str, Any]:
    n_max = str(max(config.eval_nums))
    sd = {k: v for k, v in results.items() if k.startswith("model-")}
    base = {k: v for k, v in results.items() if k not in sd and k != "original"}
    key_pc = lambda item: item[1]["pixel_changes"][n_max]["accuracy_mean"]
    key_tr = lambda item: -item[1]["fgsm_transfer_still_adversarial"]
    best_sd = max(sd.items(), key=key_pc)
    out = {"best_small_distance_pixel_changes": best_sd[0]}
    parts = [
        f"At Num={n_max}: original {100 * results['original']['pixel_changes'][n_max]['accuracy_mean']:.2f}%"
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


def _plots(workdir, results, config) -> None:
    plt = reporting._plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    nums = list(config.eval_nums)
    for name, r in results.items():
        y = [100 * r["pixel_changes"][str(n)]["accuracy_mean"] for n in nums]
        e = [100 * r["pixel_changes"][str(n)]["accuracy_std"] for n in nums]
        style = "-" if name.startswith("model-") else "--"
        axes[0].errorbar(
            nums,
            y,
            yerr=e,
            marker="o",
            ms=3,
            capsize=2,
            ls=style,
            label=name,
            lw=2.5 if name == "original" else 1.2,
        )
        c = r["fgsm_eps_curve"]
        axes[1].plot(
            c["eps"],
            np.array(c["success_rate"]) * 100,
            marker="o",
            ms=3,
            ls=style,
            label=name,
            lw=2.5 if name == "original" else 1.2,
        )
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(nums, [str(n) for n in nums])
    axes[0].set_xlabel("changed pixels (Num), values 0..255")
    axes[0].set_ylabel("accuracy after change (%), mean +- sd over seeds")
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


def _examples(workdir, module, trained, test, adv_orig, transfer, results) -> None:
    idx = np.flatnonzero(transfer)
    if not len(idx):
        return
    pick = idx[:: max(1, len(idx) // 6)][:6]
    sd = [k for k in results if k.startswith("model-")]
    best = min(sd, key=lambda k: results[k]["fgsm_transfer_still_adversarial"])
    x = test.images[pick].astype(np.float32) / 255.0
    a = adv_orig.images[pick].astype(np.float32) / 255.0
    p_best, _ = predict(module.apply, trained[best], adv_orig.images[pick])
    rows = [
        ("FGSM on original\n(original's pred)", a, adv_orig.pred[pick]),
        (f"same images\n{best}'s pred", a, p_best),
    ]
    reporting.example_grid(
        workdir / "examples.png",
        x,
        rows,
        test.labels[pick],
        adv_orig.clean_pred[pick],
        test.class_names,
    )


def _report(out, config: Config, total_s: float) -> str:
    f = reporting.fmt_pct
    res = out["models"]
    nums = list(config.eval_nums)
    lines = [
        "# Small-distance augmentation and its defence tests",
        "",
        f"- command: `{out['metadata']['command']}`",
        f"- fine-tuned from `{config.checkpoint}` on {out['metadata']['train_images']} "
        f"training images, {config.epochs} epochs, {config.optimizer} lr "
        f"{config.learning_rate}, batch {config.batch_size} clean + {config.batch_size} "
        "augmented copies (every variant sees the same batches: equal budget)",
        f"- evaluated on {out['metadata']['dataset']}; pixel changes: values 0..255 "
        f"anywhere, seeds {list(config.eval_seeds)}; FGSM L-inf eps {config.eps}, loss "
        f"{config.loss}, 8-bit",
        *(
            [
                "- labels: the original model's clean predictions "
                "(labels_from_model; the original is right by definition, and training "
                "and test images are the same photos when the dataset has one split)"
            ]
            if config.labels_from_model
            else []
        ),
        f"- whole run {total_s:.1f} s",
        "",
        f"**Verdict:** {out['verdict']['summary']}.",
        "",
        "## Accuracy under random pixel changes (Table 10)",
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
                    f"{r['pixel_index']:.2f}",
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
                f"Num {max(nums)} (seed {config.eval_seeds[0]})",
                "FGSM transfer",
                "FGSM white-box",
            ],
            [
                [
                    name,
                    *[
                        f"b={m['b']} c={m['c']} p={m['p_value']:.3g}"
                        for m in (
                            r["mcnemar_vs_original"][w]
                            for w in ("clean", "changed", "transfer", "white_box")
                        )
                    ],
                ]
                for name, r in res.items()
                if name != "original"
            ],
        ),
        "",
        "![robustness](robustness.png)",
        "![examples](examples.png)",
    ]
    return "\n".join(lines) + "\n"
