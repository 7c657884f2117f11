"""Pretrained sources: a .caffemodel written with Caffe's message schema, torchvision's AlexNet and
CaffeNet-named state dicts are imported layer by layer, and compute what they computed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.formats import torchvision_reference, write_binaryproto, write_caffemodel
from transferbench.errors import UserError
from transferbench.schema.source import SourceInfo
from transferbench.schema.spec import ModelConfig, TrainConfig
from transferbench.worker.data import ImageSet
from transferbench.worker.inputs import Batches
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


def _torchvision_input(images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def test_torchvision_alexnet_fine_tunes_as_it_does_in_torchvision(tmp_path):
    """The std is applied to the images, not folded into conv1: the forward pass and one SGD
    step (the update of every layer, conv1 included) equal torchvision's."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(1)
    reference = torchvision.models.alexnet(weights=None).eval()  # dropout off: both take the same step
    torch.save(reference.state_dict(), tmp_path / "alexnet.pth")
    imported = import_weights(tmp_path / "alexnet.pth", "alexnet")
    info = imported.info
    assert info.format == "torchvision-alexnet" and info.model.arch == "alexnet"
    assert (info.crop, info.model.conv_widths, info.resize) == (224, (64, 192, 384, 256, 256), "shorter")
    assert torch.equal(imported.state["layers.conv1.weight"], reference.features[0].weight)  # kept as torchvision's
    ours = TransferNet(info.model).eval()
    ours.load_state_dict(imported.state)
    images = torch.randint(0, 256, (4, 3, 224, 224), dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1])
    config = TrainConfig(crop=224, mirror=False, lr=0.001, momentum=0.0, weight_decay=0.0, bias_lr_mult=1.0)
    batches = Batches(ImageSet(images, labels), config, torch.device("cpu"), False, mean=imported.mean, std=info.std)
    x, _ = batches.prepare([0, 1, 2, 3], None)
    assert torch.allclose(x, _torchvision_input(images), atol=1e-5)
    assert torch.allclose(ours(x), reference(_torchvision_input(images)), atol=1e-5, rtol=1e-4)
    for model, inputs in ((ours, x), (reference, _torchvision_input(images))):
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
    # The same gradient for every layer: an SGD step moves conv1 as far as torchvision's would
    # (folding the std into conv1 made it (255 std)^2, about 3,300x, larger).
    for ours_key, theirs in (("conv1", reference.features[0]), ("conv5", reference.features[10]),
                             ("fc6", reference.classifier[1]), ("fc8", reference.classifier[6])):
        grad, expected = ours.layers[ours_key].weight.grad, theirs.weight.grad
        assert expected.norm() > 0
        assert ((grad - expected).norm() / expected.norm()).item() < 1e-4, ours_key


def test_a_shorter_side_resize_keeps_the_centre_as_torchvision_does(tmp_path):
    from PIL import Image
    torchvision = pytest.importorskip("torchvision")
    from torchvision.transforms import v2

    from transferbench.worker.data import decode_resized

    array = np.random.default_rng(3).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "wide.png")
    ours = decode_resized(tmp_path / "wide.png", 256, 3, "shorter")
    transform = v2.Compose([v2.Resize(256, interpolation=v2.InterpolationMode.BILINEAR), v2.CenterCrop(256)])
    with Image.open(tmp_path / "wide.png") as image:
        theirs = v2.functional.pil_to_tensor(transform(image))
    assert ours.shape == theirs.shape == (3, 256, 256)
    assert (ours.int() - theirs.int()).abs().max() <= 1
    warped = decode_resized(tmp_path / "wide.png", 256, 3, "warp")
    assert (warped.int() - theirs.int()).abs().float().mean() > 10  # the two ways differ: the setting matters


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
    write_caffemodel(tmp_path / "cut.caffemodel", source.state_dict(), shapes={"fc6.weight": (32, 100)})
    with pytest.raises(UserError, match=r"layer fc6 weight has shape \(32, 100\), but caffenet .* needs \(32, 576\)"):
        import_weights(tmp_path / "cut.caffemodel", "b")
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff\xff\xff not protobuf")
    with pytest.raises(UserError, match="is not a Caffe model"):
        import_weights(tmp_path / "junk.caffemodel", "c")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pt")
    with pytest.raises(UserError, match="neither torchvision's AlexNet .* nor CaffeNet's"):
        import_weights(tmp_path / "resnet.pt", "d")
    torch.save({"layer4.2.conv3.weight": torch.zeros(2, 2), "fc.weight": torch.zeros(3, 2), "extra.x": torch.zeros(1)},
               tmp_path / "cut-resnet.pt")
    with pytest.raises(UserError, match="no unit of torchvision's resnet50 takes .*extra.x"):
        import_weights(tmp_path / "cut-resnet.pt", "d")
    with pytest.raises(UserError, match="does not exist"):
        import_weights(tmp_path / "missing.caffemodel", "e")
    write_caffemodel(tmp_path / "net.caffemodel", source.state_dict())
    with pytest.raises(UserError, match=r"mean file .* holds shape \(3, 8, 8\)"):
        write_binaryproto(tmp_path / "small.binaryproto", np.zeros((3, 8, 8), dtype=np.float32))
        import_weights(tmp_path / "net.caffemodel", "f", mean=str(tmp_path / "small.binaryproto"))


