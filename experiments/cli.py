"""The ``pixjax`` command: ``pixjax list`` and ``pixjax run EXPERIMENT``.

Examples::

    pixjax list
    pixjax run pixel-change --workdir runs/pc
    pixjax run pixel-change --workdir runs/pc nums=1,4,16 seeds=0,1,2,3,4
    pixjax run train --workdir runs/lenet5 --preset smoke
    pixjax report runs/pc
    pixjax convert resnet18 resnet18.pth checkpoints/resnet18
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

# name -> (main module, config module); a literal registry, imported lazily.
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "pixel-change": (
        "pixjax.experiments.pixel_change",
        "pixjax.experiments.configs.pixel_change",
    ),
    "augment-finetune": (
        "pixjax.experiments.augment_finetune",
        "pixjax.experiments.configs.augment_finetune",
    ),
    "fgsm-recovery": (
        "pixjax.experiments.fgsm_recovery",
        "pixjax.experiments.configs.fgsm_recovery",
    ),
    "train": ("pixjax.experiments.train", "pixjax.experiments.configs.train"),
    "rbm-nudge": (
        "pixjax.experiments.rbm_nudge",
        "pixjax.experiments.configs.rbm_nudge",
    ),
    "fooling": ("pixjax.experiments.fooling", "pixjax.experiments.configs.fooling"),
    "few-pixel-attack": (
        "pixjax.experiments.few_pixel_attack",
        "pixjax.experiments.configs.few_pixel_attack",
    ),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pixjax", description="pixjax experiments (see README.md)."
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    r = sub.add_parser("run", help="run an experiment")
    r.add_argument("experiment", help="experiment name (see `pixjax list`)")
    r.add_argument("--workdir", required=True, help="run directory for all outputs")
    r.add_argument(
        "--preset", default="default", help="config preset: default or smoke"
    )
    r.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. nums=1,2,4 model=lenet5 (tuples comma separated)",
    )
    r.add_argument(
        "--show-config", action="store_true", help="print the config and exit"
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in --workdir (another configuration) and start "
        "afresh; without it a workdir resumes its own run and refuses any other",
    )
    rep = sub.add_parser(
        "report",
        help="rebuild report.md and the figures of a finished run from its results.json",
    )
    rep.add_argument("workdir", help="the run directory (holds results.json)")
    c = sub.add_parser(
        "convert",
        help="convert torchvision weights (.pth state dict) to a model directory",
    )
    c.add_argument(
        "arch", help="architecture, e.g. resnet18 (see pixjax.models.MODELS)"
    )
    c.add_argument(
        "weights", help="a torchvision .pth state dict (loaded weights_only)"
    )
    c.add_argument("out_dir", help="model directory to write (orbax + metadata.json)")
    c.add_argument(
        "--num-classes", type=int, default=None, help="default: from the file"
    )
    c.add_argument(
        "--input-size",
        default=None,
        metavar="H,W,C",
        help="the image size the weights were trained on, recorded as the model's "
        "default (default 224,224,3); experiments take any size the model accepts",
    )
    return p


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(
            f"experiment: unknown {name!r}; expected one of {sorted(EXPERIMENTS)}"
        )
    main_mod, cfg_mod = EXPERIMENTS[name]
    return importlib.import_module(main_mod), importlib.import_module(cfg_mod)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come before or after the options.
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad or (extra and args.command != "run"):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if args.command == "run":
        args.overrides = list(args.overrides) + extra
    if args.command == "convert":
        from pixjax.models import convert

        try:
            shape = None
            if args.input_size is not None:
                try:
                    shape = tuple(int(v) for v in args.input_size.split(","))
                except ValueError:
                    shape = ()
                if len(shape) != 3 or min(shape) <= 0:
                    raise ValueError(
                        f"--input-size: expected H,W,C positive integers, got "
                        f"{args.input_size!r}"
                    )
            out = convert.convert_file(
                args.arch,
                args.weights,
                args.out_dir,
                num_classes=args.num_classes,
                input_shape=shape,
            )
        except (ValueError, OSError) as e:
            print(f"pixjax: error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {out}")
        return 0
    if args.command == "list":
        for name in EXPERIMENTS:
            module, _ = get_experiment(name)
            print(f"{name:16s} {module.DESCRIPTION}")
        return 0
    from pixjax.experiments import common

    command = common.format_command(
        ["pixjax", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.command == "report":
        try:
            doc = common.read_results(args.workdir, EXPERIMENTS)
            module, _ = get_experiment(doc["experiment"])
            files = common.render(pathlib.Path(args.workdir), module, doc)
        except (ValueError, OSError) as e:
            print(f"pixjax: error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {args.workdir}: {', '.join(files)}")
        return 0
    try:
        if not args.workdir.strip():
            raise ValueError("workdir: expected a directory path, got ''")
        module, configs = get_experiment(args.experiment)
        config = common.apply_overrides(configs.get_config(args.preset), args.overrides)
        if args.show_config:
            print(config)
            return 0
        common.run_experiment(
            args.experiment,
            module,
            config,
            args.workdir,
            overwrite=args.overwrite,
            command=command,
        )
    except (ValueError, OSError) as e:
        print(f"pixjax: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
