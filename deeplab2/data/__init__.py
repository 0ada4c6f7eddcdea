"""Datasets, TFRecords and the input pipeline.

Names load on first use: the dataset descriptors are plain Python, the
pipeline imports TensorFlow, and converter workers need only the former.
"""

from deeplab2 import lazy_exports

_EXPORTS = {
    'DatasetDescriptor': 'deeplab2.data.datasets',
    'get_dataset_descriptor': 'deeplab2.data.datasets',
    'build_dataset': 'deeplab2.data.input_pipeline',
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports.attach(__name__, _EXPORTS)
