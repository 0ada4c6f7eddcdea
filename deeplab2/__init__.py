"""deeplab2: Panoptic-DeepLab and DeepLab2 on TensorFlow 2 / Keras 3.

The public Python API (see the README's "Python API"):

  load_config(path, overrides)      an ExperimentOptions textproto
  build_model(config)               the Keras model it describes
  restore_checkpoint(model, path)   ours or DeepLab2's weights into it
  Predictor                         images -> panoptic maps (checkpoint or
                                    exported SavedModel)
  export_model(config, model, path) SavedModel, TFLite or ONNX
  PanopticQuality, MeanIoU, InstanceAP   the evaluation metrics

Names load on first use, so `import deeplab2` alone does not import
TensorFlow (converter worker processes import the package).
"""

from deeplab2 import lazy_exports

__version__ = '0.1.0'

_EXPORTS = {
    'load_config': 'deeplab2.config',
    'build_model': 'deeplab2.model.builder',
    'restore_checkpoint': 'deeplab2.compat.checkpoint',
    'Predictor': 'deeplab2.predictor',
    'export_model': 'deeplab2.export',
    'PanopticQuality': 'deeplab2.evaluation.panoptic_quality',
    'MeanIoU': 'deeplab2.evaluation.mean_iou',
    'InstanceAP': 'deeplab2.evaluation.instance_ap',
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports.attach(__name__, _EXPORTS)
