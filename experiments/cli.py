"""The ``pixjax`` command: ``pixjax list`` and ``pixjax run EXPERIMENT``.

Examples::

    pixjax list
    pixjax run pixel-change --workdir runs/pc
    pixjax run pixel-change --workdir runs/pc nums=1,4,16 seeds=0,1,2,3,4
    pixjax run train --workdir runs/lenet5 --preset smoke
    pixjax report runs/pc
    pixjax convert resnet18 resnet18.pth checkpoints/resnet18
    pixjax check-pipeline resize:pillow:bilinear:64 resize:opencv:linear:64 \\
        --images photos:sample --out runs/check
"""

from __future__ import annotations

import argparse
import importlib
import math
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
    "pipeline-artefacts": (
        "pixjax.experiments.pipeline_artefacts",
        "pixjax.experiments.configs.pipeline_artefacts",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: ``pixjax: error: ...`` on stderr and
    exit status 2 (argparse prints its usage first; ``--help`` shows it)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        print(f"pixjax: error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pixjax", description="pixjax experiments (see README.md).")
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
    j = r.add_argument_group(
        "multi-process job (jax.distributed; see README 'Several processes and hosts')",
        "Run the same command once per host (process); process 0 hosts the "
        "coordinator and alone writes the workdir, which must be shared. Defaults "
        "come from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.",
    )
    j.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    j.add_argument("--num-processes", metavar="N", help="processes in the job")
    j.add_argument("--process-id", metavar="I", help="this process, 0..N-1")
    j.add_argument(
        "--distributed",
        action="store_true",
        help="detect the job from SLURM / Cloud TPU / Open MPI (what "
        "jax.distributed.initialize() detects) for whatever is not given",
    )
    j.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=120.0,
        help="the job must form (every process connected) within this time "
        "(default 120)",
    )
    j.add_argument(
        "--heartbeat-timeout",
        metavar="SECONDS",
        type=int,
        default=60,
        help="a process silent this long is declared dead and the job stops "
        "(default 60)",
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
    k = sub.add_parser(
        "check-pipeline",
        help="compare a training and a serving image pipeline pixel by pixel (and "
        "a model's predictions under both); exit 1 when they differ",
        description="Runs two image pipelines on the same images and reports per "
        "image whether the outputs differ, the largest and mean difference, the "
        "share of images that differ (Wilson 95% interval) and, with a checkpoint, "
        "the prediction flips and the top-1 probability shift. Pipelines are "
        "strings such as 'resize:pillow:bilinear:64|uint8:round' or "
        "'resize:opencv:linear:64|jpeg:75' (see pixjax.perturb.pipeline).",
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    k.add_argument(
        "train", help="the training pipeline, e.g. resize:pillow:bilinear:64"
    )
    k.add_argument("serve", help="the serving pipeline, e.g. resize:opencv:linear:64")
    k.add_argument(
        "--images",
        required=True,
        metavar="SPEC",
        help="a dataset spec (mnist-sample, fashion-sample, idx:DIR, folder:DIR, "
        "photos:DIR, photos:sample, tfds:NAME) or an existing image folder",
    )
    k.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write check.json and check.md there (atomically); default: print the "
        "markdown report and write nothing",
    )
    k.add_argument(
        "--tolerance",
        default="0",
        metavar="T",
        help="largest absolute difference (levels, 0..255 scale) that still passes "
        "(default 0: identical outputs; 255: any pixels, a gate on predictions only)",
    )
    k.add_argument(
        "--max-flip-rate",
        default=None,
        metavar="R",
        help="with --checkpoint: the largest share of images (0..1) whose prediction "
        "may flip between the two outputs for the check to pass (default: flips are "
        "reported, not gated)",
    )
    k.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="compare a model's predictions too: a shipped name (lenet5-mnist) or a "
        "model directory; the pipelines must then end in uint8 (uint8:round)",
    )
    k.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="the architecture the checkpoint must hold (default: what it records)",
    )
    k.add_argument("--limit", default=None, metavar="N", help="use the first N images")
    k.add_argument(
        "--split", default="test", help="dataset split: train, test or all (test)"
    )
    k.add_argument(
        "--batch-size", default="256", metavar="B", help="images per chunk (256)"
    )
    return p


