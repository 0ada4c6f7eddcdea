"""Exported TFLite and ONNX files run as users run them: LiteRT
(`ai-edge-litert`) and ONNX Runtime, with numpy and without TensorFlow.

    run = runtimes.load('model.tflite')    # or 'model.onnx'
    maps = run(images)                     # uint8 [B, H, W, 3] -> {key: array}

`load` picks the runtime by the file's suffix (`SUFFIXES`); the returned
`ExportedFile` checks its input against what the file declares (uint8, the
exported size) and fails naming both, runs a TFLite file (batch 1) once per
image, and returns every output under its serving name.
"""

import os

import numpy as np

from deeplab2 import serving

# File suffix -> runtime.
SUFFIXES = {'.tflite': 'litert', '.onnx': 'onnxruntime'}


class ExportedFile:
    """A loaded TFLite/ONNX export; call it on a uint8 [B, H, W, 3] batch.

    Attributes:
      path: the file.
      runtime: 'litert' or 'onnxruntime'.
      input_size: (height, width) the file takes, or None for any.
      output_names: what the file returns.
    """

    def __init__(self, path, runtime, run_batch, input_size, batch_size,
                 output_names):
        self.path = path
        self.runtime = runtime
        self.input_size = input_size
        self.output_names = tuple(output_names)
        self._run_batch = run_batch
        self._batch_size = batch_size

    def __call__(self, images) -> dict:
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f'{self.path} takes uint8 RGB images (0-255); got '
                            f'dtype {images.dtype}.')
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f'{self.path} takes images [batch, height, '
                             f'width, 3]; got shape {images.shape}.')
        if (self.input_size is not None
                and tuple(images.shape[1:3]) != self.input_size):
            height, width = self.input_size
            raise ValueError(
                f'{self.path} was exported for {height}x{width} images '
                f'(--crop_size={height},{width}); got '
                f'{images.shape[1]}x{images.shape[2]}. Resize or pad them, '
                'or export again at their size.')
        if self._batch_size is None or images.shape[0] == self._batch_size:
            return self._run_batch(images)
        parts = [self._run_batch(image[None]) for image in images]
        return {key: np.concatenate([part[key] for part in parts])
                for key in parts[0]}


def load(path, num_threads: int | None = None) -> ExportedFile:
    """The runtime for `path`'s suffix, loaded (num_threads: the runtime's
    CPU threads; None: its default).

    Raises:
      FileNotFoundError: no such file.
      ValueError: an unknown suffix, or a file the runtime cannot read.
      ImportError: the runtime is not installed (with the pip command).
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f'{path} not found (expected a .tflite or .onnx file, or a '
            'SavedModel folder).')
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f'{path}: unknown model file type {suffix or "(no suffix)"!r}; '
            f'expected {" or ".join(SUFFIXES)} (or a SavedModel folder).')
    if SUFFIXES[suffix] == 'litert':
        return _load_litert(path, num_threads)
    return _load_onnx(path, num_threads)


def _load_litert(path, num_threads):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(f'Running {path} needs LiteRT: pip install '
                          '"ai-edge-litert" (or pip install -e '
                          '".[litert]").') from error
    try:
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        runner = interpreter.get_signature_runner(serving.DEFAULT_SIGNATURE)
    except (ValueError, RuntimeError) as error:
        raise ValueError(f'{path} is not a TFLite export with a '
                         f'{serving.DEFAULT_SIGNATURE!r} signature: '
                         f'{error}') from error
    inputs = runner.get_input_details()
    if serving.IMAGES_INPUT not in inputs:
        raise ValueError(f'{path}: {serving.DEFAULT_SIGNATURE} takes '
                         f'{sorted(inputs)}, expected '
                         f'{serving.IMAGES_INPUT!r}.')
    shape = [int(size) for size in
             inputs[serving.IMAGES_INPUT]['shape_signature']]
    batch = shape[0] if shape[0] > 0 else None
    size = tuple(shape[1:3]) if min(shape[1:3]) > 0 else None

    def run_batch(images):
        return {key: np.asarray(value) for key, value in runner(
            **{serving.IMAGES_INPUT: images}).items()}

    return ExportedFile(path, 'litert', run_batch, size, batch,
                        sorted(runner.get_output_details()))


def _load_onnx(path, num_threads):
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(f'Running {path} needs ONNX Runtime: pip install '
                          'onnxruntime (or pip install -e ".[onnx]").'
                          ) from error
    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    try:
        session = onnxruntime.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
    except Exception as error:  # onnxruntime raises its own error types
        raise ValueError(f'{path} is not an ONNX model onnxruntime can '
                         f'run: {error}') from error
    inputs = {node.name: node for node in session.get_inputs()}
    if serving.IMAGES_INPUT not in inputs:
        raise ValueError(f'{path} takes {sorted(inputs)}, expected '
                         f'{serving.IMAGES_INPUT!r}.')
    shape = inputs[serving.IMAGES_INPUT].shape
    size = (tuple(shape[1:3]) if all(isinstance(value, int)
                                     for value in shape[1:3]) else None)
    names = [node.name for node in session.get_outputs()]

    def run_batch(images):
        values = session.run(names, {serving.IMAGES_INPUT: images})
        return dict(zip(names, values))

    return ExportedFile(path, 'onnxruntime', run_batch, size, None, names)
