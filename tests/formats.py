"""Small files in the genuine on-disk formats the tests read: the target datasets' layouts and
Caffe's ``.caffemodel`` (written with Caffe's message schema through protobuf)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A few real class names of each dataset, in their own spelling.
CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani")
MIT_CLASSES = ("airport_inside", "bakery", "bedroom", "kitchen")
SUN_CLASSES = ("/a/abbey", "/b/bakery/shop", "/c/campsite", "/k/kitchen")
CALTECH_CLASSES = ("Faces", "accordion", "anchor", "ant")


def write_image(path: Path, label: int, index: int, size: int = 24, gray: bool = False) -> None:
    """A small JPEG whose colour and bar position say its class (learnable), with some noise."""
    from PIL import Image

    rng = np.random.default_rng(1000 * label + index)
    pixels = rng.integers(0, 50, (size, size, 3))
    pixels[:, :, label % 3] += 120
    pixels[(3 * label) % size:(3 * label) % size + 4, :, :] += 80
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    (image.convert("L") if gray else image).save(path, "JPEG", quality=90)


def make_cub200(root: Path, per_class: int = 4, classes=CUB_CLASSES) -> Path:
    """CUB-200-2011 as its archive unpacks: ROOT/CUB_200_2011/{images.txt, ...}, images/<class>/."""
    base = root / "CUB_200_2011"
    images, labels, split = [], [], []
    image_id = 0
    for class_id, name in enumerate(classes, 1):
        for i in range(per_class):
            image_id += 1
            relative = f"{name}/{name.split('.', 1)[1]}_{i:04d}_{image_id}.jpg"
            write_image(base / "images" / relative, class_id - 1, i)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {1 if i < per_class // 2 else 0}")
    base.mkdir(parents=True, exist_ok=True)
    (base / "classes.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(classes, 1)))
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split) + "\n")
    return root


def make_mit67(root: Path, per_class: int = 4, classes=MIT_CLASSES) -> Path:
    """MIT Indoor-67: ROOT/Images/<class>/*.jpg with TrainImages.txt and TestImages.txt (class/file per line)."""
    train, test = [], []
    for label, name in enumerate(classes):
        for i in range(per_class):
            relative = f"{name}/{name}_{i:04d}.jpg"
            write_image(root / "Images" / relative, label, i)
            (train if i < per_class // 2 else test).append(relative)
    (root / "TrainImages.txt").write_text("\n".join(train) + "\n")
    (root / "TestImages.txt").write_text("\n".join(test) + "\n")
    return root


def make_sun397(root: Path, per_class: int = 4, classes=SUN_CLASSES, partitions: int = 2) -> Path:
    """SUN-397: ROOT/SUN397/<letter>/<class>/sun_*.jpg and ROOT/Partitions/{ClassName, Training_NN, Testing_NN}.txt."""
    files = {name: [] for name in classes}
    for label, name in enumerate(classes):
        for i in range(per_class):
            relative = f"{name}/sun_{label}{i:04d}.jpg"
            write_image(root / "SUN397" / relative.strip("/"), label, i)
            files[name].append(relative)
    parts = root / "Partitions"
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "ClassName.txt").write_text("\n".join(classes) + "\n")
    for number in range(1, partitions + 1):
        train = [f for name in classes for i, f in enumerate(files[name]) if (i + number) % 2 == 0]
        test = [f for name in classes for i, f in enumerate(files[name]) if (i + number) % 2 == 1]
        (parts / f"Training_{number:02d}.txt").write_text("\n".join(train) + "\n")
        (parts / f"Testing_{number:02d}.txt").write_text("\n".join(test) + "\n")
    return root


def make_caltech101(root: Path, per_class: int = 5, classes=CALTECH_CLASSES) -> Path:
    """Caltech-101: ROOT/101_ObjectCategories/<class>/image_NNNN.jpg, BACKGROUND_Google included; some gray images."""
    folder = root / "101_ObjectCategories"
    for label, name in enumerate((*classes, "BACKGROUND_Google")):
        for i in range(per_class):
            write_image(folder / name / f"image_{i + 1:04d}.jpg", label, i, gray=i == 0)
    return root


def make_folder(root: Path, per_class: int = 4, classes=("cat", "dog", "fox"), val: str = "val") -> Path:
    """A folder per class: ROOT/train/<class>/ and ROOT/val/<class>/."""
    for label, name in enumerate(classes):
        for i in range(per_class):
            part = "train" if i < per_class // 2 else val
            write_image(root / part / name / f"{i}.jpg", label, i)
    return root


# ---------------------------------------------------------------------------- Caffe

def write_caffemodel(path: Path, state: dict, v1: bool = False, alexnet_order: bool = False,
                     shapes: dict[str, tuple[int, ...]] | None = None) -> Path:
    """A trained CaffeNet as Caffe saves it: the whole net (data, convolutions, ReLUs, pooling, LRN,
    inner products, dropout, loss) with each learned layer's weight and bias blobs; conv1 in BGR.
    ``state``: transferbench's RGB weights (``layers.conv1.weight`` ...). ``v1``: the V1 layer
    format (``layers``, 4-D blob dimensions), as old files such as the BVLC reference model are.
    ``alexnet_order``: LRN before pooling (BVLC's AlexNet). ``shapes``: blob shapes to write
    instead (a damaged file)."""
    from transferbench.worker.caffe_format import V1_LAYER_TYPES, messages

    net = messages()["NetParameter"](name="CaffeNet")
    pool = ("Pooling", {"pool": 0, "kernel_size": 3, "stride": 2})
    lrn = ("LRN", {"local_size": 5, "alpha": 1e-4, "beta": 0.75})
    convs = {"conv1": (11, 4, 0, 1), "conv2": (5, 1, 2, 2), "conv3": (3, 1, 1, 1), "conv4": (3, 1, 1, 2), "conv5": (3, 1, 1, 2)}
    plan = [("data", "Data", None)]
    if "layers.conv1_1.weight" in state:  # VGG-16, as its authors' deploy net lays it out
        for stage, count in enumerate((2, 2, 3, 3, 3), 1):
            for index in range(1, count + 1):
                plan += [(f"conv{stage}_{index}", "Convolution", (3, 1, 1, 1)), (f"relu{stage}_{index}", "ReLU", None)]
            plan.append((f"pool{stage}", "Pooling", {"pool": 0, "kernel_size": 2, "stride": 2}))
    for name in () if "layers.conv1_1.weight" in state else ("conv1", "conv2", "conv3", "conv4", "conv5"):
        plan.append((name, "Convolution", convs[name]))
        plan.append((f"relu{name[-1]}", "ReLU", None))
        if name in ("conv1", "conv2"):
            steps = [lrn, pool] if alexnet_order else [pool, lrn]
            plan += [(f"{kind.lower()}{name[-1]}", kind, params) for kind, params in steps]
        if name == "conv5":
            plan.append(("pool5", *pool))
    for name in ("fc6", "fc7", "fc8"):
        plan.append((name, "InnerProduct", None))
        if name != "fc8":
            plan += [(f"relu{name[-1]}", "ReLU", None), (f"drop{name[-1]}", "Dropout", None)]
    plan.append(("loss", "SoftmaxWithLoss", None))
    v1_types = {"Data": "DATA", "Convolution": "CONVOLUTION", "ReLU": "RELU", "Pooling": "POOLING", "LRN": "LRN",
                "InnerProduct": "INNER_PRODUCT", "Dropout": "DROPOUT", "SoftmaxWithLoss": "SOFTMAX_LOSS"}
    for name, kind, params in plan:
        layer = net.layers.add(name=name, type=V1_LAYER_TYPES[v1_types[kind]]) if v1 else net.layer.add(name=name, type=kind)
        if kind == "Convolution":
            kernel, stride, pad, group = params
            weight = state[f"layers.{name}.weight"].numpy()
            layer.convolution_param.num_output = weight.shape[0]
            layer.convolution_param.kernel_size.append(kernel)
            layer.convolution_param.stride.append(stride)
            if pad:
                layer.convolution_param.pad.append(pad)
            if group > 1:
                layer.convolution_param.group = group
        elif kind == "Pooling":
            layer.pooling_param.pool, layer.pooling_param.kernel_size, layer.pooling_param.stride = (
                params["pool"], params["kernel_size"], params["stride"])
        elif kind == "LRN":
            layer.lrn_param.local_size, layer.lrn_param.alpha, layer.lrn_param.beta = (
                params["local_size"], params["alpha"], params["beta"])
        if kind not in ("Convolution", "InnerProduct"):
            continue
        weight = state[f"layers.{name}.weight"].numpy()
        bias = state[f"layers.{name}.bias"].numpy()
        if name in ("conv1", "conv1_1"):
            weight = weight[:, ::-1]  # Caffe reads BGR
        if kind == "InnerProduct":
            layer.inner_product_param.num_output = weight.shape[0]
        for array, blob_name in ((weight, "weight"), (bias, "bias")):
            shape = (shapes or {}).get(f"{name}.{blob_name}", array.shape)
            values = np.resize(np.ascontiguousarray(array, dtype=np.float32).ravel(), int(np.prod(shape)))
            blob = layer.blobs.add()
            if v1:  # 4-D num/channels/height/width, leading ones as Caffe 1 wrote them
                dims = (1,) * (4 - len(shape)) + tuple(shape)
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(shape)
            blob.data.extend(values.tolist())
    path.write_bytes(net.SerializeToString())
    return path


def write_binaryproto(path: Path, mean_bgr: np.ndarray) -> Path:
    """Caffe's mean file: one BlobProto of 1 x 3 x H x W, BGR."""
    from transferbench.worker.caffe_format import messages

    blob = messages()["BlobProto"](num=1, channels=mean_bgr.shape[0], height=mean_bgr.shape[1], width=mean_bgr.shape[2])
    blob.data.extend(np.asarray(mean_bgr, dtype=np.float32).ravel().tolist())
    path.write_bytes(blob.SerializeToString())
    return path


def growing_a_brain_files(tmp_path) -> list[str]:
    """Small files in place of the BVLC CaffeNet and the three target datasets, as --set gives them."""
    import torch

    from transferbench.schema.spec import ModelConfig
    from transferbench.worker.models import TransferNet

    write_caffemodel(tmp_path / "caffenet.caffemodel",
                     TransferNet(ModelConfig(num_classes=1000, conv_widths=(8, 16, 16, 16, 16), fc_width=32)).state_dict())
    return [f"source.caffenet.weights={tmp_path / 'caffenet.caffemodel'}",
            f"target.sun397.data_root={make_sun397(tmp_path / 'sun')}", f"target.mit67.data_root={make_mit67(tmp_path / 'mit')}",
            f"target.cub200.data_root={make_cub200(tmp_path / 'cub')}"]


def write_torchvision_vgg16(path: Path, fc_width: int = 16, num_classes: int = 1000) -> Path:
    """A VGG-16 state dict in torchvision's names (features.0 ... classifier.6), random weights,
    with fc6 and fc7 narrowed to ``fc_width`` to keep the file small."""
    import torch

    from transferbench.schema.spec import ModelConfig
    from transferbench.worker.models import build_network
    from transferbench.worker.sources import VGG16_FEATURES

    ours = build_network(ModelConfig(arch="vgg16", num_classes=num_classes, fc_width=fc_width)).state_dict()
    units = [key.split(".")[1] for key in ours if key.endswith(".weight")]
    theirs = {unit: f"features.{index}" for unit, index in zip(units[:13], VGG16_FEATURES)}
    theirs.update({"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"})
    torch.save({f"{theirs[key.split('.')[1]]}.{key.split('.')[2]}": value for key, value in ours.items()}, path)
    return path


def growing_a_brain_vgg16_files(tmp_path) -> list[str]:
    """Small files in place of torchvision's VGG-16 and the two target datasets, as --set gives them."""
    return [f"source.vgg16.weights={write_torchvision_vgg16(tmp_path / 'vgg16.pth')}",
            f"target.sun397.data_root={make_sun397(tmp_path / 'sun')}", f"target.mit67.data_root={make_mit67(tmp_path / 'mit')}"]


def torchvision_reference(arch: str, seed: int):
    """torchvision's resnet50, vgg16 or vit_b16 with random weights, in eval mode, its BatchNorm
    statistics drawn at random and ViT's head made non-zero, so that an import that dropped either
    would change the logits."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    reference = {"resnet50": torchvision.models.resnet50, "vgg16": torchvision.models.vgg16,
                 "vit_b16": torchvision.models.vit_b_16}[arch](weights=None).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    if arch == "vit_b16":
        torch.nn.init.normal_(reference.heads.head.weight, std=0.02)
    return reference

