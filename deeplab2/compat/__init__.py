"""Reading DeepLab2 checkpoints (and ours) into models from build_model."""

from deeplab2.compat.checkpoint import CheckpointMismatchError
from deeplab2.compat.checkpoint import CorruptCheckpointError
from deeplab2.compat.checkpoint import RestoreSummary
from deeplab2.compat.checkpoint import convert_checkpoint
from deeplab2.compat.checkpoint import restore_checkpoint
from deeplab2.compat.checkpoint import restore_initial_checkpoint
from deeplab2.compat.checkpoint import save_model_checkpoint
from deeplab2.compat.checkpoint import unreadable_is_corrupt
