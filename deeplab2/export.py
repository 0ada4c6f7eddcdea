"""Export a trained model for serving: SavedModel, TFLite or ONNX.

The SavedModel has two signatures:
- `serving_default`: `images`, uint8 [batch, height, width, 3] RGB of any
  batch and size -> the post-processed maps (`panoptic_pred`,
  `semantic_pred`, `instance_pred`, `instance_center_pred`,
  `instance_scores`), plus the raw network outputs (`semantic_logits`,
  `semantic_probs`, `center_heatmap`, `offset_map`) when asked for.
- `serving_encoded`: `encoded_image`, one scalar string of JPEG or PNG
  bytes -> the same outputs with batch 1.
It holds only TensorFlow ops and the weights as variables: loading it
needs TensorFlow, not this package. ASPP image pooling is global at every
input size (see model/decoder/aspp.py), so any size behaves as in eval.

TFLite (float32 weights, builtin ops only) and ONNX (tf2onnx, dynamic batch,
height and width) hold the same uint8 `images` input and the network
outputs only. Post-processing does not convert: its per-image `map_fn` over
dynamic sizes leaves TensorList ops that TFLite's builtins cannot lower, and
tf2onnx turns its segment reductions into a dense [segments x largest
segment] grid (~10^10 elements for the merge's class votes at 1025x2049)
and cannot convert integer segment max/min at all (tf2onnx 1.17). Run
`deeplab2.model.postprocess` on those outputs instead, or serve the
SavedModel.

Every format is written under a temporary name next to `output_path` and
renamed at the end: a failed export leaves nothing at `output_path`, and the
next export to that path removes what a killed one left. Overwriting
replaces a file, an empty folder or a SavedModel, never another folder.
"""

import dataclasses
import os
import pathlib
import re
import shutil
import tempfile
import uuid

from absl import logging
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.compat import checkpoint as checkpoint_lib
from deeplab2.model import builder
from deeplab2.model import inference as inference_lib
from deeplab2.model import postprocess

FORMATS = ('saved_model', 'tflite', 'onnx')
IMAGES_INPUT = 'images'
ENCODED_IMAGE_INPUT = 'encoded_image'
DEFAULT_SIGNATURE = 'serving_default'
ENCODED_SIGNATURE = 'serving_encoded'

NETWORK_OUTPUT_KEYS = (common.PRED_SEMANTIC_LOGITS_KEY,
                       common.PRED_SEMANTIC_PROBS_KEY,
                       common.PRED_CENTER_HEATMAP_KEY,
                       common.PRED_OFFSET_MAP_KEY)
PREDICTION_KEYS = (common.PRED_PANOPTIC_KEY, common.PRED_SEMANTIC_KEY,
                   common.PRED_INSTANCE_KEY, common.PRED_INSTANCE_CENTER_KEY,
                   common.PRED_INSTANCE_SCORES_KEY)

# JPEG starts with an SOI marker, PNG with its 8-byte signature.
_JPEG_MAGIC = b'\xff\xd8\xff'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