_CHECK_EPILOG = """\
exit codes:
  0  the outputs differ by at most the tolerance and, with --max-flip-rate, the
     predictions flip on at most that share of images (passed)
  1  either is exceeded (failed): use it to guard a CI job
  2  bad input (one line 'pixjax: error: ...' on stderr; nothing written)

examples:
  pixjax check-pipeline resize:pillow:bilinear:20 resize:opencv:linear:20 \\
      --images mnist-sample --limit 100 --out runs/check
  pixjax check-pipeline identity 'jpeg:75' --images mnist-sample \\
      --checkpoint lenet5-mnist --tolerance 8
  pixjax check-pipeline identity 'jpeg:75' --images mnist-sample \\
      --checkpoint lenet5-mnist --tolerance 255 --max-flip-rate 0.001
"""


def _number(text: str, name: str, accepted: str, kind=float):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        value = None
    if value is None or (kind is float and not math.isfinite(value)):
        raise ValueError(f"{name}: expected {accepted}, got {text!r}")
    return value


def _check_pipeline_command(args: argparse.Namespace, command: str) -> int:
    """``pixjax check-pipeline``: everything checked before the work; exit 0 passed,
    1 failed, 2 bad input (raised as ValueError / OSError, reported by the caller)."""
    import time

    import numpy as np
    from pixjax.experiments import common

    from pixjax import checkpoints, data
    from pixjax.evaluation import consistency
    from pixjax.perturb import pipeline

    # --- arguments, before any data is read
    for name in ("train", "serve"):
        try:
            pipeline.parse(getattr(args, name))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    tolerance = _number(
        args.tolerance, "--tolerance", "a finite number >= 0 (levels, 0..255)"
    )
    if tolerance < 0:
        raise ValueError(
            f"--tolerance: expected a finite number >= 0 (levels, 0..255), got "
            f"{args.tolerance!r}"
        )
    max_flip_rate = None
    if args.max_flip_rate is not None:
        accepted = "a share of images in [0, 1]"
        max_flip_rate = _number(args.max_flip_rate, "--max-flip-rate", accepted)
        if not 0 <= max_flip_rate <= 1:
            raise ValueError(
                f"--max-flip-rate: expected {accepted}, got {args.max_flip_rate!r}"
            )
        if args.checkpoint is None:
            raise ValueError(
                "--max-flip-rate: needs --checkpoint (the model whose predictions flip)"
            )
    batch_size = _number(args.batch_size, "--batch-size", "a positive integer", int)
    limit = None
    if args.limit is not None:
        limit = _number(args.limit, "--limit", "a positive integer", int)
    for name, value in (("--batch-size", batch_size), ("--limit", limit)):
        if value is not None and value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
    out = None
    if args.out is not None:
        if not args.out.strip():
            raise ValueError("--out: expected a directory path, got ''")
        out = pathlib.Path(args.out).expanduser()
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {str(out)!r} exists and is not a directory")
    spec = args.images
    # a dataset spec (data.KINDS: bare names such as mnist-sample, or KIND:ARG), else
    # a plain folder path
    bare = {k for k in data.KINDS if ":" not in k}
    prefixed = {k.partition(":")[0] for k in data.KINDS if ":" in k}
    kind, colon, rest = spec.partition(":")
    if not (spec in bare or (colon and rest and kind in prefixed)):
        folder = pathlib.Path(spec).expanduser()
        if not folder.is_dir():
            raise ValueError(
                f"--images: {spec!r} is neither an existing folder nor a dataset spec "
                f"(one of {data.KINDS})"
            )
        spec = f"folder:{folder}"
    if args.model is not None and args.checkpoint is None:
        raise ValueError("--model: needs --checkpoint (the weights to load)")
    ckpt = None
    if args.checkpoint is not None:
        ckpt = common.resolve_checkpoint(args.checkpoint)
        if ckpt is None or not ckpt.exists():
            raise ValueError(
                f"--checkpoint: {args.checkpoint!r} does not exist; shipped "
                f"checkpoints: {common.shipped_checkpoints()}"
            )

    # --- data and model
    dataset = data.load(spec, args.split, limit=limit)
    model = arch = None
    if ckpt is not None:
        meta = checkpoints.read_metadata(ckpt)
        arch = args.model or meta["arch"]
        # the images the model will be fed: the train pipeline's output (known without
        # running a pipeline string; a callable's only by running it)
        shape = tuple(meta["input_shape"])
        if pipeline.output_dtype(args.train, np.uint8) == np.uint8:
            shape = pipeline.output_shape(args.train, (1, *dataset.image_shape))[1:]
        module, variables, _ = common.load_checkpoint(arch, args.checkpoint, shape)
        model = (module.apply, variables)

    try:
        result = consistency.check_pipeline(
            args.train,
            args.serve,
            dataset,
            model,
            tolerance=tolerance,
            max_flip_rate=max_flip_rate,
            batch_size=batch_size,
        )
    except ValueError as e:
        if ckpt is None or not str(e).startswith("model:"):
            raise
        raise ValueError(
            f"{e} (checkpoint {args.checkpoint!r}, recorded input "
            f"{tuple(meta['input_shape'])})"
        ) from None
    text = result.to_markdown()
    if out is None:
        print(text, end="")
    else:
        doc = {
            "tool": "check-pipeline",
            "command": command,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "pixjax": __import__("pixjax").__version__,
            "images": args.images,
            "split": args.split,
            "limit": limit,
            "checkpoint": None if ckpt is None else str(args.checkpoint),
            "model": arch,
            "versions": result.summary["versions"],
            "summary": result.summary,
            "per_image": result.per_image,
        }
        common.write_json_atomic(out / "check.json", doc)
        common.write_text_atomic(out / "check.md", text)
        print(consistency.summary_paragraph(result.summary))
        print(f"wrote {out}: check.json, check.md")
    return 0 if result.passed else 1


