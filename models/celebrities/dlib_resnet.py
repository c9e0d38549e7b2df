"""dlib's face descriptor network (``dlib_face_recognition_resnet_model_v1.dat``) in torch:
a reader of dlib's serialised network file and the same ResNet as a torch module.

The file is dlib's own binary serialisation of a ``loss_metric`` network (dlib/dnn/core.h,
layers.h, input.h, loss.h, dlib/serialize.h):

- integers: a control byte (0x80 = negative, low 4 bits = byte count), then that many
  little-endian bytes; floats and doubles: a mantissa and a base-2 exponent as two integers;
  bools: the byte '1' or '0'; strings: a length and the bytes; tensors: version 2, four
  dimensions (num_samples, k, nr, nc), then little-endian float32 data.
- the loss layer writes its version, its details, then the network below it; every other
  layer (``add_layer``) writes its version, the network below it, its own details
  (a name such as ``con_4`` or ``affine_`` followed by its fields), then training state
  (three bools and two or three tensors, empty in a saved model). ``tag`` and ``skip``
  layers write only a version and the network below.

So the file holds every layer's version from the output down, then the input layer, then the
layers' details from the input up. The versions carry no layer names, which is why the
reader walks the network's known structure (``LAYERS``) and checks every name it meets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

from models.runtimes.device import stack_to_device

log = logging.getLogger(__name__)

CHIP_SIZE = 150
DESCRIPTOR_SIZE = 128
SOURCE_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CONVERTED_FILE = "dlib_face_recognition_resnet_model_v1.pt"

# The residual blocks from the input up: (filters, stride). dlib's definition, from the
# output down: alevel0 = ares_down<256>; alevel1 = ares<256> x2 over ares_down<256>;
# alevel2 = ares<128> x2 over ares_down<128>; alevel3 = ares<64> x3 over ares_down<64>;
# alevel4 = ares<32> x3; over max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input>>>>.
BLOCKS: tuple[tuple[int, int], ...] = (
    *[(32, 1)] * 3,
    (64, 2),
    *[(64, 1)] * 3,
    (128, 2),
    *[(128, 1)] * 2,
    (256, 2),
    *[(256, 1)] * 2,
    (256, 2),
)


@dataclass(frozen=True)
class Layer:
    """One layer of dlib's network: kind is con, affine, relu, max_pool, avg_pool,
    add_prev, tag, skip or fc; ``size``/``stride`` for con and pooling (size 0 = the whole
    image), ``filters`` for con and fc, ``tag`` for tag, skip and add_prev."""

    kind: str
    filters: int = 0
    size: int = 0
    stride: int = 1
    tag: int = 0

    @property
    def padding(self) -> int:
        # dlib's default for con and pooling: half the window at stride 1, none otherwise.
        return self.size // 2 if self.stride == 1 else 0


def _network_layers() -> list[Layer]:
    """The layers from the input up, as dlib's template aliases expand."""
    layers = [Layer("con", 32, 7, 2), Layer("affine"), Layer("relu"), Layer("max_pool", 0, 3, 2)]
    for filters, stride in BLOCKS:
        # block<N,affine,stride> = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,s,s, ...>>>>>
        block = [
            Layer("con", filters, 3, stride),
            Layer("affine"),
            Layer("relu"),
            Layer("con", filters, 3, 1),
            Layer("affine"),
        ]
        if stride == 1:  # ares: relu<add_prev1<block<tag1<...>>>>
            layers += [Layer("tag", tag=1), *block, Layer("add_prev", tag=1), Layer("relu")]
        else:  # ares_down: relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<block<tag1<...>>>>>>>
            layers += [
                Layer("tag", tag=1),
                *block,
                Layer("tag", tag=2),
                Layer("skip", tag=1),
                Layer("avg_pool", 0, 2, 2),
                Layer("add_prev", tag=2),
                Layer("relu"),
            ]
    layers += [Layer("avg_pool", 0, 0, 1), Layer("fc", DESCRIPTOR_SIZE)]
    return layers


LAYERS: list[Layer] = _network_layers()


class DlibFormatError(ValueError):
    """The file is not the dlib network this reader knows."""