# ONNX opset for tf2onnx: 17 is the newest every onnxruntime >= 1.13 runs.
ONNX_OPSET = 17


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What goes into the exported model.

    Attributes:
      with_postprocessing: add the post-processed maps. None: the format's
        default (SavedModel: yes; TFLite, ONNX: no, they cannot hold them).
      include_network_outputs: add the raw network outputs (always there
        without post-processing).
      input_size: (height, width) to fix the input size to; None accepts
        any size.
      jit_postprocessing: keep post-processing's XLA clusters (faster on
        CPU/GPU with TensorFlow; TFLite and ONNX never get them).
    """
    with_postprocessing: bool | None = None
    include_network_outputs: bool = False
    input_size: tuple[int, int] | None = None
    jit_postprocessing: bool = True

    @property
    def postprocessing(self) -> bool:
        """Whether the maps are computed (None counts as the SavedModel's
        default: yes)."""
        return self.with_postprocessing is not False

    @property
    def output_keys(self) -> tuple[str, ...]:
        if not self.postprocessing:
            return NETWORK_OUTPUT_KEYS
        if self.include_network_outputs:
            return PREDICTION_KEYS + NETWORK_OUTPUT_KEYS
        return PREDICTION_KEYS


def load_model(config, checkpoint_path, expected: str = ''):
    """The config's model with a checkpoint's weights (ours or DeepLab2's).

    checkpoint_path None keeps the random initial weights (benchmarks);
    the command line always asks for a checkpoint.
    """
    model = builder.build_model(config)
    if checkpoint_path is not None:
        summary = checkpoint_lib.restore_checkpoint(model, checkpoint_path,
                                                    expected=expected)
        logging.info('%s', summary)
    return model


def build_predict_fn(config, model, options: ExportOptions):
    """images [B, H, W, 3] uint8 -> dict of `options.output_keys` (those the
    model has: a semantic-only model has no instance outputs)."""
    inference = inference_lib.build_inference(config, model)
    if not options.postprocessing:
        inference.postprocessor = None
    elif not options.jit_postprocessing:
        inference.postprocessor = postprocess.PanopticPostProcessor(
            dataclasses.replace(inference.postprocessor.options,
                                jit_dense_stages=False))

    def predict(images):
        outputs = inference(images)
        return {key: outputs[key] for key in options.output_keys
                if key in outputs}

    return predict


# ---------------------------------------------------------------- input checks


def checked_images(images, name: str = IMAGES_INPUT):
    """images, after run-time checks that it is [B, H, W, 3], non-empty.

    A SavedModel signature does not enforce its declared shape when called
    (only its dtype), so a wrong shape would otherwise fail deep inside a
    convolution. The shape is padded before indexing so that the checks
    themselves work at any rank.
    """
    shape = tf.shape(images)
    padded = tf.concat([shape, tf.fill([5], -1)], axis=0)
    is_rgb_batch = tf.logical_and(tf.equal(padded[3], 3),
                                  tf.equal(padded[4], -1))
    rgb_check = tf.debugging.Assert(is_rgb_batch, [
        f'`{name}` must be a uint8 RGB batch [batch, height, width, 3]; got '
        'shape', shape], name=f'{name}_shape_check')
    with tf.control_dependencies([rgb_check]):
        non_empty = tf.reduce_all(shape[:3] > 0)
        size_check = tf.debugging.Assert(non_empty, [
            f'`{name}` is empty (batch, height and width must be positive); '
            'got shape', shape], name=f'{name}_empty_check')
    with tf.control_dependencies([rgb_check, size_check]):
        return tf.identity(images)


def decode_encoded_image(encoded_image, name: str = ENCODED_IMAGE_INPUT):
    """One scalar string of JPEG/PNG bytes -> [1, H, W, 3] uint8, with a
    check that names the input instead of a decoder kernel's message.

    A non-scalar input fails at node `encoded_image_format_check` with "In[0]
    should be a scalar": an explicit rank check of an input declared scalar
    is folded away by the graph optimizer, so it could never fire.
    """
    is_jpeg = tf.equal(tf.strings.substr(encoded_image, 0, len(_JPEG_MAGIC)),
                       _JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(encoded_image, 0, len(_PNG_MAGIC)),
                      _PNG_MAGIC)
    format_check = tf.debugging.Assert(
        tf.logical_or(is_jpeg, is_png), [
            f'`{name}` is not a JPEG or PNG file; its length in bytes is',
            tf.strings.length(encoded_image)], name=f'{name}_format_check')
    with tf.control_dependencies([format_check]):
        # channels=3: grayscale is expanded and alpha dropped, as the model
        # takes RGB.
        image = tf.io.decode_image(encoded_image, channels=3,
                                   dtype=tf.uint8, expand_animations=False,
                                   name='decode_encoded_image')
    return image[None]


# ---------------------------------------------------------------- SavedModel


class ServingModule(tf.Module):
    """The exported object: the model's variables and the two signatures.

    The model's tf.Variables (each Keras 3 variable's `.value`) are listed
    on the module itself, so the SavedModel saves exactly the variables the
    traced functions capture. Listing the Keras variable wrappers instead
    loads fine in TensorFlow but the TFLite converter then fails to freeze
    them and the .tflite computes NaNs.
    """

    def __init__(self, model, predict_fn, input_size=None):
        super().__init__(name='deeplab2_serving')
        self.model_variables = [variable.value
                                for variable in model.variables]
        self._predict_fn = predict_fn
        self._input_size = input_size
        height, width = input_size or (None, None)
        self.serving_default = tf.function(
            self._serve_images, input_signature=[tf.TensorSpec(
                [None, height, width, 3], tf.uint8, name=IMAGES_INPUT)])
        self.serving_encoded = tf.function(
            self._serve_encoded, input_signature=[tf.TensorSpec(
                [], tf.string, name=ENCODED_IMAGE_INPUT)])

    def _serve_images(self, images):
        return self._predict_fn(checked_images(images))

    def _serve_encoded(self, encoded_image):
        images = decode_encoded_image(encoded_image)
        if self._input_size is not None:
            # The error names this node and both shapes.
            images = tf.ensure_shape(
                images, [1, *self._input_size, 3],
                name=f'{ENCODED_IMAGE_INPUT}_size_check')
        return self._predict_fn(images)

    def signatures(self, encoded: bool = True) -> dict:
        signatures = {DEFAULT_SIGNATURE: self.serving_default}
        if encoded:
            signatures[ENCODED_SIGNATURE] = self.serving_encoded
        return signatures


def save_serving_module(module: ServingModule, path, encoded: bool = True):
    """tf.saved_model.save of the module with its signatures."""
    tf.saved_model.save(module, str(path),
                        signatures=module.signatures(encoded))


# ---------------------------------------------------------------- TFLite, ONNX


def convert_to_tflite(saved_model_dir) -> bytes:
    """float32 TFLite flatbuffer of a SavedModel's serving_default, built
    only from TFLite's builtin ops (no Flex delegate needed to run it)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[DEFAULT_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def convert_to_onnx(module: ServingModule, opset: int = ONNX_OPSET) -> bytes:
    """ONNX model of serving_default (dynamic batch, height and width)."""
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


