"""Shared fixtures: the authors' reference files and WordNet.

Both live outside the repository (``../shared`` and a WordNet install).  Locally a test
that needs one is skipped when it is absent; CI sets ``TRANSFERBENCH_REQUIRE_EXTERNALS=1``
so that a missing one fails the run instead of silently skipping it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("TRANSFERBENCH_REFERENCE", REPO.parent / "shared" / "reference" / "yosinski2014"))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run wherever a CUDA device is visible, and skip (saying why) elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _missing(what: str) -> None:
    if os.environ.get("TRANSFERBENCH_REQUIRE_EXTERNALS") == "1":
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def reference() -> Path:
    """The authors' published files (class lists, split files, logs)."""
    if not (REFERENCE / "ilsvrc12" / "synsets.txt").is_file():
        _missing(f"reference folder {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def wordnet():
    """A WordNet 3.0 reader ($TRANSFERBENCH_WORDNET_DIR, nltk's data path, or /usr/share/wordnet)."""
    from transferbench.errors import UserError
    from transferbench.tasks.wordnet import load_wordnet

    for folder in (None, "/usr/share/wordnet"):
        try:
            return load_wordnet(folder)
        except UserError:
            continue
    _missing("WordNet 3.0")


def write_idx(path: Path, array) -> None:
    """An IDX file (the MNIST format), gzipped when the name ends in .gz."""
    import gzip
    import struct

    import numpy as np

    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(header + np.asarray(array).astype(np.uint8).tobytes())


def make_fashion_mnist(root: Path, train: int = 200, test: int = 50) -> Path:
    """A miniature Fashion-MNIST in torchvision's layout (ROOT/FashionMNIST/raw): class-dependent bars."""
    import numpy as np

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 60, (count, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label:2 * label + 8, 4:24] += 150
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


TINY_STUDY = """
[study]
name = "{name}"
dataset = "fashion-mnist"
data_root = "{data}"
seeds = [0]

[model]
arch = "small"
in_channels = 1
conv_widths = [4, 4, 6, 6, 4]
fc_width = 16
init = "kaiming"

[train]
lr = {lr}
batch_size = 16
iterations = {iterations}
lr_step = 1000
eval_every = {every}
checkpoint_every = {every}
crop = 28
pad = 2
input_scale = 0.015625

[slurm]
cpus = 1
time_min = 10
device = "cpu"

[[block]]
name = "random"
splits = ["random0"]
networks = {networks}
n = {n}
{extra}"""


# A slightly larger network without dropout, which learns the miniature data within 200 iterations.
LEARNING_STUDY = TINY_STUDY.replace("conv_widths = [4, 4, 6, 6, 4]\nfc_width = 16",
                                    "conv_widths = [8, 8, 8, 8, 8]\nfc_width = 32\ndropout = 0.0")


def tiny_study(tmp_path: Path, name: str, networks: list[str], n: list[int], iterations: int = 12, every: int = 4,
               lr: float = 0.05, data: Path | None = None, extra: str = "", template: str = TINY_STUDY) -> Path:
    """Plan a study of the tiny network on a miniature Fashion-MNIST (config at tmp_path/<name>.toml); its folder.
    ``extra``: more keys of the block (e.g. ``units = [8]``); ``template``: TINY_STUDY or LEARNING_STUDY."""
    import json

    from transferbench.study.plan import build_plan, write_plan

    data = data or make_fashion_mnist(tmp_path / "data")
    config = tmp_path / f"{name}.toml"
    config.write_text(template.format(name=name, data=data, lr=lr, iterations=iterations, every=every,
                                      networks=json.dumps(networks), n=json.dumps(n), extra=extra))
    plan = build_plan(config, tmp_path / "jobs")
    write_plan(plan, echo=lambda *_: None)
    return plan.study_dir


def record_text(spec, status: str = "done") -> str:
    """A complete result.json for ``spec`` (one evaluation), as the worker writes it."""
    from transferbench.schema.record import JobIdentity, ResultRecord

    evaluation = {"iteration": 1, "top1": 0.5, "top5": 0.9, "loss": 1.0}
    return ResultRecord(
        key=spec.key, status=status, reason=None if status == "done" else "diverged", spec=spec.to_dict(),
        condition=spec.condition.label(), top1_final=0.5, top5_final=0.9, top1_mean_best10=0.5, evaluations=[evaluation],
        train_loss=[[1, 1.0]], iterations=1, images_seen=16, train_images=16, val_images=8, skipped_images=0,
        wall_time_s=1.0, resumed_at=[], started_at=0.0, finished_at=1.0, device="cpu", versions={}, git_commit=None,
        config_hash=spec.config_hash(), layers={}, identity=JobIdentity.from_key(spec)).to_text()


@contextlib.contextmanager
def stop_during(iteration: int):
    """Training asks itself to stop (as SIGTERM would) while it runs ``iteration`` (0-based): it
    checkpoints after that iteration and raises StopRequested."""
    from transferbench.worker import steps

    original = steps.learning_rate

    def stopping(config, number):
        if number == iteration:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(config, number)

    steps.learning_rate = stopping
    try:
        yield
    finally:
        steps.learning_rate = original


CROSS_STUDY = """
[study]
name = "{name}"
dataset = "fashion-mnist"
seeds = [0]
[train]
lr = {lr}
batch_size = {batch}
iterations = {iterations}
eval_every = {every}
checkpoint_every = {every}
pad = 2
[source.fm]
job = "fm:random0/baseA/seed0"
[target.{target}]
{target_table}
[[block]]
source = "fm"
targets = ["{target}"]
networks = {networks}
n = {n}
{extra}"""


def cross_study(tmp_path: Path, name: str, target: str, target_table: str, networks: list[str], n: list[int],
                iterations: int, every: int, lr: float, batch: int, extra: str = "") -> tuple[Path, Path]:
    """A healthy tiny source (fm:random0/baseA/seed0, trained on a miniature Fashion-MNIST, not yet
    submitted) and a cross-dataset study from it to ``target`` (planned): their folders."""
    import json

    from transferbench.study.plan import build_plan, write_plan

    data = make_fashion_mnist(tmp_path / "data", 400, 200)
    source = tiny_study(tmp_path, "fm", ["baseA"], [1], iterations=120, every=20, lr=0.01, data=data)
    config = tmp_path / f"{name}.toml"
    config.write_text(CROSS_STUDY.format(name=name, lr=lr, batch=batch, iterations=iterations, every=every, target=target,
                                         target_table=target_table.format(data=data), networks=json.dumps(networks),
                                         n=json.dumps(n), extra=extra))
    plan = build_plan(config, tmp_path / "jobs")
    write_plan(plan, echo=lambda *_: None)
    return source, plan.study_dir


@pytest.fixture
def fashion_root(tmp_path):
    """A miniature Fashion-MNIST in torchvision's layout: class-dependent blobs, real IDX files."""
    return make_fashion_mnist(tmp_path)


TINY_MODEL = dict(arch="small", num_classes=5, in_channels=1, conv_widths=(4, 4, 6, 6, 4), fc_width=16, dropout=0.5,
                  init="kaiming")


def tiny_spec(tmp_path, fashion_root, name="base", side="A", condition=None, source=None, iterations=12, **train):
    """A job spec of the tiny network on side ``side`` of fashion-mnist-random0 (the miniature data)."""
    from transferbench.schema.spec import Condition, JobSpec, ModelConfig, TrainConfig

    return JobSpec(key=f"t/{name}", dataset="fashion-mnist", split=str(REPO / "splits" / "fashion-mnist-random0.json"),
                   side=side, out_dir=str(tmp_path / name), condition=condition or Condition(), source_checkpoint=source,
                   model=ModelConfig(**TINY_MODEL),
                   train=TrainConfig(**{**dict(lr=0.05, batch_size=16, iterations=iterations, lr_step=8, eval_every=4,
                                                checkpoint_every=4, crop=28, pad=2, input_scale=1 / 64), **train}),
                   data_root=str(fashion_root))
