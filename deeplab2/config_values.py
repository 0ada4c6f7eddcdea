"""Numeric config values that can never work, found at load time.

A config that asks for `batch_size: -3` or `crop_size: 0` would otherwise
fail deep inside TF (`Dimension -3 must be >= 0`), or after a first loop of
training (`step % save_checkpoints_steps` with 0). `find_impossible_values`
lists such values by their field path; `config.load_config` raises one
ConfigError with all of them.

Only values that cannot work anywhere in this package (and that DeepLab2
also refuses or cannot use) are listed: each bound below was checked against
the code that reads the field. Values with a documented special meaning stay
allowed: `eval_interval: 0` (evaluate at the end only, as DeepLab2),
`keep_k_centers <= 0` (keep all), `eval_steps: -1` (the whole set),
`min/max_resize_value: 0` (no limit), `clip_gradient_norm <= 0` (no
clipping), `training_number_of_steps: 0` or a learning rate of 0.
"""

import dataclasses
import math
from typing import Iterator, Optional, Sequence, Union

from google.protobuf import message as message_lib

_DATASETS = ('train_dataset_options', 'eval_dataset_options')

ResizeValue = Optional[Union[int, Sequence[int]]]


def resize_spec(value: ResizeValue) -> Optional[tuple[int, int]]:
    """Normalizes a resize value to (height, width), or None when unset.

    None, an empty sequence, or any non-positive side means "no limit", as
    in DeepLab2 configs (`min_resize_value: 0`). One value is used for both
    sides.
    """
    if not value:
        return None
    if isinstance(value, int):
        value = (value,)
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        value = value * 2
    if len(value) != 2:
        raise ValueError(f'A resize value has one or two sides, got {value}.')
    if value[0] <= 0 or value[1] <= 0:
        return None
    return value


@dataclasses.dataclass(frozen=True)
class Bound:
    """`path` (each element, when repeated) must be >= `minimum`, or >
    `minimum` when `strict`; float values must also be finite. `reason`
    tells the user what the value is for."""
    path: str
    minimum: float
    reason: str
    strict: bool = False

    def requirement(self) -> str:
        return f'{">" if self.strict else ">="} {_shown(self.minimum)}'

    def holds(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return value > self.minimum if self.strict else value >= self.minimum


def _dataset_bounds(field: str) -> tuple[Bound, ...]:
    return (
        Bound(f'{field}.batch_size', 1,
              'images per step, summed over all replicas'),
        Bound(f'{field}.crop_size', 1,
              'the [height, width] of crops and padded images, in pixels'),
        Bound(f'{field}.resize_factor', 0,
              '0 leaves it unset; otherwise resized sides become a multiple '
              'of it plus one'),
        Bound(f'{field}.sigma', 0,
              'the standard deviation of the center heatmap Gaussian, in '
              'pixels', strict=True),
        Bound(f'{field}.augmentations.min_scale_factor', 0,
              'the smallest random resize factor'),
        Bound(f'{field}.augmentations.scale_factor_step_size', 0,
              '0 draws the scale uniformly; otherwise the spacing of the '
              'scales drawn from'),
    )


_SOLVER = 'trainer_options.solver_options'

BOUNDS: tuple[Bound, ...] = (
    *(bound for field in _DATASETS for bound in _dataset_bounds(field)),
    Bound('trainer_options.num_checkpoints_to_keep', 1,
          'tf.train.CheckpointManager keeps at least one checkpoint'),
    Bound('trainer_options.save_checkpoints_steps', 1,
          'training saves a checkpoint every this many steps'),
    Bound('trainer_options.save_summaries_steps', 1,
          'training writes summaries every this many steps (DeepLab2 '
          'refuses < 1 too)'),
    Bound('trainer_options.steps_per_loop', 1,
          'training steps per loop (DeepLab2 refuses < 1 too)'),
    Bound(f'{_SOLVER}.training_number_of_steps', 0,
          'the step at which training stops'),
    Bound(f'{_SOLVER}.warmup_steps', 0, '0 disables the warmup'),
    Bound(f'{_SOLVER}.base_learning_rate', 0,
          'a negative rate would climb the loss'),
    Bound(f'{_SOLVER}.poly_end_learning_rate', 0,
          'a negative rate would climb the loss'),
    Bound(f'{_SOLVER}.weight_decay', 0,
          'the L2 factor; Keras refuses a negative one'),
    Bound(f'{_SOLVER}.backbone_learning_rate_multiplier', 0,
          'a negative multiplier would climb the loss in the backbone'),
    Bound('evaluator_options.eval_interval', 0,
          'train_and_eval evaluates every this many steps; 0 only at the '
          'end'),
    Bound('evaluator_options.nms_kernel', 1,
          'the max-pooling window of the center NMS, in pixels'),
    Bound('evaluator_options.eval_scales', 0,
          'factors the input is resized by', strict=True),
)


def find_impossible_values(config: message_lib.Message) -> list[str]:
    """One line per value of `config` (an ExperimentOptions) that cannot
    work: `path is value: must be >= bound (reason).`"""
    problems = []
    for bound in BOUNDS:
        for path, value in _values_at(config, bound.path):
            if not bound.holds(value):
                problems.append(f'{path} is {_shown(value)}: must be '
                                f'{bound.requirement()} ({bound.reason}).')
    for field in _DATASETS:
        options = getattr(config, field)
        augmentations = options.augmentations
        low = augmentations.min_scale_factor
        high = augmentations.max_scale_factor
        # Equal factors turn random scaling off; an inverted range has no
        # scale to draw from.
        if low > high:
            problems.append(
                f'{field}.augmentations.min_scale_factor is {_shown(low)}: '
                f'must be <= {field}.augmentations.max_scale_factor '
                f'({_shown(high)}).')
        problems.extend(_resize_beyond_crop(options, field))
    return problems


def _resize_beyond_crop(options: message_lib.Message,
                        field: str) -> list[str]:
    """DeepLab2 pads resized images to the crop, so a max_resize_value
    larger than crop_size fails in the input pipeline; in train_and_eval the
    eval side would only fail after training. Reported here instead.
    `options` is the DatasetOptions at `field`."""
    crop = list(options.crop_size)
    if len(crop) != 2 or min(crop) < 1:
        return []  # crop_size's own bound or the pipeline reports it
    try:
        limit = resize_spec(list(options.max_resize_value))
    except ValueError as error:
        return [f'{field}.max_resize_value: {error}']
    if limit and (limit[0] > crop[0] or limit[1] > crop[1]):
        return [f'{field}.max_resize_value is {limit[0]}x{limit[1]}: must '
                f'fit {field}.crop_size ({crop[0]}x{crop[1]}); resized '
                'images are padded to the crop (one value sets both '
                'sides).']
    return []


def _values_at(message: message_lib.Message,
               path: str) -> Iterator[tuple[str, object]]:
    """(shown path, value) of the field at dotted `path`; one pair per
    element, with `[i]` in the path, for a repeated field."""
    *parents, name = path.split('.')
    for parent in parents:
        message = getattr(message, parent)
    value = getattr(message, name)
    if isinstance(value, (int, float)):
        yield path, value
    else:
        for index, element in enumerate(value):
            yield f'{path}[{index}]', element


def _shown(value) -> str:
    """Floats as a person typed them: float32 fields read back as
    -0.009999999776482582 for -0.01."""
    if isinstance(value, float):
        return f'{value:.7g}'
    return str(value)
