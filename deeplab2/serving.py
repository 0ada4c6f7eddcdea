"""The serving contract shared by the exporter, the predictor and the CLIs.

An exported SavedModel is called by name: `serving_default(images=...)` or
`serving_encoded(encoded_image=...)`, returning maps under the keys below.
The exporter writes these names and the predictor checks them, so both
read them from here. Plain Python, no TensorFlow: the command lines define
their flags from `FORMATS` before TensorFlow loads.
"""

from deeplab2 import common

# What scripts/export_model.py --format accepts; the first is the default.
FORMATS = ('saved_model', 'tflite', 'onnx')

# What --quantize accepts for a TFLite export (deeplab2.export_formats).
QUANTIZATIONS = ('float16', 'dynamic_range', 'int8')

DEFAULT_SIGNATURE = 'serving_default'
ENCODED_SIGNATURE = 'serving_encoded'
IMAGES_INPUT = 'images'
ENCODED_IMAGE_INPUT = 'encoded_image'

# The post-processed maps, each [batch, height, width]: what the
# SavedModel returns by default and what a Predictor returns.
PREDICTION_KEYS = (common.PRED_PANOPTIC_KEY, common.PRED_SEMANTIC_KEY,
                   common.PRED_INSTANCE_KEY, common.PRED_INSTANCE_CENTER_KEY,
                   common.PRED_INSTANCE_SCORES_KEY)
# The raw network outputs: added on request, or all that is exported
# without post-processing.
NETWORK_OUTPUT_KEYS = (common.PRED_SEMANTIC_LOGITS_KEY,
                       common.PRED_SEMANTIC_PROBS_KEY,
                       common.PRED_CENTER_HEATMAP_KEY,
                       common.PRED_OFFSET_MAP_KEY)
