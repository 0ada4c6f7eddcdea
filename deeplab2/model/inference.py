"""Inference: the model at one or more scales (optionally also mirrored),
averaged, then post-processed. What the evaluator and the exporter call.

Multi-scale follows DeepLab2: the image is resized (bilinear, aligned
corners) to int((size - 1) * scale + 1) per side, each prediction is resized
straight back to the input size, mirrored predictions are flipped back with
their x offsets negated, probabilities are the softmax of each prediction's
logits, and every output is the mean over all passes.
"""

from typing import Sequence

import tensorflow as tf

from deeplab2 import common
from deeplab2.model import postprocess
from deeplab2.model import resize


class Inference:
    """Callable: images [B, H, W, 3] in [0, 255] -> network outputs (averaged
    over passes) and post-processed predictions.

    Args:
      model: a DeepLab model.
      postprocessor: a PanopticPostProcessor, or None for raw outputs only.
      eval_scales: input scales (empty means [1.0]).
      add_flipped_images: also run every scale mirrored left-right.
    """

    def __init__(self, model, postprocessor=None,
                 eval_scales: Sequence[float] = (1.0,),
                 add_flipped_images: bool = False):
        self.model = model
        self.postprocessor = postprocessor
        self.eval_scales = tuple(eval_scales) or (1.0,)
        self.add_flipped_images = add_flipped_images

    def __call__(self, images) -> dict:
        images = tf.cast(images, tf.float32)
        size = tf.shape(images)[1:3]
        passes = []
        for scale in self.eval_scales:
            scaled = _scale_images(images, scale)
            passes.append(self.model(scaled, training=False,
                                     output_size=size))
            if self.add_flipped_images:
                mirrored = self.model(tf.reverse(scaled, [2]), training=False,
                                      output_size=size)
                passes.append(_flip_back(mirrored))
        outputs = {key: tf.reduce_mean(tf.stack([p[key] for p in passes]), 0)
                   if len(passes) > 1 else passes[0][key]
                   for key in passes[0]}
        if images.shape[1:3].is_fully_defined():
            # A fixed input size (an export at --crop_size, any batch):
            # the outputs keep it, which the TFLite/ONNX post-processing
            # needs for its fixed number of slots. Only the static shape:
            # resizing to a constant size would make tf2onnx resize by
            # scale factors, which round 513 down to 512.
            for value in outputs.values():
                value.set_shape([None, *images.shape[1:3],
                                 *value.shape[3:]])
        if self.postprocessor is None:
            return outputs
        if common.PRED_CENTER_HEATMAP_KEY not in outputs:
            # Semantic-only model: only the semantic prediction.
            outputs[common.PRED_SEMANTIC_KEY] = postprocess.semantic_prediction(
                outputs[common.PRED_SEMANTIC_PROBS_KEY])
            return outputs
        return {**outputs, **self.postprocessor(outputs)}


def _scale_images(images, scale: float):
    if scale == 1.0:
        return images
    size = tf.cast((tf.cast(tf.shape(images)[1:3], tf.float32) - 1.0) * scale
                   + 1.0, tf.int32)
    return resize.resize_align_corners(images, size)


def _flip_back(outputs: dict) -> dict:
    """Mirrors predictions of a mirrored image back; x offsets change sign."""
    flipped = {}
    for key, value in outputs.items():
        value = tf.reverse(value, [2])
        if key == common.PRED_OFFSET_MAP_KEY:
            value = value * tf.constant([1.0, -1.0])
        flipped[key] = value
    return flipped


def build_inference(config, model, static_shapes: bool = False,
                    descriptor=None) -> Inference:
    """Inference for an ExperimentOptions: its eval scales, flipping and
    post-processing around `model` (from build_model); `descriptor` is the
    eval dataset's (default: looked up from the config, see
    `postprocess.build_postprocessor`)."""
    evaluator = config.evaluator_options
    return Inference(
        model, postprocess.build_postprocessor(config,
                                               static_shapes=static_shapes,
                                               descriptor=descriptor),
        eval_scales=list(evaluator.eval_scales),
        add_flipped_images=evaluator.add_flipped_images)
