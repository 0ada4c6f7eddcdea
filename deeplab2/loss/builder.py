"""LossOptions -> PanopticDeepLabLoss. The one place that reads loss protos."""

from deeplab2 import config as config_lib
from deeplab2.loss import panoptic_deeplab

# LossOptions fields DeepLab2 has that this package does not build yet.
_UNSUPPORTED_TERMS = ('motion_loss', 'next_regression_loss', 'pq_style_loss',
                      'mask_id_cross_entropy_loss',
                      'instance_discrimination_loss', 'depth_loss')
_FIELD = 'trainer_options.loss_options'


def build_loss(config, descriptor) -> panoptic_deeplab.PanopticDeepLabLoss:
    """Builds the loss `config.trainer_options.loss_options` describes.

    Args:
      config: an ExperimentOptions.
      descriptor: the train dataset's DatasetDescriptor (num_classes,
        ignore_label).

    Terms are present when their field is set, as in DeepLab2.

    Raises:
      ConfigError: an unknown loss name or a top_k_percent outside [0, 1],
        naming the field. NotSupportedError: a term we do not build.
    """
    options = config.trainer_options.loss_options
    for term in _UNSUPPORTED_TERMS:
        if options.HasField(term):
            raise config_lib.NotSupportedError(
                f'{_FIELD}.{term} is not supported yet; supported terms: '
                'semantic_loss, center_loss, regression_loss.')
    kwargs = {}
    semantic = _term(options, 'semantic_loss', ('softmax_cross_entropy',))
    if semantic is not None:
        kwargs.update(semantic_loss_weight=semantic.weight,
                      semantic_top_k_percent=semantic.top_k_percent)
    else:
        kwargs.update(semantic_loss_weight=None)
    regression_names = tuple(sorted(panoptic_deeplab.REGRESSION_ERRORS))
    for prefix in ('center', 'regression'):
        term = _term(options, f'{prefix}_loss', regression_names)
        if term is not None:
            kwargs.update({f'{prefix}_loss_weight': term.weight,
                           f'{prefix}_top_k_percent': term.top_k_percent,
                           f'{prefix}_loss_name': term.name})
    if not any(kwargs.get(f'{p}_loss_weight') is not None
               for p in ('semantic', 'center', 'regression')):
        raise config_lib.ConfigError(
            f'{_FIELD} sets no loss: set at least semantic_loss.')
    return panoptic_deeplab.PanopticDeepLabLoss(
        num_classes=descriptor.num_classes,
        ignore_label=descriptor.ignore_label, **kwargs)


def _term(options, field, supported_names):
    if not options.HasField(field):
        return None
    term = getattr(options, field)
    if term.name not in supported_names:
        raise config_lib.ConfigError(
            f'Unknown {_FIELD}.{field}.name {term.name!r}; supported: '
            f'{", ".join(supported_names)}.')
    if not 0.0 <= term.top_k_percent <= 1.0:
        raise config_lib.ConfigError(
            f'{_FIELD}.{field}.top_k_percent must lie in [0, 1], got '
            f'{term.top_k_percent}.')
    return term
