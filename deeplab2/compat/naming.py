"""Checkpoint keys of a model's variables, in our spelling and DeepLab2's.

A model's parts are checkpointed under DeepLab2's item names (`encoder`,
`semantic_decoder`, ...; `DeepLab.checkpoint_items`) and our layers keep
DeepLab2's attribute names, so a variable's key differs between the two
implementations only where Keras 3 names a variable differently than
tf.keras did.
"""

import keras
import tensorflow as tf

from deeplab2 import private_api

VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


def deeplab2_key(our_key: str) -> str:
    """Our checkpoint key in DeepLab2's spelling.

    Keras 3 keeps a Conv2D kernel in the attribute `_kernel` and a
    DepthwiseConv2D kernel in `kernel`; tf.keras called them `kernel` and
    `depthwise_kernel`. Every other path segment is the same by design.
    """
    key = our_key.replace('/_kernel/', '/kernel/')
    return key.replace('/_depthwise_conv/kernel/',
                       '/_depthwise_conv/depthwise_kernel/')


def variable_keys(items: dict) -> dict[str, keras.Variable]:
    """{our checkpoint key: variable} for tf.train.Checkpoint(**items)."""
    root = tf.train.Checkpoint(**items)  # the view only holds a weak ref
    # TF's own traversal, so that our keys are exactly those a save writes.
    view = private_api.ObjectGraphView(root)
    objects, _, _, _, names = (
        private_api.objects_ids_and_slot_variables_and_paths(view))
    return {names[obj] + VALUE_SUFFIX: obj for obj in objects
            if isinstance(obj, (keras.Variable, tf.Variable))}