class _Stream:
    """dlib's serialisation primitives over a file's bytes."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.position = 0

    def _take(self, count: int) -> memoryview:
        if self.position + count > len(self.data):
            raise DlibFormatError("the file ends too early")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at {self.position}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def float(self) -> float:
        if self.data[self.position] & 0x70:
            raise DlibFormatError("old ASCII float format is not supported")
        mantissa, exponent = self.int(), self.int()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        byte = bytes(self._take(1))
        if byte not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool at {self.position}")
        return byte == b"1"

    def string(self) -> str:
        return bytes(self._take(self.int())).decode("latin-1")

    def version(self, accepted: Sequence[int], what: str) -> int:
        version = self.int()
        if version not in accepted:
            raise DlibFormatError(f"{what}: unexpected version {version}")
        return version

    def tensor(self) -> np.ndarray:
        self.version((2,), "tensor")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def alias_shape(self) -> tuple[int, ...]:
        self.version((1,), "alias_tensor")
        return tuple(self.int() for _ in range(4))


def _take_alias(params: np.ndarray, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    flat = params.reshape(-1)
    if offset + count > flat.size:
        raise DlibFormatError("a layer's parameters are shorter than its shapes say")
    return flat[offset : offset + count].reshape(shape).copy()


def _read_con(stream: _Stream, layer: Layer) -> dict[str, np.ndarray]:
    version = stream.string()
    if version not in ("con_4", "con_5", "con_6"):
        raise DlibFormatError(f"expected a con layer, found {version!r}")
    params = stream.tensor()
    filters, rows, cols = stream.int(), stream.int(), stream.int()
    stride_y, stride_x, padding_y, padding_x = (stream.int() for _ in range(4))
    filter_shape, bias_shape = stream.alias_shape(), stream.alias_shape()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        stream.float()
    use_bias = stream.bool() if version in ("con_5", "con_6") else True
    if version == "con_6" and stream.bool():
        raise DlibFormatError("con layers with a fused relu are not supported")
    found = (filters, rows, cols, stride_y, stride_x, padding_y, padding_x)
    expected = (layer.filters, layer.size, layer.size, layer.stride, layer.stride) + (
        layer.padding,
    ) * 2
    if found != expected:
        raise DlibFormatError(f"con layer {found} where the network has {expected}")
    weight = _take_alias(params, 0, filter_shape)
    bias = (
        _take_alias(params, weight.size, bias_shape).reshape(-1)
        if use_bias
        else np.zeros(filters, dtype=np.float32)
    )
    return {"weight": weight, "bias": bias}


def _read_affine(stream: _Stream) -> dict[str, np.ndarray]:
    version = stream.string()
    if version == "bn_con2":  # a batch-norm layer saved as is: dlib turns it into an affine
        params = stream.tensor()
        gamma_shape, beta_shape = stream.alias_shape(), stream.alias_shape()
        for _ in range(2):  # means, invstds of the last training batch
            stream.tensor()
        running_means, running_variances = stream.tensor(), stream.tensor()
        stream.int(), stream.int()  # num_updates, running_stats_window_size
        for _ in range(4):
            stream.float()
        eps = stream.float()
        gamma = _take_alias(params, 0, gamma_shape).reshape(-1)
        beta = _take_alias(params, gamma.size, beta_shape).reshape(-1)
        scale = gamma / np.sqrt(running_variances.reshape(-1) + eps)
        return {"weight": scale, "bias": beta - scale * running_means.reshape(-1)}
    if version not in ("affine_", "affine_2"):
        raise DlibFormatError(f"expected an affine layer, found {version!r}")
    params = stream.tensor()
    gamma_shape, beta_shape = stream.alias_shape(), stream.alias_shape()
    if stream.int() != 0:
        raise DlibFormatError("expected an affine layer in convolution mode")
    if version == "affine_2" and stream.bool():
        raise DlibFormatError("disabled affine layers are not supported")
    gamma = _take_alias(params, 0, gamma_shape).reshape(-1)
    return {"weight": gamma, "bias": _take_alias(params, gamma.size, beta_shape).reshape(-1)}


def _read_pool(stream: _Stream, layer: Layer) -> None:
    version = stream.string()
    if version != f"{layer.kind}_2":
        raise DlibFormatError(f"expected a {layer.kind} layer, found {version!r}")
    found = tuple(stream.int() for _ in range(6))
    expected = (layer.size, layer.size, layer.stride, layer.stride, 0, 0)
    if found != expected:
        raise DlibFormatError(f"{layer.kind} layer {found} where the network has {expected}")


def _read_fc(stream: _Stream, layer: Layer) -> dict[str, np.ndarray]:
    version = stream.string()
    if version not in ("fc_2", "fc_3"):
        raise DlibFormatError(f"expected an fc layer, found {version!r}")
    outputs, inputs = stream.int(), stream.int()
    params = stream.tensor()
    weight_shape, _ = stream.alias_shape(), stream.alias_shape()
    bias_mode = stream.int()
    for _ in range(4):
        stream.float()
    if version == "fc_3":
        stream.bool()
    if bias_mode != 1 or outputs != layer.filters:  # fc_no_bias<128>
        raise DlibFormatError(f"fc layer with {outputs} outputs, bias mode {bias_mode}")
    # dlib computes input (N x inputs) times weights (inputs x outputs): torch's is transposed.
    return {"weight": _take_alias(params, 0, weight_shape).reshape(inputs, outputs).T.copy()}


def _read_details(stream: _Stream, layer: Layer) -> dict[str, np.ndarray]:
    if layer.kind == "con":
        return _read_con(stream, layer)
    if layer.kind == "affine":
        return _read_affine(stream)
    if layer.kind == "fc":
        return _read_fc(stream, layer)
    if layer.kind in ("max_pool", "avg_pool"):
        _read_pool(stream, layer)
    elif layer.kind == "relu":
        version = stream.string()
        if version not in ("relu_", "relu_2"):
            raise DlibFormatError(f"expected a relu layer, found {version!r}")
        if version == "relu_2" and stream.bool():
            raise DlibFormatError("disabled relu layers are not supported")
    elif layer.kind == "add_prev" and (version := stream.string()) != "add_prev_":
        raise DlibFormatError(f"expected an add_prev layer, found {version!r}")
    return {}


def read_dlib_network(path: Path) -> dict[str, Any]:
    """The input means and every con, affine and fc layer's parameters (from the input up)
    of dlib's serialised face descriptor network."""
    stream = _Stream(Path(path).read_bytes())
    stream.version((1,), "loss layer")
    loss = stream.string()
    if loss == "loss_metric_2":
        stream.float(), stream.float()  # margin, distance threshold: training only
    elif loss != "loss_metric_":
        raise DlibFormatError(f"expected a loss_metric network, found {loss!r}")
    versions: dict[int, int] = {}
    for index in reversed(range(len(LAYERS))):
        if LAYERS[index].kind in ("tag", "skip"):
            stream.version((1,), f"{LAYERS[index].kind} layer")
        elif index == 0:  # the layer over the input layer has its own versions
            versions[index] = stream.version((2, 3), "input add_layer")
        else:
            versions[index] = stream.version((1, 2), "add_layer")
    input_kind = stream.string()
    if input_kind not in ("input_rgb_image", "input_rgb_image_sized"):
        raise DlibFormatError(f"expected an RGB image input, found {input_kind!r}")
    mean = [stream.float() for _ in range(3)]
    if input_kind == "input_rgb_image_sized" and (stream.int(), stream.int()) != (
        CHIP_SIZE,
        CHIP_SIZE,
    ):
        raise DlibFormatError(f"the network's input is not {CHIP_SIZE} x {CHIP_SIZE}")
    parameters: list[tuple[Layer, dict[str, np.ndarray]]] = []
    for index, layer in enumerate(LAYERS):
        if layer.kind in ("tag", "skip"):
            continue
        found = _read_details(stream, layer)
        if found:
            parameters.append((layer, found))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, ...disabled
            stream.bool()
        stream.tensor(), stream.tensor()  # x_grad, cached_output
        if index == 0:
            stream.tensor()  # grad_final
            if versions[index] >= 3:
                stream.int()  # sample_expansion_factor
        elif versions[index] == 2:
            stream.tensor()  # params_grad
    if stream.position != len(stream.data):
        raise DlibFormatError(f"{len(stream.data) - stream.position} bytes left after the network")
    return {"input_mean": mean, "layers": parameters}


