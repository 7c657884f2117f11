"""Pretrained source networks: weights trained elsewhere, imported into the study's network.

Every import reads a local file (nothing is downloaded), maps each tensor to a layer by an
explicit rule, checks every shape against the architecture, and writes transferbench's own
``model.pt`` (``layers.conv1.weight`` ... ``layers.fc8.bias``, the mean image, and the file's
sha256 as the hash every job that copies from it checks) with ``source.json`` beside it.

| format | the file | becomes | its input, and what the import does about it |
|---|---|---|---|
| ``caffe`` | a ``.caffemodel``: Caffe's ``NetParameter``, read with protobuf (``caffe_format``), e.g. the BVLC reference CaffeNet | ``caffenet`` | Caffe warps images to 256x256 and feeds them BGR in 0-255 with its mean image subtracted: conv1's input channels are reversed to RGB (the worker decodes RGB), and the mean comes from a ``.binaryproto`` or ``.npy`` (both BGR as Caffe writes them, reversed to RGB too) or is ImageNet's per-channel mean |
| ``torchvision-alexnet`` | a torch state dict of ``torchvision.models.alexnet`` (``features.0.weight`` ... ``classifier.6.bias``) | ``alexnet`` | torchvision resizes the shorter side to 256, takes the centre, and feeds RGB in 0-1 minus mean, divided by std per channel: the worker does the same to its images (in 0-255: minus 255 x mean, divided by 255 x std); the weights are torchvision's own, so fine-tuning takes the same steps as in torchvision |
| ``state-dict`` | a torch state dict in CaffeNet's names (``conv1.weight`` ... ``fc8.bias``), transferbench's (``layers.conv1.weight``), or a transferbench ``model.pt`` | inferred from the shapes | as the file's owner says: ``channel_order`` (RGB, or BGR for weights converted from Caffe), ``mean``, ``std`` and ``resize`` |

The input normalisation is always applied to the images, never folded into the weights: a
folded std gives the same forward pass but scales each weight's gradient step by (255 x std)^2,
about 3,300x for torchvision's conv1.

The layers: the five convolutions and three fully connected layers of the file, in the
order of the network, are conv1..conv5 and fc6..fc8. A Caffe file must also have CaffeNet's
topology (ReLU, then max-pooling 3/2, then LRN after conv1 and conv2): BVLC's AlexNet
normalises before it pools, and is refused rather than run with the wrong order.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferbench.errors import UserError
from transferbench.fileio import atomic_write_bytes, atomic_write_text, file_sha256
from transferbench.schema.source import SourceInfo
from transferbench.schema.architectures import architecture
from transferbench.schema.spec import LAYER_NAMES, ModelConfig

TORCHVISION_FORMATS = ("torchvision-alexnet", "torchvision-vgg16", "torchvision-resnet50", "torchvision-vit_b16")
IMPORT_FORMATS = ("caffe", *TORCHVISION_FORMATS, "state-dict")
IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)  # ImageNet's per-channel mean in 0-255, RGB (Caffe's mean image averages to these)
TORCHVISION_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation, in 0-1
TORCHVISION_STD = (0.229, 0.224, 0.225)
# torchvision.models.alexnet's learned layers, in order.
TORCHVISION_ALEXNET = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
                       "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}
# CaffeNet's layers between the data and the loss (deploy and train nets alike), Caffe's type names.
CAFFENET_TOPOLOGY = ("Convolution", "ReLU", "Pooling", "LRN", "Convolution", "ReLU", "Pooling", "LRN", "Convolution",
                     "ReLU", "Convolution", "ReLU", "Convolution", "ReLU", "Pooling", "InnerProduct", "ReLU", "Dropout",
                     "InnerProduct", "ReLU", "Dropout", "InnerProduct")
# BVLC's AlexNet: the same layers, normalising before it pools after conv1 and conv2.
BVLC_ALEXNET_TOPOLOGY = CAFFENET_TOPOLOGY[:2] + ("LRN", "Pooling") + CAFFENET_TOPOLOGY[4:6] + ("LRN", "Pooling") + CAFFENET_TOPOLOGY[8:]
# Caffe's VGG-16 (the authors' deploy net): 13 3x3 convolutions in 5 stages, each stage pooled, then fc6-fc8.
VGG16_TOPOLOGY = tuple(kind for convs in (2, 2, 3, 3, 3) for kind in ("Convolution", "ReLU") * convs + ("Pooling",)) + \
    ("InnerProduct", "ReLU", "Dropout", "InnerProduct", "ReLU", "Dropout", "InnerProduct")
CAFFE_TOPOLOGIES = {CAFFENET_TOPOLOGY: "caffenet", BVLC_ALEXNET_TOPOLOGY: "bvlc_alexnet", VGG16_TOPOLOGY: "vgg16"}
V1_TYPE_NAMES = {"CONVOLUTION": "Convolution", "RELU": "ReLU", "POOLING": "Pooling", "LRN": "LRN",
                 "INNER_PRODUCT": "InnerProduct", "DROPOUT": "Dropout"}
# CaffeNet's layer settings (SPEC section 1), checked where the file states them.
CAFFENET_CONV = {"conv1": (11, 4, 0, 1), "conv2": (5, 1, 2, 2), "conv3": (3, 1, 1, 1), "conv4": (3, 1, 1, 2),
                 "conv5": (3, 1, 1, 2)}  # kernel, stride, pad, group


@dataclass
class ImportedSource:
    """Weights in transferbench's layout, with what planning needs to know of them."""

    info: SourceInfo
    state: dict[str, torch.Tensor]  # layers.<name>.weight / .bias
    mean: torch.Tensor  # C x H x W or C x 1 x 1, RGB, 0-255


