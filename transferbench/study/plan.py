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

import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.schema.config import DATASET_CLASSES, Block, StudyConfig, load_config
from transferbench.schema.notation import Pattern, parse_network, parse_pattern
from transferbench.schema.plan import PlanFile, PlannedJob
from transferbench.schema.spec import LAYOUTS, Condition, DataOptions, Growth, JobSpec, ModelConfig, SourceRef, TrainConfig
from transferbench.shipped import find_config, shipped_dir
from transferbench.study.status import Study, order_jobs, states



@dataclass
class Plan:
    """A planned study before it is written: the plan file, where it goes, the splits it generated,
    the source weights it imported (written with the plan), and what its cross-dataset blocks use."""

    study_dir: Path
    file: PlanFile
    splits_written: dict[str, str]  # generated split files: path -> text
    imports: dict[Path, Any] = field(default_factory=dict)  # folder -> worker.sources.ImportedSource to write
    details: list[str] = field(default_factory=list)  # sources and targets of cross-dataset blocks, for the summary

    @property
    def study(self) -> str:
        return self.file.study

    @property
    def jobs(self) -> dict[str, PlannedJob]:
        return self.file.jobs

    def summary(self) -> str:
        text = summarise(self.jobs.values(), self.study)
        if self.details:
            text += "\n" + "\n".join(self.details) + "\n"
        settings = self.file.config["study"]
        if settings.get("fuse"):
            text += fused_summary(self.jobs, float(settings.get("fuse_memory_gb", 40.0)))
        return text


def _split_path(name: str, dataset: str, split_dirs: list[Path], source: str) -> Path:
    for folder in split_dirs:
        for candidate in (folder / name, folder / f"{dataset}-{name}.json", folder / f"{name}.json"):
            if candidate.is_file():
                return candidate.resolve()
    available = sorted({p.stem.removeprefix(f"{dataset}-") for folder in split_dirs if folder.is_dir()
                        for p in folder.glob(f"{dataset}-*.json")})
    raise UserError(f"{source}: unknown split {name!r} for {dataset}; choose one of: "
                    f"{', '.join(available + ['all', 'reducedK (e.g. reduced0010)']) or 'none found, run transferbench splits'}")


def read_config(config_path: Path, overrides: list[str] | None = None,
                study_overrides: dict[str, Any] | None = None) -> StudyConfig:
    """The study config, checked (``overrides``: ``--set TABLE.KEY=VALUE``)."""
    return load_config(find_config(config_path), overrides, study_overrides, shipped_dir("configs"))


def build_plan(config_path: Path, jobs_root: Path | None = None, overrides: dict[str, Any] | None = None,
               settings: list[str] | None = None) -> Plan:
    """Expand the config into jobs. Writes nothing. ``overrides``: [study] values (e.g. data_root);
    ``settings``: ``--set TABLE.KEY=VALUE`` strings."""
    config = read_config(config_path, settings, overrides)
    study = config.study
    source = config.source
    root = Path(jobs_root or study.jobs_dir or "jobs").resolve()
    study_dir = root / study.name
    split_dirs = [Path(study.split_dir).resolve()] if study.split_dir else \
        [Path("splits").resolve(), config.directory.parent / "splits", *filter(None, [shipped_dir("splits")])]

    def data_path(value: str | None) -> str | None:
        return str((config.directory / Path(value).expanduser()).resolve()) if value else None

    if study.data_root and not Path(data_path(study.data_root)).is_dir():
        raise UserError(f"{source}: data_root {data_path(study.data_root)} is not a folder; give the dataset folder "
                        "([study] data_root or --data-root)")
    planner = _Planner(config, study_dir, split_dirs, data_path, root)
    for number, block in enumerate(config.blocks, 1):
        planner.block(number, block)
    if any(job.spec.dataset == "imagenet1k" and job.spec.data_root or job.spec.forgetting_data is not None
           and job.spec.forgetting_data.dataset == "imagenet1k" for job in planner.jobs.values()):
        # (without a data_root, plan still lays out the grid; submit holds those jobs)
        check_imagenet_data(planner.jobs, source, set(planner.splits_written))
    raw = config.raw if not overrides else {**config.raw, "study": {**config.raw.get("study", {}), **overrides}}
    imports = {found.folder: found.imported for found in planner.sources.values() if found.imported is not None}
    return Plan(study_dir, PlanFile(study.name, raw, planner.jobs), planner.splits_written, imports, planner.details())


