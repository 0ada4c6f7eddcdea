"""Reading DeepLab2 checkpoints (and ours) into models from build_model.

Names load on first use: the checkpoint code imports TensorFlow, and
`deeplab2.compat.naming` (the spelling rules alone) should not.
"""

from deeplab2 import lazy_exports

_CHECKPOINT = 'deeplab2.compat.checkpoint'
_FILES = 'deeplab2.compat.checkpoint_files'
_EXPORTS = {
    **{name: _CHECKPOINT for name in (
        'CheckpointMismatchError', 'RestoreSummary', 'convert_checkpoint',
        'restore_checkpoint', 'restore_initial_checkpoint',
        'save_model_checkpoint')},
    **{name: _FILES for name in (
        'CorruptCheckpointError', 'unreadable_is_corrupt')},
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports.attach(__name__, _EXPORTS)
