"""ExperimentOptions -> DeepLab model. The one place that reads model protos.

Encoders and decoders are picked from explicit name -> builder dicts; every
part below receives plain Python values.
"""

from typing import Any, Callable

import keras
import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2.model import deeplab
from deeplab2.model import precision as precision_lib
from deeplab2.model.decoder import deeplabv3
from deeplab2.model.decoder import panoptic_deeplab
from deeplab2.model.encoder import mobilenet
from deeplab2.model.encoder import resnet
from deeplab2.model.layers.normalization import BatchNormOptions

# Backbone names DeepLab2 accepts that this package does not build (yet).
_UNSUPPORTED_BACKBONES = ('axial_resnet_s', 'axial_resnet_l', 'axial_deeplab',
                          'max_deeplab', 'kmax', 'convnext', 'moat')

# The size of the dummy input that creates the variables; any size works
# since no weight depends on it.
_BUILD_SIZE = 33


def build_model(config, build: bool = True,
                precision: str | None = None) -> deeplab.DeepLab:
    """Builds the model an ExperimentOptions describes.

    Batch norm follows `trainer_options.solver_options`; the ASPP pooling
    size is recorded from `train_dataset_options.crop_size`; the encoder's
    kernels get half of `solver_options.weight_decay` as L2 (DeepLab2's
    convention: Keras' L2 has no 1/2 factor).

    Args:
      config: an ExperimentOptions.
      build: create the variables now with a small dummy input.
      precision: 'float32' or 'bfloat16' (model/precision.py); None: the
        global Keras policy (the trainer's --mixed_precision).

    Raises:
      ConfigError / NotSupportedError: naming the offending field.
    """
    with precision_lib.policy(precision):
        return _build_model(config, build)


def _build_model(config, build: bool) -> deeplab.DeepLab:
    model_options = config.model_options
    meta_architecture = config_lib.meta_architecture(model_options)
    solver = config.trainer_options.solver_options
    batch_norm = BatchNormOptions(momentum=solver.batchnorm_momentum,
                                  epsilon=solver.batchnorm_epsilon,
                                  synchronized=solver.use_sync_batchnorm)
    encoder = build_encoder(model_options.backbone, batch_norm,
                            conv_kernel_weight_decay=solver.weight_decay / 2)
    pool_size = aspp_pool_size(config.train_dataset_options.crop_size,
                               model_options.backbone.output_stride)
    decoder = _DECODER_BUILDERS[meta_architecture](model_options, batch_norm,
                                                   pool_size)
    model = deeplab.DeepLab(encoder, decoder)
    if build:
        model(tf.zeros([1, _BUILD_SIZE, _BUILD_SIZE, 3]), training=False)
    return model


# The config to start from when a dataset has no instances.
SEMANTIC_ONLY_CONFIG = (
    'configs/cityscapes/panoptic_deeplab/resnet50_os32_semseg.textproto')


def check_model_suits_dataset(config, field: str, descriptor) -> None:
    """Refuses a model with an instance branch on a semantic-only dataset.

    Panoptic-DeepLab's instance branch learns instance centers and offsets
    from instance labels, and post-processing groups thing pixels into
    instances by them: a dataset without instances (descriptor.has_instances
    False) gives it nothing to learn from, no thing classes to group and no
    instances to score. Callers check each dataset they read before building
    anything (the runner, predict, export).

    Args:
      config: an ExperimentOptions.
      field: the dataset's options field, e.g. 'train_dataset_options'.
      descriptor: that dataset's DatasetDescriptor.

    Also refuses a semantic classifier whose class count is not the
    dataset's (a shipped config reused on your own data), which would
    otherwise surface as a shape error inside the loss.

    Raises:
      ConfigError: naming the dataset, the instance branch, why, and the
        way to train the semantic branch alone; or naming the classifier's
        field, both counts and the override that fixes it.
    """
    model_options = config.model_options
    dataset = getattr(config, field).dataset
    named = (f'{dataset!r}' if dataset == descriptor.name
             else f'{dataset!r} ({descriptor.name!r})')
    if not descriptor.has_instances and (
            model_options.WhichOneof('meta_architecture') == 'panoptic_deeplab'
            and model_options.panoptic_deeplab.instance.enable):
        _refuse_instance_branch(field, named)
    _check_class_count(model_options, field, named, descriptor)