def check_imagenet_data(jobs: dict[str, PlannedJob], source: str, generated: set[str] = frozenset()) -> None:
    """Every class the jobs train or validate on has its folder, and the validation list its files
    (transferbench.tasks.layout), before anything is queued. ``generated``: split files this plan
    writes (the reduced ones, over every class)."""
    from transferbench.tasks.classes import load_table
    from transferbench.tasks.layout import check_imagenet
    from transferbench.tasks.splits import load_split

    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    needed: dict[tuple[str | None, str | None], set[int]] = {}
    splits: dict[str, Any] = {}
    uses = []  # (data_root, val_list, split file, the sides it reads: None for every side)
    for job in jobs.values():
        spec, other = job.spec, job.spec.forgetting_data  # a cross-dataset source's own data, for forgetting
        if spec.dataset == "imagenet1k" and spec.data_root:
            uses.append((spec.data_root, spec.val_list, spec.split,
                         {spec.side, spec.forgetting_side} - {None} if spec.side is not None else None))
        if other is not None and other.dataset == "imagenet1k" and other.data_root:
            uses.append((other.data_root, other.val_list, other.split, {other.side} if other.side is not None else None))
    for root, val_list, split_file, sides in uses:  # the other datasets are checked as they are read
        classes = needed.setdefault((root, val_list), set())
        if split_file is None or split_file in generated:
            classes.update(range(len(wnids)))
            continue
        split = splits.setdefault(split_file, load_split(split_file))
        for side in sides if sides is not None else split.sides:
            classes.update(split.label_map(side))
    for (root, val_list), classes in needed.items():
        check_imagenet(Path(root) if root else None, wnids, classes, Path(val_list) if val_list else None, source)


@dataclass(frozen=True)
class _BlockContext:
    """What every job of the block being expanded shares."""

    where: str  # "block N", for messages
    name: str  # the block's label
    model: dict[str, Any]  # ModelConfig values (num_classes is set per side)
    train: dict[str, Any]  # TrainConfig values (seed is set per job)
    growth: dict[str, Any]  # Growth settings (scale_init, new_lr_mult)
    forgetting: bool  # measure the source's accuracy after transfer


EXTERNAL = "<the block's source>"  # base_key of a job that copies from a cross-dataset block's source network


@dataclass
class _Cross:
    """The cross-dataset block being expanded: side A is its source, B, C, ... its targets."""

    source: Any  # study.cross.Source
    targets: list[Any]  # study.cross.SideData, in order (sides B, C, ...)

    def letters(self) -> dict[str, Any]:
        return {"A": self.source.data, **{chr(ord("B") + i): target for i, target in enumerate(self.targets)}}

    def segment(self, letter: str) -> str:
        """The key's first part: the source and the targets up to this side (a network on the first
        target is the same network in a block of one target and in a chain's)."""
        return "-".join([self.source.name, *(t.name for t in self.targets[:ord(letter) - ord("A")])])


