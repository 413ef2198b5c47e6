"""The C-Abstractor (Honeybee) projector of HyperCLOVAX-SEED-Vision, with the published parameter names
(``mm_projector.pos_emb``, ``net.0.b1…b3`` / ``net.2.b1…b3`` RegNet bottleneck blocks, ``readout.0`` / ``readout.2``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from align.models.hcx_vision.configuration import HCXVisionConfig


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a [B, C, H, W] map."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNorm(nn.Module):
    def __init__(self, cin, cout, kernel=1, groups=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
        self.bn = LayerNorm2d(cout, eps=1e-5)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduced):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(x.mean((2, 3), keepdim=True)))))


class RegBlock(nn.Module):
    """RegNet bottleneck (ratio 1): 1×1 conv, depthwise 3×3 conv, squeeze-excite (a quarter of the block's input
    channels), 1×1 conv, residual (1×1 conv shortcut when channels change), SiLU; LayerNorm2d after each conv."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = ConvNorm(cin, cout, 1)
        self.conv2 = ConvNorm(cout, cout, 3, groups=cout)
        self.se = SqueezeExcite(cout, round(cin * 0.25))
        self.conv3 = ConvNorm(cout, cout, 1, act=False)
        self.downsample = ConvNorm(cin, cout, 1, act=False) if cin != cout else None

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return nn.functional.silu(self.conv3(self.se(self.conv2(self.conv1(x)))) + shortcut)


class RegStage(nn.Sequential):
    def __init__(self, depth, cin, cout):
        super().__init__()
        for i in range(depth):
            self.add_module(f"b{i + 1}", RegBlock(cin if i == 0 else cout, cout))


class CAbstractor(nn.Module):
    """C-Abstractor (Honeybee): ResNet stage, adaptive pooling to √q × √q, ResNet stage, two-layer readout."""

    def __init__(self, config: HCXVisionConfig):
        super().__init__()
        vc = config.vision_config
        dim = vc.hidden_size
        self.num_input_tokens = (vc.image_size // vc.patch_size) ** 2
        self.pos_emb = nn.Parameter(torch.zeros(1, self.num_input_tokens, dim)) if config.proj_pos_emb else None
        self.prenorm = nn.LayerNorm(dim) if config.proj_prenorm else None
        side = math.isqrt(config.num_queries_vis_abstractor_image)
        self.net = nn.Sequential(RegStage(3, dim, dim), nn.AdaptiveAvgPool2d((side, side)), RegStage(3, dim, dim))
        out = config.text_config.hidden_size
        self.readout = nn.Sequential(nn.Linear(dim, out), nn.SiLU(), nn.Linear(out, out))

    def forward(self, x: torch.Tensor, queries: list[int]) -> list[torch.Tensor]:
        """x: [grids, tokens, dim]; queries: visual queries for each grid → one [grids_i, q_i, out] per run of
        consecutive grids with the same query count."""
        if self.prenorm is not None:
            x = self.prenorm(x)
        if self.pos_emb is not None:
            x = x + self.pos_emb
        side = math.isqrt(x.shape[1])
        x = self.net[0](x.transpose(1, 2).reshape(x.shape[0], -1, side, side))
        outs, start = [], 0
        while start < len(queries):
            end = start
            while end < len(queries) and queries[end] == queries[start]:
                end += 1
            q = math.isqrt(queries[start])
            y = self.net[2](nn.functional.adaptive_avg_pool2d(x[start:end], (q, q)))
            outs.append(self.readout(y.flatten(2).transpose(1, 2)))
            start = end
        return outs
