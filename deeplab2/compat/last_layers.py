"""Which last layers a checkpoint restores: DeepLab2's
`restore_semantic_last_layer_from_initial_checkpoint` and
`restore_instance_last_layer_from_initial_checkpoint`.

In DeepLab2 (trainer/train_lib.py) a flag set to false removes checkpoint
items from what the initial checkpoint restores: the semantic flag the
`semantic_last_layer` item (the classifier's final convolution), the instance
flag the last layers of the instance center and regression heads. Both
default to true, and a true flag restores its layers like any other, so a
checkpoint with another number of classes fails to load.

Here a flag the config sets keeps exactly that meaning (true: the layer must
restore, and a shape that cannot match is an error naming the flag; false:
the model keeps its own initialization). A flag left unset restores its
layers when their shapes match the checkpoint's and otherwise keeps the
model's initialization, so that fine-tuning for another class count needs
no flag; RestoreSummary names the variables kept that way.
"""

import dataclasses
import enum

from deeplab2 import common

SEMANTIC_FLAG = 'restore_semantic_last_layer_from_initial_checkpoint'
INSTANCE_FLAG = 'restore_instance_last_layer_from_initial_checkpoint'
# The checkpoint items each flag governs (DeepLab2's Motion-DeepLab head,
# which the instance flag also covers there, has no counterpart here).
FLAG_ITEMS = {
    SEMANTIC_FLAG: (common.CKPT_SEMANTIC_LAST_LAYER,),
    INSTANCE_FLAG: (common.CKPT_INSTANCE_CENTER_HEAD_LAST_LAYER,
                    common.CKPT_INSTANCE_REGRESSION_HEAD_LAST_LAYER),
}


class Mode(enum.Enum):
    RESTORE = 'restore'  # restored; a shape mismatch is an error
    KEEP = 'keep'  # not read: the model's own values stay
    # Restored when every variable of the layer has the checkpoint's shape;
    # otherwise the whole layer keeps the model's values.
    IF_SHAPES_MATCH = 'if_shapes_match'


@dataclasses.dataclass(frozen=True)
class Rule:
    """How the layers behind one flag are restored.

    Attributes:
      flag: the ModelOptions field (SEMANTIC_FLAG or INSTANCE_FLAG).
      mode: what to do with its layers.
      from_config: the mode is the value a config set for the flag, so an
        error about these layers names the flag as the reason.
    """
    flag: str
    mode: Mode
    from_config: bool = False

    @property
    def items(self) -> tuple[str, ...]:
        return FLAG_ITEMS[self.flag]

    def keep_reason(self) -> str:
        return f'{self.flag} is false'

    def shape_reason(self, item: str) -> str:
        return (f'{item}: shape differs from the checkpoint\'s and '
                f'{self.flag} is unset, so the model\'s own initialization '
                'is kept')

    def forced_restore_note(self, item: str, mismatches: list[str]) -> str:
        """Why a mis-shaped `item` is an error rather than kept."""
        return (f'  model_options.{self.flag} is true, so {item} must be '
                f'restored, but its shape differs from the checkpoint\'s '
                f'({"; ".join(mismatches)}). Set the flag to false, or leave '
                'it unset, to keep the model\'s freshly initialized layer '
                'instead (e.g. to fine-tune for another number of classes).')


def from_flags(restore_semantic_last_layer: bool,
               restore_instance_last_layer: bool) -> list[Rule]:
    """Rules for plain true/false choices (not read from a config, so a
    shape error does not blame a flag)."""
    return [Rule(flag, Mode.RESTORE if restore else Mode.KEEP)
            for flag, restore in ((SEMANTIC_FLAG, restore_semantic_last_layer),
                                  (INSTANCE_FLAG, restore_instance_last_layer))]


def from_model_options(model_options) -> list[Rule]:
    """Rules for an initial checkpoint, from ModelOptions' two flags: set
    ones as DeepLab2 means them, unset ones restore what fits (module
    docstring)."""
    rules = []
    for flag in (SEMANTIC_FLAG, INSTANCE_FLAG):
        if not model_options.HasField(flag):
            rules.append(Rule(flag, Mode.IF_SHAPES_MATCH))
        elif getattr(model_options, flag):
            rules.append(Rule(flag, Mode.RESTORE, from_config=True))
        else:
            rules.append(Rule(flag, Mode.KEEP, from_config=True))
    return rules
