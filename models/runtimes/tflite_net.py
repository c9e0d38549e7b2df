"""Runs a quantised TFLite convolutional classifier as a float PyTorch model.

The converter reads the .tflite flatbuffer (with the `tflite` package, at conversion time
only), dequantises every weight (int8 per-channel → float32) and records the graph as a
plan of ops; :class:`TfliteNet` then runs that plan. Supported ops are those of
EfficientNet-Lite and similar networks: CONV_2D, DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D,
RESHAPE, FULLY_CONNECTED, SOFTMAX and QUANTIZE (an identity once the model is float).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

from models.common import SameConv

_NUMPY_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 9: np.int8}
_ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}


def _activation(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu6":
        return F.relu6(x)
    if name == "relu":
        return F.relu(x)
    return x


class TfliteNet(nn.Module):
    """A float model that executes a converted plan. Input and output are NCHW float32;
    the input is the real-valued image (the quantised input's (q - zero point) * scale)."""

    def __init__(self, plan: list[dict[str, Any]], input_index: int, output_index: int):
        super().__init__()
        self.plan = plan
        self.input_index = input_index
        self.output_index = output_index
        self.layers = nn.ModuleDict()
        for position, op in enumerate(plan):
            if op["op"] == "conv":
                # TF "SAME" padding depends on the input size; "VALID" is plain Conv2d.
                conv_class = SameConv if op["padding"] == "same" else nn.Conv2d
                layer = conv_class(
                    op["in_channels"],
                    op["out_channels"],
                    tuple(op["kernel"]),
                    tuple(op["stride"]),
                    groups=op["groups"],
                    bias=True,
                )
                self.layers[str(position)] = layer
            elif op["op"] == "fully_connected":
                self.layers[str(position)] = nn.Linear(op["in_features"], op["out_features"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {self.input_index: x}
        for position, op in enumerate(self.plan):
            kind, inputs = op["op"], [values[i] for i in op["inputs"]]
            if kind in ("conv", "fully_connected"):
                out = self.layers[str(position)](inputs[0])
            elif kind == "add":
                out = inputs[0] + inputs[1]
            elif kind == "average_pool":
                out = F.avg_pool2d(inputs[0], tuple(op["kernel"]), tuple(op["stride"]))
            elif kind == "reshape":
                out = inputs[0].flatten(1)
            elif kind == "softmax":
                out = torch.softmax(inputs[0] * op["beta"], dim=-1)
            else:  # identity
                out = inputs[0]
            out = _activation(out, op.get("activation", "none"))
            if "quant" in op:
                # The int8 graph rounds every activation to its grid; doing the same keeps
                # this float model's outputs on the quantised model's.
                scale, zero, low, high = op["quant"]
                out = (torch.clamp(torch.round(out / scale) + zero, low, high) - zero) * scale
            values[op["output"]] = out
        return values[self.output_index]


def convert_tflite(path: Path) -> dict[str, Any]:
    """The plan, weights and input quantisation of a .tflite model (see the module doc)."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator

    buffer = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buffer, 0)
    graph = model.Subgraphs(0)
    opnames = {v: k for k, v in BuiltinOperator.__dict__.items() if not k.startswith("_")}

    def tensor_array(index: int) -> np.ndarray:
        tensor = graph.Tensors(index)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        shape = tensor.ShapeAsNumpy().tolist()
        array = np.frombuffer(data.tobytes(), dtype=_NUMPY_TYPES[tensor.Type()]).reshape(shape)
        quant = tensor.Quantization()
        if tensor.Type() == 0 or quant is None or quant.ScaleLength() == 0:
            return array.astype(np.float32)
        scale = quant.ScaleAsNumpy().astype(np.float64)
        zero = quant.ZeroPointAsNumpy().astype(np.float64) if quant.ZeroPointLength() else 0.0
        axis = quant.QuantizedDimension() if scale.size > 1 else 0
        view = [1] * array.ndim
        if scale.size > 1:
            view[axis] = -1
        return (
            (array.astype(np.float64) - np.reshape(zero, view if np.size(zero) > 1 else []))
            * scale.reshape(view)
        ).astype(np.float32)

    plan: list[dict[str, Any]] = []
    state: dict[str, torch.Tensor] = {}
    for position in range(graph.OperatorsLength()):
        operator = graph.Operators(position)
        code = model.OperatorCodes(operator.OpcodeIndex())
        name = opnames[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        inputs = [int(i) for i in operator.InputsAsNumpy()]
        output = int(operator.OutputsAsNumpy()[0])
        table = operator.BuiltinOptions()
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            options = (
                tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            )
            options.Init(table.Bytes, table.Pos)
            weight = tensor_array(inputs[1])
            if name == "CONV_2D":  # (out, kh, kw, in) → (out, in, kh, kw)
                weight = weight.transpose(0, 3, 1, 2)
                groups, in_channels = 1, weight.shape[1]
            else:  # (1, kh, kw, out) → (out, 1, kh, kw)
                weight = weight.transpose(3, 0, 1, 2)
                groups = in_channels = weight.shape[0]
            state[f"layers.{position}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
            state[f"layers.{position}.bias"] = torch.from_numpy(tensor_array(inputs[2]))
            plan.append(
                {
                    "op": "conv",
                    "inputs": inputs[:1],
                    "output": output,
                    "in_channels": int(in_channels),
                    "out_channels": int(weight.shape[0]),
                    "kernel": [int(weight.shape[2]), int(weight.shape[3])],
                    "stride": [options.StrideH(), options.StrideW()],
                    "groups": int(groups),
                    "padding": "same" if options.Padding() == 0 else "valid",
                    "activation": _ACTIVATIONS[options.FusedActivationFunction()],
                }
            )
        elif name == "ADD":
            options = tflite.AddOptions()
            options.Init(table.Bytes, table.Pos)
            plan.append(
                {
                    "op": "add",
                    "inputs": inputs,
                    "output": output,
                    "activation": _ACTIVATIONS[options.FusedActivationFunction()],
                }
            )
        elif name == "AVERAGE_POOL_2D":
            options = tflite.Pool2DOptions()
            options.Init(table.Bytes, table.Pos)
            if options.Padding() != 1:
                raise ValueError("only VALID average pooling is supported")
            plan.append(
                {
                    "op": "average_pool",
                    "inputs": inputs,
                    "output": output,
                    "kernel": [options.FilterHeight(), options.FilterWidth()],
                    "stride": [options.StrideH(), options.StrideW()],
                    "activation": _ACTIVATIONS[options.FusedActivationFunction()],
                }
            )
        elif name == "RESHAPE":
            plan.append({"op": "reshape", "inputs": inputs[:1], "output": output})
        elif name == "FULLY_CONNECTED":
            options = tflite.FullyConnectedOptions()
            options.Init(table.Bytes, table.Pos)
            weight = tensor_array(inputs[1])
            state[f"layers.{position}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
            state[f"layers.{position}.bias"] = torch.from_numpy(tensor_array(inputs[2]))
            plan.append(
                {
                    "op": "fully_connected",
                    "inputs": inputs[:1],
                    "output": output,
                    "in_features": int(weight.shape[1]),
                    "out_features": int(weight.shape[0]),
                    "activation": _ACTIVATIONS[options.FusedActivationFunction()],
                }
            )
        elif name == "SOFTMAX":
            options = tflite.SoftmaxOptions()
            options.Init(table.Bytes, table.Pos)
            plan.append(
                {"op": "softmax", "inputs": inputs, "output": output, "beta": float(options.Beta())}
            )
        elif name in ("QUANTIZE", "DEQUANTIZE"):
            plan.append({"op": "identity", "inputs": inputs, "output": output})
        else:
            raise ValueError(f"unsupported TFLite op {name}")

    for op in plan:
        tensor = graph.Tensors(op["output"])
        quant = tensor.Quantization()
        if tensor.Type() in (3, 9) and quant is not None and quant.ScaleLength() == 1:
            low, high = (0, 255) if tensor.Type() == 3 else (-128, 127)
            op["quant"] = [
                float(quant.ScaleAsNumpy()[0]),
                float(quant.ZeroPointAsNumpy()[0]),
                low,
                high,
            ]

    input_index = int(graph.InputsAsNumpy()[0])
    quant = graph.Tensors(input_index).Quantization()
    input_scale = float(quant.ScaleAsNumpy()[0]) if quant and quant.ScaleLength() else 1.0
    input_zero = float(quant.ZeroPointAsNumpy()[0]) if quant and quant.ZeroPointLength() else 0.0
    input_shape = graph.Tensors(input_index).ShapeAsNumpy().tolist()
    return {
        "plan": plan,
        "state_dict": state,
        "input_index": input_index,
        "output_index": int(graph.OutputsAsNumpy()[0]),
        "input_scale": input_scale,
        "input_zero_point": input_zero,
        "input_size": [int(input_shape[1]), int(input_shape[2])],
    }
