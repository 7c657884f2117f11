"""The worker: transfer conditions, data formats, resume equality. Small, CPU, seconds."""

from __future__ import annotations

import dataclasses

import gzip
import json
import os
import pickle

import numpy as np
import pytest
import torch

from transferbench.worker.data import ImageSet, load_image_set, read_idx
from transferbench.errors import UserError
from transferbench.worker.models import LAYER_NAMES, ModelConfig, TransferNet
from transferbench.tasks.splits import load_split
from transferbench.schema.spec import JobSpec, TrainConfig
from transferbench.worker.inputs import Batches
from transferbench.worker.train import run_job
from transferbench.worker.transfer import Condition, apply_condition
from tests.conftest import REPO, TINY_MODEL, make_fashion_mnist, stop_during, tiny_spec

TINY = ModelConfig(**TINY_MODEL)


def test_idx_reader_and_split_side(fashion_root):
    images = load_image_set("fashion-mnist", fashion_root, True, load_split(REPO / "splits" / "fashion-mnist-random0.json"), "B")
    assert images.images.shape == (100, 1, 28, 28) and images.images.dtype == torch.uint8
    assert sorted(set(images.labels.tolist())) == [0, 1, 2, 3, 4]
    truncated = fashion_root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    data = gzip.decompress(truncated.read_bytes())[:-3]
    truncated.write_bytes(gzip.compress(data))
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_idx(truncated)


