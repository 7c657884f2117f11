"""The planner: expand a study config (TOML) into every job, its dependencies and its spec.

A study config has four tables: ``[study]`` (name, dataset, seeds, data location),
``[model]`` and ``[train]`` (defaults for every job, the paper's recipe when empty),
``[slurm]`` (resources), and one ``[[block]]`` per group of networks:

    [[block]]
    name = "random"                      # a label for the summary
    splits = ["random0", "random1"]      # splits/<dataset>-<name>.json, "all", or reducedK
    networks = ["baseA", "AnB", "AnB+"]  # the paper's notation, n taken from `n`
    n = [1, 2, 3, 4, 5, 6, 7]

Network patterns (X, Y are split sides, n runs over the block's ``n``):
``baseX`` (``base`` on "all"), ``XnY`` (transfer, frozen; ``XnX`` is the selffer),
``XnY+`` (fine-tuned), ``RnY`` (random-init frozen; ``Rn`` on "all"), ``XnY^k`` (preserved,
k over the block's ``k``).  A transfer job depends on the base network of its source side
(same split, same seed); that base is planned once however many jobs need it.

Job keys read ``<split>/<network>/seed<s>``, e.g. ``random0/A3B+/seed0``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferbench.config import read_toml
from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.grow import SCOPES, Growth
from transferbench.models import ModelConfig
from transferbench.train import JobSpec, TrainConfig
from transferbench.transfer import Condition

PLAN_FORMAT = "transferbench-plan/1"
REPO = Path(__file__).resolve().parents[1]

STUDY_KEYS = {"name": "study name: the folder under jobs/", "dataset": "fashion-mnist | cifar100 | imagenet1k | synthetic",
              "seeds": "list of training seeds", "data_root": "dataset folder", "val_list": "ImageNet flat-val label list",
              "pack_dir": "ImageNet uint8 pack folder", "strict": "corrupt images fatal", "split_dir": "folder of split files",
              "jobs_dir": "where jobs/<name> goes (default: ./jobs)", "description": "free text"}
SLURM_KEYS = {"partition": "", "account": "", "qos": "", "gpus": "GPUs per job", "cpus": "CPUs per job",
              "mem_gb": "memory per job", "time_min": "time limit per job in minutes",
              "array_parallelism": "most tasks of one array running at once", "signal_delay_s": "seconds of warning before the time limit",
              "folder": "submitit log folder (default: jobs/<study>/slurm)", "device": "cpu | cuda (default: cuda if visible)"}
BLOCK_KEYS = {"name", "splits", "networks", "n", "k", "units", "forgetting", "model", "train", "growth"}
GROWTH_KEYS = {"scale_init": "initial γ of the normalised blocks", "new_lr_mult": "learning-rate multiplier of new units"}
NETWORK_CHOICES = ("baseA, base, AnB, AnB+, AnA, AnA+, RnB, Rn, AnB^k; developmental: A7B+WA (DA, WA, DWA, WWA; "
                   "options -new/-fc7/-fc6 scope, -nonorm, -wide), baseA-WA (a wide base), A7B7C+ and A7B7C+WA (chains) "
                   "(X/Y any split side)")
NETWORK = re.compile(r"^(?:base(?P<base>[A-Z]?)|Rn(?P<random>[A-Z]?)|(?P<src>[A-Z])n(?P<tgt>[A-Z])(?P<pres>\^k)?(?P<plus>\+)?)$")
# Developmental patterns: a wide base, or a chain of n=7 fine-tuned transfers X7Y(7Z...)+, grown or not.
GROWN = re.compile(r"^(?:base(?P<wide_base>[A-Z]?)-|(?P<chain>[A-Z](?:7[A-Z])+)\+)(?P<variant>DA|WA|DWA|WWA)?"
                   r"(?P<options>(?:-(?:new|fc7|fc6|all|nonorm|wide))*)$")
DATASET_CLASSES = {"fashion-mnist": 10, "cifar100": 100, "imagenet1k": 1000, "synthetic": 12}


@dataclass(frozen=True)
class PlannedJob:
    key: str
    block: str
    split: str  # split short name ("random0", "natman", "all", "reduced0010")
    network: str  # the paper's notation with n filled in, e.g. A3B+
    pattern: str  # the block's pattern, e.g. AnB+
    side: str | None
    seed: int
    depends: tuple[str, ...]
    spec: JobSpec

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "block": self.block, "split": self.split, "network": self.network,
                "pattern": self.pattern, "side": self.side, "seed": self.seed, "condition": self.spec.condition.label(),
                "n": self.spec.condition.n_transferred, "depends": list(self.depends), "out_dir": self.spec.out_dir,
                "config_hash": self.spec.config_hash(), "spec": self.spec.to_dict()}


@dataclass
class Plan:
    study: str
    study_dir: Path
    config: dict[str, Any]
    jobs: dict[str, PlannedJob]
    splits_written: dict[str, str]  # generated split files: path -> text

    def summary(self) -> str:
        return summarise(self.jobs.values(), self.study)


def _check_keys(table: Any, allowed, where: str, source: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UserError(f"{source}: [{where}] must be a table")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r} in [{where}]; valid keys: {', '.join(sorted(allowed))}")
    return table


def _dataclass_values(cls, values: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(values, names, where, source)
    result = dict(values)
    if "conv_widths" in result:
        result["conv_widths"] = tuple(result["conv_widths"])
    return result


def load_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        choices = ", ".join(sorted(p.name for p in (REPO / "configs").glob("*.toml"))) if (REPO / "configs").is_dir() else ""
        raise UserError(f"study config {path} does not exist" + (f"; presets in configs/: {choices}" if choices else "")) from None
    except OSError as exc:
        raise UserError(f"cannot read study config {path}: {exc.strerror}") from exc
    config = read_toml(text, str(path))
    _check_keys(config, {"study", "model", "train", "growth", "slurm", "block"}, "top level", str(path))
    return config


def _split_path(name: str, dataset: str, split_dirs: list[Path], source: str) -> Path:
    for folder in split_dirs:
        for candidate in (folder / name, folder / f"{dataset}-{name}.json", folder / f"{name}.json"):
            if candidate.is_file():
                return candidate.resolve()
    available = sorted({p.stem.removeprefix(f"{dataset}-") for folder in split_dirs if folder.is_dir()
                        for p in folder.glob(f"{dataset}-*.json")})
    raise UserError(f"{source}: unknown split {name!r} for {dataset}; choose one of: "
                    f"{', '.join(available + ['all', 'reducedK (e.g. reduced0010)']) or 'none found, run transferbench splits'}")


def build_plan(config_path: Path, jobs_root: Path | None = None, overrides: dict[str, Any] | None = None) -> Plan:
    """Expand the config into jobs. Writes nothing."""
    from transferbench.splits import load_split, reduced_split

    source = str(config_path)
    config = load_config(config_path)
    study = _check_keys(dict(config.get("study", {}), **(overrides or {})), STUDY_KEYS, "study", source)
    _check_keys(config.get("slurm", {}), SLURM_KEYS, "slurm", source)
    name = study.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        raise UserError(f"{source}: [study] name must be a folder name (letters, digits, - _ .), got {name!r}")
    dataset = study.get("dataset")
    if dataset not in DATASET_CLASSES:
        raise UserError(f"{source}: [study] dataset {dataset!r} is not one of {', '.join(DATASET_CLASSES)}")
    seeds = study.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise UserError(f"{source}: [study] seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    base_dir = Path(config_path).resolve().parent
    root = Path(jobs_root or study.get("jobs_dir") or "jobs").resolve()
    study_dir = root / name
    split_dirs = [Path(study["split_dir"]).resolve()] if study.get("split_dir") else [Path("splits").resolve(), base_dir.parent / "splits", REPO / "splits"]
    blocks = config.get("block", [])
    if not isinstance(blocks, list) or not blocks:
        raise UserError(f"{source}: no [[block]] of networks; add at least one (see configs/ for examples)")
    model_defaults = _dataclass_values(ModelConfig, config.get("model", {}), "model", source)
    train_defaults = _dataclass_values(TrainConfig, config.get("train", {}), "train", source)
    growth_defaults = _check_keys(config.get("growth", {}), GROWTH_KEYS, "growth", source)

    def data_path(value: str | None) -> str | None:
        return str((base_dir / Path(value).expanduser()).resolve()) if value else None

    if study.get("data_root") and not Path(data_path(study["data_root"])).is_dir():
        raise UserError(f"{source}: data_root {data_path(study['data_root'])} is not a folder; give the dataset folder "
                        "([study] data_root or --data-root)")

    jobs: dict[str, PlannedJob] = {}
    splits_written: dict[str, str] = {}
    for number, block in enumerate(blocks, 1):
        where = f"block {number}"
        _check_keys(block, BLOCK_KEYS, where, source)
        block_name = block.get("name", f"block{number}")
        split_names = block.get("splits", ["all"])
        patterns = block.get("networks")
        if not isinstance(patterns, list) or not patterns:
            raise UserError(f"{source}: {where} needs networks = [...]; choose from {NETWORK_CHOICES}")
        ns = block.get("n", [1, 2, 3, 4, 5, 6, 7])
        ks = block.get("k", [])
        if not all(isinstance(n, int) and 1 <= n <= 7 for n in ns):
            raise UserError(f"{source}: {where} n must list layers 1..7, got {ns!r}")
        model_values = {**model_defaults, **_dataclass_values(ModelConfig, block.get("model", {}), f"{where}.model", source)}
        train_values = {**train_defaults, **_dataclass_values(TrainConfig, block.get("train", {}), f"{where}.train", source)}
        growth_values = {**growth_defaults, **_check_keys(block.get("growth", {}), GROWTH_KEYS, f"{where}.growth", source)}
        grown_patterns = [p for p in patterns if GROWN.fullmatch(str(p)) and GROWN.fullmatch(str(p)).group("variant")]
        units = block.get("units", [])
        if grown_patterns and (not isinstance(units, list) or not units or not all(isinstance(u, int) and u > 0 for u in units)):
            raise UserError(f"{source}: {where} network {grown_patterns[0]!r} needs units = [S, ...] (new units per growth step)")
        forgetting = block.get("forgetting", any(GROWN.fullmatch(str(p)) for p in patterns))
        if not isinstance(forgetting, bool):
            raise UserError(f"{source}: {where} forgetting must be true or false, got {forgetting!r}")
        for split_name in split_names:
            if split_name == "all":
                split_file, sides = None, {"all": DATASET_CLASSES[dataset]}
            else:
                match = re.fullmatch(r"reduced(\d+)", split_name)
                if match:
                    from transferbench.classes import load_table

                    split = reduced_split(load_table(dataset), int(match.group(1)))
                    path = study_dir / "splits" / f"{split.name}.json"
                    splits_written[str(path)] = split.to_json()
                    split_file = str(path)
                else:
                    split_file = str(_split_path(split_name, dataset, split_dirs, f"{source}: {where}"))
                    split = load_split(split_file)
                    if split.dataset != dataset:
                        raise UserError(f"{source}: {where} split {split_name} is for {split.dataset}, the study is {dataset}")
                sides = {side: len(classes) for side, classes in split.sides.items()}

            def side_of(letter: str, pattern: str) -> str | None:
                if not letter:
                    if "all" not in sides:
                        raise UserError(f"{source}: {where} network {pattern!r} needs a side letter on split {split_name} "
                                        f"(sides: {', '.join(sides)})")
                    return None if split_file is None else "all"
                if letter not in sides:
                    raise UserError(f"{source}: {where} network {pattern!r}: split {split_name} has no side {letter}; "
                                    f"its sides are {', '.join(sides)}")
                return letter

            def classes_of(side: str | None) -> int:
                count = sides["all" if side is None else side]
                if count is None:
                    raise UserError(f"{source}: dataset {dataset} needs a split (it has no fixed class count)")
                return count

            for seed in seeds:
                def add(network: str, pattern: str, side: str | None, condition: Condition, base_key: str | None,
                        growth: Growth | None = None) -> str:
                    key = f"{split_name}/{network}/seed{seed}"
                    out_dir = study_dir / "runs" / split_name / network / f"seed{seed}"
                    source_side = jobs[base_key].side if base_key else None
                    spec = JobSpec(
                        key=key, dataset=dataset, split=split_file, side=side, out_dir=str(out_dir), condition=condition,
                        source_checkpoint=str(Path(jobs[base_key].spec.out_dir) / "model.pt") if base_key else None,
                        model=ModelConfig(**{**model_values, "num_classes": classes_of(side)}),
                        train=TrainConfig(**{**train_values, "seed": seed}),
                        data_root=data_path(study.get("data_root")), val_list=data_path(study.get("val_list")),
                        strict=bool(study.get("strict", False)), pack_dir=data_path(study.get("pack_dir")),
                        growth=growth, forgetting_side=source_side if forgetting and source_side not in (None, "all") else None)
                    job = PlannedJob(key, block_name, split_name, network, pattern, side, seed,
                                     (base_key,) if base_key else (), spec)
                    if key in jobs and jobs[key].spec.config_hash() != spec.config_hash():
                        raise UserError(f"{source}: {key} is planned twice with different settings (blocks "
                                        f"{jobs[key].block!r} and {block_name!r}); give one of them its own split or settings")
                    jobs.setdefault(key, job)
                    return key

                def base(letter: str) -> str:
                    side = side_of(letter, f"base{letter}")
                    return add(f"base{letter}", "baseX", side, Condition(), None)

                def grown(pattern: str, match: re.Match, size: int | None) -> None:
                    variant, options = match.group("variant"), [o for o in match.group("options").split("-") if o]
                    scopes = [o for o in options if o in SCOPES]
                    if len(scopes) > 1 or len(set(options)) < len(options):
                        raise UserError(f"{source}: {where} network {pattern!r} repeats an option or names two scopes")
                    if options and not variant:
                        raise UserError(f"{source}: {where} network {pattern!r}: options apply to a grown network; "
                                        "add a variant (DA, WA, DWA, WWA), e.g. A7B+WA-nonorm")
                    wide = "wide" in options or match.group("wide_base") is not None
                    if wide and "nonorm" in options:
                        # Normalisation lets new units catch up with pre-trained ones; a network that is
                        # wide from the start trains all its units together, as a plain wider network.
                        raise UserError(f"{source}: {where} network {pattern!r}: a wide network is a plain wider network "
                                        "without normalisation already; drop -nonorm")
                    scope, normalize = (scopes or ["all"])[0], "nonorm" not in options and not wide
                    suffix = (f"-{scope}" if scope != "all" else "") + ("" if normalize or wide else "-nonorm")
                    settings = dict(normalize=normalize, **growth_values)
                    if match.group("wide_base") is not None:
                        if scopes:
                            raise UserError(f"{source}: {where} network {pattern!r}: a wide base trains every layer from scratch; "
                                            "it takes no options")
                        letter = match.group("wide_base")
                        add(f"base{letter}-{variant}{size}", pattern, side_of(letter, pattern), Condition(), None,
                            Growth(variant, (size,), new=False, **settings))
                        return
                    sides_of_chain = match.group("chain").split("7")
                    if wide and (len(sides_of_chain) > 2 or not variant):
                        raise UserError(f"{source}: {where} network {pattern!r}: -wide is one grown transfer X7Y+V-wide, "
                                        "not a chain or a plain network")
                    previous = None
                    for step in range(1, len(sides_of_chain)):
                        src, tgt = sides_of_chain[step - 1], sides_of_chain[step]
                        side = side_of(tgt, pattern)
                        kind = "selffer" if src == tgt else "transfer"
                        network = "7".join(sides_of_chain[:step + 1]) + "+"
                        if previous is None:
                            side_of(src, pattern)
                            if wide:
                                previous = add(f"base{src}-{variant}{size}", pattern,
                                               side_of(src, pattern), Condition(),
                                               None, Growth(variant, (size,), new=False, **settings))
                            else:
                                previous = base(src)
                        growth = None
                        if variant:
                            network += f"{variant}{size}{suffix}" + ("-wide" if wide else "")
                            growth = Growth(variant, (size,) * step, new=not wide, scope=scope, **settings)
                        previous = add(network, pattern, side, Condition(kind, 7, True), previous, growth)

                for pattern in patterns:
                    grown_match = GROWN.fullmatch(str(pattern))
                    if grown_match:
                        for size in (units if grown_match.group("variant") else [None]):
                            try:
                                grown(str(pattern), grown_match, size)
                            except UserError as exc:
                                if str(exc).startswith(source):
                                    raise
                                raise UserError(f"{source}: {where} network {pattern!r}: {exc}") from None
                        continue
                    match = NETWORK.fullmatch(str(pattern))
                    if not match:
                        raise UserError(f"{source}: {where} unknown network {pattern!r}; choose from {NETWORK_CHOICES}")
                    if match.group("src") is None and match.group("random") is None:
                        base(match.group("base"))
                        continue
                    for n in ns:
                        if match.group("random") is not None:
                            letter = match.group("random")
                            add(f"R{n}{letter}", pattern, side_of(letter, pattern), Condition("random_init", n), None)
                            continue
                        src, tgt, plus = match.group("src"), match.group("tgt"), bool(match.group("plus"))
                        source_base = base(src)
                        side = side_of(tgt, pattern)
                        suffix = "+" if plus else ""
                        if match.group("pres"):
                            if not ks:
                                raise UserError(f"{source}: {where} network {pattern!r} needs k = [...] (layers preserved above n)")
                            for k in ks:
                                if n + k > 7:
                                    continue
                                add(f"{src}{n}{tgt}^{k}{suffix}", pattern, side, Condition("preserved", n, plus, k), source_base)
                            continue
                        kind = "selffer" if src == tgt else "transfer"
                        add(f"{src}{n}{tgt}{suffix}", pattern, side, Condition(kind, n, plus), source_base)
    return Plan(name, study_dir, config, jobs, splits_written)


def category(job: PlannedJob) -> str:
    """The paper's name for a job's kind: base, BnB (selffer), AnB, BnB+, AnB+, random-init, preserved,
    and the developmental ones: grown (variant, scope, no norm), wide, chains."""
    condition, growth = job.spec.condition, job.spec.growth
    plus = "+" if condition.fine_tune else ""
    transfers = job.network.split("+")[0]
    steps = transfers.count("7") if re.fullmatch(r"[A-Z](?:7[A-Z])+", transfers) else 1
    chain = f"chain step {steps} " if steps > 1 else ""
    if growth is not None:
        if condition.kind == "base":
            return f"wide base {growth.variant}"
        detail = "".join(f", {part}" for part in (growth.scope if growth.scope != "all" else "",
                                                  "" if growth.normalize or not growth.new else "no norm") if part)
        return f"{chain}{'grown' if growth.new else 'wide'} {growth.variant}{detail}"
    if chain:
        return f"{chain}fixed AnB+"
    return {"base": "base", "selffer": f"selffer BnB{plus}", "transfer": f"transfer AnB{plus}",
            "random_init": "random-init", "preserved": f"preserved AnB^k{plus}"}[condition.kind]


def summarise(jobs, study: str) -> str:
    jobs = list(jobs)
    per_block = Counter((job.block, category(job)) for job in jobs)
    per_category = Counter(category(job) for job in jobs)
    width = max([22, *(len(kind) for kind in per_category)])
    lines = [f"study {study}: {len(jobs)} jobs", "", f"  {'block':16s} {'condition':{width}s} {'jobs':>5s}"]
    for (block, kind), count in per_block.items():
        lines.append(f"  {block:16s} {kind:{width}s} {count:5d}")
    lines += ["", f"  {'condition (all blocks)':{width + 17}s} {'jobs':>5s}"]
    lines += [f"  {kind:{width + 17}s} {count:5d}" for kind, count in sorted(per_category.items())]
    lines.append(f"  {'total':{width + 17}s} {len(jobs):5d}")
    return "\n".join(lines) + "\n"


def plan_text(plan: Plan) -> str:
    body = {"format": PLAN_FORMAT, "study": plan.study, "config": plan.config,
            "jobs": [job.to_dict() for job in plan.jobs.values()]}
    return json.dumps(body, indent=1, sort_keys=False) + "\n"


def read_plan(study_dir: Path) -> dict[str, Any]:
    path = Path(study_dir) / "plan.json"
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run `transferbench plan CONFIG.toml` first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} does not parse ({exc}); re-run `transferbench plan`") from exc
    if plan.get("format") != PLAN_FORMAT:
        raise UserError(f"{path} is not a transferbench plan (format {plan.get('format')!r}); re-run `transferbench plan`")
    return plan


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(path, text)
    return True


def write_plan(plan: Plan, echo=print) -> dict[str, list[str]]:
    """Write plan.json, summary.txt and generated splits; report added, removed and changed jobs.

    Re-planning an unchanged config rewrites nothing. A job whose settings changed has its old
    outputs moved aside (``runs/.../seedN.old-<hash>``), so no stale checkpoint is resumed.
    """
    old_hashes: dict[str, str] = {}
    if (plan.study_dir / "plan.json").is_file():
        old_hashes = {job["key"]: job["config_hash"] for job in read_plan(plan.study_dir)["jobs"]}
    new_hashes = {key: job.spec.config_hash() for key, job in plan.jobs.items()}
    changes = {"added": sorted(set(new_hashes) - set(old_hashes)), "removed": sorted(set(old_hashes) - set(new_hashes)),
               "changed": sorted(k for k in set(new_hashes) & set(old_hashes) if new_hashes[k] != old_hashes[k])}
    for key in changes["changed"]:
        out_dir = Path(plan.jobs[key].spec.out_dir)
        if out_dir.exists():
            aside = out_dir.with_name(f"{out_dir.name}.old-{old_hashes[key]}")
            shutil.rmtree(aside, ignore_errors=True)
            out_dir.rename(aside)
    for path, text in plan.splits_written.items():
        _write_if_changed(Path(path), text)
    wrote = _write_if_changed(plan.study_dir / "plan.json", plan_text(plan))
    _write_if_changed(plan.study_dir / "summary.txt", plan.summary())
    if not old_hashes:
        echo(f"planned {len(plan.jobs)} jobs in {plan.study_dir}")
    elif not wrote:
        echo(f"{plan.study_dir}: plan unchanged ({len(plan.jobs)} jobs); nothing written")
    else:
        for what in ("added", "removed", "changed"):
            if changes[what]:
                shown = ", ".join(changes[what][:8]) + (f" and {len(changes[what]) - 8} more" if len(changes[what]) > 8 else "")
                echo(f"{len(changes[what])} jobs {what}: {shown}")
        if changes["changed"]:
            echo("  (their old outputs were moved aside to <run folder>.old-<hash>; they will be re-run)")
    return changes