def test_a_mean_file_is_read_in_the_channel_order_its_tool_writes(tmp_path):
    """Caffe writes its mean (``ilsvrc_2012_mean.npy`` as well as ``.binaryproto``) in BGR: a
    Caffe model's ``.npy`` mean is reversed to RGB; an RGB state dict's ``.npy`` is kept."""
    source = _net()
    write_caffemodel(tmp_path / "net.caffemodel", source.state_dict())
    mean_bgr = np.stack([np.full((256, 256), value, dtype=np.float32) for value in (104.0, 117.0, 123.0)])
    np.save(tmp_path / "mean.npy", mean_bgr)
    caffe = import_weights(tmp_path / "net.caffemodel", "net", mean=str(tmp_path / "mean.npy"))
    assert caffe.mean[:, 0, 0].tolist() == [123.0, 117.0, 104.0] and "BGR" in caffe.info.mean
    torch.save({key.removeprefix("layers."): value for key, value in source.state_dict().items()}, tmp_path / "rgb.pt")
    rgb = import_weights(tmp_path / "rgb.pt", "rgb", mean=str(tmp_path / "mean.npy"))
    assert rgb.mean[:, 0, 0].tolist() == [104.0, 117.0, 123.0]


def test_a_state_dict_declares_its_input_std_and_resize(tmp_path):
    source = _net()
    torch.save({key.removeprefix("layers."): value for key, value in source.state_dict().items()}, tmp_path / "net.pt")
    imported = import_weights(tmp_path / "net.pt", "net", mean=[124.0, 116.0, 104.0], std=[58.4, 57.1, 57.4], resize="shorter")
    assert (imported.info.std, imported.info.resize) == ((58.4, 57.1, 57.4), "shorter")
    with pytest.raises(UserError, match="looks like 0-1 units; give it in 0-255"):
        import_weights(tmp_path / "net.pt", "net", std=[0.229, 0.224, 0.225])
    with pytest.raises(UserError, match="one positive value per input channel"):
        import_weights(tmp_path / "net.pt", "net", std=[58.4, 57.1])
    write_caffemodel(tmp_path / "net.caffemodel", source.state_dict())
    with pytest.raises(UserError, match="no std; leave std unset"):
        import_weights(tmp_path / "net.caffemodel", "net", std=[58.4, 57.1, 57.4])


