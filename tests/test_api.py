"""The public Python API: `import deeplab2` stays free of TensorFlow, every
advertised name resolves, and the README's "Python API" example runs."""

import importlib
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
from PIL import Image
import pytest

import deeplab2

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBPACKAGES = ('deeplab2.compat', 'deeplab2.data', 'deeplab2.evaluation',
               'deeplab2.loss', 'deeplab2.model', 'deeplab2.trainer')
# What converter worker processes import: none of it may load TensorFlow.
TENSORFLOW_FREE = ('deeplab2', *SUBPACKAGES, 'deeplab2.serving',
                   'deeplab2.evaluation.coco_panoptic_format',
                   'deeplab2.data.datasets', 'deeplab2.files',
                   'deeplab2.progress', 'deeplab2.panoptic_png',
                   # Runs exported files where TensorFlow is not installed.
                   'deeplab2.runtimes',
                   # What converter worker processes import.
                   'deeplab2.data.conversion',
                   'deeplab2.data.conversion_flags',
                   'deeplab2.data.cityscapes_annotations',
                   'deeplab2.data.coco_annotations',
                   'deeplab2.data.dataset_spec')


def test_importing_the_packages_does_not_load_tensorflow():
    code = (f'import sys\nfor name in {TENSORFLOW_FREE!r}:\n'
            '    __import__(name)\n'
            "print(sorted(m for m in ('tensorflow', 'keras', 'pycocotools')"
            ' if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_top_level_api():
    assert deeplab2.__all__ == [
        'load_config', 'build_model', 'restore_checkpoint', 'Predictor',
        'export_model', 'PanopticQuality', 'MeanIoU', 'InstanceAP']
    assert deeplab2.Predictor.__module__ == 'deeplab2.predictor'
    assert deeplab2.export_model.__module__ == 'deeplab2.export'
    assert set(deeplab2.__all__) <= set(dir(deeplab2))
    with pytest.raises(AttributeError, match="no attribute 'Predicter'"):
        deeplab2.Predicter  # noqa: B018


@pytest.mark.parametrize('name', ('deeplab2',) + SUBPACKAGES)
def test_every_advertised_name_resolves(name):
    package = importlib.import_module(name)
    assert package.__doc__, f'{name} has no docstring'
    assert package.__all__, f'{name} advertises nothing'
    for attribute in package.__all__:
        value = getattr(package, attribute)
        assert getattr(value, '__name__', attribute) == attribute, (
            f'{name}.{attribute} is {value!r}')


def _readme_python_api_example() -> str:
    text = (REPO_ROOT / 'README.md').read_text()
    section = text.split('\n## Python API\n', 1)[1].split('\n## ', 1)[0]
    (block,) = re.findall(r'^```python\n(.*?)^```', section,
                          re.MULTILINE | re.DOTALL)
    return block


def test_readme_example_runs(tmp_path, monkeypatch):
    """The example as written, with its two paths pointed at a checkpoint
    of random weights and a small image written here."""
    example = _readme_python_api_example()
    config = deeplab2.load_config(
        REPO_ROOT / 'configs/demo/panoptic_deeplab_mobilenet_v3_small_os16'
        '.textproto')
    from deeplab2 import compat
    keras.utils.set_random_seed(0)  # weights that keep some segments
    checkpoint = compat.save_model_checkpoint(deeplab2.build_model(config),
                                              tmp_path / 'ckpt' / 'ckpt')
    image = np.random.default_rng(0).integers(0, 256, [49, 81, 3], np.uint8)
    Image.fromarray(image).save(tmp_path / 'street.jpg', quality=95)
    for written, here in [('/tmp/deeplab2_demo', checkpoint),
                          ('/photos/street.jpg', tmp_path / 'street.jpg')]:
        assert f"'{written}'" in example
        example = example.replace(f"'{written}'", repr(str(here)))
    monkeypatch.chdir(REPO_ROOT)  # the config path is relative to the repo
    namespace = {}
    exec(compile(example, 'README.md (Python API)', 'exec'), namespace)
    assert namespace['panoptic'].shape == namespace['semantic'].shape == (
        49, 81)
    # Each pixel's panoptic class is its semantic class, or void where
    # post-processing dropped a small segment.
    labels = deeplab2.data.get_dataset_descriptor('demo')
    classes = namespace['panoptic'] // labels.panoptic_label_divisor
    kept = classes != labels.ignore_label
    assert kept.any()
    np.testing.assert_array_equal(classes[kept], namespace['semantic'][kept])