class Affine(nn.Module):
    """dlib's affine layer in convolution mode: a per-channel scale and shift (batch norm
    with its statistics folded in)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def zero_padded_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger of both shapes, each input zero-padded at
    the end of its channels, rows and columns (a downsampling block's 3 x 3 output meets
    its 4 x 4 shortcut, 32 channels meet 64)."""
    if a.shape == b.shape:
        return a + b
    channels, rows, cols = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1]))

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """dlib's ares (stride 1) and ares_down (stride 2, shortcut through a 2 x 2 average)."""

    def __init__(self, inputs: int, filters: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, filters, 3, stride, padding=1 if stride == 1 else 0)
        self.affine1: nn.Module = Affine(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, padding=1)
        self.affine2: nn.Module = Affine(filters)
        self.downsample = stride != 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(zero_padded_sum(y, shortcut))


class DlibFaceResNet(nn.Module):
    """dlib_face_recognition_resnet_model_v1: 150 x 150 RGB chips to 128-D descriptors
    (not normalised: dlib's loss_metric output as is)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(3))
        self.conv = nn.Conv2d(3, 32, 7, 2)
        self.affine: nn.Module = Affine(32)
        blocks, channels = [], 32
        for filters, stride in BLOCKS:
            blocks.append(ResidualBlock(channels, filters, stride))
            channels = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, DESCRIPTOR_SIZE, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels``: N x 3 x 150 x 150, RGB 0..255 (any dtype)."""
        # dlib's input_rgb_image: (value - channel mean) / 256
        x = (pixels.float() - self.input_mean[:, None, None]) / 256.0
        x = F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    @torch.no_grad()
    def fold_affines(self) -> DlibFaceResNet:
        """Each affine layer folded into the convolution before it (fewer passes over the
        activations; the same function up to float rounding). Call after loading weights."""
        pairs = [(self, "conv", "affine")]
        for block in self.blocks:
            pairs += [(block, "conv1", "affine1"), (block, "conv2", "affine2")]
        for owner, conv_name, affine_name in pairs:
            conv, affine = getattr(owner, conv_name), getattr(owner, affine_name)
            if isinstance(affine, Affine):
                conv.weight.mul_(affine.weight[:, None, None, None])
                conv.bias.copy_(conv.bias * affine.weight + affine.bias)
                setattr(owner, affine_name, nn.Identity())
        return self


