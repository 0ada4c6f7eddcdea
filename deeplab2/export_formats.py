"""Converting a serving module to TFLite or ONNX bytes.

Both hold the serving signature: the uint8 `images` input and the
post-processed maps (post-processing built from ops these converters lower:
model/portable_ops.py), or the network outputs only. TFLite files can be
quantized (`serving.QUANTIZATIONS`):

- float16: weights stored as float16 (half the size), computed in float32.
- dynamic_range: weights int8, activations quantized on the fly.
- int8: weights and activations int8 in the network, with activation
  ranges calibrated on `calibration_images`. Float32 stay: post-processing
  (int8 distances and offsets would change which center wins), and the
  network's last steps, each head's final convolution and the resizing,
  offset scaling and softmax after it. Quantized there, the upsampled
  center heatmap is a staircase: each flat top passes the NMS as several
  centers, which split instances (demo PQ_thing 33 -> 25; float last
  steps: 34).
"""

import re

import numpy as np
import tensorflow as tf

from deeplab2 import private_api
from deeplab2 import serving
from deeplab2.model import deeplab
from deeplab2.model import postprocess

# ONNX opset for tf2onnx: 18 has ScatterND with min (post-processing);
# onnxruntime runs it from 1.14.
ONNX_OPSET = 18


def convert_to_tflite(saved_model_dir, quantize: str | None = None,
                      calibration_images=None) -> bytes:
    """TFLite flatbuffer of a SavedModel's serving_default, built only from
    TFLite's builtin ops (no Flex delegate needed to run it).

    quantize: None (float32) or one of `serving.QUANTIZATIONS`;
    calibration_images: for int8, a non-empty iterable of uint8 [H, W, 3]
    images of the exported size (a few dozen to a hundred of the target
    domain). deeplab2.export checks both before it builds anything.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[serving.DEFAULT_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is None:
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == 'float16':
        converter.target_spec.supported_types = [tf.float16]
    if quantize != 'int8':
        return converter.convert()
    converter.representative_dataset = lambda: (
        {serving.IMAGES_INPUT: np.asarray(image, np.uint8)[None]}
        for image in calibration_images)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    calibrated = private_api.calibrate_only(converter)
    return private_api.mlir_quantize(
        calibrated, denylisted_nodes=float_tensors(calibrated))


# Name scopes kept float in an int8 export (Keras may suffix them '_1').
_FLOAT_SCOPES = re.compile(
    f'^({postprocess.NAME_SCOPE}|{deeplab.OUTPUT_SCOPE}|final_conv)(_\\d+)?$')


def float_tensors(flatbuffer: bytes) -> list[str]:
    """Names of the tensors an int8 export keeps float: every tensor of
    the subgraphs other than the main one (post-processing's branches; the
    network has none) and those of the main one under a `_FLOAT_SCOPES`
    scope."""
    model = private_api.TFLiteModel.InitFromPackedBuf(flatbuffer, 0)
    names = []
    for index, subgraph in enumerate(model.subgraphs):
        for tensor in subgraph.tensors:
            name = tensor.name.decode()
            # A fused op's tensor is named after each op, ';'-separated.
            scopes = {scope for part in name.split(';')
                      for scope in part.split('/')}
            if index > 0 or any(_FLOAT_SCOPES.match(scope)
                                for scope in scopes):
                names.append(name)
    return names


def convert_to_onnx(module, opset: int = ONNX_OPSET) -> bytes:
    """ONNX model of a ServingModule's serving_default (dynamic batch,
    height and width)."""
    try:
        import tf2onnx
    except ImportError as error:
        raise ImportError('--format=onnx needs tf2onnx and onnxruntime: '
                          'pip install -e ".[export]"') from error
    import onnx
    model_proto, _ = tf2onnx.convert.from_function(
        module.serving_default,
        input_signature=module.serving_default.input_signature,
        opset=opset)
    _explicit_same_padding(model_proto.graph)
    # tf2onnx logs ops it could not convert and returns a model anyway; the
    # checker turns that into an error here rather than at load time.
    onnx.checker.check_model(model_proto)
    return model_proto.SerializeToString()


def _explicit_same_padding(graph):
    """Rewrites stride-1 Conv nodes padded 'SAME_UPPER'/'SAME_LOWER' to
    explicit pads.

    With dynamic sizes tf2onnx keeps TF's SAME padding as auto_pad, which
    onnxruntime refuses on dilated (atrous) convolutions. At stride 1 the
    padding does not depend on the input size: dilation * (kernel - 1) per
    axis, the extra pixel after (SAME_UPPER, TF's rule) or before.
    """
    from onnx import helper
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a)
                      for a in node.attribute}
        auto_pad = attributes.get('auto_pad', b'NOTSET')
        if node.op_type != 'Conv' or auto_pad not in (b'SAME_UPPER',
                                                     b'SAME_LOWER'):
            continue
        kernel = attributes.get('kernel_shape')
        strides = attributes.get('strides', [1] * len(kernel or []))
        if kernel is None or any(stride != 1 for stride in strides):
            continue
        dilations = attributes.get('dilations', [1] * len(kernel))
        totals = [d * (k - 1) for d, k in zip(dilations, kernel)]
        smaller = [total // 2 for total in totals]
        larger = [total - half for total, half in zip(totals, smaller)]
        pads = (smaller + larger if auto_pad == b'SAME_UPPER'
                else larger + smaller)
        kept = [a for a in node.attribute if a.name not in ('auto_pad',
                                                            'pads')]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute('pads', pads)])
    for node in graph.node:  # Loop / If bodies
        for attribute in node.attribute:
            if attribute.type == attribute.GRAPH:
                _explicit_same_padding(attribute.g)
