"""Cross-dataset blocks: the source network they transfer from and the target data they transfer to.

A study config's ``[source.<name>]`` is a pretrained network: weights imported from a file at
`plan` (into ``jobs/<study>/sources/<name>/``: transferbench's ``model.pt``, ``mean.pt`` and
``source.json``; imported again only when the file or the import settings change), or a job
of another study (``job = "<study>:<job key>"``, read from that study's plan). A
``[target.<name>]`` is a dataset: all its classes, or one side of a split of it.

In a cross-dataset block, side A of the networks is the source and B, C, ... its targets in
order, so the paper's notation reads as it does within one dataset: ``A7B+`` fine-tunes the
source on the first target, ``A7B7C+`` continues to the second, ``A3B`` freezes the source's
layers 1..3, ``baseB`` trains on the first target from scratch, ``A7B+WA`` grows the source,
``baseA-WA`` trains a wide network on the source's own data. Every job of the block sees its
images as the source network did (``InputAdapter``: its size, channels and mean image; its
crop and input scale in the recipe), so that the copied layers read what they were trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from transferbench.errors import UserError
from transferbench.fileio import file_sha256
from transferbench.schema.config import IMAGE_SIZES, SourceSettings, TargetSettings
from transferbench.schema.plan import PlanFile
from transferbench.schema.record import read_attempts
from transferbench.schema.source import SourceInfo
from transferbench.schema.spec import LAYOUTS, DataOptions, DataRef, InputAdapter
from transferbench.tasks.layout import dataset_classes

# The model values that are the source's: a cross-dataset block takes them from its weights.
SOURCE_MODEL_KEYS = ("arch", "in_channels", "conv_widths", "fc_width")
# The recipe values that are the source's input contract.
SOURCE_TRAIN_KEYS = ("crop", "input_scale", "resize")


@dataclass(frozen=True)
class SideData:
    """Where the images of one side of a cross-dataset block come from."""

    name: str  # the [target]'s (or the source's) name: part of job keys
    dataset: str
    split: str | None  # a split file, or None for all classes
    side: str | None  # the split's side
    classes: int
    data_root: str | None
    val_list: str | None
    data_options: DataOptions | None
    description: str  # for the plan summary
    split_hash: str | None = None  # the split's content hash
    data_id: str | None = None  # the data's fingerprint (tasks/fingerprint.py)

    def ref(self) -> DataRef:
        return DataRef(self.dataset, self.split, self.side, self.data_root, self.val_list, self.data_options,
                       self.split_hash, self.data_id)

    @property
    def loadable(self) -> bool:
        """Whether its images can be read: a folder is given, or the dataset needs none (built in,
        or Debian's Fashion-MNIST)."""
        return self.data_root is not None or self.dataset in ("synthetic", "fashion-mnist")


@dataclass
class Source:
    """A resolved [source.<name>]."""

    name: str
    info: SourceInfo
    folder: Path | None  # imported weights: where they go (jobs/<study>/sources/<name>)
    imported: Any = None  # worker.sources.ImportedSource still to write, or None (written already, or a study's job)
    data: SideData | None = None  # its own data, where known
    notes: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # another study's job: its legacy hash -> its identity now

    @property
    def settings_text(self) -> str | None:
        """An imported file's import settings as canonical JSON (part of the identity of every job
        that copies from it); None for another study's job, whose identity is its own hash."""
        if self.info.settings is None:
            return None
        settings = dict(self.info.settings)
        if self.info.std is not None:  # the input it computes with, where it is not the default (Caffe's)
            settings["std"] = list(self.info.std)
        if self.info.resize != "warp":
            settings["resize"] = self.info.resize
        return json.dumps(settings, sort_keys=True, separators=(",", ":"))

    @property
    def mean_file(self) -> str:
        return str(self.folder / "mean.pt") if self.folder is not None else self.info.weights

    def input(self) -> InputAdapter:
        return InputAdapter(size=self.info.size, channels=self.info.channels, mean="source", mean_file=self.mean_file,
                            mean_of=self.info.mean_identity,
                            std=tuple(self.info.std) if self.info.std is not None else None, resize=self.info.resize)


DataId = Callable[[str, "str | None", "DataOptions | None", "str | None"], "str | None"]


def resolve_target(name: str, settings: TargetSettings, data_path: Callable[[str | None], str | None],
                   find_split: Callable[[str, str, str], Path], where: str, data_id: DataId) -> SideData:
    """A [target.<name>]: its classes (all, or one side of a split), checked on disk where it is read
    from a layout. ``data_id``: the planner's fingerprint of a dataset (computed once per plan)."""
    root = data_path(settings.data_root)
    options = settings.data_options or (DataOptions() if settings.dataset in LAYOUTS else None)
    classes, description = dataset_classes(settings.dataset, root, options, where)
    split_file = split_hash = None
    if settings.split is not None:
        from transferbench.tasks.splits import load_split

        split_file = str(find_split(settings.split, settings.dataset, where))
        split = load_split(split_file)
        if settings.dataset in LAYOUTS:
            from transferbench.tasks.classes import layout_table
            from transferbench.tasks.layout import read_layout
            from transferbench.tasks.splits import check_split_classes

            check_split_classes(split, layout_table(settings.dataset, read_layout(settings.dataset, Path(root), options,
                                                                                  check_files=False).classes), where)
        classes = len(split.side(settings.side))
        split_hash = split.content_hash()
        description += f"; side {settings.side} of {split.name} ({split.side_names.get(settings.side, '')}): {classes} classes"
    if classes < 2:
        raise UserError(f"{where}: target {name} has {classes} class; a classifier needs at least 2 (choose a larger side "
                        "or dataset)")
    val_list = data_path(settings.val_list)
    return SideData(name, settings.dataset, split_file, settings.side, classes, root, val_list, options, description,
                    split_hash, data_id(settings.dataset, root, options, val_list))


def resolve_source(name: str, settings: SourceSettings, study_dir: Path, jobs_root: Path,
                   data_path: Callable[[str | None], str | None], find_split: Callable[[str, str, str], Path],
                   where: str, data_id: DataId) -> Source:
    """A [source.<name>]: another study's job (from its plan), or weights imported from a file."""
    if settings.job is not None:
        return _study_source(name, settings.job, jobs_root, where)
    path = Path(data_path(settings.weights))
    if not path.is_file():
        raise UserError(f"{where}: weights {path} do not exist; set [source.{name}] weights to the .caffemodel or state "
                        "dict (e.g. --set source.{name}.weights=/models/bvlc_reference_caffenet.caffemodel)".replace(
                            "{name}", name))
    folder = study_dir / "sources" / name
    mean = settings.mean if not isinstance(settings.mean, str) else data_path(settings.mean)
    import_settings = {"format": settings.format, "mean": list(mean) if isinstance(mean, tuple) else mean,
                       "channel_order": settings.channel_order, "size": settings.size}
    for added in ("std", "resize"):  # settings added later: absent when unset, so earlier imports keep their identity
        if getattr(settings, added) is not None:
            import_settings[added] = getattr(settings, added)
    import_settings = json.loads(json.dumps(import_settings))  # tuples as lists, as source.json holds them
    info, imported = _cached_import(folder, path, import_settings), None
    if info is None:
        from transferbench.worker.sources import import_weights

        try:
            imported = import_weights(path, name, settings.format, mean, settings.channel_order, settings.size,
                                      settings.std, settings.resize)
        except UserError as exc:
            raise UserError(f"{where}: source {name}: {exc}") from None
        info = replace(imported.info, weights=str(folder / "model.pt"), settings=import_settings)
        imported.info = info
    data = None
    if settings.dataset is not None:
        data = _source_data(name, settings, info, data_path, find_split, where, data_id)
    source = Source(name, info, folder, imported, data)
    if data is None:
        source.notes.append(f"forgetting is not measured and no wide network is trained on {name}'s own data: it is not "
                            f"known (give [source.{name}] dataset and data_root)")
    elif not data.loadable:
        source.notes.append(f"forgetting is not measured: {name}'s own data ({data.dataset}) has no data_root; a wide "
                            f"network trained on it is planned, and submit holds it until [source.{name}] data_root is given")
    return source


def _cached_import(folder: Path, path: Path, settings: dict[str, Any]) -> SourceInfo | None:
    """The description of an earlier import of the same file with the same settings, else None."""
    described = folder / "source.json"
    if not described.is_file() or not (folder / "model.pt").is_file() or not (folder / "mean.pt").is_file():
        return None
    try:
        info = SourceInfo.read(described)
    except UserError:
        return None
    if info.origin != str(path) or info.settings != settings or file_sha256(path)[:16] != info.config_hash:
        return None
    if info.format.startswith("torchvision") and info.std is None:
        return None  # imported when torchvision's std was folded into conv1: import it again
    return info
    return info


def _source_data(name: str, settings: SourceSettings, info: SourceInfo, data_path, find_split, where: str,
                 data_id: DataId) -> SideData:
    target = TargetSettings(settings.dataset, settings.data_root, settings.val_list, settings.data_options,
                            settings.split, settings.side)
    data = resolve_target(name, target, data_path, find_split, f"{where}: [source.{name}]", data_id)
    if data.classes != info.model.num_classes:
        raise UserError(f"{where}: source {name} has {info.model.num_classes} classes, but its data ({data.description}) "
                        f"has {data.classes}; [source.{name}] dataset, split and side name the data it was trained on")
    return data


def _study_source(name: str, reference: str, jobs_root: Path, where: str) -> Source:
    """A job of another study as a source: its architecture, input and data from that study's plan."""
    study_text, _, key = reference.rpartition(":")
    study_dir = Path(study_text).expanduser().resolve() if "/" in study_text else jobs_root / study_text
    if not (study_dir / "plan.json").is_file():
        raise UserError(f"{where}: source {name} names study {study_text!r}, but {study_dir / 'plan.json'} does not exist; "
                        "plan that study first (its folder is found beside this study's, or give its path)")
    plan = PlanFile.read(study_dir)
    job = plan.jobs.get(key)
    if job is None:
        close = [k for k in plan.jobs if k.split("/")[:1] == key.split("/")[:1]] or list(plan.jobs)
        raise UserError(f"{where}: source {name}: {key!r} is not a job of {plan.study} ({len(plan.jobs)} jobs, e.g. "
                        f"{', '.join(close[:4])})")
    spec = job.spec
    if spec.growth is not None:
        raise UserError(f"{where}: source {name}: {key} is a grown network; a source is a plain 8-layer network")
    if spec.input is not None:  # itself fed another network's way: it keeps that input
        size, std, resize = spec.input.size, spec.input.std, spec.input.resize
    else:
        size, std, resize = IMAGE_SIZES.get(spec.dataset, spec.train.resize), None, "warp"
    info = SourceInfo(name=f"{plan.study}:{key}", origin=spec.out_dir, format="study", config_hash=job.config_hash,
                      attempt=len(read_attempts(Path(spec.out_dir))) + 1, weights=str(Path(spec.out_dir) / "model.pt"),
                      model=spec.model, size=size, crop=spec.train.crop, input_scale=spec.train.input_scale,
                      mean=f"the mean image {plan.study}:{key} was trained with (stored in its model.pt)",
                      data=DataRef(spec.dataset, spec.split, spec.side, spec.data_root, spec.val_list, spec.data_options,
                                   spec.split_hash, spec.data_id),
                      train=json.loads(json.dumps(spec.to_dict()["train"])), std=std, resize=resize)
    data = SideData(name, spec.dataset, spec.split, spec.side, spec.model.num_classes, spec.data_root, spec.val_list,
                    spec.data_options, f"{spec.dataset}{f' side {spec.side}' if spec.side else ''}, as {plan.study} planned it",
                    spec.split_hash, spec.data_id)
    legacy = plan.migrated.get(key)
    source = Source(name, info, None, None, data, aliases={legacy: job.config_hash} if legacy else {})
    if not data.loadable:
        source.notes.append(f"forgetting is not measured and a wide network on its data is held: {plan.study} was planned "
                            f"without its data_root; plan it again with --data-root, then this study")
    if not (Path(spec.out_dir) / "result.json").is_file():
        source.notes.append(f"{plan.study}:{key} is not trained yet: `submit` holds this block's transfers until it is")
    return source


def describe_std(info: SourceInfo) -> str:
    """The rest of a source's input, in words: its std and way of resizing, where it has them."""
    text = f", divided by {[round(v, 3) for v in info.std]}" if info.std is not None else ""
    return text + ("; shorter side resized, centre crop" if info.resize == "shorter" else "")


def describe_source(source: Source) -> list[str]:
    info = source.info
    model = info.model
    lines = [f"  source {source.name}: {info.name} ({info.format}, from {info.origin})",
             f"    network {model.describe()}",
             f"    every image of its blocks: resized to {info.size} px, {info.channels} channel{'s' if info.channels > 1 else ''}, "
             f"{info.crop} px crop, scale {info.input_scale:g}, minus {info.mean}{describe_std(info)}"]
    lines += [f"    {note}" for note in (*info.notes, *source.notes)]
    return lines
