"""Training: the CLI, the run modes, the train step, optimizers and schedules.

Names load on first use (they import TensorFlow).
"""

from deeplab2 import lazy_exports

_EXPORTS = {
    'run': 'deeplab2.trainer.runner',
    'Trainer': 'deeplab2.trainer.trainer',
    'Evaluator': 'deeplab2.trainer.evaluator',
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports.attach(__name__, _EXPORTS)
