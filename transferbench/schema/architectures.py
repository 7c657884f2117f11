"""Every architecture as an ordered list of transferable units plus a head, declared once.

Yosinski et al.'s conditions copy and freeze "layers 1..n". Here n counts *blocks*: the units of
the architecture, one by one (``model.blocks = "units"``) or grouped into stages
(``model.blocks = "stages"``). L, the number of blocks, is what n runs over (1..L), what the
figures draw and what a developmental network copies whole (AnB+ with n = L: A7B+ for CaffeNet).

| arch | units (the head last) | stages | L (units / stages) | input |
|---|---|---|---|---|
| ``caffenet`` | conv1..conv5, fc6, fc7 + fc8 | the same | 7 / 7 | 227 px crop of 256, BGR-trained (Caffe) |
| ``bvlc_alexnet`` | the same (local response normalisation before pooling) | the same | 7 / 7 | 227 of 256 |
| ``alexnet`` | the same, one tower (torchvision's) | the same | 7 / 7 | 224 of 256 |
| ``small`` | the same, 5x5 conv1, for 28-64 px | the same | 7 / 7 | 32 |
| ``vgg16`` | conv1_1..conv5_3 (13), fc6, fc7 + fc8 | conv1..conv5, fc6, fc7 | 15 / 7 | 224 of 256 |
| ``resnet50`` | stem, 16 bottlenecks (layer1_0 ... layer4_2) + fc | stem, layer1..layer4 | 17 / 5 | 224 of 256 |
| ``resnet_small`` | stem, 8 basic blocks (ResNet-18's) + fc, 3x3 stem for 32 px | stem, layer1..layer4 | 9 / 5 | 32 |
| ``vit_b16`` | patch embedding, 12 encoder blocks + head | patch, blocks in 4 groups of 3 | 13 / 5 | 224 of 256 |
| ``vit_tiny`` | patch embedding (4 px patches), 6 encoder blocks of width 64 + head | patch, blocks in 3 pairs | 7 / 4 | 32 |

Every unit's parameters live under ``layers.<unit>.`` in the model's state dict, so copying or
freezing the units of blocks 1..n is a matter of names, whatever the architecture.

The 8-layer networks (and VGG16's fc6, fc7) are the developmental networks' home: they grow at
fc7 (DA, WA, DWA) and fc6 (WWA) as in Growing a Brain. ResNet and ViT have no fully connected
hidden layer: they grow at their pooled features (DA: a new layer of S units on them; WA: S new
units beside them, fed by the pooled output of the block below the last).
"""

from __future__ import annotations

from dataclasses import dataclass

from transferbench.errors import UserError

EIGHT_LAYER_UNITS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
BLOCKS = ("units", "stages")


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str  # "eight" (CaffeNet/AlexNet/small), "vgg", "resnet", "vit"
    units: tuple[str, ...]  # learned units in order, the head excluded
    head: str
    stages: tuple[tuple[str, ...], ...]  # the units grouped by stage
    crop: int  # the input it was built for (the small ones take 28-64 px)
    description: str

    @property
    def has_fc_top(self) -> bool:
        """Whether fc6 and fc7 are its last units (where Growing a Brain grows)."""
        return self.units[-2:] == ("fc6", "fc7")

    def blocks(self, granularity: str) -> tuple[tuple[str, ...], ...]:
        if granularity not in BLOCKS:
            raise UserError(f"model.blocks {granularity!r} is not one of {', '.join(BLOCKS)}")
        return self.stages if granularity == "stages" else tuple((unit,) for unit in self.units)