def _leave_job_on_signals(distributed) -> None:
    """Ctrl-C or a scheduler's SIGTERM (SLURM's scancel, a preemption) on one process
    of a job stops every process at once with one line (exit 128 + signal), instead
    of unwinding through code that would wait on the others."""
    import signal

    def leave(signum, _frame):
        name = signal.Signals(signum).name
        distributed.finish(128 + signum, f"{distributed.describe()}: {name}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, leave)


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(
            f"experiment: unknown {name!r}; expected one of {sorted(EXPERIMENTS)}"
        )
    main_mod, cfg_mod = EXPERIMENTS[name]
    return importlib.import_module(main_mod), importlib.import_module(cfg_mod)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # KEY=VALUE overrides may come before or after the options.
        bad = [a for a in extra if a.startswith("-") or "=" not in a]
        if bad or (extra and args.command != "run"):
            parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    except SystemExit as e:  # a one-line error (exit 2) or --help (exit 0)
        return e.code if isinstance(e.code, int) else 2
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
    if args.command == "check-pipeline":
        from pixjax.experiments import common

        command = common.format_command(
            ["pixjax", *(sys.argv[1:] if argv is None else argv)]
        )
        try:
            return _check_pipeline_command(args, command)
        except (ValueError, OSError) as e:
            print(f"pixjax: error: {e}", file=sys.stderr)
            return 2
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
    from pixjax import distributed

    try:
        if not args.workdir.strip():
            raise ValueError("workdir: expected a directory path, got ''")
        job = distributed.job_from(
            args.coordinator,
            args.num_processes,
            args.process_id,
            auto=args.distributed,
            timeout_s=args.timeout,
            heartbeat_timeout_s=args.heartbeat_timeout,
        )
        module, configs = get_experiment(args.experiment)
        config = common.apply_overrides(configs.get_config(args.preset), args.overrides)
        if args.show_config:
            print(config)
            return 0
        if job is not None:
            distributed.initialize(job)
            if distributed.is_multiprocess():
                _leave_job_on_signals(distributed)
    except (ValueError, OSError, distributed.JobError) as e:
        return distributed.finish(2, str(e))  # a formed job is left at once
    code, line = 0, None
    try:
        common.run_experiment(
            args.experiment,
            module,
            config,
            args.workdir,
            overwrite=args.overwrite,
            command=command,
        )
    except (ValueError, OSError) as e:
        code, line = 2, str(e)
    except distributed.JobError as e:
        code, line = distributed.EXIT_JOB_STOPPED, f"{distributed.describe()}: {e}"
    except Exception as e:
        if not distributed.is_multiprocess():
            raise
        import jax

        if isinstance(e, jax.errors.JaxRuntimeError):
            # A collective failed: another process of the job died.
            line = distributed.stopped_message(e)
        else:  # a bug: its traceback, then leave the job at once
            import traceback

            traceback.print_exc()
            line = f"{distributed.describe()}: {type(e).__name__}: {e}"
        code = distributed.EXIT_JOB_STOPPED
    return distributed.finish(code, line)


if __name__ == "__main__":
    sys.exit(main())