def test_bvlc_alexnet_imports_with_its_own_order_normalising_before_it_pools(tmp_path):
    """BVLC's AlexNet (the paper's "AlexNet's Caffe implementation") is CaffeNet's shapes with LRN
    before pooling: imported as bvlc_alexnet, it computes that order (checked against the ops spelled out)."""
    from torch.nn import functional as F

    source = _net(dataclasses.replace(TINY_CAFFENET, init="kaiming"), seed=4)  # weights whose features reach the logits
    write_caffemodel(tmp_path / "alexnet.caffemodel", source.state_dict(), alexnet_order=True)
    imported = import_weights(tmp_path / "alexnet.caffemodel", "a")
    assert imported.info.model.arch == "bvlc_alexnet" and imported.info.crop == 227
    ours = TransferNet(imported.info.model).eval()
    ours.load_state_dict(imported.state)
    x = 60 * torch.randn(2, 3, 227, 227)  # Caffe's 0-255 range minus the mean: where LRN acts
    w = {key.removeprefix("layers."): value for key, value in source.state_dict().items()}
    lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    h = F.max_pool2d(lrn(F.relu(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], stride=4))), 3, 2)
    h = F.max_pool2d(lrn(F.relu(F.conv2d(h, w["conv2.weight"], w["conv2.bias"], padding=2, groups=2))), 3, 2)
    h = F.relu(F.conv2d(h, w["conv3.weight"], w["conv3.bias"], padding=1))
    h = F.relu(F.conv2d(h, w["conv4.weight"], w["conv4.bias"], padding=1, groups=2))
    h = F.max_pool2d(F.relu(F.conv2d(h, w["conv5.weight"], w["conv5.bias"], padding=1, groups=2)), 3, 2).flatten(1)
    h = F.relu(F.linear(F.relu(F.linear(h, w["fc6.weight"], w["fc6.bias"])), w["fc7.weight"], w["fc7.bias"]))
    logits = ours(x)
    assert torch.allclose(logits, F.linear(h, w["fc8.weight"], w["fc8.bias"]), rtol=1e-4, atol=1e-5)
    caffenet = TransferNet(TINY_CAFFENET).eval()
    caffenet.load_state_dict(imported.state)
    assert (caffenet(x) - logits).abs().max() > 0.01 * logits.abs().max()  # the order matters: CaffeNet's is another network


def test_caffes_vgg16_imports_every_blob_in_its_layout(tmp_path):
    from transferbench.worker.models import build_network

    config = ModelConfig(arch="vgg16", num_classes=10, fc_width=16)
    torch.manual_seed(5)
    source = build_network(config).eval()
    write_caffemodel(tmp_path / "vgg.caffemodel", source.state_dict())  # conv1_1 stored BGR, as Caffe reads
    imported = import_weights(tmp_path / "vgg.caffemodel", "vgg")
    assert imported.info.model == config and (imported.info.crop, imported.info.size) == (224, 256)
    assert all(torch.equal(imported.state[key], value) for key, value in source.state_dict().items())
    assert "conv5_3 <- Caffe layer 'conv5_3' (Convolution)" in "\n".join(imported.info.mapping)


@pytest.mark.parametrize("arch", ["resnet50", "vgg16", "vit_b16"])
def test_torchvision_networks_import_whole_and_give_torchvisions_logits(tmp_path, arch):
    """ResNet-50, VGG-16 and ViT-B/16 state dicts of torchvision (random weights, saved here): every
    tensor mapped to a unit, torchvision's input contract, and torchvision's logits; ResNet-50's
    through image files, read by the worker's pipeline and by torchvision's transforms."""
    from PIL import Image

    pytest.importorskip("torchvision")
    from torchvision.transforms import v2

    from transferbench.worker.data import decode_resized
    from transferbench.worker.models import build_network

    reference = torchvision_reference(arch, seed=6)
    torch.save(reference.state_dict(), tmp_path / f"{arch}.pth")
    imported = import_weights(tmp_path / f"{arch}.pth", arch)
    info = imported.info
    assert (info.format, info.model.arch, info.crop, info.size, info.resize) == (f"torchvision-{arch}", arch, 224, 256, "shorter")
    ours = build_network(info.model).eval()
    ours.load_state_dict(imported.state)
    if arch != "resnet50":
        x = torch.randn(2, 3, 224, 224)
        assert torch.allclose(ours(x), reference(x), atol=1e-5)
        return
    rng = np.random.default_rng(7)
    for index, shape in enumerate([(300, 420, 3), (260, 256, 3)]):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / f"{index}.png")
    images = torch.stack([decode_resized(tmp_path / f"{index}.png", info.size, 3, info.resize) for index in range(2)])
    config = TrainConfig(crop=info.crop, mirror=False)
    batches = Batches(ImageSet(images, torch.tensor([0, 1])), config, torch.device("cpu"), False, mean=imported.mean,
                      std=info.std)
    x, _ = batches.prepare([0, 1], None)
    transform = v2.Compose([v2.Resize(256, interpolation=v2.InterpolationMode.BILINEAR), v2.CenterCrop(224), v2.PILToTensor(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    theirs = []
    for index in range(2):
        with Image.open(tmp_path / f"{index}.png") as image:
            theirs.append(transform(image.convert("RGB")))
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(torch.stack(theirs)), atol=1e-5)
