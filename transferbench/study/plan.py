"""The planner: expand a study config (TOML) into every job, its dependencies and its spec.

A study config has four tables: ``[study]`` (name, dataset, seeds, data location),
``[model]`` and ``[train]`` (defaults for every job, the paper's recipe when empty),
``[slurm]`` (resources), and one ``[[block]]`` per group of networks:

    [[block]]
    name = "random"                      # a label for the summary
    splits = ["random0", "random1"]      # splits/<dataset>-<name>.json, "all", or reducedK
    networks = ["baseA", "AnB", "AnB+"]  # the paper's notation, n taken from `n`
    n = [1, 2, 3, 4, 5, 6, 7]            # default: 1..L, every block of the architecture

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_text
from transferbench.schema.config import DATASET_CLASSES, Block, StudyConfig, load_config
from transferbench.schema.notation import Pattern, parse_network, parse_pattern
from transferbench.schema.plan import PlanFile, PlannedJob
from transferbench.schema.spec import LAYOUTS, Condition, DataOptions, Growth, JobSpec, ModelConfig, SourceRef, TrainConfig
from transferbench.shipped import find_config, shipped_dir
from transferbench.study.study import Study, order_jobs
from transferbench.study.status import states



@dataclass
class Plan:
    """A planned study before it is written: the plan file, where it goes, the splits it generated,
    the source weights it imported (written with the plan), and what its cross-dataset blocks use."""

    study_dir: Path
    file: PlanFile
    splits_written: dict[str, str]  # generated split files: path -> text
    imports: dict[Path, Any] = field(default_factory=dict)  # folder -> worker.sources.ImportedSource to write
    details: list[str] = field(default_factory=list)  # sources and targets of cross-dataset blocks, for the summary
    aliases: dict[str, str] = field(default_factory=dict)  # another study's legacy job hash -> its identity now

    @property
    def study(self) -> str:
        return self.file.study

    @property
    def jobs(self) -> dict[str, PlannedJob]:
        return self.file.jobs

    def summary(self) -> str:
        text = summarise(self.jobs.values(), self.study)
        filled = [(block.get("name") or f"block{number}", block["paper"])
                  for number, block in enumerate(self.file.config.get("block", []), 1) if block.get("paper")]
        if filled:
            width = max(len(name) for name, _ in filled)
            text += "\n  what each block fills in the paper:\n" + "".join(f"    {name:{width}s}  {paper}\n" for name, paper in filled)
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
    found = find_config(config_path)
    # A preset given by its name is not where the user works: its relative paths (data folders,
    # weights) start where `plan` runs, as --data-root's do; a config given by its path keeps its folder.
    directory = Path.cwd() if found != Path(config_path) else None
    return load_config(found, overrides, study_overrides, shipped_dir("configs"), directory)


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
    aliases = {old: new for found in planner.sources.values() for old, new in found.aliases.items()}
    return Plan(study_dir, PlanFile(study.name, raw, planner.jobs), planner.splits_written, imports, planner.details(),
                aliases)


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
class _Scope:
    """What every job expanded for one block, on one split (or one cross-dataset block's sides),
    with one seed, shares: passed down explicitly, never kept on the planner."""

    where: str  # "block N", for messages
    name: str  # the block's label
    model: dict[str, Any]  # ModelConfig values (num_classes is set per side)
    train: dict[str, Any]  # TrainConfig values (seed is set per job)
    scratch: dict[str, Any]  # TrainConfig values of networks trained from scratch (bases, wide bases)
    growth: dict[str, Any]  # Growth settings (scale_init, new_lr_mult)
    forgetting: bool  # measure the source's accuracy after transfer
    retrain: dict[str, Any] | None = None  # retrain_source: the recipe of the -onA networks (None: none planned)
    sides: dict[str, int] = field(default_factory=dict)  # side -> classes ("all" for a whole dataset)
    split_name: str | None = None  # the key's first part on a split ("random0", "all", "reduced0010")
    split_file: str | None = None  # the split file (None: all classes)
    split_hash: str | None = None  # its content hash: what the jobs' identity covers
    cross: "_Cross | None" = None  # a cross-dataset block: its source and targets
    seed: int = 0


KEY_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a split's part of job keys and run folders
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
    """Expands blocks into PlannedJobs; bases are planned once however many jobs copy them. What it
    keeps across blocks: the jobs, the generated splits, the resolved sources and targets, the
    study's layout and data fingerprints (each read once)."""

    def __init__(self, config: StudyConfig, study_dir: Path, split_dirs: list[Path], data_path, jobs_root: Path) -> None:
        self.config, self.study_dir, self.split_dirs, self.data_path = config, study_dir, split_dirs, data_path
        self.jobs_root = jobs_root
        self.jobs: dict[str, PlannedJob] = {}
        self.splits_written: dict[str, str] = {}
        self.sources: dict[str, Any] = {}  # resolved [source] tables (study.cross.Source), once each
        self.targets: dict[str, Any] = {}  # resolved [target] tables (study.cross.SideData)
        self.layout_classes: tuple[str, ...] | None = None  # the study's dataset read from its layout: its classes
        self.fingerprints: dict[tuple, str | None] = {}

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

    def data_id(self, dataset: str, root: str | None, options: DataOptions | None, val_list: str | None) -> str | None:
        """The fingerprint of a dataset's images (tasks/fingerprint.py), computed once per plan."""
        from transferbench.tasks.fingerprint import data_fingerprint

        key = (dataset, root, options, val_list)
        if key not in self.fingerprints:
            self.fingerprints[key] = data_fingerprint(dataset, root, options, val_list)
        return self.fingerprints[key]

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

    def _cross(self, block: Block, where: str) -> _Cross:
        """The block's source and targets (each resolved once per plan)."""
        from transferbench.study.cross import resolve_source, resolve_target

        config = self.config
        if block.source not in self.sources:
            self.sources[block.source] = resolve_source(block.source, config.sources[block.source], self.study_dir,
                                                        self.jobs_root, self.data_path, self.find_split,
                                                        f"{config.source}: {where}", self.data_id)
        for name in block.targets:
            if name not in self.targets:
                self.targets[name] = resolve_target(name, config.targets[name], self.data_path, self.find_split,
                                                    f"{config.source}: {where} target {name}", self.data_id)
        return _Cross(self.sources[block.source], [self.targets[name] for name in block.targets])

    def _cross_values(self, cross: _Cross, block: Block, model_values: dict[str, Any], train_values: dict[str, Any],
                      where: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A cross-dataset block's model and recipe: the architecture and input contract are the source's."""
        from transferbench.study.cross import SOURCE_MODEL_KEYS, SOURCE_TRAIN_KEYS

        info = cross.source.info
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
        source, where = self.config.source, f"block {number}"
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
        scratch_values = self.config.scratch_values(block)
        retrain_values = self.config.retrain_values(block) if block.retrain_source else None
        if block.retrain_source and not any(p.kind == "grown" and p.chain for p in patterns):
            raise UserError(f"{source}: {where} retrain_source retrains the classifier of networks that fine-tune layers "
                            "1..7 (A7B+, A7B+WA, A7B+-fc7, chains); the block lists none")
        scopes: list[_Scope] = []
        if block.source is not None:
            cross = self._cross(block, where)
            model_values, train_values = self._cross_values(cross, block, model_values, train_values, where)
            _, scratch_values = self._cross_values(cross, block, model_values, scratch_values, where)
            if retrain_values is not None:
                _, retrain_values = self._cross_values(cross, block, model_values, retrain_values, where)
            sides = {letter: (data.classes if data else cross.source.info.model.num_classes)
                     for letter, data in cross.letters().items()}
            scopes.append(_Scope(where, block.name or f"block{number}", model_values, train_values, scratch_values,
                                 growth_values, forgetting, retrain_values, sides, cross=cross))
        else:
            base = _Scope(where, block.name or f"block{number}", model_values, train_values, scratch_values, growth_values,
                          forgetting, retrain_values)
            scopes += [self._split_scope(base, split_name) for split_name in block.splits]
        for scope in scopes:
            for seed in self.config.study.seeds:
                for pattern in patterns:
                    self.expand(replace(scope, seed=seed), pattern, block)

    def _split_scope(self, scope: _Scope, split_name: str) -> _Scope:
        """``scope`` on one split of the study's dataset: its file, content hash and sides."""
        from transferbench.tasks.splits import check_split_classes, load_split, reduced_split

        source, where, dataset = self.config.source, scope.where, self.config.study.dataset
        if split_name == "all":
            classes = len(self._study_layout(where)) if dataset in LAYOUTS else DATASET_CLASSES[dataset]
            return replace(scope, split_name=split_name, sides={"all": classes})
        match = re.fullmatch(r"reduced(\d+)", split_name)
        if match:
            from transferbench.tasks.classes import load_table

            if dataset in LAYOUTS:
                raise UserError(f"{source}: {where}: reduced splits are for the built-in datasets, not {dataset}")
            split = reduced_split(load_table(dataset), int(match.group(1)))
            path = self.study_dir / "splits" / f"{split.name}.json"
            self.splits_written[str(path)] = split.to_json()
        else:
            path = _split_path(split_name, dataset, self.split_dirs, f"{source}: {where}")
            split = load_split(path)
            if split.dataset != dataset:
                raise UserError(f"{source}: {where} split {split_name} is for {split.dataset}, the study is {dataset}")
            if dataset in LAYOUTS:
                from transferbench.tasks.classes import layout_table

                check_split_classes(split, layout_table(dataset, self._study_layout(where)), f"{source}: {where}")
        key_name = split_name
        if not KEY_PART.fullmatch(split_name):  # a path: the key and the run folders take the split's own name
            key_name = split.name.removeprefix(f"{dataset}-")
            if not KEY_PART.fullmatch(key_name):
                raise UserError(f"{source}: {where}: split {split_name} is named {split.name!r}, which cannot name job keys "
                                "and folders (letters, digits, - _ .); give it another name (splits ... --name)")
        return replace(scope, split_name=key_name, split_file=str(path), split_hash=split.content_hash(),
                       sides={side: len(classes) for side, classes in split.sides.items()})

    # ------------------------------------------------------------------ one pattern

    def side_of(self, scope: _Scope, letter: str, pattern: str) -> str | None:
        source, where, cross = self.config.source, scope.where, scope.cross
        if cross is not None and letter not in scope.sides:
            sides = ", ".join(f"{side} ({data.name if data else cross.source.name})" for side, data in cross.letters().items())
            raise UserError(f"{source}: {where} network {pattern!r} needs {'a side letter' if not letter else f'side {letter}'}; "
                            f"this cross-dataset block's sides are {sides}")
        if not letter:
            if "all" not in scope.sides:
                raise UserError(f"{source}: {where} network {pattern!r} needs a side letter on split {scope.split_name} "
                                f"(sides: {', '.join(scope.sides)})")
            return None if scope.split_file is None else "all"
        if letter not in scope.sides:
            raise UserError(f"{source}: {where} network {pattern!r}: split {scope.split_name} has no side {letter}; "
                            f"its sides are {', '.join(scope.sides)}")
        return letter

    def _data(self, scope: _Scope, side: str | None, external: bool, source_side: str | None) -> dict[str, Any]:
        """The data fields of a job's spec on ``side`` (of the split, or of the cross-dataset block)."""
        study, forgetting, cross = self.config.study, scope.forgetting, scope.cross
        if cross is None:
            root, val_list = self.data_path(study.data_root), self.data_path(study.val_list)
            return dict(dataset=study.dataset, split=scope.split_file, split_hash=scope.split_hash, side=side,
                        data_root=root, val_list=val_list, data_options=self.study_options,
                        data_id=self.data_id(study.dataset, root, self.study_options, val_list),
                        forgetting_side=source_side if forgetting and source_side not in (None, "all") else None)
        data = cross.letters()[side]
        if data is None:
            raise UserError(f"{self.config.source}: {scope.where}: a network on side A trains on the source's own "
                            f"data, which is not known; give [source.{cross.source.name}] dataset and data_root")
        source_data = cross.letters()[source_side] if source_side else None
        info = cross.source.info
        return dict(dataset=data.dataset, split=data.split, split_hash=data.split_hash, side=data.side,
                    data_root=data.data_root, val_list=data.val_list, data_options=data.data_options, data_id=data.data_id,
                    input=cross.source.input(),
                    source_ref=SourceRef(info.name, info.config_hash, info.attempt, cross.source.settings_text)
                    if external else None,
                    forgetting_data=source_data.ref() if forgetting and source_data is not None and source_data.loadable
                    else None)

    def _recipe(self, scope: _Scope, side: str | None, condition: Condition, retrain: bool = False) -> dict[str, Any]:
        """A job's TrainConfig values: the block's, or its recipe of networks trained from scratch for a
        base (and a wide base), or its [retrain] recipe for a classifier retrained on the source's task;
        a network trained from scratch on a cross-dataset source's own data (side A: a wide network)
        takes the recipe the source was trained with, where it is known (another study's job), so that
        the two differ only in width."""
        if retrain:
            return scope.retrain
        if scope.cross is not None and side == "A" and scope.cross.source.info.train is not None:
            return {key: value for key, value in scope.cross.source.info.train.items() if key != "seed"}
        return scope.scratch if condition.kind == "base" else scope.train

    def add(self, scope: _Scope, network: str, pattern: str, side: str | None, condition: Condition,
            base_key: str | None, growth: Growth | None = None, retrain: bool = False) -> str:
        """Plan one job (once: a key planned again must have the same settings). ``retrain``: the
        base frozen whole, a new classifier trained on ``side`` with the [retrain] recipe; its key
        and folder sit with the base's."""
        source, study, cross = self.config.source, self.config.study, scope.cross
        split_name = scope.split_name if cross is None else cross.segment(self.jobs[base_key].side if retrain else side)
        key = f"{split_name}/{network}/seed{scope.seed}"
        out_dir = self.study_dir / "runs" / split_name / network / f"seed{scope.seed}"
        external = base_key == EXTERNAL
        base = self.jobs[base_key] if base_key and not external else None
        source_side = "A" if external else base.side if base else None
        classes = scope.sides["all" if side is None else side]
        checkpoint = cross.source.info.weights if external else str(base.out_dir / "model.pt") if base else None
        try:
            spec = JobSpec(
                key=key, out_dir=str(out_dir), condition=condition, source_checkpoint=checkpoint,
                model=ModelConfig(**{**scope.model, "num_classes": classes}),
                train=TrainConfig(**{**self._recipe(scope, side, condition, retrain), "seed": scope.seed}),
                strict=study.strict, pack_dir=self.data_path(study.pack_dir), growth=growth,
                source_id=base.config_hash if base else None,
                **self._data(replace(scope, forgetting=False) if retrain else scope, side, external, source_side))
        except UserError as exc:
            raise UserError(f"{source}: {scope.where} network {pattern!r} on {'split ' if cross is None else ''}"
                            f"{split_name}: {exc}") from None
        job = PlannedJob(key, scope.name, split_name, network, pattern, side, scope.seed, (base_key,) if base else (), spec)
        if key in self.jobs and self.jobs[key].config_hash != job.config_hash:
            raise UserError(f"{source}: {key} is planned twice with different settings (blocks "
                            f"{self.jobs[key].block!r} and {scope.name!r}); give one of them its own split or settings")
        self.jobs.setdefault(key, job)
        return key

    def base(self, scope: _Scope, letter: str) -> str:
        if scope.cross is not None and letter == "A":
            return EXTERNAL  # the block's source network: imported, or another study's
        return self.add(scope, f"base{letter}", "baseX", self.side_of(scope, letter, f"base{letter}"), Condition(), None)

    def depth(self, scope: _Scope) -> int:
        """L: the blocks of the scope's architecture (n runs over 1..L)."""
        return ModelConfig(**{**scope.model, "num_classes": 2}).depth

    def expand(self, scope: _Scope, pattern: Pattern, block: Block) -> None:
        if pattern.kind == "grown":
            for size in (block.units if pattern.variant else [None]):
                self.grown(scope, pattern, size)
            return
        if pattern.kind == "base":
            self.base(scope, pattern.target)
            return
        depth = self.depth(scope)
        for n in block.n or range(1, depth + 1):
            if pattern.kind == "random_init":
                self.add(scope, pattern.name(n), pattern.text, self.side_of(scope, pattern.target, pattern.text),
                         Condition("random_init", n), None)
                continue
            source_base = self.base(scope, pattern.source)
            side = self.side_of(scope, pattern.target, pattern.text)
            if pattern.preserved:
                for k in block.k:
                    if n + k <= depth:
                        self.add(scope, pattern.name(n, k), pattern.text, side,
                                 Condition("preserved", n, pattern.fine_tune, k), source_base)
                continue
            kind = "selffer" if pattern.source == pattern.target else "transfer"
            self.add(scope, pattern.name(n), pattern.text, side, Condition(kind, n, pattern.fine_tune), source_base)

    def grown(self, scope: _Scope, pattern: Pattern, size: int | None) -> None:
        settings = dict(normalize=pattern.normalize, **scope.growth)
        if not pattern.chain:  # a wide base
            self.add(scope, pattern.name(size=size), pattern.text, self.side_of(scope, pattern.target, pattern.text),
                     Condition(), None, Growth(pattern.variant, (size,), new=False, **settings))
            return
        chain, model = pattern.chain, ModelConfig(**{**scope.model, "num_classes": 2})
        if pattern.n == 0:  # ALB+: every block of whatever architecture the block trains
            pattern = replace(pattern, n=model.depth)
        if pattern.n != model.depth:
            written = pattern.text.replace(str(pattern.n), str(model.depth))
            raise UserError(f"{self.config.source}: {scope.where} network {pattern.text!r} copies {pattern.n} blocks, but "
                            f"{model.arch} ({model.blocks}) has {model.depth}: a chain or a grown network copies all of "
                            f"them; write {written!r} (or L for the count: {pattern.text.replace(str(pattern.n), 'L')!r})")
        if pattern.scope in ("fc6", "fc7") and not model.architecture.has_fc_top:
            raise UserError(f"{self.config.source}: {scope.where} network {pattern.text!r}: {model.arch} has no {pattern.scope}; "
                            "its scopes are new and all")
        previous = None
        for step in range(1, len(chain)):
            src, tgt = chain[step - 1], chain[step]
            side = self.side_of(scope, tgt, pattern.text)
            kind = "selffer" if src == tgt else "transfer"
            if previous is None:
                self.side_of(scope, src, pattern.text)
                if pattern.wide:
                    previous = self.add(scope, f"base{src}-{pattern.variant}{size}", pattern.text,
                                        self.side_of(scope, src, pattern.text), Condition(), None,
                                        Growth(pattern.variant, (size,), new=False, **settings))
                else:
                    previous = self.base(scope, src)
            growth, condition = None, Condition(kind, model.depth, True)
            if pattern.variant:
                growth = Growth(pattern.variant, (size,) * step, new=not pattern.wide, scope=pattern.scope, **settings)
            elif pattern.scope != "all":
                condition = CLASSIC_SCOPES[pattern.scope](kind, model.depth)
            previous = self.add(scope, pattern.name(size=size, step=step), pattern.text, side, condition, previous, growth)
        if scope.retrain is not None:  # the last network frozen whole, a new classifier on the first task
            first = chain[0]
            frozen = growth and Growth(growth.variant, growth.units, False, growth.normalize, growth.scale_init, "new",
                                       growth.new_lr_mult)
            self.add(scope, f"{pattern.name(size=size)}-on{first}", pattern.text, self.side_of(scope, first, pattern.text),
                     Condition("selffer" if first == chain[-1] else "transfer", model.depth, False), previous, frozen,
                     retrain=True)


# Classic fine-tuning by scope (A7B+-fc7): which copied layers stay frozen, in Yosinski's conditions.
CLASSIC_SCOPES = {"new": lambda kind, depth: Condition(kind, depth, False),  # A7B: the new classifier alone
                  "fc7": lambda kind, depth: Condition("preserved", depth - 1, False, 1),  # A6B^1: fc7 and the classifier
                  "fc6": lambda kind, depth: Condition("preserved", depth - 2, False, 2)}  # A5B^2: fc6 up


def category(job: PlannedJob) -> str:
    """The paper's name for a job's kind: base, BnB (selffer), AnB, BnB+, AnB+, random-init, preserved,
    and the developmental ones: grown (variant, scope, no norm), wide, chains."""
    condition, growth = job.spec.condition, job.spec.growth
    plus = "+" if condition.fine_tune else ""
    name = parse_network(job.network)
    steps = name.chain_steps
    chain = f"chain step {steps} " if steps > 1 else ""
    if name.retrained_on:
        return f"{chain}source task, classifier retrained on {'grown' if growth is not None else 'classic'} features"
    if growth is not None:
        if condition.kind == "base":
            return f"wide base {growth.variant}"
        detail = "".join(f", {part}" for part in (growth.scope if growth.scope != "all" else "",
                                                  "" if growth.normalize or not growth.new else "no norm") if part)
        return f"{chain}{'grown' if growth.new else 'wide'} {growth.variant}{detail}"
    if chain:
        return f"{chain}fixed AnB+"
    if name.scope != "all":
        return f"classic A7B+, scope {name.scope}"
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
    lines += ["", "  recipes (every network of a condition trains with one of them):"] + recipe_lines(jobs)
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


def recipe_lines(jobs: list[PlannedJob]) -> list[str]:
    """One line per recipe the plan uses: its learning rate, schedule and length, and the conditions
    that train with it (a study's [scratch] recipe for bases, its [train] recipe for the rest)."""
    recipes: dict[str, set[str]] = {}
    for job in jobs:
        t = job.spec.train
        length = f"{t.epochs:g} epochs" if t.epochs is not None else f"{t.iterations} iterations"
        step = f"every {t.lr_step_epochs:g} epochs" if t.lr_step_epochs is not None else f"every {t.lr_step} iterations"
        text = f"lr {t.lr:g} (x{t.lr_gamma:g} {step}), batch {t.batch_size}, {length}"
        recipes.setdefault(text, set()).add(category(job))
    return [f"    {text}: {'; '.join(sorted(kinds))}" for text, kinds in recipes.items()]


def fused_summary(jobs: dict[str, PlannedJob], memory_gb: float) -> str:
    from transferbench.study.fuse import fuse_jobs

    units = fuse_jobs(jobs, order_jobs(jobs), memory_gb)
    groups = [unit for unit in units if len(unit) > 1]
    if not groups:
        streams = Counter(job.spec.stream() for job in jobs.values() if job.spec.stream() is not None)
        if any(count > 1 for count in streams.values()):
            smallest = min(job.spec.memory_estimate() for job in jobs.values())
            return (f"\n  fused: jobs share data streams, but no two fit under fuse_memory_gb = {memory_gb:g} (each needs about "
                    f"{_size(smallest)} or more); every job trains alone\n")
        return "\n  fused: no two jobs share a data stream; every job trains alone\n"
    largest = max(sum(jobs[key].spec.memory_estimate() for key in unit) for unit in groups)
    sizes = sorted(len(unit) for unit in groups)
    size = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]}-{sizes[-1]}"
    group_word = "fused group" if len(groups) == 1 else "fused groups"
    return (f"\n  fused: {len(jobs)} jobs train in {len(units)} processes: {len(groups)} {group_word} of {size} "
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


def _old_plan(plan: Plan) -> tuple[PlanFile | None, dict[str, str], dict[str, str]]:
    """The plan on disk, each of its jobs' hash as the new plan should compare it, and the jobs of a
    legacy plan that compute what the new plan's do (key -> legacy hash: their files are migrated)."""
    from transferbench.schema.plan import read_legacy
    from transferbench.study.migrate import same_job

    if not (plan.study_dir / "plan.json").is_file():
        return None, {}, {}
    legacy = read_legacy(plan.study_dir)
    if legacy is None:
        old_plan = read_plan(plan.study_dir)
        return old_plan, {key: job.config_hash for key, job in old_plan.jobs.items()}, {}
    old_plan, legacy_hashes = legacy
    migrated = {key: legacy_hashes[key] for key, job in old_plan.jobs.items()
                if key in plan.jobs and same_job(job, plan.jobs[key], plan.aliases)}
    old_hashes = {key: plan.jobs[key].config_hash if key in migrated else legacy_hashes[key] for key in old_plan.jobs}
    return old_plan, old_hashes, migrated


def _diff(plan: Plan, old_hashes: dict[str, str]) -> tuple[dict[str, list[str]], set[str]]:
    """The added, removed and changed jobs, and the stale ones (changed or removed, and every job
    that copies from one: its result would rest on a base that no longer exists)."""
    new_hashes = {key: job.config_hash for key, job in plan.jobs.items()}
    changes = {"added": sorted(set(new_hashes) - set(old_hashes)), "removed": sorted(set(old_hashes) - set(new_hashes)),
               "changed": sorted(k for k in set(new_hashes) & set(old_hashes) if new_hashes[k] != old_hashes[k])}
    stale = set(changes["changed"]) | set(changes["removed"])
    for key in order_jobs(plan.jobs):
        if key in old_hashes and key not in stale and any(dep in stale for dep in plan.jobs[key].depends):
            stale.add(key)
    changes["changed"] = sorted(stale - set(changes["removed"]))
    return changes, stale


def _write_plan(plan: Plan, echo, cancel_changed: bool) -> dict[str, list[str]]:
    old_plan, old_hashes, migrated = _old_plan(plan)
    changes, stale = _diff(plan, old_hashes)
    migrated = {key: value for key, value in migrated.items() if key not in stale}
    if old_plan and (stale or migrated):  # a migrated job must not be writing its legacy files meanwhile
        _stop_live_jobs(plan.study_dir, old_plan, sorted(stale | set(migrated)), cancel_changed, echo)
    for key in changes["changed"]:
        out_dir = plan.jobs[key].out_dir
        if out_dir.exists():
            aside = out_dir.with_name(f"{out_dir.name}.old-{old_hashes[key]}")
            shutil.rmtree(aside, ignore_errors=True)
            out_dir.rename(aside)
    if old_plan and stale:
        _forget_submissions(plan.study_dir, old_plan, stale)
    _migrate(plan, migrated, old_plan.migrated if old_plan is not None else {}, stale, echo)
    for path, text in plan.splits_written.items():
        _write_if_changed(Path(path), text)
    if plan.imports:
        from transferbench.worker.sources import write_imported

        for folder, imported in plan.imports.items():
            write_imported(imported, folder)
            echo(f"imported {imported.info.origin} into {folder}")
    wrote = _write_if_changed(plan.study_dir / "plan.json", plan.file.to_text(plan.study_dir))
    _write_if_changed(plan.study_dir / "summary.txt", plan.summary())
    _report(plan, changes, wrote, bool(old_hashes), echo)
    return changes


def _migrate(plan: Plan, migrated: dict[str, str], carried: dict[str, str], stale: set[str], echo) -> None:
    """Give the files of the jobs of a legacy plan that compute the same their new identity, and list
    every migrated job's legacy hash in the plan (kept while the job is unchanged)."""
    if migrated:
        from transferbench.study.migrate import migrate_files

        renamed = {old: plan.jobs[key].config_hash for key, old in migrated.items()}
        for key in migrated:
            migrate_files(plan.jobs[key], renamed)
        echo(f"{len(migrated)} jobs of a plan written by an older transferbench compute the same as before: their "
             "files now carry their new identity (nothing is re-run)")
    plan.file.migrated.update({key: value for key, value in {**carried, **migrated}.items()
                               if key in plan.jobs and key not in stale})


def _report(plan: Plan, changes: dict[str, list[str]], wrote: bool, replanned: bool, echo) -> None:
    if not replanned:
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
        if not any(changes.values()):
            echo(f"{plan.study_dir}: no job changed ({len(plan.jobs)} jobs); plan.json rewritten (paths or format)")


def _forget_submissions(study_dir: Path, old_plan: PlanFile, keys: set[str]) -> None:
    """Drop the manifest entries of changed and removed jobs: they were submissions of the old
    specs, and the new ones start as planned."""
    study = Study(study_dir, old_plan)
    manifest = study.manifest()
    if any(key in manifest for key in keys):
        study.save_manifest({key: entry for key, entry in manifest.items() if key not in keys})


def _stop_live_jobs(study_dir: Path, old_plan: PlanFile, keys: list[str], cancel: bool, echo) -> None:
    """Refuse (or, with ``cancel``, cancel and wait for) the jobs among ``keys`` that are queued or
    running under the old plan: a job must never write its old result into a re-planned folder."""
    import time

    study = Study(study_dir, old_plan)
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
    from transferbench.study.executors import executor_class

    manifest = study.manifest()
    by_executor: dict[str, list] = {}
    for k in found:
        by_executor.setdefault(manifest[k].executor, []).append(manifest[k])
    for name, entries in by_executor.items():
        executor_class(name).cancel(entries)
    # A fused group trains in one process: its unchanged members stop with it, checkpointed (a plain submit resumes them).
    processes = {(manifest[k].executor, manifest[k].job_id or manifest[k].pid) for k in found}
    companions = sorted(k for k, entry in manifest.items() if k not in found and k in study.jobs
                        and (entry.executor, entry.job_id or entry.pid) in processes)
    echo(f"cancelled {len(found)} changed jobs that were queued or running"
         + (f", and with them {len(companions)} unchanged jobs of their fused groups ({', '.join(companions[:3])}"
            f"{' ...' if len(companions) > 3 else ''}), which checkpoint and resume at the next `submit`" if companions else "")
         + "; waiting for them to end ...")
    deadline = time.monotonic() + CANCEL_WAIT_S
    while (still := live()) and time.monotonic() < deadline:
        time.sleep(1)
    if still:
        raise UserError(f"{len(still)} cancelled jobs have not ended after {CANCEL_WAIT_S} s "
                        f"({next(iter(still))}); check `squeue` and plan again")