def _refuse_instance_branch(field, named) -> None:
    raise config_lib.ConfigError(
        f'{field}.dataset {named} is semantic-only: its labels are class '
        'ids without instances. The model is Panoptic-DeepLab with its '
        'instance branch on (model_options.panoptic_deeplab.instance.enable '
        'is true), which learns instance centers and offsets from instance '
        'labels and groups thing pixels by them; this dataset has neither '
        'instances nor thing classes. Train the semantic branch alone: start '
        f'from {SEMANTIC_ONLY_CONFIG}, or add --config_override='
        'model_options.panoptic_deeplab.instance.enable=false (a '
        'deeplab_v3 or deeplab_v3_plus model works too).')


# Where each meta architecture keeps its semantic class count.
_CLASS_COUNT_FIELDS = {
    'panoptic_deeplab': ('semantic_head', 'output_channels'),
    'deeplab_v3': ('num_classes',),
    'deeplab_v3_plus': ('num_classes',),
}


def _check_class_count(model_options, field, named, descriptor) -> None:
    architecture = model_options.WhichOneof('meta_architecture')
    path = _CLASS_COUNT_FIELDS.get(architecture)
    if path is None:
        return
    value = getattr(model_options, architecture)
    for name in path:
        value = getattr(value, name)
    if value == descriptor.num_classes:
        return
    option = '.'.join(('model_options', architecture) + path)
    raise config_lib.ConfigError(
        f'{option} is {value}, but {field}.dataset {named} has '
        f'{descriptor.num_classes} classes. Add --config_override='
        f'{option}={descriptor.num_classes} (with an initial_checkpoint of '
        'another class count, its classifier is then left freshly '
        'initialized).')


def aspp_pool_size(crop_size, output_stride: int):
    """Feature size of the training crop: (crop - 1) / stride + 1 per side,
    as DeepLab2 computes it; None without a crop size."""
    if len(crop_size) != 2:
        return None
    return tuple(int((size - 1) / output_stride + 1) for size in crop_size)


# ---------------------------------------------------------------- encoders


def _mobilenet(backbone, batch_norm, conv_kernel_weight_decay):
    # DeepLab2 asserts these: its MobileNets have fixed depth, always use
    # squeeze-and-excite and have no drop path or SAC.
    fixed = {'use_squeeze_and_excite': True, 'drop_path_keep_prob': 1.0,
             'use_sac_beyond_stride': -1, 'backbone_layer_multiplier': 1.0}
    for field, value in fixed.items():
        if getattr(backbone, field) != value:
            raise config_lib.ConfigError(
                f'model_options.backbone.{field} must be {value} for '
                f'{backbone.name} (got {getattr(backbone, field)}).')
    return mobilenet.build_mobilenet_encoder(
        backbone.name, backbone.output_stride, batch_norm=batch_norm,
        width_multiplier=backbone.backbone_width_multiplier,
        conv_kernel_weight_decay=conv_kernel_weight_decay)


def _resnet(backbone, batch_norm, conv_kernel_weight_decay):
    return resnet.build_resnet_encoder(
        backbone.name, backbone.output_stride, batch_norm=batch_norm,
        stem_width_multiplier=backbone.stem_width_multiplier,
        backbone_width_multiplier=backbone.backbone_width_multiplier,
        backbone_layer_multiplier=backbone.backbone_layer_multiplier,
        use_squeeze_and_excite=backbone.use_squeeze_and_excite,
        drop_path_keep_prob=backbone.drop_path_keep_prob,
        drop_path_schedule=backbone.drop_path_schedule,
        use_sac_beyond_stride=backbone.use_sac_beyond_stride,
        conv_kernel_weight_decay=conv_kernel_weight_decay)


_ENCODER_BUILDERS: dict[str, Callable[..., keras.layers.Layer]] = {
    'mobilenet_v3_small': _mobilenet,
    'mobilenet_v3_large': _mobilenet,
    'resnet50': _resnet,
    'resnet50_beta': _resnet,
    'wide_resnet41': _resnet,
    'swidernet': _resnet,
}


def build_encoder(backbone, batch_norm: BatchNormOptions,
                  conv_kernel_weight_decay: float = 0.0) -> keras.layers.Layer:
    """The encoder a BackboneOptions names, with endpoint dict outputs."""
    builder = _ENCODER_BUILDERS.get(backbone.name)
    if builder is None:
        supported = ', '.join(_ENCODER_BUILDERS)
        if backbone.name.startswith(_UNSUPPORTED_BACKBONES):
            raise config_lib.NotSupportedError(
                f'model_options.backbone.name {backbone.name!r} is not '
                f'supported yet; supported backbones: {supported}.')
        raise config_lib.ConfigError(
            f'Unknown model_options.backbone.name {backbone.name!r}; '
            f'supported backbones: {supported}.')
    if backbone.output_stride not in (8, 16, 32):
        raise config_lib.ConfigError(
            'model_options.backbone.output_stride must be 8, 16 or 32, got '
            f'{backbone.output_stride}.')
    return builder(backbone, batch_norm, conv_kernel_weight_decay)


