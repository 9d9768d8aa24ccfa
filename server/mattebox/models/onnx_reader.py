"""A minimal reader of ONNX files (protobuf wire format): initialisers, Conv nodes and output names, nothing else.

Enough to lift the weights of a convolutional network out of an ONNX export without the ``onnx`` package (the
matting path must not depend on it), and to name the graph's outputs for OpenCV's DNN module. Field numbers are
those of onnx/onnx.proto (ModelProto.graph = 7; GraphProto.node = 1, initializer = 5, output = 12;
ValueInfoProto.name = 1; NodeProto.input = 1, op_type = 4, attribute = 5; AttributeProto.name = 1, ints = 8;
TensorProto.dims = 1, data_type = 2, float_data = 4, name = 8, raw_data = 9, data_location = 14).
Only float32 tensors stored inside the file are supported; anything else is refused with a clear error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Tuple

import numpy as np

FLOAT = 1  #: TensorProto.DataType.FLOAT


class OnnxFormatError(ValueError):
    """The bytes are not an ONNX model this reader understands."""


@dataclass(frozen=True)
class ConvNode:
    """A Conv node: its weight and bias initialiser names (bias "" when absent) and its dilations."""
    weight: str
    bias: str
    dilations: Tuple[int, ...]


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise OnnxFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[Tuple[int, int, object]]:
    """(field number, wire type, value) of a message: ints for varints, bytes for length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
            if pos > len(data):
                raise OnnxFormatError("truncated field")
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise OnnxFormatError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _ints(wire: int, value) -> List[int]:
    """A repeated int64 field's values: packed (length-delimited) or one varint."""
    if wire == 0:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(item)
    return out


def _tensor(data: bytes) -> Tuple[str, np.ndarray]:
    name, dims, dtype, raw, floats = "", [], FLOAT, None, []
    for number, wire, value in _fields(data):
        if number == 1:
            dims += _ints(wire, value)
        elif number == 2:
            dtype = value
        elif number == 4:
            floats.append(np.frombuffer(value, "<f4") if wire == 2 else np.frombuffer(value, "<f4", 1))
        elif number == 8:
            name = value.decode()
        elif number == 9:
            raw = value
        elif number == 14 and value == 1:
            raise OnnxFormatError(f"initialiser {name or '?'} is stored outside the file (external data)")
    if dtype != FLOAT:
        raise OnnxFormatError(f"initialiser {name!r} has data type {dtype}, expected float32 ({FLOAT})")
    array = np.frombuffer(raw, "<f4") if raw is not None else (np.concatenate(floats) if floats else
                                                                np.zeros(0, np.float32))
    if array.size != int(np.prod(dims)):
        raise OnnxFormatError(f"initialiser {name!r}: {array.size} values for shape {tuple(dims)}")
    return name, array.astype(np.float32).reshape(dims)


def _node(data: bytes) -> Tuple[str, List[str], Dict[str, List[int]]]:
    op, inputs, attributes = "", [], {}
    for number, _wire, value in _fields(data):
        if number == 1:
            inputs.append(value.decode())
        elif number == 4:
            op = value.decode()
        elif number == 5:
            name, ints = "", []
            for n, w, v in _fields(value):
                if n == 1:
                    name = v.decode()
                elif n == 8:
                    ints += _ints(w, v)
            attributes[name] = ints
    return op, inputs, attributes


def _graph(data: bytes) -> bytes:
    graph = next((value for number, wire, value in _fields(data) if number == 7 and wire == 2), None)
    if graph is None:
        raise OnnxFormatError("no graph: not an ONNX model file")
    return graph


def graph_outputs(data: bytes) -> List[str]:
    """The names of a serialised ONNX model's graph outputs, in their declared order."""
    names = []
    for number, wire, value in _fields(_graph(data)):
        if number == 12 and wire == 2:
            names += [v.decode() for n, w, v in _fields(value) if n == 1 and w == 2]
    return names


def read_onnx(data: bytes) -> Tuple[Dict[str, np.ndarray], List[ConvNode]]:
    """(initialisers by name, Conv nodes in graph order) of a serialised ONNX ModelProto."""
    graph = _graph(data)
    initialisers: Dict[str, np.ndarray] = {}
    convs: List[ConvNode] = []
    for number, wire, value in _fields(graph):
        if number == 5 and wire == 2:
            name, array = _tensor(value)
            initialisers[name] = array
        elif number == 1 and wire == 2:
            op, inputs, attributes = _node(value)
            if op == "Conv":
                if len(inputs) < 2:
                    raise OnnxFormatError("a Conv node has no weight input")
                convs.append(ConvNode(inputs[1], inputs[2] if len(inputs) > 2 else "",
                                      tuple(attributes.get("dilations", [1, 1]))))
    return initialisers, convs


def conv_state_dict(data: bytes, model) -> Dict[str, "object"]:
    """Fill ``model``'s Conv2d weights and biases from an ONNX export of the same network, by graph order.

    The i-th Conv node of the graph feeds the i-th ``nn.Conv2d`` of ``model.modules()`` (registration order,
    which for the models here is their execution order: what the exporter records). Each pair is checked:
    weight and bias shapes and the dilation must agree, and the counts must match; the model must have no
    parameters or buffers other than its convolutions'. Returns a state dict of torch tensors."""
    import torch

    initialisers, convs = read_onnx(data)
    modules = [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.Conv2d)]
    if len(modules) != len(convs):
        raise OnnxFormatError(f"the ONNX graph has {len(convs)} Conv nodes, the model {len(modules)} convolutions")
    state = {}
    for index, ((name, module), node) in enumerate(zip(modules, convs)):
        for suffix, key in (("weight", node.weight), ("bias", node.bias)):
            expected = tuple(getattr(module, suffix).shape)
            if key not in initialisers:
                raise OnnxFormatError(f"Conv node {index} ({name}): {suffix} {key!r} is not an initialiser")
            got = initialisers[key].shape
            if got != expected:
                raise OnnxFormatError(f"Conv node {index} ({name}.{suffix}): ONNX {key!r} has shape {got}, "
                                      f"expected {expected}")
            state[f"{name}.{suffix}"] = torch.from_numpy(initialisers[key].copy())
        if node.dilations != tuple(module.dilation):
            raise OnnxFormatError(f"Conv node {index} ({name}): dilation {node.dilations}, expected "
                                  f"{tuple(module.dilation)}")
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise OnnxFormatError(f"the model has tensors no ONNX Conv fills: {sorted(missing)[:5]}")
    return state
