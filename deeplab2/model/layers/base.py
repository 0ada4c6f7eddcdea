"""The Layer base class every deeplab2 layer derives from.

Keras 3 hides layers held in Python lists from `tf.train.Checkpoint` (it
tracks them only for SavedModel), so a checkpoint of a model whose blocks sit
in a list would silently miss their weights. DeepLab2 keeps some blocks in
lists (MobileNet's `_blocks`), and its checkpoints address them as
`_blocks/<i>/...`; this base class exposes such lists to checkpoints under
the same path.
"""

import keras

from deeplab2 import private_api


class Layer(keras.layers.Layer):
    """keras.layers.Layer whose lists of layers are checkpointed too.

    Composite layers create their sub-layers in __init__ and those build
    themselves on their first call; `build` only marks the layer built, so
    Keras does not trace `call` symbolically to discover weights (which
    fails on dict inputs and costs a second pass).
    """

    def build(self, input_shape=None):
        self.built = True

    def _trackable_children(self, save_type='checkpoint', **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        if save_type != 'checkpoint':
            return children
        # The saver asks for children several times and matches them by
        # identity, so each list keeps one wrapper while its items are
        # unchanged. Stored through vars() to stay out of Keras' tracking.
        wrappers = vars(self).setdefault('_checkpoint_list_wrappers', {})
        for name, value in list(vars(self).items()):
            if not (isinstance(value, private_api.TrackedList) and value
                    and all(isinstance(item, keras.layers.Layer)
                            for item in value)):
                continue
            wrapper = wrappers.get(name)
            if wrapper is None or len(wrapper) != len(value) or any(
                    a is not b for a, b in zip(wrapper, value)):
                wrapper = private_api.wrap_trackable_list(list(value))
                wrappers[name] = wrapper
            children[name] = wrapper
        return children
