"""Pretrained sources: a .caffemodel written with Caffe's message schema, torchvision's AlexNet and
CaffeNet-named state dicts are imported layer by layer, and compute what they computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.formats import write_binaryproto, write_caffemodel
from transferbench.errors import UserError
from transferbench.schema.source import SourceInfo
from transferbench.schema.spec import ModelConfig
from transferbench.worker.models import TransferNet
from transferbench.worker.sources import import_weights, write_imported

TINY_CAFFENET = ModelConfig(num_classes=10, conv_widths=(8, 16, 16, 16, 16), fc_width=32)


def _net(config: ModelConfig = TINY_CAFFENET, seed: int = 0) -> TransferNet:
    torch.manual_seed(seed)
    return TransferNet(config).eval()


@pytest.mark.parametrize("v1", [False, True], ids=["layer", "V1 layers"])
def test_a_caffemodel_imports_every_blob_and_computes_what_caffe_computed(tmp_path, v1):
    source = _net()
    write_caffemodel(tmp_path / "net.caffemodel", source.state_dict(), v1=v1)
    mean_bgr = np.random.default_rng(0).uniform(90, 130, (3, 256, 256)).astype(np.float32)
    write_binaryproto(tmp_path / "mean.binaryproto", mean_bgr)
    imported = import_weights(tmp_path / "net.caffemodel", "net", mean=str(tmp_path / "mean.binaryproto"))
    assert imported.info.model == TINY_CAFFENET
    assert (imported.info.size, imported.info.crop, imported.info.input_scale) == (256, 227, 1.0)
    for key, value in source.state_dict().items():
        assert torch.equal(imported.state[key], value), key  # conv1 back in RGB: the writer stored it reversed
    assert torch.equal(imported.mean, torch.from_numpy(mean_bgr[::-1].copy()))
    # What Caffe computes on a BGR image minus its BGR mean equals what the import computes on RGB.
    caffe = _net()
    caffe.layers["conv1"].weight.data = caffe.layers["conv1"].weight.data.flip(1)
    ours = TransferNet(imported.info.model).eval()
    ours.load_state_dict(imported.state)
    rgb = torch.randint(0, 256, (2, 3, 256, 256)).float()
    crop = (slice(None), slice(None), slice(14, 241), slice(14, 241))
    expected = caffe((rgb.flip(1) - torch.from_numpy(mean_bgr))[crop])
    assert torch.allclose(ours((rgb - imported.mean)[crop]), expected, atol=1e-5)
    assert len(imported.info.mapping) == 8 and "conv1 <- Caffe layer 'conv1' (Convolution)" in imported.info.mapping[0]


def test_torchvision_alexnet_imports_with_its_normalisation_folded_into_conv1(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(1)
    reference = torchvision.models.alexnet(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "alexnet.pth")
    imported = import_weights(tmp_path / "alexnet.pth", "alexnet")
    assert imported.info.format == "torchvision-alexnet" and imported.info.model.arch == "alexnet"
    assert (imported.info.crop, imported.info.model.conv_widths) == (224, (64, 192, 384, 256, 256))
    ours = TransferNet(imported.info.model).eval()
    ours.load_state_dict(imported.state)
    image = torch.randint(0, 256, (2, 3, 224, 224)).float()
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = reference((image / 255 - mean) / std)
    assert torch.allclose(ours(image - imported.mean), expected, atol=1e-6, rtol=1e-4)


def test_a_caffenet_named_state_dict_in_bgr_is_reversed_and_its_mean_kept(tmp_path):
    source = _net(seed=2)
    converted = {key.removeprefix("layers."): value.clone() for key, value in source.state_dict().items()}
    converted["conv1.weight"] = converted["conv1.weight"].flip(1)  # a converter that kept Caffe's BGR
    torch.save(converted, tmp_path / "caffenet.pt")
    imported = import_weights(tmp_path / "caffenet.pt", "c", channel_order="BGR", mean=[120.0, 115.0, 100.0])
    assert torch.equal(imported.state["layers.conv1.weight"], source.state_dict()["layers.conv1.weight"])
    assert imported.mean.flatten().tolist() == [120.0, 115.0, 100.0]
    default = import_weights(tmp_path / "caffenet.pt", "c")
    assert any("ImageNet's per-channel mean" in note for note in default.info.notes)


def test_the_import_writes_weights_and_a_description_atomically(tmp_path):
    source = _net()
    write_caffemodel(tmp_path / "net.caffemodel", source.state_dict())
    info = write_imported(import_weights(tmp_path / "net.caffemodel", "net"), tmp_path / "out")
    assert SourceInfo.read(tmp_path / "out" / "source.json") == info
    saved = torch.load(info.weights, weights_only=True)
    assert saved["config_hash"] == info.config_hash and saved["mean"].shape == (3, 1, 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mean.pt", "model.pt", "source.json"]


def test_bad_weights_files_fail_in_one_line(tmp_path):
    source = _net()
    write_caffemodel(tmp_path / "alexnet.caffemodel", source.state_dict(), alexnet_order=True)
    with pytest.raises(UserError, match="normalises before it pools"):
        import_weights(tmp_path / "alexnet.caffemodel", "a")
    write_caffemodel(tmp_path / "cut.caffemodel", source.state_dict(), shapes={"fc6.weight": (32, 100)})
    with pytest.raises(UserError, match=r"layer fc6 weight has shape \(32, 100\), but caffenet .* needs \(32, 576\)"):
        import_weights(tmp_path / "cut.caffemodel", "b")
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff\xff\xff not protobuf")
    with pytest.raises(UserError, match="is not a Caffe model"):
        import_weights(tmp_path / "junk.caffemodel", "c")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pt")
    with pytest.raises(UserError, match="neither torchvision's AlexNet .* nor CaffeNet's"):
        import_weights(tmp_path / "resnet.pt", "d")
    with pytest.raises(UserError, match="does not exist"):
        import_weights(tmp_path / "missing.caffemodel", "e")
    write_caffemodel(tmp_path / "net.caffemodel", source.state_dict())
    with pytest.raises(UserError, match=r"mean file .* holds shape \(3, 8, 8\)"):
        write_binaryproto(tmp_path / "small.binaryproto", np.zeros((3, 8, 8), dtype=np.float32))
        import_weights(tmp_path / "net.caffemodel", "f", mean=str(tmp_path / "small.binaryproto"))