def _resnet_units(depths: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
    return (("stem",),) + tuple(tuple(f"layer{stage}_{i}" for i in range(depth)) for stage, depth in enumerate(depths, 1))


def _vit_stages(depth: int, per_stage: int) -> tuple[tuple[str, ...], ...]:
    return (("patch",),) + tuple(tuple(f"block{i}" for i in range(start, start + per_stage))
                                 for start in range(0, depth, per_stage))


def _flat(stages: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    return tuple(unit for stage in stages for unit in stage)


_EIGHT = tuple((unit,) for unit in EIGHT_LAYER_UNITS)
_VGG = (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1", "conv3_2", "conv3_3"), ("conv4_1", "conv4_2", "conv4_3"),
        ("conv5_1", "conv5_2", "conv5_3"), ("fc6",), ("fc7",))
RESNET50_DEPTHS = (3, 4, 6, 3)
RESNET_SMALL_DEPTHS = (2, 2, 2, 2)
VIT_B16 = {"depth": 12, "dim": 768, "heads": 12, "mlp": 3072, "patch": 16, "size": 224}
VIT_TINY = {"depth": 6, "dim": 64, "heads": 4, "mlp": 128, "patch": 4, "size": 32}

ARCHITECTURE_TABLE = {
    "caffenet": Architecture("caffenet", "eight", EIGHT_LAYER_UNITS, "fc8", _EIGHT, 227,
                             "CaffeNet, the paper's network: two towers, pooling before normalisation"),
    "bvlc_alexnet": Architecture("bvlc_alexnet", "eight", EIGHT_LAYER_UNITS, "fc8", _EIGHT, 227,
                                 "BVLC's AlexNet in Caffe: CaffeNet with normalisation before pooling"),
    "alexnet": Architecture("alexnet", "eight", EIGHT_LAYER_UNITS, "fc8", _EIGHT, 224,
                            "torchvision's one-tower AlexNet, for its pretrained weights"),
    "small": Architecture("small", "eight", EIGHT_LAYER_UNITS, "fc8", _EIGHT, 32,
                          "the 8-layer network at 28-64 px, for the CPU"),
    "vgg16": Architecture("vgg16", "vgg", _flat(_VGG), "fc8", _VGG, 224, "VGG-16 (torchvision's and Caffe's layout)"),
    "resnet50": Architecture("resnet50", "resnet", _flat(_resnet_units(RESNET50_DEPTHS)), "fc",
                             _resnet_units(RESNET50_DEPTHS), 224, "ResNet-50 (torchvision's layout)"),
    "resnet_small": Architecture("resnet_small", "resnet", _flat(_resnet_units(RESNET_SMALL_DEPTHS)), "fc",
                                 _resnet_units(RESNET_SMALL_DEPTHS), 32,
                                 "a ResNet-18-like network for 32 px (3x3 stem, no max-pooling), for the CPU"),
    "vit_b16": Architecture("vit_b16", "vit", _flat(_vit_stages(12, 3)), "head", _vit_stages(12, 3), 224,
                            "ViT-B/16 (torchvision's layout)"),
    "vit_tiny": Architecture("vit_tiny", "vit", _flat(_vit_stages(6, 2)), "head", _vit_stages(6, 2), 32,
                             "a tiny ViT (4 px patches, width 64, 6 blocks) for 32 px, for the CPU"),
}
ARCHITECTURES = tuple(ARCHITECTURE_TABLE)


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURE_TABLE[name]
    except KeyError:
        raise UserError(f"arch {name!r} is not one of {', '.join(ARCHITECTURES)}") from None



def parameter_count(model) -> int:
    """Learned parameters of the plain network of ``model`` (a ModelConfig), from the
    architecture's shapes (a test checks them against the networks built)."""
    classes, channels = model.num_classes, model.in_channels
    if model.arch == "vgg16":
        widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
        convs = sum(9 * c_in * c_out + c_out for c_in, c_out in zip([channels] + widths[:-1], widths))
        fc = model.fc_width
        return convs + 512 * 49 * fc + fc + fc * fc + fc + fc * classes + classes
    if model.arch == "resnet50":
        return 23_508_032 + 64 * 49 * (channels - 3) + 2049 * classes
    if model.arch == "vit_b16":
        return 85_798_656 + 768 * 256 * (channels - 3) + 769 * classes
    if model.arch == "vit_tiny":
        dim, mlp, patch, tokens = VIT_TINY["dim"], VIT_TINY["mlp"], VIT_TINY["patch"], (32 // 4) ** 2 + 1
        block = 2 * 2 * dim + 3 * dim * dim + 3 * dim + dim * dim + dim + dim * mlp + mlp + mlp * dim + dim
        return channels * patch * patch * dim + dim + dim + tokens * dim + VIT_TINY["depth"] * block + 2 * dim + (dim + 1) * classes
    stem, *widths = model.conv_widths  # resnet_small: basic blocks, two per stage
    total, c_in = 9 * channels * stem + 2 * stem, stem
    for stage, width in enumerate(widths):
        for index in range(RESNET_SMALL_DEPTHS[stage]):
            total += 9 * c_in * width + 9 * width * width + 4 * width
            if c_in != width or (stage and not index):
                total += c_in * width + 2 * width
            c_in = width
    return total + (c_in + 1) * classes


# Values one image leaves for the backward pass at the architecture's input: the outputs of its
# convolutions, linear and attention layers counted on the networks built (VGG-16 13.6M,
# ResNet-50 11.1M, ViT-B/16 11.0M, the tiny ViT 0.10M) times 1.4 for what normalisation and
# pooling keep (CaffeNet's own count is 1.36 times its layers' outputs), plus ViT's attention
# maps (heads x tokens^2 per block): rough figures for memory estimates.
_ACTIVATIONS = {"vgg16": 19_000_000, "resnet50": 15_600_000, "vit_b16": 21_000_000, "vit_tiny": 250_000}


def activation_count(model) -> int:
    """Values one image leaves in memory in a forward pass: a rough measure for memory estimates."""
    if model.arch in _ACTIVATIONS:
        return _ACTIVATIONS[model.arch]
    stem, *widths = model.conv_widths  # resnet_small at 32 px: about seven maps per basic block, three for the stem
    side, total = 32, 3 * stem * 32 * 32
    for stage, width in enumerate(widths):
        side = side if stage == 0 else (side + 1) // 2
        total += 7 * RESNET_SMALL_DEPTHS[stage] * width * side * side
    return total