def convert_dlib_network(path: Path) -> dict[str, Any]:
    """The torch state dict of DlibFaceResNet from dlib's file."""
    network = read_dlib_network(path)
    targets = ["conv", "affine"]
    for index in range(len(BLOCKS)):
        targets += [f"blocks.{index}.{name}" for name in ("conv1", "affine1", "conv2", "affine2")]
    targets.append("fc")
    layers = network["layers"]
    if len(layers) != len(targets):
        raise DlibFormatError(f"{len(layers)} layers with parameters, expected {len(targets)}")
    state = {"input_mean": torch.tensor(network["input_mean"], dtype=torch.float32)}
    for target, (_, found) in zip(targets, layers, strict=True):
        for name, value in found.items():
            state[f"{target}.{name}"] = torch.from_numpy(np.ascontiguousarray(value))
    return {"state_dict": state}


RUNTIMES = ("dlib", "torch", "openvino")
# scripts/bench_dlib_descriptor.py on 2 shared cores, best of rounds, ms per face (CPU time):
# dlib 90 at every batch size (one thread); the port 12 at batch 1, 8 at batches 4 and 8
# with one torch thread, 24 / 12 / 18 with two (wall 36 / 6 / 21). The port on OpenVINO
# (float32) x1.3-1.65 faster than on torch, descriptors within 1e-6 (docs/performance.md).
CPU_DEFAULT_RUNTIME = "openvino"


def descriptor_runtime(
    device: torch.device, requested: str | None = None, cpu_runtime: str = "auto"
) -> str:
    """Which runtime computes descriptors: on CUDA always the torch port (dlib's wheel runs on
    the CPU); on the CPU ``requested`` ("dlib", "torch" or "openvino"), else the one measured
    faster (the torch port when IMAGERECOGNIZE_CPU_RUNTIME=torch)."""
    if device.type != "cpu":
        return "torch"
    if requested in (None, "", "auto"):
        return "torch" if cpu_runtime == "torch" else CPU_DEFAULT_RUNTIME
    if requested not in RUNTIMES:
        raise ValueError(f"unknown descriptor runtime {requested!r}: expected one of {RUNTIMES}")
    return requested