class _Planner:
    """Expands blocks into PlannedJobs; bases are planned once however many jobs copy them."""

    def __init__(self, config: StudyConfig, study_dir: Path, split_dirs: list[Path], data_path, jobs_root: Path) -> None:
        self.config, self.study_dir, self.split_dirs, self.data_path = config, study_dir, split_dirs, data_path
        self.jobs_root = jobs_root
        self.jobs: dict[str, PlannedJob] = {}
        self.splits_written: dict[str, str] = {}
        self.sources: dict[str, Any] = {}  # resolved [source] tables (study.cross.Source), once each
        self.targets: dict[str, Any] = {}  # resolved [target] tables (study.cross.SideData)
        self.cross: _Cross | None = None
        self.layout_classes: tuple[str, ...] | None = None  # the study's dataset read from its layout: its classes

    def details(self) -> list[str]:
        """The sources and targets the cross-dataset blocks use, for the summary."""
        from transferbench.study.cross import describe_source

        if not self.sources:
            return []
        lines = ["  cross-dataset: side A is the source, B, C, ... the block's targets in order"]
        for found in self.sources.values():
            lines += describe_source(found)
        lines += [f"  target {name}: {target.description}" for name, target in self.targets.items()]
        return lines

    def find_split(self, name: str, dataset: str, where: str) -> Path:
        return _split_path(name, dataset, self.split_dirs, where)

    def _study_layout(self, where: str) -> tuple[str, ...]:
        """The classes of the study's own dataset when it is read from its layout (read once, checked on disk)."""
        if self.layout_classes is None:
            from transferbench.tasks.layout import read_layout

            study = self.config.study
            if not study.data_root:
                raise UserError(f"{where}: {study.dataset} is read from its folder; set [study] data_root (or --data-root)")
            try:
                index = read_layout(study.dataset, Path(self.data_path(study.data_root)), self.study_options)
            except UserError as exc:
                raise UserError(f"{where}: {exc}") from None
            self.layout_classes = index.classes
        return self.layout_classes

    @property
    def study_options(self) -> DataOptions | None:
        study = self.config.study
        return study.data_options or DataOptions() if study.dataset in LAYOUTS else None

    def _enter_cross(self, block: Block, where: str) -> None:
        """Resolve the block's source and targets (each once per plan) and set up the sides."""
        from transferbench.study.cross import resolve_source, resolve_target

        config = self.config
        if block.source not in self.sources:
            self.sources[block.source] = resolve_source(block.source, config.sources[block.source], self.study_dir,
                                                        self.jobs_root, self.data_path, self.find_split,
                                                        f"{config.source}: {where}")
        for name in block.targets:
            if name not in self.targets:
                self.targets[name] = resolve_target(name, config.targets[name], self.data_path, self.find_split,
                                                    f"{config.source}: {where} target {name}")
        self.cross = _Cross(self.sources[block.source], [self.targets[name] for name in block.targets])
        self.split_file, self.split_name = None, None
        self.sides = {letter: (data.classes if data else self.cross.source.info.model.num_classes)
                      for letter, data in self.cross.letters().items()}

    def _cross_values(self, block: Block, model_values: dict[str, Any], train_values: dict[str, Any],
                      where: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A cross-dataset block's model and recipe: the architecture and input contract are the source's."""
        from transferbench.study.cross import SOURCE_MODEL_KEYS, SOURCE_TRAIN_KEYS

        info = self.cross.source.info
        source_model = {key: getattr(info.model, key) for key in SOURCE_MODEL_KEYS}
        source_train = {"crop": info.crop, "input_scale": info.input_scale, "resize": info.size}
        for table, own, theirs in (("model", block.model, source_model), ("train", block.train, source_train)):
            for key in own:
                if key in theirs and own[key] != theirs[key] and not (key == "conv_widths" and tuple(own[key]) == theirs[key]):
                    raise UserError(f"{self.config.source}: {where} sets {table}.{key} = {own[key]!r}, but a cross-dataset "
                                    f"block takes it from its source {block.source} ({theirs[key]!r}); drop it")
        model = {key: value for key, value in model_values.items() if key not in SOURCE_MODEL_KEYS}
        if "dropout" not in {**self.config.model, **block.model}:
            model["dropout"] = info.model.dropout
        if "init" not in {**self.config.model, **block.model}:
            model["init"] = info.model.init
        train = {key: value for key, value in train_values.items() if key not in SOURCE_TRAIN_KEYS}
        return {**model, **source_model}, {**train, **source_train}

    def block(self, number: int, block: Block) -> None:
        from transferbench.tasks.splits import check_split_classes, load_split, reduced_split

        source, where, dataset = self.config.source, f"block {number}", self.config.study.dataset
        patterns = []
        for text in block.networks:
            try:
                patterns.append(parse_pattern(text))
            except UserError as exc:
                raise UserError(f"{source}: {where} {exc}") from None
        grown = [p for p in patterns if p.kind == "grown" and p.variant]
        if grown and not block.units:
            raise UserError(f"{source}: {where} network {grown[0].text!r} needs units = [S, ...] (new units per growth step)")
        if any(p.preserved for p in patterns) and not block.k:
            first = next(p for p in patterns if p.preserved)
            raise UserError(f"{source}: {where} network {first.text!r} needs k = [...] (layers preserved above n)")
        forgetting = block.forgetting if block.forgetting is not None else any(p.kind == "grown" for p in patterns)
        model_values, train_values, growth_values = self.config.block_values(block)
        self.cross = None
        if block.source is not None:
            self._enter_cross(block, where)
            model_values, train_values = self._cross_values(block, model_values, train_values, where)
        self.context = _BlockContext(where, block.name or f"block{number}", model_values, train_values, growth_values,
                                     forgetting)
        if self.cross is not None:
            for seed in self.config.study.seeds:
                self.seed = seed
                for pattern in patterns:
                    self.expand(pattern, block)
            return
        for split_name in block.splits:
            if split_name == "all":
                classes = len(self._study_layout(where)) if dataset in LAYOUTS else DATASET_CLASSES[dataset]
                self.split_file, self.sides = None, {"all": classes}
            else:
                match = re.fullmatch(r"reduced(\d+)", split_name)
                if match:
                    from transferbench.tasks.classes import load_table

                    if dataset in LAYOUTS:
                        raise UserError(f"{source}: {where}: reduced splits are for the built-in datasets, not {dataset}")
                    split = reduced_split(load_table(dataset), int(match.group(1)))
                    path = self.study_dir / "splits" / f"{split.name}.json"
                    self.splits_written[str(path)] = split.to_json()
                    self.split_file = str(path)
                else:
                    self.split_file = str(_split_path(split_name, dataset, self.split_dirs, f"{source}: {where}"))
                    split = load_split(self.split_file)
                    if split.dataset != dataset:
                        raise UserError(f"{source}: {where} split {split_name} is for {split.dataset}, the study is {dataset}")
                    if dataset in LAYOUTS:
                        from transferbench.tasks.classes import layout_table

                        check_split_classes(split, layout_table(dataset, self._study_layout(where)), f"{source}: {where}")
                self.sides = {side: len(classes) for side, classes in split.sides.items()}
            self.split_name = split_name
            for seed in self.config.study.seeds:
                self.seed = seed
                for pattern in patterns:
                    self.expand(pattern, block)

    # ------------------------------------------------------------------ one pattern

    def side_of(self, letter: str, pattern: str) -> str | None:
        source, where = self.config.source, self.context.where
        if self.cross is not None and letter not in self.sides:
            sides = ", ".join(f"{side} ({data.name if data else self.cross.source.name})"
                              for side, data in self.cross.letters().items())
            raise UserError(f"{source}: {where} network {pattern!r} needs {'a side letter' if not letter else f'side {letter}'}; "
                            f"this cross-dataset block's sides are {sides}")
        if not letter:
            if "all" not in self.sides:
                raise UserError(f"{source}: {where} network {pattern!r} needs a side letter on split {self.split_name} "
                                f"(sides: {', '.join(self.sides)})")
            return None if self.split_file is None else "all"
        if letter not in self.sides:
            raise UserError(f"{source}: {where} network {pattern!r}: split {self.split_name} has no side {letter}; "
                            f"its sides are {', '.join(self.sides)}")
        return letter

    def _data(self, side: str | None, external: bool, source_side: str | None) -> dict[str, Any]:
        """The data fields of a job's spec on ``side`` (of the split, or of the cross-dataset block)."""
        study, forgetting = self.config.study, self.context.forgetting
        if self.cross is None:
            return dict(dataset=study.dataset, split=self.split_file, side=side, data_root=self.data_path(study.data_root),
                        val_list=self.data_path(study.val_list), data_options=self.study_options,
                        forgetting_side=source_side if forgetting and source_side not in (None, "all") else None)
        data = self.cross.letters()[side]
        if data is None:
            raise UserError(f"{self.config.source}: {self.context.where}: a network on side A trains on the source's own "
                            f"data, which is not known; give [source.{self.cross.source.name}] dataset and data_root")
        source_data = self.cross.letters()[source_side] if source_side else None
        return dict(dataset=data.dataset, split=data.split, side=data.side, data_root=data.data_root, val_list=data.val_list,
                    data_options=data.data_options, input=self.cross.source.input(),
                    source_ref=SourceRef(self.cross.source.info.name, self.cross.source.info.config_hash,
                                         self.cross.source.info.attempt) if external else None,
                    forgetting_data=source_data.ref() if forgetting and source_data is not None and source_data.loadable
                    else None)

    def _recipe(self, side: str | None) -> dict[str, Any]:
        """A job's TrainConfig values: the block's; a network trained from scratch on a cross-dataset
        source's own data (side A: a wide network) takes the recipe the source was trained with, where
        it is known (another study's job), so that the two differ only in width."""
        if self.cross is not None and side == "A" and self.cross.source.info.train is not None:
            return {key: value for key, value in self.cross.source.info.train.items() if key != "seed"}
        return self.context.train

    def add(self, network: str, pattern: str, side: str | None, condition: Condition, base_key: str | None,
            growth: Growth | None = None) -> str:
        source, context, study = self.config.source, self.context, self.config.study
        where, block_name = context.where, context.name
        split_name = self.split_name if self.cross is None else self.cross.segment(side)
        key = f"{split_name}/{network}/seed{self.seed}"
        out_dir = self.study_dir / "runs" / split_name / network / f"seed{self.seed}"
        external = base_key == EXTERNAL
        source_side = "A" if external else self.jobs[base_key].side if base_key else None
        classes = self.sides["all" if side is None else side]
        checkpoint = self.cross.source.info.weights if external else str(self.jobs[base_key].out_dir / "model.pt") \
            if base_key else None
        try:
            spec = JobSpec(
                key=key, out_dir=str(out_dir), condition=condition, source_checkpoint=checkpoint,
                model=ModelConfig(**{**context.model, "num_classes": classes}),
                train=TrainConfig(**{**self._recipe(side), "seed": self.seed}),
                strict=study.strict, pack_dir=self.data_path(study.pack_dir), growth=growth,
                **self._data(side, external, source_side))
        except UserError as exc:
            raise UserError(f"{source}: {where} network {pattern!r} on {'split ' if self.cross is None else ''}"
                            f"{split_name}: {exc}") from None
        job = PlannedJob(key, block_name, split_name, network, pattern, side, self.seed,
                         (base_key,) if base_key and not external else (), spec)
        if key in self.jobs and self.jobs[key].config_hash != job.config_hash:
            raise UserError(f"{source}: {key} is planned twice with different settings (blocks "
                            f"{self.jobs[key].block!r} and {block_name!r}); give one of them its own split or settings")
        self.jobs.setdefault(key, job)
        return key

    def base(self, letter: str) -> str:
        if self.cross is not None and letter == "A":
            return EXTERNAL  # the block's source network: imported, or another study's
        return self.add(f"base{letter}", "baseX", self.side_of(letter, f"base{letter}"), Condition(), None)

    def expand(self, pattern: Pattern, block: Block) -> None:
        if pattern.kind == "grown":
            for size in (block.units if pattern.variant else [None]):
                self.grown(pattern, size)
            return
        if pattern.kind == "base":
            self.base(pattern.target)
            return
        for n in block.n:
            if pattern.kind == "random_init":
                self.add(pattern.name(n), pattern.text, self.side_of(pattern.target, pattern.text),
                         Condition("random_init", n), None)
                continue
            source_base = self.base(pattern.source)
            side = self.side_of(pattern.target, pattern.text)
            if pattern.preserved:
                for k in block.k:
                    if n + k <= 7:
                        self.add(pattern.name(n, k), pattern.text, side, Condition("preserved", n, pattern.fine_tune, k),
                                 source_base)
                continue
            kind = "selffer" if pattern.source == pattern.target else "transfer"
            self.add(pattern.name(n), pattern.text, side, Condition(kind, n, pattern.fine_tune), source_base)

    def grown(self, pattern: Pattern, size: int | None) -> None:
        settings = dict(normalize=pattern.normalize, **self.context.growth)
        if not pattern.chain:  # a wide base
            self.add(pattern.name(size=size), pattern.text, self.side_of(pattern.target, pattern.text), Condition(), None,
                     Growth(pattern.variant, (size,), new=False, **settings))
            return
        chain = pattern.chain
        previous = None
        for step in range(1, len(chain)):
            src, tgt = chain[step - 1], chain[step]
            side = self.side_of(tgt, pattern.text)
            kind = "selffer" if src == tgt else "transfer"
            if previous is None:
                self.side_of(src, pattern.text)
                if pattern.wide:
                    previous = self.add(f"base{src}-{pattern.variant}{size}", pattern.text, self.side_of(src, pattern.text),
                                        Condition(), None, Growth(pattern.variant, (size,), new=False, **settings))
                else:
                    previous = self.base(src)
            growth = None
            if pattern.variant:
                growth = Growth(pattern.variant, (size,) * step, new=not pattern.wide, scope=pattern.scope, **settings)
            previous = self.add(pattern.name(size=size, step=step), pattern.text, side, Condition(kind, 7, True),
                                previous, growth)


def category(job: PlannedJob) -> str:
    """The paper's name for a job's kind: base, BnB (selffer), AnB, BnB+, AnB+, random-init, preserved,
    and the developmental ones: grown (variant, scope, no norm), wide, chains."""
    condition, growth = job.spec.condition, job.spec.growth
    plus = "+" if condition.fine_tune else ""
    steps = parse_network(job.network).chain_steps
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
    no_root = sum(1 for job in jobs if job.spec.dataset == "imagenet1k" and not job.spec.data_root)
    if no_root:
        lines += ["", f"  data: no ImageNet data_root for the {no_root} jobs that train on it: they are laid out, but "
                      "`submit` holds them until you plan again with --data-root DIR, or [source.NAME] data_root for a "
                      "cross-dataset source (then every class folder and the val_list are checked here)"]
    weights = sum(job.spec.weights_bytes() for job in jobs)  # float32 model.pt per finished network, with its mean image
    largest = max((job.spec.weights_bytes() for job in jobs), default=0)
    lines += ["", f"  disk: about {_size(weights)} of final weights (model.pt, up to {_size(largest)} each), and while "
                  f"a job runs up to {_size(4 * largest)} more for its checkpoints (weights and momentum, the last two "
                  "kept), removed when it is done unless train.keep_checkpoint"]
    return "\n".join(lines) + "\n"


def fused_summary(jobs: dict[str, PlannedJob], memory_gb: float) -> str:
    from transferbench.study.fuse import fuse_jobs

    units = fuse_jobs(jobs, order_jobs(jobs), memory_gb)
    groups = [unit for unit in units if len(unit) > 1]
    if not groups:
        return "\n  fused: no two jobs share a data stream; every job trains alone\n"
    largest = max(sum(jobs[key].spec.memory_estimate() for key in unit) for unit in groups)
    sizes = sorted(len(unit) for unit in groups)
    return (f"\n  fused: {len(jobs)} jobs train in {len(units)} processes: {len(groups)} fused groups of {sizes[0]}-{sizes[-1]} "
            f"networks and {len(units) - len(groups)} alone; a group needs up to about {_size(largest)} of device memory "
            f"(groups are split to stay under fuse_memory_gb = {memory_gb:g})\n")


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


def read_plan(study_dir: Path) -> PlanFile:
    return PlanFile.read(study_dir)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(path, text)
    return True


def write_plan(plan: Plan, echo=print, cancel_changed: bool = False) -> dict[str, list[str]]:
    """Write plan.json, summary.txt and generated splits; report added, removed and changed jobs.

    Re-planning an unchanged config rewrites nothing. A job whose settings changed, and every
    job that copies from one (directly or through another: its result would rest on a base
    that no longer exists), has its old outputs moved aside (``runs/.../seedN.old-<hash>``),
    so no stale checkpoint is resumed and no stale result is collected. A changed or removed
    job that is still queued or running makes ``plan`` stop and write nothing, unless
    ``cancel_changed``: then it is cancelled (scancel, or SIGTERM to a local worker) and
    ``plan`` waits for it to end first.
    """
    from transferbench.study.lock import study_lock

    with study_lock(plan.study_dir, "plan"):
        return _write_plan(plan, echo, cancel_changed)


CANCEL_WAIT_S = 120  # how long plan --cancel-changed waits for cancelled jobs to leave the queue


def _write_plan(plan: Plan, echo, cancel_changed: bool) -> dict[str, list[str]]:
    old_plan = read_plan(plan.study_dir) if (plan.study_dir / "plan.json").is_file() else None
    old_hashes = {key: job.config_hash for key, job in old_plan.jobs.items()} if old_plan else {}
    new_hashes = {key: job.config_hash for key, job in plan.jobs.items()}
    changes = {"added": sorted(set(new_hashes) - set(old_hashes)), "removed": sorted(set(old_hashes) - set(new_hashes)),
               "changed": sorted(k for k in set(new_hashes) & set(old_hashes) if new_hashes[k] != old_hashes[k])}
    # A job that copies from a changed or removed one is changed too, even if its own spec is not.
    stale = set(changes["changed"]) | set(changes["removed"])
    for key in order_jobs(plan.jobs):
        if key in old_hashes and key not in stale and any(dep in stale for dep in plan.jobs[key].depends):
            stale.add(key)
    changes["changed"] = sorted(stale - set(changes["removed"]))
    if old_plan and stale:
        _stop_live_jobs(plan.study_dir, sorted(stale), cancel_changed, echo)
    for key in changes["changed"]:
        out_dir = plan.jobs[key].out_dir
        if out_dir.exists():
            aside = out_dir.with_name(f"{out_dir.name}.old-{old_hashes[key]}")
            shutil.rmtree(aside, ignore_errors=True)
            out_dir.rename(aside)
    if old_plan and stale:
        _forget_submissions(plan.study_dir, old_plan, stale)
    for path, text in plan.splits_written.items():
        _write_if_changed(Path(path), text)
    if plan.imports:
        from transferbench.worker.sources import write_imported

        for folder, imported in plan.imports.items():
            write_imported(imported, folder)
            echo(f"imported {imported.info.origin} into {folder}")
    wrote = _write_if_changed(plan.study_dir / "plan.json", plan.file.to_text())
    _write_if_changed(plan.study_dir / "summary.txt", plan.summary())
    if not old_hashes:
        echo(f"planned {len(plan.jobs)} jobs in {plan.study_dir}")
    elif not wrote and not changes["changed"]:
        echo(f"{plan.study_dir}: plan unchanged ({len(plan.jobs)} jobs); nothing written")
    else:
        for what in ("added", "removed", "changed"):
            if changes[what]:
                shown = ", ".join(changes[what][:8]) + (f" and {len(changes[what]) - 8} more" if len(changes[what]) > 8 else "")
                echo(f"{len(changes[what])} jobs {what}: {shown}")
        if changes["changed"]:
            echo("  (their old outputs were moved aside to <run folder>.old-<hash>; they will be re-run; a job whose "
                 "base changed counts as changed)")
    return changes


def _forget_submissions(study_dir: Path, old_plan: PlanFile, keys: set[str]) -> None:
    """Drop the manifest entries of changed and removed jobs: they were submissions of the old
    specs, and the new ones start as planned."""
    study = Study(study_dir, old_plan)
    manifest = study.manifest()
    if any(key in manifest for key in keys):
        study.save_manifest({key: entry for key, entry in manifest.items() if key not in keys})


def _stop_live_jobs(study_dir: Path, keys: list[str], cancel: bool, echo) -> None:
    """Refuse (or, with ``cancel``, cancel and wait for) the jobs among ``keys`` that are queued or
    running under the old plan: a job must never write its old result into a re-planned folder."""
    import os
    import signal
    import subprocess
    import time

    study = Study.open(study_dir)
    wanted = [key for key in keys if key in study.jobs]

    def live() -> dict[str, tuple[str, str]]:
        current = states(study)
        return {key: current[key] for key in wanted if current[key][0] in ("queued", "running", "unknown")}

    found = live()
    if not found:
        return
    key, (state, detail) = next(iter(found.items()))
    if not cancel:
        what = "cannot be checked" if state == "unknown" else state
        raise UserError(f"{len(found)} changed jobs are still queued or running under the old plan ({key}: {what}, "
                        f"{detail}); wait for them to end, or plan again with --cancel-changed to cancel them first")
    if any(s == "unknown" for s, _ in found.values()):
        raise UserError(f"cannot cancel the changed jobs: {detail}")
    manifest = study.manifest()
    slurm_ids = [manifest[k].job_id for k in found if manifest[k].executor == "slurm" and manifest[k].job_id]
    if slurm_ids:
        subprocess.run(["scancel", *slurm_ids], check=False, capture_output=True)
    for k in found:
        if manifest[k].executor != "slurm" and manifest[k].pid:
            try:
                os.kill(manifest[k].pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    echo(f"cancelled {len(found)} changed jobs that were queued or running; waiting for them to end ...")
    deadline = time.monotonic() + CANCEL_WAIT_S
    while (still := live()) and time.monotonic() < deadline:
        time.sleep(1)
    if still:
        raise UserError(f"{len(still)} cancelled jobs have not ended after {CANCEL_WAIT_S} s "
                        f"({next(iter(still))}); check `squeue` and plan again")
