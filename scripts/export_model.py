"""Export a trained model as a SavedModel (default), TFLite or ONNX file.

  python scripts/export_model.py \
    --config_file=configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto \
    --checkpoint_path=/ckpt/resnet50_os32_panoptic_deeplab_cityscapes_trainfine \
    --output_path=/models/resnet50_os32_saved_model

The SavedModel takes uint8 images of any batch and size (`serving_default`,
input `images`) or one JPEG/PNG string (`serving_encoded`, input
`encoded_image`) and returns the panoptic, semantic and instance maps (and
the raw network outputs with --include_network_outputs). TFLite and ONNX
files hold the same `images` -> maps function at the size --crop_size
fixes (TFLite: batch 1; ONNX: any batch), optionally quantized (TFLite
--quantize), or the network outputs alone (--nowith_postprocessing, any
size):

  python scripts/export_model.py --config_file=... --checkpoint_path=... \
    --output_path=/models/model_int8.tflite --crop_size=1025,2049 \
    --quantize=int8 --calibration_file_pattern='/data/train-*.tfrecord'

Run them with scripts/predict.py --model=FILE, or LiteRT / onnxruntime
directly. See deeplab2/export.py. A Keras-native copy of the whole model
(for further training in Keras) is `model.save('m.keras')` instead; see the
README.
"""

from absl import app
from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up
from deeplab2 import serving  # the format names; no TensorFlow

_CONFIG_FILE = flags.DEFINE_string('config_file', None,
                                   'Config the checkpoint was trained with.',
                                   required=True)
_CONFIG_OVERRIDE = flags.DEFINE_multi_string(
    'config_override', [], 'dotted.field.path=value overrides.')
_CHECKPOINT_PATH = flags.DEFINE_string(
    'checkpoint_path', None,
    'Checkpoint prefix, folder or model-zoo .tar.gz (ours or DeepLab2\'s).',
    required=True)
_OUTPUT_PATH = flags.DEFINE_string(
    'output_path', None, 'SavedModel folder, or .tflite / .onnx file.',
    required=True)
_FORMAT = flags.DEFINE_enum('format', serving.FORMATS[0],
                            list(serving.FORMATS), 'What to write.')
_CROP_SIZE = flags.DEFINE_list(
    'crop_size', None, 'height,width: fix the input size (default: any '
    'size; ASPP pooling is global either way). Required for tflite and onnx '
    'with post-processing.')
_WITH_POSTPROCESSING = flags.DEFINE_boolean(
    'with_postprocessing', True,
    'Add the panoptic/semantic/instance maps; --nowith_postprocessing '
    'exports the network outputs only.')
_QUANTIZE = flags.DEFINE_enum(
    'quantize', None, list(serving.QUANTIZATIONS),
    'Quantize a tflite export: float16 and dynamic_range weights, or an int8 '
    'network calibrated on --calibration_file_pattern (post-processing '
    'stays float).')
_PRECISION = flags.DEFINE_enum(
    'precision', 'float32', ['float32', 'bfloat16'],
    'What the network computes in: bfloat16 (saved_model only) is faster '
    'on CPUs with avx512_bf16/amx_bf16; see deeplab2/model/precision.py.')
_CALIBRATION_FILE_PATTERN = flags.DEFINE_string(
    'calibration_file_pattern', None,
    'TFRecords (DeepLab2 format) whose images calibrate --quantize=int8.')
_CALIBRATION_IMAGES = flags.DEFINE_integer(
    'calibration_images', 100, 'How many images calibrate --quantize=int8.')
_INCLUDE_NETWORK_OUTPUTS = flags.DEFINE_boolean(
    'include_network_outputs', False,
    'Also return semantic_logits, semantic_probs, center_heatmap and '
    'offset_map.')
_JIT_POSTPROCESSING = flags.DEFINE_boolean(
    'jit_postprocessing', True,
    'Compile post-processing\'s per-pixel stages with XLA in the '
    'SavedModel (faster; turn off for a TensorFlow runtime without XLA).')
_OVERWRITE = flags.DEFINE_boolean('overwrite', False,
                                  'Replace an existing output_path.')


def _input_size(values):
    if not values:
        return None
    try:
        size = tuple(int(value) for value in values)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) <= 0:
        raise app.UsageError(
            f'--crop_size must be two positive integers height,width; got '
            f'{",".join(values)!r}.')
    return size


def main(argv):
    del argv
    input_size = _input_size(_CROP_SIZE.value)
    # Imported here so --help answers without loading TensorFlow.
    from deeplab2 import export
    options = export.ExportOptions(
        with_postprocessing=_WITH_POSTPROCESSING.value,
        include_network_outputs=_INCLUDE_NETWORK_OUTPUTS.value,
        input_size=input_size,
        jit_postprocessing=_JIT_POSTPROCESSING.value,
        quantize=_QUANTIZE.value)
    path = export.export_from_config(
        _CONFIG_FILE.value, _CHECKPOINT_PATH.value, _OUTPUT_PATH.value,
        _FORMAT.value, options, overrides=_CONFIG_OVERRIDE.value,
        overwrite=_OVERWRITE.value,
        calibration_file_pattern=_CALIBRATION_FILE_PATTERN.value,
        calibration_images=_CALIBRATION_IMAGES.value,
        precision=_PRECISION.value)
    print(f'Wrote {path}')
    return 0


if __name__ == '__main__':
    cli.run(main)