class DlibDescriptor:
    """dlib's own network, through its Python binding (CPU only)."""

    runtime = "dlib"

    def __init__(self, source: Path):
        import dlib

        self._encoder = dlib.face_recognition_model_v1(str(source))

    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N x 128 float32 descriptors of 150 x 150 RGB chips (dlib.get_face_chip's)."""
        vectors = self._encoder.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.array([np.asarray(v) for v in vectors], dtype=np.float32).reshape(-1, 128)


class TorchDescriptor:
    """The torch port, converted from dlib's file once into the model folder."""

    runtime = "torch"

    def __init__(self, source: Path, model_dir: Path, device: torch.device):
        from models.common import cached_conversion

        target = Path(model_dir) / CONVERTED_FILE
        converted = cached_conversion(source, target, convert_dlib_network)
        net = DlibFaceResNet()
        net.load_state_dict(converted["state_dict"])
        self.device = device
        # Channels-last: oneDNN's convolutions on the CPU at every batch size (contiguous
        # batches of one fall back to a slow im2col path there), and cuDNN's preferred layout.
        net = net.fold_affines().eval().to(device, memory_format=torch.channels_last)
        self.net = net

    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N x 128 float32 descriptors of 150 x 150 RGB chips (dlib.get_face_chip's)."""
        if not len(chips):
            return np.zeros((0, DESCRIPTOR_SIZE), dtype=np.float32)
        # N x H x W x 3 seen as N x 3 x H x W is channels-last already: no copy.
        pixels = stack_to_device(chips, self.device).permute(0, 3, 1, 2)
        with torch.inference_mode():
            return self.net(pixels).float().cpu().numpy()


class OpenVinoDescriptor:
    """The torch port converted once more, to OpenVINO IR in the model folder (CPU only)."""

    runtime = "openvino"

    def __init__(self, source: Path, model_dir: Path, threads: int):
        from models.common import cached_conversion, sha256_of
        from models.runtimes.openvino import OpenVinoNetwork, cached_ir, convert_torch

        def convert() -> Any:
            target = Path(model_dir) / CONVERTED_FILE
            converted = cached_conversion(source, target, convert_dlib_network)
            net = DlibFaceResNet()
            net.load_state_dict(converted["state_dict"])
            example = torch.zeros((1, 3, CHIP_SIZE, CHIP_SIZE))
            return convert_torch(net.fold_affines().eval(), example, dynamic=[[0]])

        name = "dlib_face_recognition_resnet_model_v1"
        model = cached_ir(model_dir, name, sha256_of(source), convert)
        self.network = OpenVinoNetwork(model, threads, threads, model_dir)

    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N x 128 float32 descriptors of 150 x 150 RGB chips (dlib.get_face_chip's)."""
        if not len(chips):
            return np.zeros((0, DESCRIPTOR_SIZE), dtype=np.float32)
        pixels = np.ascontiguousarray(np.stack(chips).transpose(0, 3, 1, 2), dtype=np.float32)
        # The call's share of the cores: that of the torch call it runs in.
        (descriptors,) = self.network.run(pixels, share=torch.get_num_threads())
        return descriptors


def load_descriptor(
    source: Path,
    model_dir: Path,
    device: torch.device,
    requested: str | None = None,
    cpu_runtime: str = "auto",
    threads: int = 1,
) -> DlibDescriptor | TorchDescriptor | OpenVinoDescriptor:
    """dlib's descriptor network in the runtime ``descriptor_runtime`` picks."""
    runtime = descriptor_runtime(device, requested, cpu_runtime)
    log.info("dlib face descriptor: %s on %s", runtime, "cpu" if runtime != "torch" else device)
    if runtime == "dlib":
        return DlibDescriptor(source)
    if runtime == "openvino":
        return OpenVinoDescriptor(source, model_dir, threads)
    return TorchDescriptor(source, model_dir, device)
