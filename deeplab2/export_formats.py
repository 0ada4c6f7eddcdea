"""Converting a serving module to TFLite or ONNX bytes.

Both hold the same uint8 `images` input and the network outputs only.
Post-processing does not convert: its per-image `map_fn` over dynamic sizes
leaves TensorList ops that TFLite's builtins cannot lower, and tf2onnx turns
its segment reductions into a dense [segments x largest segment] grid
(~10^10 elements for the merge's class votes at 1025x2049) and cannot
convert integer segment max/min at all (tf2onnx 1.17). Run
`deeplab2.model.postprocess` on those outputs instead, or serve the
SavedModel.
"""

import tensorflow as tf

from deeplab2 import serving

# ONNX opset for tf2onnx: 17 is the newest every onnxruntime >= 1.13 runs.
ONNX_OPSET = 17


def convert_to_tflite(saved_model_dir) -> bytes:
    """float32 TFLite flatbuffer of a SavedModel's serving_default, built
    only from TFLite's builtin ops (no Flex delegate needed to run it)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[serving.DEFAULT_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


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
