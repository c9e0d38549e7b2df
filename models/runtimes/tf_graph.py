"""A small reader of TensorFlow frozen GraphDef files: the float constants (the weights) of a
graph, by node name, with no TensorFlow or protobuf dependency.

Only the protobuf wire format is needed: GraphDef.node (1) → NodeDef{name (1), op (2),
attr (5): map<string, AttrValue>}; AttrValue.tensor (8) → TensorProto{dtype (1),
tensor_shape (2): {dim (2): {size (1)}}, tensor_content (4), float_val (5), int_val (7)}.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DT_FLOAT = 1
DT_INT32 = 3
_WIRE_VARINT, _WIRE_64, _WIRE_BYTES, _WIRE_32 = 0, 1, 2, 5


def _varint(buffer: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _fields(buffer: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of one message; bytes fields as memoryviews."""
    position, end = 0, len(buffer)
    while position < end:
        key, position = _varint(buffer, position)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            value, position = _varint(buffer, position)
        elif wire == _WIRE_BYTES:
            length, position = _varint(buffer, position)
            value = buffer[position : position + length]
            position += length
        elif wire == _WIRE_32:
            value = buffer[position : position + 4]
            position += 4
        elif wire == _WIRE_64:
            value = buffer[position : position + 8]
            position += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    # Negative int32 values travel as 64-bit two's complement varints.
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor(buffer: memoryview) -> np.ndarray | None:
    dtype, shape, content = None, [], None
    floats: list[float] = []
    ints: list[int] = []
    for number, wire, value in _fields(buffer):
        if number == 1:
            dtype = value
        elif number == 2:
            for dim_number, _, dim in _fields(value):  # type: ignore[arg-type]
                if dim_number == 2:
                    size = next((v for n, _, v in _fields(dim) if n == 1), 0)  # type: ignore[arg-type]
                    shape.append(int(size))  # type: ignore[arg-type]
        elif number == 4:
            content = bytes(value)  # type: ignore[arg-type]
        elif number == 5:
            if wire == _WIRE_BYTES:
                floats.extend(np.frombuffer(value, dtype="<f4").tolist())  # type: ignore[arg-type]
            else:
                floats.append(struct.unpack("<f", value)[0])  # type: ignore[arg-type]
        elif number == 7 and wire == _WIRE_BYTES:
            position, packed = 0, value
            while position < len(packed):  # type: ignore[arg-type]
                item, position = _varint(packed, position)  # type: ignore[arg-type]
                ints.append(_signed(item))
        elif number == 7:
            ints.append(_signed(int(value)))  # type: ignore[arg-type]
    numpy_dtype = {DT_FLOAT: np.float32, DT_INT32: np.int32}.get(dtype)  # type: ignore[arg-type]
    if numpy_dtype is None:
        return None
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        array = np.frombuffer(content, dtype=np.dtype(numpy_dtype).newbyteorder("<")).copy()
    else:
        values = floats if numpy_dtype == np.float32 else ints
        array = np.array(values, dtype=numpy_dtype)
        if array.size == 1 and count > 1:
            array = np.full(count, array[0], dtype=numpy_dtype)
    return array.reshape(shape).astype(numpy_dtype)


def read_constants(path: Path) -> dict[str, np.ndarray]:
    """Every Const node holding a float32 or int32 tensor, by node name."""
    data = memoryview(Path(path).read_bytes())
    constants: dict[str, np.ndarray] = {}
    for number, _, node in _fields(data):
        if number != 1:
            continue
        name = op = ""
        tensor = None
        for field, _, value in _fields(node):  # type: ignore[arg-type]
            if field == 1:
                name = bytes(value).decode()  # type: ignore[arg-type]
            elif field == 2:
                op = bytes(value).decode()  # type: ignore[arg-type]
            elif field == 5 and op == "Const":
                key, attr = "", None
                for entry_field, _, entry in _fields(value):  # type: ignore[arg-type]
                    if entry_field == 1:
                        key = bytes(entry).decode()  # type: ignore[arg-type]
                    elif entry_field == 2:
                        attr = entry
                if key == "value" and attr is not None:
                    for attr_field, _, attr_value in _fields(attr):  # type: ignore[arg-type]
                        if attr_field == 8:
                            tensor = _tensor(attr_value)  # type: ignore[arg-type]
        if op == "Const" and tensor is not None:
            constants[name] = tensor
    return constants
