"""VGG-16, ResNet and ViT as ordered units plus a head (``schema/architectures.py``), computing
what torchvision's models compute (the residual and encoder blocks are torchvision's own), so
torchvision's pretrained weights give torchvision's logits.

| network | units | head |
|---|---|---|
| ``VGGNet`` (vgg16) | conv1_1 .. conv5_3 (3x3 convolution, ReLU; max-pooling after each stage's last), fc6, fc7 (ReLU, dropout) | fc8, reading fc7 |
| ``ResNet`` (resnet50, resnet_small) | stem (conv, BatchNorm, ReLU, max-pooling; resnet_small: 3x3 conv, no pooling), then one unit per residual block | fc, reading the globally averaged features |
| ``ViT`` (vit_b16, vit_tiny) | patch (patch embedding, class token, position embedding), block0 .. (encoder blocks; the last also holds the final LayerNorm) | head, reading the class token |
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferbench.schema.architectures import RESNET50_DEPTHS, RESNET_SMALL_DEPTHS, VIT_B16, VIT_TINY
from transferbench.schema.spec import ModelConfig
from transferbench.worker.blocknet import BlockNet

VGG16_WIDTHS = {"conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512}


class VGGNet(BlockNet):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        arch = config.architecture
        self.units, self.head = arch.units, arch.head
        self.stage_ends = {stage[-1] for stage in arch.stages if stage[-1].startswith("conv")}
        self.layers = nn.ModuleDict()
        channels = config.in_channels
        for unit in arch.units[:-2]:
            width = VGG16_WIDTHS[unit.split("_")[0]]
            self.layers[unit] = nn.Conv2d(channels, width, 3, padding=1)
            channels = width
        self.layers["fc6"] = nn.Linear(channels * 7 * 7, config.fc_width)
        self.layers["fc7"] = nn.Linear(config.fc_width, config.fc_width)
        self.layers["fc8"] = nn.Linear(config.fc_width, config.num_classes)
        self.reset_layers(self.units + (self.head,))

    def init_layer(self, layer: nn.Module, name: str) -> None:
        if self.config.init == "paper":  # VGG's: Gaussian 0.01, zero biases
            nn.init.normal_(layer.weight, 0.0, 0.01)
        else:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu" if name != "fc8" else "linear")
        nn.init.zeros_(layer.bias)

    def _layer_block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        x = self.layers[name](x)
        if name == self.head:
            return x
        x = F.relu(x, inplace=True)
        if name.startswith("fc"):
            return F.dropout(x, self.config.dropout, self.training)
        if name in self.stage_ends:
            x = F.max_pool2d(x, 2, 2)
            if name == "conv5_3":
                x = torch.flatten(F.adaptive_avg_pool2d(x, 7), 1)
        return x


class ResNet(BlockNet):
    """torchvision's ResNet (v1.5: the stride in the bottleneck's 3x3), unit by unit."""

    def __init__(self, config: ModelConfig) -> None:
        from torchvision.models.resnet import BasicBlock, Bottleneck

        super().__init__(config)
        arch = config.architecture
        self.units, self.head = arch.units, arch.head
        self.layers = nn.ModuleDict()
        if config.arch == "resnet50":
            block, depths, widths, stem_width = Bottleneck, RESNET50_DEPTHS, (64, 128, 256, 512), 64
            self.layers["stem"] = nn.Sequential()
            self.layers["stem"].add_module("conv1", nn.Conv2d(config.in_channels, stem_width, 7, 2, 3, bias=False))
            self.layers["stem"].add_module("bn1", nn.BatchNorm2d(stem_width))
            self.layers["stem"].add_module("relu", nn.ReLU(inplace=True))
            self.layers["stem"].add_module("maxpool", nn.MaxPool2d(3, 2, 1))
        else:  # resnet_small: conv_widths are (stem, layer1, ..., layer4)
            block, depths, stem_width = BasicBlock, RESNET_SMALL_DEPTHS, config.conv_widths[0]
            widths = config.conv_widths[1:]
            self.layers["stem"] = nn.Sequential()
            self.layers["stem"].add_module("conv1", nn.Conv2d(config.in_channels, stem_width, 3, 1, 1, bias=False))
            self.layers["stem"].add_module("bn1", nn.BatchNorm2d(stem_width))
            self.layers["stem"].add_module("relu", nn.ReLU(inplace=True))
        channels = stem_width
        for stage, (depth, width) in enumerate(zip(depths, widths), 1):
            for index in range(depth):
                stride = 2 if stage > 1 and index == 0 else 1
                downsample = None
                if stride != 1 or channels != width * block.expansion:
                    downsample = nn.Sequential(nn.Conv2d(channels, width * block.expansion, 1, stride, bias=False),
                                               nn.BatchNorm2d(width * block.expansion))
                self.layers[f"layer{stage}_{index}"] = block(channels, width, stride, downsample)
                channels = width * block.expansion
        self.features = channels
        self.layers["fc"] = nn.Linear(channels, config.num_classes)
        self.reset_layers(self.units + (self.head,))

    def init_layer(self, layer: nn.Module, name: str) -> None:
        """torchvision's: He normal (fan out) convolutions, BatchNorm at 1 and 0, the classifier
        as nn.Linear initialises itself."""
        for module in layer.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()
            elif isinstance(module, nn.Linear):
                module.reset_parameters()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def unit_width(self, name: str) -> int:
        """Channels of a unit's output (what its pooled features hold)."""
        unit = self.layers[name]
        last = unit.conv1 if name == "stem" else getattr(unit, "conv3", None) or unit.conv2
        return last.out_channels

    def _layer_block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == self.head:
            return self.layers[name](self.pool(x))
        return self.layers[name](x)


