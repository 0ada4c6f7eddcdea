"""Decoded example -> preprocessed image and Panoptic-DeepLab targets.

`generate_sample` is what the input pipeline maps over decoded examples;
its outputs match DeepLab2's PanopticSampleGenerator key by key. A
semantic-only dataset (`SampleOptions.has_instances` False: its labels are
class ids) gets the semantic target and weight alone, and at eval the raw
semantic label without a panoptic one. Settings are plain values in
`SampleOptions`; only `SampleOptions.from_dataset_options` reads a proto.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from deeplab2 import common
from deeplab2.data import autoaugment
from deeplab2.data import preprocessing
from deeplab2.data import targets

# Keys of the decoded dict (the TFRecord decoder's output).
DECODED_IMAGE = 'image'
DECODED_LABEL = 'label'
DECODED_IMAGE_NAME = 'image_name'


@dataclasses.dataclass(frozen=True)
class SampleOptions:
    """Everything `generate_sample` needs, as plain values.

    crop_size: (height, width) of training crops and padded eval images.
    min_resize_value, max_resize_value: (height, width) or None.
    resize_factor: sides become a multiple of it plus one, or None.
    min_scale_factor, max_scale_factor, scale_factor_step_size: training
      random scale.
    sigma: center Gaussian standard deviation in pixels.
    small_instance_threshold, small_instance_weight: semantic weight of
      instances smaller than the threshold (threshold 0 disables).
    thing_ids: semantic ids of thing classes.
    label_divisor, ignore_label: the panoptic encoding.
    flip_probability: of a training left-right flip.
    autoaugment_policy: AutoAugment policy name for training ('' for none).
    has_instances: labels are panoptic (`semantic * label_divisor +
      instance`); False for a semantic-only dataset, whose labels are
      class ids (label_divisor 1, no thing classes).
    """
    crop_size: tuple[int, int]
    thing_ids: tuple[int, ...]
    label_divisor: int
    ignore_label: int
    min_resize_value: Optional[tuple[int, int]] = None
    max_resize_value: Optional[tuple[int, int]] = None
    resize_factor: Optional[int] = None
    min_scale_factor: float = 1.0
    max_scale_factor: float = 1.0
    scale_factor_step_size: float = 0.0
    sigma: float = 8.0
    small_instance_threshold: int = 0
    small_instance_weight: float = 1.0
    flip_probability: float = 0.5
    autoaugment_policy: str = ''
    has_instances: bool = True

    def __post_init__(self):
        if self.autoaugment_policy:
            # Fails at set-up, not inside tf.data, on a typo.
            try:
                autoaugment.get_policy(self.autoaugment_policy)
            except ValueError as error:
                raise ValueError('DatasetOptions.augmentations.'
                                 f'autoaugment_policy_name: {error}') from None

    @classmethod
    def from_dataset_options(cls, dataset_options, descriptor,
                             flip_probability: float = 0.5):
        """From a `DatasetOptions` proto and a `DatasetDescriptor`.

        Raises:
          ValueError: naming a field this implementation does not support
            (panoptic copy-paste, video frames, thing-id masks)
            or a crop_size that is not two values.
        """
        _check_supported(dataset_options)
        if len(dataset_options.crop_size) != 2:
            raise ValueError(
                'DatasetOptions.crop_size needs [height, width], got '
                f'{list(dataset_options.crop_size)}.')
        augmentations = dataset_options.augmentations
        small = dataset_options.increase_small_instance_weights
        return cls(
            crop_size=tuple(dataset_options.crop_size),
            thing_ids=tuple(descriptor.class_has_instances_list),
            label_divisor=descriptor.panoptic_label_divisor,
            ignore_label=descriptor.ignore_label,
            min_resize_value=preprocessing.resize_spec(
                list(dataset_options.min_resize_value)),
            max_resize_value=preprocessing.resize_spec(
                list(dataset_options.max_resize_value)),
            resize_factor=dataset_options.resize_factor or None,
            min_scale_factor=augmentations.min_scale_factor,
            max_scale_factor=augmentations.max_scale_factor,
            scale_factor_step_size=augmentations.scale_factor_step_size,
            sigma=dataset_options.sigma,
            small_instance_threshold=(
                dataset_options.small_instance_threshold if small else 0),
            small_instance_weight=(
                dataset_options.small_instance_weight if small else 1.0),
            flip_probability=flip_probability,
            autoaugment_policy=augmentations.autoaugment_policy_name,
            has_instances=descriptor.has_instances)


# Fields DeepLab2 uses only outside the Panoptic-DeepLab family, with what
# the user should know. Copy-paste is kMaX-DeepLab's augmentation (none of
# DeepLab2's Panoptic-DeepLab configs sets it) and has no DeepLab2-written
# fixture to match its random second-image stream against.
_UNSUPPORTED_FIELDS = {
    'augmentations.panoptic_copy_paste.panoptic_copy_paste_scale': (
        lambda options: (options.augmentations.panoptic_copy_paste
                         .panoptic_copy_paste_scale > 0),
        'panoptic copy-paste is kMaX-DeepLab\'s augmentation and is not '
        'implemented here'),
    'use_two_frames': (
        lambda options: options.use_two_frames,
        'video inputs (Motion-DeepLab / ViP-DeepLab) are not implemented '
        'here'),
    'use_next_frame': (
        lambda options: options.use_next_frame,
        'video inputs (ViP-DeepLab) are not implemented here'),
    'thing_id_mask_annotations': (
        lambda options: options.thing_id_mask_annotations,
        'thing-id masks feed MaX-DeepLab, which is not implemented here'),
}


def _check_supported(dataset_options) -> None:
    for field, (is_set, reason) in _UNSUPPORTED_FIELDS.items():
        if is_set(dataset_options):
            raise ValueError(
                f'DatasetOptions.{field} is not supported: {reason}. Remove '
                'it from the config.')


def preprocess(decoded: dict, options: SampleOptions, is_training: bool,
               seed=None, layout=None):
    """Resize/scale/pad/crop/flip of a decoded example (see preprocessing).

    Returns (resized_image [h, w, 3], image [ch, cw, 3] float32, label
    [ch, cw] int32 or None).
    """
    label = decoded.get(DECODED_LABEL)
    resized_image, image, label = preprocessing.preprocess_image_and_label(
        decoded[DECODED_IMAGE], label,
        crop_height=options.crop_size[0], crop_width=options.crop_size[1],
        min_resize_value=options.min_resize_value,
        max_resize_value=options.max_resize_value,
        resize_factor=options.resize_factor,
        min_scale_factor=options.min_scale_factor,
        max_scale_factor=options.max_scale_factor,
        scale_factor_step_size=options.scale_factor_step_size,
        ignore_label=options.ignore_label * options.label_divisor,
        is_training=is_training, flip_probability=options.flip_probability,
        autoaugment_policy=options.autoaugment_policy, seed=seed,
        layout=layout)
    if label is not None:
        label = label[..., 0]
    return resized_image, image, label


def generate_sample(decoded: dict, options: SampleOptions, is_training: bool,
                    seed=None, layout=None, with_targets: bool = True) -> dict:
    """One training or eval sample from a decoded example.

    Args:
      decoded: 'image' uint8 [H, W, 3], 'label' int [H, W, 1] panoptic, or
        class ids without `options.has_instances` (may be absent at eval),
        'image_name' string.
      seed: optional [2] int seed making the random augmentation stateless.
      layout: optional `preprocessing.TrainingLayout` replaying a known
        pad/crop/flip (training only).
      with_targets: compute the training targets (DeepLab2's samples have
        them at eval too); False at eval leaves them out, for readers that
        need only the image and the raw labels (the evaluator).
    Returns:
      common.IMAGE and, with a label, the targets of
      `targets.panoptic_targets` (`targets.semantic_targets` for a
      semantic-only dataset); at eval also RESIZED_IMAGE, IMAGE_NAME,
      GT_SIZE_RAW and (with a label) the *_RAW labels.
    """
    if is_training and not with_targets:
        raise ValueError('Training samples need their targets.')
    resized_image, image, label = preprocess(decoded, options, is_training,
                                             seed, layout)
    sample = {common.IMAGE: image}
    if label is not None and with_targets and not options.has_instances:
        sample.update(targets.semantic_targets(label))
    elif label is not None and with_targets:
        sample.update(targets.panoptic_targets(
            label, label_divisor=options.label_divisor,
            ignore_label=options.ignore_label, thing_ids=options.thing_ids,
            sigma=options.sigma,
            small_instance_threshold=options.small_instance_threshold,
            small_instance_weight=options.small_instance_weight))
    if not is_training:
        sample[common.RESIZED_IMAGE] = resized_image
        sample[common.IMAGE_NAME] = decoded[DECODED_IMAGE_NAME]
        sample[common.GT_SIZE_RAW] = tf.shape(decoded[DECODED_IMAGE])[:2]
        if DECODED_LABEL in decoded and not options.has_instances:
            sample.update(targets.raw_semantic_eval_labels(
                decoded[DECODED_LABEL][..., 0]))
        elif DECODED_LABEL in decoded:
            sample.update(targets.raw_eval_labels(
                decoded[DECODED_LABEL][..., 0],
                label_divisor=options.label_divisor,
                thing_ids=options.thing_ids))
    return sample
