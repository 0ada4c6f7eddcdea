"""The TensorFlow and Keras internals this package relies on, in one place.

Everything else in deeplab2 uses public APIs. These few symbols have no
public equivalent:

- `keras.src.utils.tracking.TrackedList`: how Keras 3 holds a list
  attribute of a layer; base.Layer finds lists of layers by it, to expose
  them to tf.train.Checkpoint under DeepLab2's paths.
- `tf.__internal__.tracking.wrap`: turns such a list into a checkpointable
  one.
- `tensorflow.python.checkpoint.graph_view.ObjectGraphView` and
  `tensorflow.python.checkpoint.util.objects_ids_and_slot_variables_and_paths`:
  TF's own traversal of a checkpoint's object graph, so that
  compat.naming's keys are exactly those a save writes.
- `tensorflow.core.protobuf.trackable_object_graph_pb2.TrackableObjectGraph`:
  the object graph stored in a checkpoint, read to find where a variable's
  value is stored.
- `tensorflow.lite.python.convert.mlir_quantize`, with the converter's
  `_experimental_calibrate_only` flag: int8 TFLite export calibrates the
  whole model, then quantizes all but the post-processing (its ops named
  in `denylisted_nodes`), which must stay float; the public converter
  quantizes every op it can.
- `tensorflow.lite.python.schema_py_generated.ModelT`: the flatbuffer's
  object API, to list the tensors of every subgraph (the public
  interpreter shows the main one only).
- Keras optimizers' slot lists (`Adam._momentums`, `Adam._velocities`,
  `Optimizer._get_variable_index`): trainer/fused_optimizers.py updates a
  variable and its slots with one TF kernel, and finds the slots as Keras'
  own `update_step` does (`adam_slots`, `sgd_momentum`).

Each is imported once, here; a TF or Keras release that moves one fails at
import with an ImportError naming the symbol and the versions in use
(tests/test_private_api.py checks them all).
"""

import importlib

import keras
import tensorflow as tf


def resolve(module: str, attribute: str):
    """`module`.`attribute` (a dotted path inside the module), or an
    ImportError naming it and the TensorFlow and Keras versions."""
    try:
        value = importlib.import_module(module)
        for part in attribute.split('.'):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        raise ImportError(
            f'deeplab2 needs the private symbol {module}.{attribute}, which '
            f'TensorFlow {tf.__version__} / Keras {keras.__version__} do not '
            f'have ({error}). deeplab2/private_api.py lists what it is used '
            'for; pin the TensorFlow/Keras versions in requirements or port '
            'that use.') from error
    return value


TrackedList = resolve('keras.src.utils.tracking', 'TrackedList')
wrap_trackable_list = resolve('tensorflow', '__internal__.tracking.wrap')
ObjectGraphView = resolve('tensorflow.python.checkpoint.graph_view',
                          'ObjectGraphView')
objects_ids_and_slot_variables_and_paths = resolve(
    'tensorflow.python.checkpoint.util',
    'objects_ids_and_slot_variables_and_paths')
TrackableObjectGraph = resolve(
    'tensorflow.core.protobuf.trackable_object_graph_pb2',
    'TrackableObjectGraph')
mlir_quantize = resolve('tensorflow.lite.python.convert', 'mlir_quantize')
TFLiteModel = resolve('tensorflow.lite.python.schema_py_generated', 'ModelT')


def calibrate_only(converter) -> bytes:
    """A TFLiteConverter's float model with each tensor's range from its
    representative dataset recorded, not yet quantized (the input of
    `mlir_quantize`)."""
    converter._experimental_calibrate_only = True
    return converter.convert()


def adam_slots(optimizer, variable):
    """(momentum, velocity): the slot variables a built Keras Adam or AdamW
    keeps for `variable`."""
    index = optimizer._get_variable_index(variable)
    return optimizer._momentums[index], optimizer._velocities[index]


def sgd_momentum(optimizer, variable):
    """The momentum slot a built Keras SGD (momentum > 0) keeps for
    `variable`."""
    return optimizer.momentums[optimizer._get_variable_index(variable)]