class ViTUnit(nn.Module):
    """One encoder block of torchvision's ViT; the last also holds the encoder's final LayerNorm."""

    def __init__(self, dims: dict, last: bool) -> None:
        from torchvision.models.vision_transformer import EncoderBlock

        super().__init__()
        self.block = EncoderBlock(dims["heads"], dims["dim"], dims["mlp"], 0.0, 0.0)
        self.ln = nn.LayerNorm(dims["dim"], eps=1e-6) if last else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        return self.ln(x) if self.ln is not None else x


class PatchEmbedding(nn.Module):
    """torchvision's ViT input: patches projected, the class token prepended, position embeddings added."""

    def __init__(self, dims: dict, in_channels: int) -> None:
        super().__init__()
        self.patch = dims["patch"]
        self.conv_proj = nn.Conv2d(in_channels, dims["dim"], dims["patch"], dims["patch"])
        self.class_token = nn.Parameter(torch.zeros(1, 1, dims["dim"]))
        tokens = (dims["size"] // dims["patch"]) ** 2 + 1
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, dims["dim"]).normal_(std=0.02))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embedding


class ViT(BlockNet):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        arch = config.architecture
        self.units, self.head = arch.units, arch.head
        self.dims = VIT_B16 if config.arch == "vit_b16" else VIT_TINY
        self.layers = nn.ModuleDict({"patch": PatchEmbedding(self.dims, config.in_channels)})
        for index in range(self.dims["depth"]):
            self.layers[f"block{index}"] = ViTUnit(self.dims, index == self.dims["depth"] - 1)
        self.features = self.dims["dim"]
        self.layers["head"] = nn.Linear(self.dims["dim"], config.num_classes)
        self.reset_layers(self.units + (self.head,))

    def init_layer(self, layer: nn.Module, name: str) -> None:
        """torchvision's: its blocks' own initialisation; the patch projection as LeCun normal
        (fan in), the class token 0, position embeddings N(0, 0.02); a new head at 0, as
        torchvision's classification head starts."""
        if name == "patch":
            fan_in = layer.conv_proj.in_channels * layer.patch ** 2
            nn.init.trunc_normal_(layer.conv_proj.weight, std=(1.0 / fan_in) ** 0.5)
            nn.init.zeros_(layer.conv_proj.bias)
            nn.init.zeros_(layer.class_token)
            nn.init.normal_(layer.pos_embedding, std=0.02)
        elif name == self.head:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        else:
            fresh = ViTUnit(self.dims, layer.ln is not None).to(next(layer.parameters()).device)
            layer.load_state_dict(fresh.state_dict())

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]

    def unit_width(self, name: str) -> int:
        return self.dims["dim"]

    def _layer_block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == self.head:
            return self.layers[name](self.pool(x))
        return self.layers[name](x)


NETWORKS = {"vgg": VGGNet, "resnet": ResNet, "vit": ViT}