# ---------------------------------------------------------------- decoders


def _single_decoder_args(decoder, low_level, pool_size) -> dict[str, Any]:
    _check_atrous_rates(decoder)
    return dict(high_level_feature_name=decoder.feature_key,
                low_level_feature_names=[item.feature_key
                                         for item in low_level],
                low_level_channels_project=[item.channels_project
                                            for item in low_level],
                aspp_output_channels=decoder.aspp_channels,
                decoder_output_channels=decoder.decoder_channels,
                atrous_rates=list(decoder.atrous_rates),
                aspp_use_only_1x1_proj_conv=decoder.aspp_use_only_1x1_proj_conv,
                decoder_conv_type=decoder.decoder_conv_type,
                pool_size=pool_size)


def _head_args(head, field: str) -> dict[str, Any]:
    if head.output_channels <= 0 or head.head_channels <= 0:
        raise config_lib.ConfigError(
            f'{field} needs positive output_channels and head_channels '
            f'(got {head.output_channels} and {head.head_channels}).')
    return dict(intermediate_channels=head.head_channels,
                output_channels=head.output_channels,
                conv_type=head.head_conv_type,
                max_value_after_activation=head.max_value_after_activation,
                min_value_after_activation=head.min_value_after_activation)


def _panoptic_deeplab(model_options, batch_norm, pool_size):
    options = model_options.panoptic_deeplab
    field = 'model_options.panoptic_deeplab'
    kwargs = dict(
        semantic_decoder=_single_decoder_args(
            model_options.decoder, options.low_level, pool_size),
        semantic_head=_head_args(options.semantic_head,
                                 f'{field}.semantic_head'))
    instance = options.instance
    if instance.enable:
        # An override replaces the whole decoder message: its unset fields
        # take the proto defaults, not the semantic decoder's values.
        decoder = (instance.instance_decoder_override
                   if instance.HasField('instance_decoder_override')
                   else model_options.decoder)
        low_level = instance.low_level_override or options.low_level
        kwargs.update(
            instance_decoder=_single_decoder_args(decoder, low_level,
                                                  pool_size),
            center_head=_head_args(instance.center_head,
                                   f'{field}.instance.center_head'),
            regression_head=_head_args(instance.regression_head,
                                       f'{field}.instance.regression_head'))
    return panoptic_deeplab.PanopticDeepLab(
        **kwargs, batch_norm=batch_norm, name='PanopticDeepLab')


def _deeplab_v3(model_options, batch_norm, pool_size):
    decoder = model_options.decoder
    _check_atrous_rates(decoder)
    return deeplabv3.DeepLabV3(
        decoder.feature_key, decoder.aspp_channels,
        list(decoder.atrous_rates), decoder.decoder_channels,
        model_options.deeplab_v3.num_classes, pool_size=pool_size,
        batch_norm=batch_norm, name='DeepLabV3')


def _deeplab_v3_plus(model_options, batch_norm, pool_size):
    decoder, options = model_options.decoder, model_options.deeplab_v3_plus
    _check_atrous_rates(decoder)
    return deeplabv3.DeepLabV3Plus(
        decoder.feature_key, options.low_level.feature_key,
        options.low_level.channels_project, decoder.aspp_channels,
        list(decoder.atrous_rates), decoder.decoder_channels,
        options.num_classes, pool_size=pool_size, batch_norm=batch_norm,
        name='DeepLabV3Plus')


def _check_atrous_rates(decoder):
    if not decoder.aspp_use_only_1x1_proj_conv and len(
            decoder.atrous_rates) != 3:
        raise config_lib.ConfigError(
            'DecoderOptions.atrous_rates needs exactly 3 values (got '
            f'{list(decoder.atrous_rates)}) unless '
            'aspp_use_only_1x1_proj_conv is set.')


_DECODER_BUILDERS = {
    'panoptic_deeplab': _panoptic_deeplab,
    'deeplab_v3': _deeplab_v3,
    'deeplab_v3_plus': _deeplab_v3_plus,
}
