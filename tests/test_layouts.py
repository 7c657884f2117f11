"""The target datasets in their genuine layouts: their classes, official train/test lists, and the
one-line errors for what is missing."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.formats import (
    CALTECH_CLASSES, CUB_CLASSES, MIT_CLASSES, make_caltech101, make_cub200, make_folder, make_mit67, make_sun397,
)
from transferbench.errors import UserError
from transferbench.schema.spec import DataOptions
from transferbench.tasks.layout import read_layout
from transferbench.worker.data import adapt_images, load_image_set


def test_cub200_reads_its_own_lists(tmp_path):
    index = read_layout("cub200", make_cub200(tmp_path))
    assert index.classes == CUB_CLASSES
    assert len(index.train) == len(index.test) == 8
    assert index.train[0] == ("images/001.Black_footed_Albatross/Black_footed_Albatross_0000_1.jpg", 0)
    assert all(path.is_file() for path, _ in index.items(False))


def test_mit67_and_sun397_read_their_lists(tmp_path):
    mit = read_layout("mit67", make_mit67(tmp_path / "mit"))
    assert mit.classes == MIT_CLASSES and len(mit.train) == 8
    sun = read_layout("sun397", make_sun397(tmp_path / "sun"))
    assert sun.classes == ("abbey", "bakery/shop", "campsite", "kitchen")
    other = read_layout("sun397", tmp_path / "sun", DataOptions(partition=2))
    assert set(other.train) == set(sun.test) and set(other.test) == set(sun.train)
    assert ("SUN397/b/bakery/shop/sun_10001.jpg", 1) in sun.train


def test_caltech101_draws_n_training_images_per_class_with_a_seed(tmp_path):
    make_caltech101(tmp_path)
    index = read_layout("caltech101", tmp_path, DataOptions(train_per_class=3))
    assert index.classes == CALTECH_CLASSES  # BACKGROUND_Google left out, as is customary
    assert [sum(1 for _, label in index.train if label == c) for c in range(4)] == [3, 3, 3, 3]
    assert len(index.test) == 4 * 2
    assert read_layout("caltech101", tmp_path, DataOptions(train_per_class=3)).train == index.train
    other_seed = read_layout("caltech101", tmp_path, DataOptions(train_per_class=3, split_seed=1))
    assert other_seed.train != index.train
    with_background = read_layout("caltech101", tmp_path, DataOptions(train_per_class=3, background=True))
    assert "BACKGROUND_Google" in with_background.classes
    with pytest.raises(UserError, match="class Faces has 5 images, too few for train_per_class = 5"):
        read_layout("caltech101", tmp_path, DataOptions(train_per_class=5))
    # The literature caps the test images per class (50 by default): here at 1 of the 2 left.
    capped = read_layout("caltech101", tmp_path, DataOptions(train_per_class=3, test_per_class=1))
    assert capped.train == index.train and [sum(1 for _, label in capped.test if label == c) for c in range(4)] == [1] * 4
    assert set(capped.test) < set(index.test)
    assert len(read_layout("caltech101", tmp_path, DataOptions(train_per_class=3, test_per_class=None)).test) == 8


def test_test_per_class_is_part_of_a_caltech_jobs_identity_only():
    from transferbench.schema.spec import JobSpec

    def spec(dataset, options):
        return JobSpec(key="k", dataset=dataset, split=None, side=None, out_dir="o", data_options=options)

    assert "test_per_class" not in spec("cub200", DataOptions()).to_dict()["data_options"]  # other layouts keep their hashes
    assert spec("caltech101", DataOptions()).to_dict()["data_options"]["test_per_class"] == 50
    assert spec("caltech101", DataOptions()).config_hash() != spec("caltech101", DataOptions(test_per_class=None)).config_hash()


def test_a_folder_per_class(tmp_path):
    index = read_layout("folder", make_folder(tmp_path, val="test"))
    assert index.classes == ("cat", "dog", "fox") and len(index.train) == len(index.test) == 6


def test_missing_lists_folders_and_single_classes_fail_in_one_line(tmp_path):
    make_cub200(tmp_path / "cub")
    (tmp_path / "cub" / "CUB_200_2011" / "train_test_split.txt").unlink()
    with pytest.raises(UserError, match=r"train_test_split.txt is missing; the CUB-200-2011: .* layout needs it"):
        read_layout("cub200", tmp_path / "cub")
    make_mit67(tmp_path / "mit")
    shutil.rmtree(tmp_path / "mit" / "Images" / "bakery")
    with pytest.raises(UserError, match="1 class folders that TrainImages.txt / TestImages.txt names are missing .*: bakery"):
        read_layout("mit67", tmp_path / "mit")
    make_sun397(tmp_path / "sun")
    with pytest.raises(UserError, match="Training_03.txt is missing"):
        read_layout("sun397", tmp_path / "sun", DataOptions(partition=3))
    make_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(UserError, match="has 1 class: a classifier needs at least 2"):
        read_layout("folder", tmp_path / "one")
    make_mit67(tmp_path / "gone")
    for path in (tmp_path / "gone" / "Images" / "kitchen").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"of the \d+ images its lists name, training: missing 2, test: missing 2 \(first: "):
        read_layout("mit67", tmp_path / "gone")
    # One missing file and one empty one in CUB: every listed file is checked, not a sample.
    make_cub200(tmp_path / "one")
    files = sorted((tmp_path / "one" / "CUB_200_2011" / "images").rglob("*.jpg"))
    files[5].unlink()
    files[9].write_bytes(b"")
    with pytest.raises(UserError, match=r"missing 1.*empty 1|empty 1.*missing 1"):
        read_layout("cub200", tmp_path / "one")
    # A hidden folder is not a class, nor a hidden file an image.
    make_folder(tmp_path / "hidden")
    (tmp_path / "hidden" / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "hidden" / "train" / "cat" / "._0.jpg").write_bytes(b"\0\0")
    index = read_layout("folder", tmp_path / "hidden")
    assert index.classes == ("cat", "dog", "fox") and not any("._" in path for path, _ in index.train)
    with pytest.raises(UserError, match="is not a folder"):
        read_layout("cub200", tmp_path / "nowhere")


def test_the_worker_loads_a_layout_and_brings_it_to_the_source_input(tmp_path):
    make_caltech101(tmp_path)
    options = DataOptions(train_per_class=3)
    train = load_image_set("caltech101", tmp_path, True, None, None, options=options, size=32)
    assert len(train) == 12 and train.files is not None
    from transferbench.worker.data import ImageFileReader

    images, _ = ImageFileReader(train.files, strict=True, size=32, channels=3).load(list(range(12)))
    assert images.shape == (12, 3, 32, 32)  # the gray images of Caltech-101 repeated to three channels
    gray, _ = ImageFileReader(train.files, strict=True, size=28, channels=1).load([0, 1])
    assert gray.shape == (2, 1, 28, 28)


def test_adapt_images_repeats_gray_reduces_colour_and_resizes():
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    colour = adapt_images(gray, 32, 3)
    assert colour.shape == (2, 3, 32, 32) and torch.equal(colour[:, 0], colour[:, 2])
    assert torch.equal(adapt_images(gray, 28, 1), gray)
    rgb = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    rgb[:, 1] = 200
    assert adapt_images(rgb, 4, 1).unique().tolist() == [round(0.587 * 200)]