# ---------------------------------------------------------------- entry


def export_from_config(config_file, checkpoint_path, output_path,
                       export_format: str = 'saved_model',
                       options: ExportOptions = ExportOptions(),
                       overrides=(), overwrite: bool = False) -> str:
    """What scripts/export_model.py runs: config file (+ overrides) and a
    checkpoint -> an export at output_path."""
    config = config_lib.load_config(str(config_file), list(overrides))
    model = load_model(config, checkpoint_path, expected=str(config_file))
    return export_model(config, model, output_path, export_format, options,
                        overwrite=overwrite)


def export_model(config, model, output_path, export_format='saved_model',
                 options: ExportOptions = ExportOptions(),
                 overwrite: bool = False) -> str:
    """Writes `model` (built and restored) as `export_format` at
    output_path; returns output_path.

    Raises:
      ValueError: unknown format.
      FileExistsError: output_path exists and overwrite is False, or it is
        a non-empty folder that is not a SavedModel.
    """
    if export_format not in FORMATS:
        raise ValueError(f'Unknown export format {export_format!r}; choose '
                         f'one of {", ".join(FORMATS)}.')
    output_path = pathlib.Path(output_path)
    if output_path.exists() and not overwrite:
        raise FileExistsError(f'{output_path} exists; remove it or pass '
                              'overwrite=True (--overwrite).')
    _check_replaceable(output_path)
    options = _format_options(export_format, options)
    module = ServingModule(model, build_predict_fn(config, model, options),
                           options.input_size)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(output_path, _NEW)
    staging = _staging_path(output_path, _NEW)
    try:
        if export_format == 'saved_model':
            save_serving_module(module, staging)
        elif export_format == 'tflite':
            with tempfile.TemporaryDirectory() as folder:
                save_serving_module(module, folder, encoded=False)
                staging.write_bytes(convert_to_tflite(folder))
        else:
            staging.write_bytes(convert_to_onnx(module))
        _replace(staging, output_path)
    finally:
        _remove(staging)
    # Only now: until a new export is in place, an old one moved aside by an
    # interrupted replacement may be the only copy.
    _remove_stale_staging(output_path, _OLD)
    return str(output_path)


def _format_options(export_format: str, options: ExportOptions
                    ) -> ExportOptions:
    """options with the format's defaults filled in; refuses what the format
    cannot hold."""
    if export_format == 'saved_model':
        if options.with_postprocessing is None:
            options = dataclasses.replace(options, with_postprocessing=True)
        return options
    if options.with_postprocessing:
        raise ValueError(
            f'--format={export_format} holds the network outputs only: '
            'post-processing does not convert (see deeplab2/export.py); '
            'export without post-processing or use --format=saved_model.')
    return dataclasses.replace(options, with_postprocessing=False)


# Staging names next to output_path: `.<name>.tmp-<uuid hex>` for the export
# being written, `.<name>.old-<uuid hex>` for the output it replaces.
_NEW, _OLD = 'tmp', 'old'

# What tf.saved_model.save writes: a folder holding one of these is ours to
# replace (with --overwrite).
_SAVED_MODEL_FILES = ('saved_model.pb', 'saved_model.pbtxt')


def _staging_path(output_path: pathlib.Path, kind: str) -> pathlib.Path:
    name = f'.{output_path.name}.{kind}-{uuid.uuid4().hex}'
    return output_path.parent / name


def _remove_stale_staging(output_path: pathlib.Path, kind: str):
    """Deletes `kind` staging folders or files that killed exports to
    output_path left (only our names for this output path)."""
    pattern = re.compile(rf'\.{re.escape(output_path.name)}\.{kind}-'
                         r'[0-9a-f]{32}')
    for path in output_path.parent.iterdir():
        if pattern.fullmatch(path.name):
            logging.info('Removing %s, left by an interrupted export.', path)
            _remove(path)


def _check_replaceable(output_path: pathlib.Path):
    """Refuses to let an export replace a folder that holds something else.

    --overwrite is meant for an earlier export; a typo in --output_path must
    not delete, say, a dataset. An empty folder or a SavedModel can go.
    """
    if not output_path.is_dir() or not any(output_path.iterdir()):
        return
    if any((output_path / name).is_file() for name in _SAVED_MODEL_FILES):
        return
    raise FileExistsError(
        f'{output_path} is a folder that is not a SavedModel (it has no '
        'saved_model.pb); --overwrite replaces only an earlier export or an '
        'empty folder. Remove it yourself or choose another --output_path.')


def _replace(staging: pathlib.Path, output_path: pathlib.Path):
    """Moves staging to output_path; an existing output is moved aside
    first and deleted only once the new one is in place."""
    if not output_path.exists():
        os.replace(staging, output_path)
        return
    old = _staging_path(output_path, _OLD)
    os.replace(output_path, old)
    try:
        os.replace(staging, output_path)
    except OSError:
        os.replace(old, output_path)
        raise
    _remove(old)


def _remove(path: pathlib.Path):
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
