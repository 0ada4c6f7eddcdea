"""Networks: layers, encoders, decoders, the DeepLab model and its builder.

Names load on first use (they import TensorFlow and Keras).
"""

from deeplab2 import lazy_exports

_EXPORTS = {
    'DeepLab': 'deeplab2.model.deeplab',
    'build_model': 'deeplab2.model.builder',
    'build_inference': 'deeplab2.model.inference',
    'build_postprocessor': 'deeplab2.model.postprocess',
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports.attach(__name__, _EXPORTS)
