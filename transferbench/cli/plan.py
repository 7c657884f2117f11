"""`transferbench plan`: expand a study config into every job and its dependencies."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.errors import UserError


DESCRIPTION = """\
Expand a study config into jobs/<study>/: plan.json (every job: key such as random0/A3B+/seed0,
condition, split, side, n, seed, dependencies, output folder, full spec) and summary.txt (jobs
per block and condition, the recipes, disk, fused groups).  Base networks are planned once and
shared by every job that copies from them.  A job's identity is what it computes (recipe,
model, condition, the content of its split, its data's fingerprint, its base): moving the
study, its data or its split files changes nothing.  Re-planning an unchanged config writes
nothing; a changed one lists the jobs that were added, removed or changed (the outputs of
changed jobs, and of every job that copies from one, are moved aside).  If a changed job is
still queued or running, plan stops and writes nothing (--cancel-changed cancels it first).

Presets ship with transferbench and are given by name (`--list` describes every one); a
./configs/NAME.toml of your own comes first; a path is used as it is.  A preset's relative
paths start where plan runs; a config file's, at its folder.

  transferbench plan --list
  transferbench plan yosinski2014 --data-root /datasets/ILSVRC2012 --fuse
  transferbench plan configs/mine.toml --set train.lr=0.001 --set study.seeds=[0,1,2]
  transferbench plan yosinski2014-resnet50 --bench bench-h100.json   # with device-hours at measured rates

Network patterns in a [[block]]: baseA, base (all classes), AnB, AnB+, AnA (selffer), RnB
(random-init frozen), AnB^k (preserved), with n over the block's n = [...].
Developmental networks (Growing a Brain), S over the block's units = [...]: A7B+DA, A7B+WA,
A7B+DWA, A7B+WWA with options -new/-fc7/-fc6 (fine-tuning scope), -nonorm, -wide; baseA-WA
(a wide base); chains A7B7C+ and A7B7C+WA on a split with sides A, B, C (splits chain).
See the README.
"""


def add(commands, formatter) -> None:
    plan = commands.add_parser("plan", help="expand a study config into every job", description=DESCRIPTION,
                               formatter_class=formatter)
    plan.add_argument("config", type=Path, metavar="CONFIG", nargs="?",
                      help="the study config: a path (configs/yosinski2014.toml) or a preset's name (yosinski2014)")
    plan.add_argument("--list", action="store_true", help="list the presets that ship with transferbench, and stop")
    plan.add_argument("--jobs-dir", type=Path, metavar="DIR", help="where jobs/<study>/ goes (default: ./jobs)")
    plan.add_argument("--data-root", metavar="DIR", help="the dataset folder (overrides [study] data_root)")
    plan.add_argument("--val-list", metavar="FILE", help="ImageNet: the Caffe-style list of a flat val/ folder "
                                                         "(overrides [study] val_list)")
    plan.add_argument("--pack-dir", metavar="DIR", help="ImageNet: where the uint8 pack goes (overrides [study] pack_dir)")
    plan.add_argument("--cancel-changed", action="store_true",
                      help="cancel the changed or removed jobs that are still queued or running (scancel, or SIGTERM "
                           "to a local worker) and wait for them to end; without it plan stops and writes nothing")
    plan.add_argument("--fuse", action="store_true", help="train the networks that share a data stream (same split, "
                      "side, seed and recipe) together, one process per group (the same as --set study.fuse=true)")
    plan.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", dest="settings",
                      help="override one config value, checked like the file's own (repeatable): e.g. --set "
                           "train.lr=0.001, --set study.seeds=[0,1], --set block.2.n=[1,7]; values are read as TOML")
    plan.add_argument("--bench", type=Path, metavar="FILE.json",
                      help="also print the plan's device-hours per condition, at the model rates of a `transferbench "
                           "bench --arch ... --out FILE.json` run on the cluster's GPU")
    plan.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import time

    from transferbench.study.plan import build_plan, write_plan

    if args.list:
        from transferbench.shipped import preset_summary, presets

        for name, path in presets().items():
            print(f"{name:34s} {preset_summary(path)}")
        print(f"(from {next(iter(presets().values())).parent}; a ./configs/<name>.toml of your own comes first)"
              if presets() else "no presets found")
        return
    if args.config is None:
        raise UserError("give a study config (a path, or a preset's name; `transferbench plan --list` lists them)")
    started = time.perf_counter()
    # Paths on the command line are relative to where it runs (those in the config, to the config's folder).
    overrides = {name: str(Path(getattr(args, name)).expanduser().resolve())
                 for name in ("data_root", "val_list", "pack_dir") if getattr(args, name)}
    settings = [_absolute_path_setting(text) for text in args.settings] + (["study.fuse=true"] if args.fuse else [])
    from transferbench.study.estimate import hours_summary, read_rates

    rates = read_rates(args.bench) if args.bench else None  # a bad file stops here, before anything is written
    plan = build_plan(args.config, args.jobs_dir, overrides or None, settings)
    write_plan(plan, cancel_changed=args.cancel_changed)
    print(plan.summary(), end="")
    if rates is not None:
        print(hours_summary(plan.jobs.values(), rates, args.bench), end="")
    print(f"planned in {time.perf_counter() - started:.2f} s; next: transferbench submit {plan.study_dir}")


PATH_KEYS = ("data_root", "val_list", "pack_dir", "split_dir", "jobs_dir", "weights", "mean")


def _absolute_path_setting(text: str) -> str:
    """``--set source.x.weights=models/a.caffemodel``: a relative path on the command line is relative
    to where the command runs (one in the config file, to the config's folder), as --data-root is."""
    import json

    from transferbench.schema.loader import parse_override

    keys, value = parse_override(text)
    if keys[-1] in PATH_KEYS and isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return f"{'.'.join(keys)}={json.dumps(str(Path(value).expanduser().resolve()))}"
    return text