def test_cifar100_pickle(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(100 * 3072, dtype=np.int64).reshape(100, 3072) % 256  # one image per class: every class has one
    for part in ("train", "test"):
        with open(folder / part, "wb") as handle:
            pickle.dump({b"data": data.astype(np.uint8), b"fine_labels": list(range(100)), b"coarse_labels": [0] * 100},
                        handle)
    split = load_split(REPO / "splits" / "cifar100-random0.json")
    side_a = [c.index for c in split.sides["A"]]
    images = load_image_set("cifar100", tmp_path, True, split, "A")
    kept = [i for i in range(100) if i in side_a]
    assert images.images.shape == (len(kept), 3, 32, 32)
    assert torch.equal(images.images[0], torch.from_numpy(data[kept[0]].astype(np.uint8).reshape(3, 32, 32)))
    (folder / "test").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a CIFAR-100 pickle"):
        load_image_set("cifar100", tmp_path, False, split, "A")
    planted = tmp_path / "ran"

    class Payload:  # a pickle that runs code when it is loaded
        def __reduce__(self):
            import os

            return os.system, (f"touch {planted}",)

    (folder / "test").write_bytes(pickle.dumps({b"data": Payload(), b"fine_labels": [0]}))
    with pytest.raises(UserError, match="is not part of a CIFAR-100 file"):
        load_image_set("cifar100", tmp_path, False, split, "A")
    assert not planted.exists()


def test_imagenet_jpeg_folders_and_corrupt_images(tmp_path):
    from PIL import Image

    from transferbench.worker.data import ImageFileReader

    table_wnids = ["n01440764", "n01443537"]
    for wnid in table_wnids:
        for i in range(2):
            (tmp_path / "train" / wnid).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (300 + i, 200), (10 * i, 100, 200)).save(tmp_path / "train" / wnid / f"{wnid}_{i}.JPEG")
    (tmp_path / "train" / "n01440764" / "broken.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    images = load_image_set("imagenet1k", tmp_path, True, None, None)
    assert len(images) == 5 and images.labels.tolist() == [0, 0, 0, 1, 1]
    reader = ImageFileReader(images.files, strict=False)
    with pytest.warns(UserWarning, match="corrupt image"):
        batch, kept = reader.load(list(range(5)))
    assert batch.shape == (4, 3, 256, 256) and reader.skipped == 1 and len(kept) == 4
    with pytest.raises(UserError, match="corrupt image"):
        ImageFileReader(images.files, strict=True).load(list(range(5)))
    # A file gone since plan is not "corrupt": the data changed, and the job stops saying so.
    images.files[4].unlink()
    with pytest.raises(UserError, match=r"n01443537_1.JPEG is missing \(it was there when the study was planned\)"):
        ImageFileReader(images.files, strict=False).load([3, 4])
    (tmp_path / "val").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    listing = tmp_path / "val.txt"
    listing.write_text("ILSVRC2012_val_00000001.JPEG 1\n")
    val = load_image_set("imagenet1k", tmp_path, False, None, None, val_list=listing)
    assert val.labels.tolist() == [1]


@pytest.mark.parametrize("pad, scale, mean, train", [(0, 1.0, "images", True), (4, 0.0125, "images", True),
                                                      (0, 0.5, "imagenet", True), (0, 1.0, "images", False)])
def test_cpu_crop_equals_the_gather(pad, scale, mean, train):
    """The CPU slicing path gives bit-identical batches to the one-gather path the GPU runs."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (9, 3, 40, 36), dtype=torch.uint8, generator=generator)
    image_set = ImageSet(images, torch.arange(9))
    config = TrainConfig(crop=32, pad=pad, input_scale=scale, mirror=True)
    batches = Batches(image_set, config, torch.device("cpu"), train,
                      mean=torch.tensor([120.0, 110.0, 100.0]).view(3, 1, 1) if mean == "imagenet" else None)
    images, labels, tops, lefts, flips, crop = batches.fetch(list(range(9)), generator)
    if train:
        assert flips.any() and not flips.all() and len(set(tops.tolist())) > 1
    sliced = batches._crop_on_cpu(images, tops, lefts, flips, int(crop))
    gathered = batches._crop_gather(images, tops, lefts, flips, int(crop))
    assert sliced.shape == (9, 3, 32, 32) and torch.equal(sliced, gathered)
    assert torch.equal(batches.to_device((images, labels, tops, lefts, flips, crop))[0], gathered)


def test_caffenet_matches_the_paper():
    model = TransferNet(ModelConfig(num_classes=1000))
    assert model(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)
    assert sum(p.numel() for p in model.parameters()) == 60_965_224  # CaffeNet's parameter count
    assert model.layers["conv2"].groups == model.layers["conv4"].groups == model.layers["conv5"].groups == 2
    assert float(model.layers["conv2"].bias.detach()[0]) == 1.0 and float(model.layers["conv3"].bias.detach()[0]) == 0.0
    assert abs(float(model.layers["fc6"].weight.detach().std()) - 0.005) < 2e-4


def test_copy_asserts_exactly_which_keys(tmp_path):
    source = TransferNet(TINY).state_dict()
    target = TransferNet(TINY)
    keys = apply_condition(target, Condition("transfer", 3), source)
    assert keys["copied"] == [f"layers.{n}.{p}" for n in LAYER_NAMES[:3] for p in ("weight", "bias")]
    assert keys["reinitialised"] == sorted(f"layers.{n}.{p}" for n in LAYER_NAMES[3:] for p in ("weight", "bias"))
    assert keys["frozen"] == keys["copied"]
    for key in keys["copied"]:
        assert torch.equal(target.state_dict()[key], source[key])
    for key in keys["reinitialised"]:
        if key.endswith("weight"):  # biases start at zero in both: only weights can tell
            assert not torch.equal(target.state_dict()[key], source[key])
    preserved = apply_condition(TransferNet(TINY), Condition("preserved", 2, n_preserved=3), source)
    assert len(preserved["copied"]) == 10 and len(preserved["frozen"]) == 4
    wrong = TransferNet(ModelConfig("small", 5, 1, (8, 4, 6, 6, 4), 16, 0.5, "kaiming")).state_dict()
    with pytest.raises(UserError, match="has shape"):
        apply_condition(TransferNet(TINY), Condition("transfer", 1), wrong)
    with pytest.raises(UserError, match="lacks layers.conv1.weight"):
        apply_condition(TransferNet(TINY), Condition("transfer", 1), {})
    with pytest.raises(UserError, match="unknown condition"):
        Condition("transfuse", 1)


def test_frozen_layers_unchanged_and_resume_is_exact(tmp_path, fashion_root):
    base = run_job(tiny_spec(tmp_path, fashion_root, "baseA"), progress=False)
    assert base.status == "done" and base.iterations == 12 and len(base.evaluations) == 3
    source = str(tmp_path / "baseA" / "model.pt")
    source_state = torch.load(source)["model"]

    # AnB, n=3: layers 1-3 frozen, bit-identical after training; the rest trained.
    spec = tiny_spec(tmp_path, fashion_root, "A3B", "B", Condition("transfer", 3), source)
    run_job(spec, progress=False)
    trained = torch.load(tmp_path / "A3B" / "model.pt")["model"]
    for name in LAYER_NAMES[:3]:
        assert torch.equal(trained[f"layers.{name}.weight"], source_state[f"layers.{name}.weight"])
    assert not torch.equal(trained["layers.conv4.weight"], source_state["layers.conv4.weight"])

    # Interrupted after a checkpoint and resumed == uninterrupted, on the fine-tuned condition.
    plus = Condition("transfer", 3, fine_tune=True)
    whole = run_job(tiny_spec(tmp_path, fashion_root, "whole", "B", plus, source), progress=False)
    partial = tiny_spec(tmp_path, fashion_root, "resumed", "B", plus, source)
    short = json.loads(json.dumps(partial.to_dict()))
    short["train"]["iterations"] = 12
    # Stop the run at iteration 6 by asking for a stop (as SIGTERM would) mid-way.
    from transferbench.worker.running import StopRequested

    with stop_during(5), pytest.raises(StopRequested):
        run_job(partial, progress=False)
    assert not (tmp_path / "resumed" / "result.json").exists()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["state"]["iteration"] == 6
    resumed = run_job(partial, progress=False)
    assert resumed.evaluations == whole.evaluations
    assert resumed.train_loss == whole.train_loss
    final_whole = torch.load(tmp_path / "whole" / "model.pt")["model"]
    final_resumed = torch.load(tmp_path / "resumed" / "model.pt")["model"]
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)
    assert not torch.equal(final_whole["layers.conv1.weight"], source_state["layers.conv1.weight"])  # fine-tuned


def test_divergence_and_bad_specs(tmp_path, fashion_root):
    record = run_job(tiny_spec(tmp_path, fashion_root, "nan", lr=1e30), progress=False)
    assert record.status == "failed" and record.reason.startswith("diverged")
    assert not (tmp_path / "nan" / "model.pt").exists()
    with pytest.raises(UserError, match="base checkpoint .* is missing"):
        run_job(tiny_spec(tmp_path, fashion_root, "x", "B", Condition("transfer", 2), str(tmp_path / "none.pt")), progress=False)
    with pytest.raises(UserError, match=r"unknown key .learning_rate. in \[spec.train\]"):
        JobSpec.from_dict({"key": "k", "dataset": "fashion-mnist", "split": None, "side": None, "out_dir": "o",
                           "train": {"learning_rate": 1}})


def _jpeg_tree(root, wnids, per_class, size=40):
    from PIL import Image

    rng = np.random.default_rng(1)
    for part in ("train", "val"):
        for label, wnid in enumerate(wnids):
            (root / part / wnid).mkdir(parents=True, exist_ok=True)
            for i in range(per_class if part == "train" else 2):
                pixels = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
                pixels[:, :, label % 3] += 150  # the class shows in its dominant colour
                Image.fromarray(pixels).save(root / part / wnid / f"{wnid}_{i}.JPEG")


def test_imagenet_pack_trains_like_the_decoded_files(tmp_path):
    """The uint8 pack: decoded once (corrupt files dropped), memory-mapped, same batches as decoding."""
    from transferbench.tasks.classes import load_table
    from transferbench.worker.data import pack_images, imagenet_items
    from transferbench.worker.inputs import Batches

    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    _jpeg_tree(tmp_path, wnids[:3], 4)
    (tmp_path / "train" / wnids[0] / "zz_broken.JPEG").write_bytes(b"\xff\xd8 truncated")
    config = TrainConfig(resize=32, crop=28, batch_size=4)
    with pytest.warns(UserWarning, match="corrupt image"):
        packed = load_image_set("imagenet1k", tmp_path, True, None, None, pack_dir=tmp_path / "pack", size=32)
    assert packed.skipped == 1 and len(packed) == 12 and packed.packed.shape == (13, 3, 32, 32)
    files = load_image_set("imagenet1k", tmp_path, True, None, None, size=32)
    files.files = [f for f in files.files if "broken" not in f.name]
    files.labels = packed.labels
    from_pack = Batches(packed, config, torch.device("cpu"), False)
    from_files = Batches(files, config, torch.device("cpu"), False, mean=from_pack.mean)
    x_pack, y_pack = from_pack.prepare(list(range(12)), None)
    x_files, y_files = from_files.prepare(list(range(12)), None)
    assert torch.equal(x_pack, x_files) and torch.equal(y_pack, y_files)
    # A second load reuses the pack (no decoding, so no warning) and its mean image.
    items = imagenet_items(tmp_path, True, wnids)
    again = pack_images(items, tmp_path / "pack", "train", size=32)
    assert torch.allclose(again.mean, from_pack.mean)
    assert not [p for p in (tmp_path / "pack").iterdir() if p.name.startswith(".")]  # no temporary left behind

    spec = JobSpec(key="t/inet", dataset="imagenet1k", split=None, side=None, out_dir=str(tmp_path / "inet"),
                   model=ModelConfig("small", 1000, 3, (4, 4, 6, 6, 4), 16, 0.5, "kaiming"),
                   train=TrainConfig(lr=0.01, batch_size=4, iterations=4, eval_every=2, checkpoint_every=2, resize=32,
                                     crop=28), data_root=str(tmp_path), pack_dir=str(tmp_path / "pack"))
    record = run_job(spec, progress=False)  # the train pack is reused; the val pack is built here
    assert record.status == "done" and record.train_images == 12 and record.skipped_images == 1
    assert record.val_images == 6


def test_all_validation_images_corrupt_is_one_clear_error(tmp_path):
    from transferbench.tasks.classes import load_table

    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    _jpeg_tree(tmp_path, wnids[:1], 2)
    for image in (tmp_path / "val" / wnids[0]).iterdir():
        image.write_bytes(b"garbage")
    spec = JobSpec(key="t/bad", dataset="imagenet1k", split=None, side=None, out_dir=str(tmp_path / "bad"),
                   model=ModelConfig("small", 1000, 3, (4, 4, 6, 6, 4), 16, 0.5, "kaiming"),
                   train=TrainConfig(batch_size=2, iterations=1, resize=32, crop=28), data_root=str(tmp_path))
    with pytest.warns(UserWarning), pytest.raises(UserError, match="no readable validation image"):
        run_job(spec, progress=False)
    assert not (tmp_path / "bad" / "result.json").exists()
    # One corrupt validation image of two: the record counts the one evaluated.
    _jpeg_tree(tmp_path / "half", wnids[:1], 2)
    next((tmp_path / "half" / "val" / wnids[0]).iterdir()).write_bytes(b"garbage")
    spec = dataclasses.replace(spec, key="t/half", out_dir=str(tmp_path / "half-out"), data_root=str(tmp_path / "half"))
    with pytest.warns(UserWarning, match="corrupt image"):
        record = run_job(spec, progress=False)
    assert (record.val_images, record.skipped_images) == (1, 1)


def _three_class_split(wnids):
    from transferbench.tasks.classes import load_table
    from transferbench.tasks.splits import Split

    classes = load_table("imagenet1k").classes
    return Split("tiny", "imagenet1k", "random", {}, None, {"A": "two classes", "B": "one class"},
                 {"A": (classes[0], classes[1]), "B": (classes[2],)})


def test_skipped_images_count_the_jobs_own_side_once(tmp_path):
    from transferbench.tasks.classes import load_table

    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    _jpeg_tree(tmp_path, wnids[:3], 2)
    (tmp_path / "train" / wnids[0] / "zz_broken.JPEG").write_bytes(b"\xff\xd8 truncated")  # a side-A image
    split = _three_class_split(wnids)
    with pytest.warns(UserWarning, match="corrupt image"):
        side_a = load_image_set("imagenet1k", tmp_path, True, split, "A", pack_dir=tmp_path / "pack", size=32)
    side_b = load_image_set("imagenet1k", tmp_path, True, split, "B", pack_dir=tmp_path / "pack", size=32)
    assert (side_a.skipped, len(side_a)) == (1, 4) and (side_b.skipped, len(side_b)) == (0, 2)


def test_a_class_without_images_fails_at_start_naming_it(tmp_path):
    from transferbench.tasks.classes import load_table

    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    _jpeg_tree(tmp_path, [wnids[0], wnids[2]], 2)  # side A's second class has no folder
    with pytest.raises(UserError, match=rf"1 classes of split tiny side A have no image: {wnids[1]}; check the dataset"):
        load_image_set("imagenet1k", tmp_path, True, _three_class_split(wnids), "A")


def _pack_in_a_process(root, barrier, queue):
    from transferbench.tasks.classes import load_table
    from transferbench.worker import data

    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    items = data.imagenet_items(root, True, wnids)
    barrier.wait()
    pack = data.pack_images(items, root / "pack", "train", size=32)
    queue.put((bool(data.LAST_PACK_STATS), pack.images.shape[0]))


def test_two_jobs_started_together_build_one_pack(tmp_path):
    import multiprocessing

    from transferbench.tasks.classes import load_table

    _jpeg_tree(tmp_path, [c.wnid for c in load_table("imagenet1k").classes][:3], 40)
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_pack_in_a_process, args=(tmp_path, barrier, queue)) for _ in range(2)]
    for process in processes:
        process.start()
    results = sorted(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    assert results == [(False, 120), (True, 120)]  # one built it, the other waited and used it
    assert sorted(p.name.split(".", 1)[1] for p in (tmp_path / "pack").iterdir()) == ["json", "lock", "mean.npy", "npy"]


def test_a_killed_pack_build_resumes_and_gives_the_same_pack(tmp_path, monkeypatch):
    from transferbench.tasks.classes import load_table
    from transferbench.worker import data

    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    _jpeg_tree(tmp_path, wnids[:3], 4)
    items = data.imagenet_items(tmp_path, True, wnids)
    whole = data.pack_images(items, tmp_path / "whole", "train", size=32)
    monkeypatch.setattr(data, "PACK_CHUNK", 4)
    monkeypatch.setattr(data, "PACK_SAVE_EVERY_S", 0.0)
    real_load, calls = data.ImageFileReader.load, []

    def dies_on_the_third_chunk(self, indices):
        calls.append(indices[0])
        if len(calls) == 3:
            raise KeyboardInterrupt  # kill -INT mid-build
        return real_load(self, indices)

    monkeypatch.setattr(data.ImageFileReader, "load", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        data.pack_images(items, tmp_path / "pack", "train", size=32)
    assert not list((tmp_path / "pack").glob("train-*[0-9a-f].npy"))  # no pack that looks complete
    assert list((tmp_path / "pack").glob("*.partial.npy")) and list((tmp_path / "pack").glob("*.progress.npz"))
    def records(self, indices):
        calls.append(indices[0])
        return real_load(self, indices)

    monkeypatch.setattr(data.ImageFileReader, "load", records)
    calls.clear()
    resumed = data.pack_images(items, tmp_path / "pack", "train", size=32)
    assert calls == [8]  # it went on from the last saved chunk, not from the start
    assert np.array_equal(resumed.images, whole.images) and torch.equal(resumed.mean, whole.mean)
    assert not list((tmp_path / "pack").glob("*.partial.npy"))


def test_random_streams_differ_by_purpose_epoch_and_iteration():
    """One tree of streams keyed by (seed, retry, purpose, index): no two purposes, epochs or
    iterations share one, and every batch draws its own crops and flips."""
    from transferbench.worker import streams
    from transferbench.worker.inputs import augment_generator, batch_indices

    seeds = {(purpose, index): streams.stream_seed(0, purpose, index) for purpose in streams.PURPOSES for index in range(50)}
    assert len(set(seeds.values())) == len(seeds)
    assert streams.stream_seed(0, "dropout", 3) != streams.stream_seed(0, "dropout", 3, retry=1) != streams.stream_seed(1, "dropout", 3)
    draws = {tuple(torch.randint(0, 100, (8,), generator=augment_generator(0, i)).tolist()) for i in range(20)}
    assert len(draws) == 20  # a batch's crops are its own: none repeats another iteration's
    assert batch_indices(100, 10, 0, 0) != batch_indices(100, 10, 0, 10)  # epoch 1 is shuffled afresh
    assert sorted(batch_indices(100, 10, 0, 0) + [i for it in range(1, 10) for i in batch_indices(100, 10, 0, it)]) == list(range(100))


def test_a_damaged_pack_is_named_set_aside_and_built_again(tmp_path, capsys):
    from transferbench.tasks.classes import load_table
    from transferbench.worker import data

    wnids = [c.wnid for c in load_table("imagenet1k").classes]
    _jpeg_tree(tmp_path, wnids[:3], 4)
    items = data.imagenet_items(tmp_path, True, wnids)
    whole = np.array(data.pack_images(items, tmp_path / "pack", "train", size=32).images)  # in memory, not mapped
    [pack] = [p for p in (tmp_path / "pack").glob("train-*.npy") if ".mean" not in p.name]
    pack.write_bytes(pack.read_bytes()[:1000])  # truncated (a copy cut short, a scratch purge mid-file)
    again = data.pack_images(items, tmp_path / "pack", "train", size=32)
    assert np.array_equal(again.images, whole)
    assert f"the pack {pack} is damaged" in capsys.readouterr().err
    assert (pack.parent / (pack.name + ".damaged")).is_file()


def test_a_stop_keeps_the_first_signal_that_asked_for_it():
    """Ctrl-C, then the local submit's SIGTERM to its workers: the job was stopped by Ctrl-C."""
    import signal

    from transferbench.worker.running import StopRequested, stop_signals

    with stop_signals() as flag:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(StopRequested, match=r"^SIGINT \(Ctrl-C\) at iteration 5$"):
            flag.raise_if_requested(5)


def test_mean_per_class_top1_weighs_every_class_alike():
    """A network that always answers the largest class: top-1 is that class's share, mean
    per-class top-1 is 1 over the number of classes (what Caltech-101's literature reports)."""
    from transferbench.worker.steps import evaluate_models

    labels = torch.tensor([0, 0, 0, 0, 1, 2] * 200)  # over several evaluation batches

    class Fixed:  # the few attributes evaluate_models reads of a Batches
        set = list(range(len(labels)))
        device = torch.device("cpu")

        def prepare(self, indices, _):
            return torch.zeros(len(indices), 1), labels[indices]

    class Majority(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[3.0, 1.0, 0.0]]).repeat(len(x), 1)

    [result] = evaluate_models([Majority()], Fixed(), 2, False)
    assert result["top1"] == pytest.approx(4 / 6) and result["class_top1"] == pytest.approx(1 / 3)
