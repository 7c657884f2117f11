"""Caffe's message format (``caffe.proto``), read and written with the protobuf library.

Only the messages a ``.caffemodel`` needs are declared, with Caffe's own names and field
numbers (BVLC ``src/caffe/proto/caffe.proto``): ``NetParameter`` with its layers in the current
(``layer = 100``) and the V1 (``layers = 2``) form, their ``BlobProto`` weights, and the
parameters of the layers that define CaffeNet (convolution, inner product, pooling, LRN,
dropout). Every other field of a real file is kept by protobuf as an unknown field and ignored.

The schema is built at run time as a ``FileDescriptorProto`` in a private descriptor pool, so
no ``protoc`` and no generated ``caffe_pb2.py`` are needed, and a user's own ``caffe_pb2`` in
the default pool is left alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# Field types and labels of descriptor.proto (FieldDescriptorProto.Type / .Label).
DOUBLE, FLOAT, INT64, UINT64, INT32, BOOL, STRING, MESSAGE, UINT32, ENUM = 1, 2, 3, 4, 5, 8, 9, 11, 13, 14
OPTIONAL, REPEATED = 1, 3

# V1LayerParameter.LayerType, as in caffe.proto.
V1_LAYER_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4,
    "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38,
    "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29, "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34,
    "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36,
    "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
}

# (name, number, type, label, message or enum type, packed) per message, from caffe.proto.
MESSAGES: dict[str, list[tuple[str, int, int, int, str | None, bool]]] = {
    "BlobShape": [("dim", 1, INT64, REPEATED, None, True)],
    "BlobProto": [
        ("shape", 7, MESSAGE, OPTIONAL, "BlobShape", False),
        ("data", 5, FLOAT, REPEATED, None, True),
        ("diff", 6, FLOAT, REPEATED, None, True),
        ("double_data", 8, DOUBLE, REPEATED, None, True),
        ("double_diff", 9, DOUBLE, REPEATED, None, True),
        ("num", 1, INT32, OPTIONAL, None, False),  # 4D dimensions, deprecated (V1 files use them)
        ("channels", 2, INT32, OPTIONAL, None, False),
        ("height", 3, INT32, OPTIONAL, None, False),
        ("width", 4, INT32, OPTIONAL, None, False),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, UINT32, OPTIONAL, None, False),
        ("bias_term", 2, BOOL, OPTIONAL, None, False),
        ("pad", 3, UINT32, REPEATED, None, False),
        ("kernel_size", 4, UINT32, REPEATED, None, False),
        ("group", 5, UINT32, OPTIONAL, None, False),
        ("stride", 6, UINT32, REPEATED, None, False),
        ("pad_h", 9, UINT32, OPTIONAL, None, False),
        ("pad_w", 10, UINT32, OPTIONAL, None, False),
        ("kernel_h", 11, UINT32, OPTIONAL, None, False),
        ("kernel_w", 12, UINT32, OPTIONAL, None, False),
        ("stride_h", 13, UINT32, OPTIONAL, None, False),
        ("stride_w", 14, UINT32, OPTIONAL, None, False),
    ],
    "InnerProductParameter": [
        ("num_output", 1, UINT32, OPTIONAL, None, False),
        ("bias_term", 2, BOOL, OPTIONAL, None, False),
    ],
    "PoolingParameter": [
        ("pool", 1, ENUM, OPTIONAL, "PoolingParameter.PoolMethod", False),
        ("kernel_size", 2, UINT32, OPTIONAL, None, False),
        ("stride", 3, UINT32, OPTIONAL, None, False),
        ("pad", 4, UINT32, OPTIONAL, None, False),
    ],
    "LRNParameter": [
        ("local_size", 1, UINT32, OPTIONAL, None, False),
        ("alpha", 2, FLOAT, OPTIONAL, None, False),
        ("beta", 3, FLOAT, OPTIONAL, None, False),
        ("k", 5, FLOAT, OPTIONAL, None, False),
    ],
    "DropoutParameter": [("dropout_ratio", 1, FLOAT, OPTIONAL, None, False)],
    "LayerParameter": [
        ("name", 1, STRING, OPTIONAL, None, False),
        ("type", 2, STRING, OPTIONAL, None, False),
        ("bottom", 3, STRING, REPEATED, None, False),
        ("top", 4, STRING, REPEATED, None, False),
        ("blobs", 7, MESSAGE, REPEATED, "BlobProto", False),
        ("convolution_param", 106, MESSAGE, OPTIONAL, "ConvolutionParameter", False),
        ("dropout_param", 108, MESSAGE, OPTIONAL, "DropoutParameter", False),
        ("inner_product_param", 117, MESSAGE, OPTIONAL, "InnerProductParameter", False),
        ("lrn_param", 118, MESSAGE, OPTIONAL, "LRNParameter", False),
        ("pooling_param", 121, MESSAGE, OPTIONAL, "PoolingParameter", False),
    ],
    "V1LayerParameter": [
        ("bottom", 2, STRING, REPEATED, None, False),
        ("top", 3, STRING, REPEATED, None, False),
        ("name", 4, STRING, OPTIONAL, None, False),
        ("type", 5, ENUM, OPTIONAL, "V1LayerParameter.LayerType", False),
        ("blobs", 6, MESSAGE, REPEATED, "BlobProto", False),
        ("convolution_param", 10, MESSAGE, OPTIONAL, "ConvolutionParameter", False),
        ("dropout_param", 12, MESSAGE, OPTIONAL, "DropoutParameter", False),
        ("inner_product_param", 17, MESSAGE, OPTIONAL, "InnerProductParameter", False),
        ("lrn_param", 18, MESSAGE, OPTIONAL, "LRNParameter", False),
        ("pooling_param", 19, MESSAGE, OPTIONAL, "PoolingParameter", False),
    ],
    "NetParameter": [
        ("name", 1, STRING, OPTIONAL, None, False),
        ("input", 3, STRING, REPEATED, None, False),
        ("input_dim", 4, INT32, REPEATED, None, False),
        ("layer", 100, MESSAGE, REPEATED, "LayerParameter", False),
        ("layers", 2, MESSAGE, REPEATED, "V1LayerParameter", False),
    ],
}
ENUMS = {
    "PoolingParameter": ("PoolMethod", {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}),
    "V1LayerParameter": ("LayerType", V1_LAYER_TYPES),
}


@lru_cache(maxsize=1)
def messages() -> dict[str, Any]:
    """Caffe's message classes by name (``messages()["NetParameter"]``)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="transferbench/caffe.proto", package="caffe", syntax="proto2")
    for name, fields in MESSAGES.items():
        message = proto.message_type.add(name=name)
        if name in ENUMS:
            enum_name, values = ENUMS[name]
            enum = message.enum_type.add(name=enum_name)
            for value_name, number in sorted(values.items(), key=lambda item: item[1]):
                enum.value.add(name=value_name, number=number)
        for field_name, number, kind, label, type_name, packed in fields:
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".caffe.{type_name}"
            if packed:
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)

    def message_class(name: str):
        descriptor = pool.FindMessageTypeByName(f"caffe.{name}")
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(descriptor)
        return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # protobuf < 4.22

    return {name: message_class(name) for name in MESSAGES}


def v1_type_name(number: int) -> str:
    return next((name for name, value in V1_LAYER_TYPES.items() if value == number), str(number))
