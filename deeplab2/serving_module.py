"""The exported object: what it computes, and its two signatures.

- `serving_default`: `images`, uint8 [batch, height, width, 3] RGB of any
  batch and size -> the post-processed maps (`serving.PREDICTION_KEYS`),
  plus the raw network outputs (`serving.NETWORK_OUTPUT_KEYS`) when asked
  for.
- `serving_encoded`: `encoded_image`, one scalar string of JPEG or PNG
  bytes -> the same outputs with batch 1.

Both check their input at run time and fail naming it. Saved, the module
holds only TensorFlow ops and the weights as variables: loading it needs
TensorFlow, not this package.
"""

import dataclasses

import tensorflow as tf

from deeplab2 import serving
from deeplab2.model import inference as inference_lib
from deeplab2.model import postprocess

# JPEG starts with an SOI marker, PNG with its 8-byte signature.
_JPEG_MAGIC = b'\xff\xd8\xff'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What goes into the exported model.

    Attributes:
      with_postprocessing: add the post-processed maps (None: yes).
        TFLite and ONNX hold them only at a fixed `input_size`.
      include_network_outputs: add the raw network outputs (always there
        without post-processing).
      input_size: (height, width) to fix the input size to; None accepts
        any size.
      jit_postprocessing: keep post-processing's XLA clusters (faster on
        CPU/GPU with TensorFlow; TFLite and ONNX never get them).
      quantize: TFLite only: None (float32) or one of
        `serving.QUANTIZATIONS` (see export_formats).
    """
    with_postprocessing: bool | None = None
    include_network_outputs: bool = False
    input_size: tuple[int, int] | None = None
    jit_postprocessing: bool = True
    quantize: str | None = None

    @property
    def postprocessing(self) -> bool:
        """Whether the maps are computed (None counts as the SavedModel's
        default: yes)."""
        return self.with_postprocessing is not False

    @property
    def output_keys(self) -> tuple[str, ...]:
        if not self.postprocessing:
            return serving.NETWORK_OUTPUT_KEYS
        if self.include_network_outputs:
            return serving.PREDICTION_KEYS + serving.NETWORK_OUTPUT_KEYS
        return serving.PREDICTION_KEYS


def build_predict_fn(config, model, options: ExportOptions,
                     descriptor=None, runtime: str = 'tensorflow'):
    """images [B, H, W, 3] uint8 -> dict of `options.output_keys` (those the
    model has: a semantic-only model has no instance outputs).

    descriptor: the eval dataset's DatasetDescriptor (a built-in dataset
    or a spec file's), whose thing classes, label divisor and void label
    post-processing bakes into the export; default: looked up from the
    config. runtime: where the function will run (TensorFlow, or a
    'tflite'/'onnx' conversion, whose post-processing is built from ops
    their converters lower: see model/portable_ops.py)."""
    inference = inference_lib.build_inference(config, model,
                                              descriptor=descriptor)
    if not options.postprocessing:
        inference.postprocessor = None
    elif runtime != 'tensorflow':
        inference.postprocessor = postprocess.PanopticPostProcessor(
            dataclasses.replace(inference.postprocessor.options,
                                runtime=runtime, static_shapes=True,
                                jit_dense_stages=False))
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


def checked_images(images, name: str = serving.IMAGES_INPUT):
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


def decode_encoded_image(encoded_image,
                         name: str = serving.ENCODED_IMAGE_INPUT):
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


# ---------------------------------------------------------------- the module


class ServingModule(tf.Module):
    """The model's variables and the two signatures.

    The model's tf.Variables (each Keras 3 variable's `.value`) are listed
    on the module itself, so the SavedModel saves exactly the variables the
    traced functions capture. Listing the Keras variable wrappers instead
    loads fine in TensorFlow but the TFLite converter then fails to freeze
    them and the .tflite computes NaNs.
    """

    def __init__(self, model, predict_fn, input_size=None,
                 batch_size=None):
        super().__init__(name='deeplab2_serving')
        self.model_variables = [variable.value
                                for variable in model.variables]
        self._predict_fn = predict_fn
        self._input_size = input_size
        height, width = input_size or (None, None)
        self.serving_default = tf.function(
            self._serve_images, input_signature=[tf.TensorSpec(
                [batch_size, height, width, 3], tf.uint8,
                name=serving.IMAGES_INPUT)])
        self.serving_encoded = tf.function(
            self._serve_encoded, input_signature=[tf.TensorSpec(
                [], tf.string, name=serving.ENCODED_IMAGE_INPUT)])

    def _serve_images(self, images):
        return self._predict_fn(checked_images(images))

    def _serve_encoded(self, encoded_image):
        images = decode_encoded_image(encoded_image)
        if self._input_size is not None:
            # The error names this node and both shapes.
            images = tf.ensure_shape(
                images, [1, *self._input_size, 3],
                name=f'{serving.ENCODED_IMAGE_INPUT}_size_check')
        return self._predict_fn(images)

    def signatures(self, encoded: bool = True) -> dict:
        signatures = {serving.DEFAULT_SIGNATURE: self.serving_default}
        if encoded:
            signatures[serving.ENCODED_SIGNATURE] = self.serving_encoded
        return signatures


def save_serving_module(module: ServingModule, path, encoded: bool = True):
    """tf.saved_model.save of the module with its signatures."""
    tf.saved_model.save(module, str(path),
                        signatures=module.signatures(encoded))