def guess_format(path: Path) -> str:
    return "caffe" if path.suffix == ".caffemodel" else "state-dict"


# ---------------------------------------------------------------------------- shapes

def expected_shapes(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape in transferbench's network of ``model``."""
    from transferbench.worker.models import build_network

    with torch.device("meta"):
        net = build_network(model)
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


def infer_model(state: dict[str, torch.Tensor], origin: str) -> ModelConfig:
    """The architecture a state dict in transferbench's names holds, read from its shapes."""
    for key in (f"layers.{name}.{part}" for name in LAYER_NAMES for part in ("weight", "bias")):
        if key not in state:
            raise UserError(f"{origin} lacks {key.removeprefix('layers.')}; it is not an 8-layer CaffeNet/AlexNet network")
    conv1, conv2 = state["layers.conv1.weight"], state["layers.conv2.weight"]
    if conv1.ndim != 4 or conv2.ndim != 4:
        raise UserError(f"{origin}: conv1 and conv2 weights must be 4-dimensional, got {tuple(conv1.shape)} and "
                        f"{tuple(conv2.shape)}")
    widths = tuple(int(state[f"layers.conv{i}.weight"].shape[0]) for i in range(1, 6))
    kernel = int(conv1.shape[-1])
    if kernel == 5:
        arch = "small"
    elif kernel == 11:
        arch = "caffenet" if int(conv2.shape[1]) * 2 == widths[0] else "alexnet"
    else:
        raise UserError(f"{origin}: conv1 has {kernel}x{kernel} kernels; transferbench's networks have 11x11 (CaffeNet, "
                        "AlexNet) or 5x5 (small)")
    fc7 = state["layers.fc7.weight"]
    return ModelConfig(arch=arch, num_classes=int(state["layers.fc8.weight"].shape[0]), in_channels=int(conv1.shape[1]),
                       conv_widths=widths, fc_width=int(fc7.shape[0]), dropout=0.0 if arch == "small" else 0.5,
                       init="kaiming" if arch == "small" else "paper")


def check_shapes(state: dict[str, torch.Tensor], model: ModelConfig, origin: str, names: dict[str, str]) -> None:
    """Every tensor has the shape the architecture needs; a mismatch names the layer and both shapes.
    ``names``: transferbench layer -> its name in the file, for the message."""
    wanted = expected_shapes(model)
    missing = [key for key in wanted if key not in state and not key.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"{origin} lacks {', '.join(k.removeprefix('layers.') for k in missing[:4])}; it is not a whole {model.arch}")
    for key, shape in wanted.items():
        if key not in state:
            continue
        found = tuple(state[key].shape)
        if found != shape:
            layer, part = key.split(".")[1:]
            theirs = names.get(layer, layer)
            named = layer if theirs == layer else f"{theirs} ({layer})"
            raise UserError(f"{origin}: layer {named} {part} has shape {found}, but {model.arch} with the widths of its "
                            f"other layers needs {shape}")


# ---------------------------------------------------------------------------- mean images

def read_mean(mean: Any, channels: int, size: int, origin: str, bgr_file: bool) -> tuple[torch.Tensor, str]:
    """The mean image to subtract, RGB in 0-255: a list of per-channel values (RGB), a ``.npy``
    (C x H x W, in the network's own channel order: ``bgr_file`` for a Caffe model, whose
    ``ilsvrc_2012_mean.npy`` is BGR), or a Caffe ``.binaryproto`` (a BlobProto, always BGR as
    Caffe wrote it)."""
    if isinstance(mean, (list, tuple)):
        if len(mean) != channels or not all(isinstance(v, (int, float)) for v in mean):
            raise UserError(f"{origin}: mean lists {len(mean)} values; give one per input channel ({channels}), RGB order")
        return torch.tensor([float(v) for v in mean]).view(channels, 1, 1), f"per-channel {[float(v) for v in mean]} (RGB)"
    path = Path(mean)
    if path.suffix == ".binaryproto":
        from transferbench.worker.caffe_format import messages

        try:
            blob = messages()["BlobProto"].FromString(path.read_bytes())
        except FileNotFoundError:
            raise UserError(f"mean file {path} does not exist") from None
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise UserError(f"mean file {path} is not a Caffe BlobProto ({exc})") from exc
        array = blob_array(blob, f"mean file {path}")
        array = array.reshape(array.shape[-3:]) if array.ndim >= 3 else array
        array = array[::-1].copy() if array.shape[0] == 3 else array
        what = f"the mean image of {path.name} (Caffe's BGR, reversed to RGB)"
    elif path.suffix == ".npy":
        try:
            array = np.load(path)
        except FileNotFoundError:
            raise UserError(f"mean file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"mean file {path} is not a .npy array ({exc})") from exc
        if bgr_file and array.ndim == 3 and array.shape[0] == 3:
            array, what = array[::-1].copy(), f"the mean image of {path.name} (BGR as the network reads, reversed to RGB)"
        else:
            what = f"the mean image of {path.name} (RGB)"
    else:
        raise UserError(f"mean {mean!r}: give per-channel values [R, G, B], a .npy image or a Caffe .binaryproto")
    tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if tensor.ndim != 3 or tensor.shape[0] != channels or (tuple(tensor.shape[1:]) not in ((1, 1), (size, size))):
        raise UserError(f"mean file {path} holds shape {tuple(tensor.shape)}; the source's input is {channels} x {size} x {size}")
    return tensor, what


# ---------------------------------------------------------------------------- Caffe

def blob_array(blob, where: str) -> np.ndarray:
    """A BlobProto's values with its shape (``shape.dim``, or V1's num/channels/height/width)."""
    if len(blob.shape.dim):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = tuple(int(d) for d in (blob.num, blob.channels, blob.height, blob.width))
    values = blob.data if len(blob.data) else blob.double_data
    array = np.asarray(values, dtype=np.float32)
    if array.size != int(np.prod(shape)):
        raise UserError(f"{where}: a blob of shape {shape} holds {array.size} values; the file is damaged")
    return array.reshape(shape)


@dataclass
class _CaffeLayer:
    name: str
    kind: str  # Caffe's type name (V1 enums translated)
    message: Any


def _caffe_layers(net) -> list[_CaffeLayer]:
    from transferbench.worker.caffe_format import v1_type_name

    if len(net.layer):
        return [_CaffeLayer(layer.name, layer.type, layer) for layer in net.layer]
    return [_CaffeLayer(layer.name, V1_TYPE_NAMES.get(v1_type_name(layer.type), v1_type_name(layer.type)), layer)
            for layer in net.layers]


def _check_topology(layers: list[_CaffeLayer], origin: str) -> str:
    """The architecture a Caffe net's layers make: CaffeNet, BVLC's AlexNet (normalisation before
    pooling) or VGG-16, in their order, with their convolution, pooling and LRN settings where
    stated."""
    kinds = tuple(layer.kind for layer in layers if layer.kind in set(CAFFENET_TOPOLOGY))
    arch = CAFFE_TOPOLOGIES.get(kinds)
    if arch is None:
        raise UserError(f"{origin} is not CaffeNet, BVLC's AlexNet or VGG-16: its layers run "
                        f"{' -> '.join(kinds[:12])}{' ...' if len(kinds) > 12 else ''}; CaffeNet's run "
                        f"{' -> '.join(CAFFENET_TOPOLOGY[:12])} ...")
    convolutions = [layer for layer in layers if layer.kind == "Convolution"]
    expected = ([(name, CAFFENET_CONV[name]) for name in LAYER_NAMES[:5]] if arch != "vgg16"
                else [(name, (3, 1, 1, 1)) for name in architecture("vgg16").units[:13]])
    for (ours, settings), layer in zip(expected, convolutions):
        found = _conv_settings(layer.message.convolution_param)
        if found is not None and found != settings:
            raise UserError(f"{origin}: layer {layer.name!r} ({ours}) has kernel, stride, pad, group {found}; {arch}'s "
                            f"has {settings}")
    pooling = (0, 2, 2) if arch == "vgg16" else (0, 3, 2)
    for layer in layers:
        if layer.kind == "Pooling" and layer.message.pooling_param.ListFields():
            param = layer.message.pooling_param
            if (param.pool, param.kernel_size, param.stride or 1) != pooling:
                raise UserError(f"{origin}: layer {layer.name!r} is not {arch}'s {pooling[1]}x{pooling[1]} max-pooling "
                                f"with stride {pooling[2]}")
        if layer.kind == "LRN":
            _check_lrn(layer, origin)
    return arch


def _conv_settings(param) -> tuple[int, int, int, int] | None:
    """(kernel, stride, pad, group) of a convolution as the file states it; None where it states none."""
    if not param.ListFields():
        return None
    return (param.kernel_size[0] if len(param.kernel_size) else param.kernel_h,
            param.stride[0] if len(param.stride) else (param.stride_h or 1),
            param.pad[0] if len(param.pad) else param.pad_h, param.group or 1)


def _check_lrn(layer: _CaffeLayer, origin: str) -> None:
    param = layer.message.lrn_param
    if not param.ListFields():
        return
    size, alpha, beta = param.local_size or 5, param.alpha or 1.0, param.beta or 0.75
    if size != 5 or not np.isclose(alpha, 1e-4) or not np.isclose(beta, 0.75) or param.k not in (0.0, 1.0):
        raise UserError(f"{origin}: layer {layer.name!r} is LRN({size}, alpha={alpha:g}, beta={beta:g}); CaffeNet's "
                        "is LRN(5, alpha=1e-4, beta=0.75, k=1)")


def read_caffemodel(path: Path) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str], str]:
    """A ``.caffemodel`` of CaffeNet, BVLC's AlexNet or VGG-16 -> (state in transferbench's names,
    the first convolution still BGR; the mapping lines; transferbench layer -> Caffe layer name;
    the architecture)."""
    from transferbench.worker.caffe_format import messages

    origin = str(path)
    try:
        net = messages()["NetParameter"].FromString(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"weights file {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - google.protobuf.message.DecodeError and friends
        raise UserError(f"{path} is not a Caffe model (NetParameter): {exc}") from exc
    layers = _caffe_layers(net)
    arch = _check_topology(layers, origin)
    learned = [layer for layer in layers if layer.kind in ("Convolution", "InnerProduct")]
    state: dict[str, torch.Tensor] = {}
    mapping, names = [], {}
    ours_names = LAYER_NAMES if arch != "vgg16" else architecture("vgg16").units + ("fc8",)
    for ours, layer in zip(ours_names, learned):
        blobs = layer.message.blobs
        if len(blobs) != 2:
            raise UserError(f"{origin}: layer {layer.name!r} ({ours}) has {len(blobs)} blobs, expected a weight and a bias; "
                            "is this a trained .caffemodel and not a .prototxt?")
        weight, bias = (blob_array(blob, f"{origin} layer {layer.name!r}") for blob in blobs)
        if ours.startswith("fc"):  # V1 files store inner products as 1 x 1 x out x in, and biases as 1 x 1 x 1 x out
            weight = weight.reshape(weight.shape[-2:]) if weight.ndim > 2 else weight
        bias = bias.reshape(-1)
        state[f"layers.{ours}.weight"] = torch.from_numpy(weight.copy())
        state[f"layers.{ours}.bias"] = torch.from_numpy(bias.copy())
        names[ours] = layer.name
        mapping.append(f"{ours} <- Caffe layer {layer.name!r} ({layer.kind}): weight {tuple(weight.shape)}, bias {tuple(bias.shape)}")
    return state, mapping, names, arch


# ---------------------------------------------------------------------------- torch state dicts

def _torch_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"weights file {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - a zip, pickle or format error: the file is not a state dict
        raise UserError(f"{path} is not a torch state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    elif isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"{path} holds no state dict (a name -> tensor table)")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def torch_layout(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, str]]:
    """(format, transferbench layer -> the file's layer name) of a state dict, from its keys."""
    if "layer4.2.conv3.weight" in state and "fc.weight" in state:
        return "torchvision-resnet50", {}
    if "encoder.layers.encoder_layer_11.mlp.3.weight" in state and "heads.head.weight" in state:
        return "torchvision-vit_b16", {}
    if "features.28.weight" in state and "classifier.6.weight" in state:
        return "torchvision-vgg16", {}
    if all(f"{prefix}.weight" in state for prefix in TORCHVISION_ALEXNET.values()):
        return "torchvision-alexnet", dict(TORCHVISION_ALEXNET)
    if all(f"layers.{name}.weight" in state for name in LAYER_NAMES):
        return "state-dict", {name: f"layers.{name}" for name in LAYER_NAMES}
    if all(f"{name}.weight" in state for name in LAYER_NAMES):
        return "state-dict", {name: name for name in LAYER_NAMES}
    shown = ", ".join(list(state)[:4])
    raise UserError(f"the state dict's keys ({shown}, ...) are neither torchvision's AlexNet (features.0.weight ... "
                    "classifier.6.weight) nor CaffeNet's (conv1.weight ... fc8.weight); it is not an 8-layer AlexNet-style network")


def _layer_state(raw: dict[str, torch.Tensor], names: dict[str, str], origin: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An 8-layer network's weight and bias per layer, in transferbench's names."""
    left = sorted(set(raw) - {f"{theirs}.{part}" for theirs in names.values() for part in ("weight", "bias")})
    if left:
        raise UserError(f"{origin} has tensors no layer of the 8-layer network takes ({', '.join(left[:4])}); a grown "
                        "or other network cannot be imported as a plain one")
    state, mapping = {}, []
    for ours, theirs in names.items():
        for part in ("weight", "bias"):
            if f"{theirs}.{part}" not in raw:
                raise UserError(f"{origin} lacks {theirs}.{part} ({ours})")
            state[f"layers.{ours}.{part}"] = raw[f"{theirs}.{part}"].detach().float().clone()
        mapping.append(f"{ours} <- {theirs}: weight {tuple(state[f'layers.{ours}.weight'].shape)}, "
                       f"bias {tuple(state[f'layers.{ours}.bias'].shape)}")
    return state, mapping


def _caffe_model(state: dict[str, torch.Tensor], arch: str, origin: str) -> ModelConfig:
    if arch == "vgg16":
        return ModelConfig(arch="vgg16", num_classes=int(state["layers.fc8.weight"].shape[0]),
                           in_channels=int(state["layers.conv1_1.weight"].shape[1]),
                           fc_width=int(state["layers.fc7.weight"].shape[0]))
    model = infer_model(state, origin)
    if model.arch != "caffenet":
        raise UserError(f"{origin}: conv2 reads {state['layers.conv2.weight'].shape[1]} channels per group; CaffeNet's two "
                        "towers need half of conv1's")
    return replace(model, arch=arch)  # CaffeNet, or BVLC's AlexNet: the same shapes, the order of LRN and pooling


# torchvision's VGG-16, ResNet-50 and ViT-B/16: every tensor of the file, mapped by rule to a unit.
TORCHVISION_WHOLE = {"torchvision-vgg16": "vgg16", "torchvision-resnet50": "resnet50", "torchvision-vit_b16": "vit_b16"}
VGG16_FEATURES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torchvision's features.N of conv1_1 .. conv5_3


def _torchvision_key(fmt: str, key: str) -> str | None:
    """transferbench's key of a torchvision key (None: no unit takes it)."""
    if fmt == "torchvision-resnet50":
        if key.startswith(("conv1.", "bn1.")):
            return f"layers.stem.{key}"
        match = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", key)
        if match:
            return f"layers.layer{match[1]}_{match[2]}.{match[3]}"
        return f"layers.{key}" if key.startswith("fc.") else None
    if fmt == "torchvision-vit_b16":
        match = re.fullmatch(r"encoder\.layers\.encoder_layer_(\d+)\.(.+)", key)
        fixed = {"class_token": "layers.patch.class_token", "encoder.pos_embedding": "layers.patch.pos_embedding"}
        if match:
            return f"layers.block{match[1]}.block.{match[2]}"
        if key.startswith("conv_proj."):
            return f"layers.patch.{key}"
        if key.startswith("encoder.ln."):
            return f"layers.block11.ln.{key.removeprefix('encoder.ln.')}"
        if key.startswith("heads.head."):
            return f"layers.head.{key.removeprefix('heads.head.')}"
        return fixed.get(key)
    units = architecture("vgg16").units
    names = {f"features.{index}": unit for index, unit in zip(VGG16_FEATURES, units)}
    names.update({"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"})
    layer, _, part = key.rpartition(".")
    return f"layers.{names[layer]}.{part}" if layer in names else None


def _torchvision_state(fmt: str, raw: dict[str, torch.Tensor], origin: str) -> tuple[dict[str, torch.Tensor], list[str], ModelConfig]:
    """A torchvision VGG-16, ResNet-50 or ViT-B/16 state dict in transferbench's names, every tensor
    accounted for, and the network it makes."""
    arch = TORCHVISION_WHOLE[fmt]
    state, left = {}, []
    for key, value in raw.items():
        ours = _torchvision_key(fmt, key)
        if ours is None:
            left.append(key)
        else:
            state[ours] = value.detach().clone() if not value.is_floating_point() else value.detach().float().clone()
    if left:
        raise UserError(f"{origin} has tensors no unit of torchvision's {arch} takes ({', '.join(left[:4])})")
    head = architecture(arch).head
    first = {"vgg16": "layers.conv1_1.weight", "resnet50": "layers.stem.conv1.weight", "vit_b16": "layers.patch.conv_proj.weight"}[arch]
    for needed in (f"layers.{head}.weight", first):
        if needed not in state:
            raise UserError(f"{origin} lacks {needed.removeprefix('layers.')}; it is not a whole torchvision {arch}")
    model = ModelConfig(arch=arch, num_classes=int(state[f"layers.{head}.weight"].shape[0]), in_channels=int(state[first].shape[1]),
                        fc_width=int(state["layers.fc7.weight"].shape[0]) if arch == "vgg16" else 4096)
    units: dict[str, int] = {}
    for key in state:
        units[key.split(".")[1]] = units.get(key.split(".")[1], 0) + 1
    mapping = [f"{unit} <- {count} tensors of torchvision's {arch}" for unit, count in units.items()]
    return state, mapping, model


# ---------------------------------------------------------------------------- the import

def import_weights(path: Path, name: str, fmt: str | None = None, mean: Any = None, channel_order: str | None = None,
                   size: int | None = None, std: Any = None, resize: str | None = None) -> ImportedSource:
    """Read a pretrained network from ``path`` into transferbench's layout (see the module docstring).

    ``mean``: per-channel values (RGB) or a mean file; default: the format's own (ImageNet's).
    ``channel_order``: of a state dict's conv1 (RGB unless said; a Caffe file is always BGR).
    ``size``: the size images are resized to before the crop (default 256, the paper's).
    ``std``: a state dict's per-channel input std, 0-255 units (default: none, Caffe's way).
    ``resize``: "warp" (the default; torchvision's AlexNet: "shorter")."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; give the path of the .caffemodel or state dict")
    explicit, fmt = fmt, fmt or guess_format(path)
    if fmt not in IMPORT_FORMATS:
        raise UserError(f"weights format {fmt!r} is not one of {', '.join(IMPORT_FORMATS)}")
    origin, notes = str(path), []
    if fmt == "caffe":
        if channel_order not in (None, "BGR"):
            raise UserError(f"{origin}: a Caffe model's conv1 reads BGR; channel_order {channel_order!r} does not apply")
        state, mapping, names, arch = read_caffemodel(path)
        order = "BGR"
        model = _caffe_model(state, arch, origin)
    else:
        raw = _torch_state(path)
        found, names = torch_layout(raw)
        if explicit and found != explicit:
            raise UserError(f"{origin} is laid out as {found}, not {explicit}; give format = {found!r} or leave it out")
        fmt = found
        if fmt in TORCHVISION_WHOLE:
            state, mapping, model = _torchvision_state(fmt, raw, origin)
        else:
            state, mapping = _layer_state(raw, names, origin)
            model = infer_model(state, origin)
        order = channel_order or "RGB"
        if fmt in TORCHVISION_FORMATS and order != "RGB":
            raise UserError(f"{origin}: torchvision's networks read RGB; channel_order {order!r} does not apply")
        if order not in ("RGB", "BGR"):
            raise UserError(f"channel_order {order!r} must be RGB or BGR")
    if fmt == "torchvision-alexnet" and model.arch != "alexnet":
        raise UserError(f"{origin}: its shapes are not torchvision's one-tower AlexNet")
    check_shapes(state, model, origin, names)
    if order == "BGR":
        first = f"layers.{model.architecture.units[0]}.weight"
        if model.in_channels != 3:
            raise UserError(f"{origin}: channel order BGR needs 3 input channels, conv1 has {model.in_channels}")
        state[first] = state[first].flip(1).contiguous()
        notes.append(f"{model.architecture.units[0]}'s input channels reversed from BGR to RGB (the worker decodes RGB)")
    small = model.architecture.crop <= 64
    size = size or (32 if small else 256)
    crop = size if small else model.architecture.crop
    if fmt in TORCHVISION_FORMATS:
        if mean is not None:
            raise UserError(f"{origin}: torchvision's networks come with their own normalisation; leave mean unset")
        mean_tensor = (255.0 * torch.tensor(TORCHVISION_MEAN)).view(3, 1, 1)
        what = f"per-channel {[round(255 * m, 3) for m in TORCHVISION_MEAN]} (RGB; torchvision's mean x 255)"
        notes.append("torchvision's input: (image - 255 x mean) / (255 x std) in 0-255, which is its normalised 0-1 input "
                     "exactly; the weights are kept as they are")
    elif mean is None:
        if model.in_channels != 3:
            raise UserError(f"{origin}: give the mean of its {model.in_channels}-channel input (mean = [...])")
        mean_tensor = torch.tensor(IMAGENET_MEAN_RGB).view(3, 1, 1)
        what = f"per-channel {list(IMAGENET_MEAN_RGB)} (RGB; ImageNet's)"
        notes.append("no mean given: ImageNet's per-channel mean subtracted (give the source's mean file, e.g. Caffe's "
                     "imagenet_mean.binaryproto, to subtract its mean image instead)")
    else:
        mean_tensor, what = read_mean(mean, model.in_channels, size, origin, bgr_file=order == "BGR")
    std_values, resize = _input_std(fmt, std, resize, model.in_channels, origin)
    digest = file_sha256(path)
    info = SourceInfo(name=f"source:{name}", origin=origin, format=fmt, config_hash=digest[:16], attempt=1, weights="",
                      model=model, size=size, crop=crop, input_scale=1.0, mean=what, notes=tuple(notes),
                      mapping=tuple(mapping), std=std_values, resize=resize)
    return ImportedSource(info, state, mean_tensor)


def _input_std(fmt: str, std: Any, resize: str | None, channels: int, origin: str) -> tuple[tuple[float, ...] | None, str]:
    """A source's per-channel std (0-255 units, or None) and way of resizing, checked."""
    from transferbench.schema.spec import RESIZES

    if resize is not None and resize not in RESIZES:
        raise UserError(f"{origin}: resize {resize!r} must be one of {', '.join(RESIZES)}")
    if fmt in TORCHVISION_FORMATS:
        if std is not None:
            raise UserError(f"{origin}: torchvision's networks come with their own normalisation; leave std unset")
        return tuple(round(255.0 * v, 6) for v in TORCHVISION_STD), resize or "shorter"
    if std is None:
        return None, resize or "warp"
    if fmt == "caffe":
        raise UserError(f"{origin}: a Caffe model reads its images in 0-255 with no std; leave std unset")
    if not isinstance(std, (list, tuple)) or len(std) != channels or not all(isinstance(v, (int, float)) and v > 0 for v in std):
        raise UserError(f"{origin}: std must give one positive value per input channel ({channels}), got {std!r}")
    if max(std) < 2:
        raise UserError(f"{origin}: std {list(std)} looks like 0-1 units; give it in 0-255 pixel units like the mean "
                        f"(255 x each: {[round(255 * v, 3) for v in std]})")
    return tuple(float(v) for v in std), resize or "warp"


def write_imported(imported: ImportedSource, folder: Path) -> SourceInfo:
    """``folder/model.pt``, ``folder/mean.pt`` (the mean image alone, for jobs that need nothing
    else of the source) and ``folder/source.json``, each atomically and the description last, so
    a description that exists has its weights."""
    folder = Path(folder)
    settings = imported.info.mean_identity.partition("@")[2] or None
    for name, payload in (("model.pt", {"model": imported.state, "config_hash": imported.info.config_hash, "attempt": 1,
                                        "mean": imported.mean, "imported_from": imported.info.origin, "settings": settings}),
                          ("mean.pt", {"mean": imported.mean, "config_hash": imported.info.config_hash, "attempt": 1,
                                       "settings": settings})):
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(folder / name, buffer.getvalue())
    info = replace(imported.info, weights=str((folder / "model.pt").resolve()))
    atomic_write_text(folder / "source.json", info.to_text())
    return info


def describe(info: SourceInfo) -> str:
    """What an import did, for a terminal."""
    model = info.model
    resized = (f"shorter side resized to {info.size}, then its centre" if info.resize == "shorter"
               else f"resized to {info.size} x {info.size}")
    divided = f", divided by std {[round(v, 3) for v in info.std]}" if info.std is not None else ""
    lines = [f"{info.name}: {info.format} from {info.origin}",
             f"  network: {model.describe()}, {model.in_channels} input channels",
             f"  input: {resized}, {info.crop} crop, scale {info.input_scale:g}, mean {info.mean}{divided}"]
    lines += [f"  {line}" for line in info.mapping]
    lines += [f"  note: {note}" for note in info.notes]
    return "\n".join(lines)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "source"
