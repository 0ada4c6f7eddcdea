"""What every command line tool shares: user errors as one line, and a quiet
TensorFlow start-up.

A CLI imports this module before anything that loads TensorFlow and ends
with `cli.run(main)` instead of `app.run(main)`:

- a user error (bad config, missing file, corrupt data: see `is_user_error`)
  prints `error: <message>` on stderr and exits with status 2, without a
  traceback; `--verbose` or DEEPLAB2_VERBOSE=1 re-raises it instead;
- TensorFlow's C++ start-up log (oneDNN, CUDA probing, CPU features) stays
  out of the terminal unless verbose.

On TensorFlow 2.21, TF_CPP_MIN_LOG_LEVEL silences C++ logging only once
absl's log is initialized: the lines printed while TensorFlow's libraries
load ("All log messages before absl::InitializeLog() ...", oneDNN,
"Could not find cuda drivers") and the cuInit error of device discovery
ignore it, as do GLOG_minloglevel, ABSL_MIN_LOG_LEVEL and
TF_CPP_MAX_VLOG_LEVEL. So `run` also imports TensorFlow and discovers the
devices with stderr captured, and passes on every captured line but those.
"""

import os
import re
import sys
import tempfile

from absl import app
from absl import flags

# Read by TensorFlow when it loads, so set now; setdefault: a user's own
# value wins. 2 keeps C++ errors and drops INFO and WARNING (MLIR passes,
# XLA service lines) for the rest of the run.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

VERBOSE_ENVIRONMENT_VARIABLE = 'DEEPLAB2_VERBOSE'
USER_ERROR_EXIT_CODE = 2

_VERBOSE = flags.DEFINE_boolean(
    'verbose', False,
    f'Show the traceback of an error and TensorFlow\'s start-up log (or set '
    f'{VERBOSE_ENVIRONMENT_VARIABLE}=1).')

# Python errors our code raises for bad input (ConfigError, CorruptDataError
# and CheckpointMismatchError are ValueErrors), FloatingPointError for a
# diverged training (NonFiniteLossError names the step and the loss term),
# ImportError for a missing optional package (the message says what to
# install).
_USER_ERRORS = (OSError, ValueError, ImportError, FloatingPointError)
# TensorFlow's errors for input it cannot find, read or accept.
_TENSORFLOW_USER_ERRORS = ('NotFoundError', 'DataLossError',
                           'InvalidArgumentError', 'PermissionDeniedError')

# A C++ log line in absl's format ("I0000 00:00:1796041229.686442  5074
# port.cc:153] ...") or TensorFlow's older one ("2025-09-17
# 14:44:05.157831: I external/.../cudart_stub.cc:32] ...").
_CPP_LOG_LINE = re.compile(
    rb'^(?:(?P<absl>[IWEF])\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ |'
    rb'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<older>[IWEF]) )\S+:\d+\] ')
_ABSL_PREAMBLE = (b'WARNING: All log messages before absl::InitializeLog() '
                  b'is called are written to STDERR')
# Start-up messages dropped whatever their level: about how TensorFlow was
# built, the CUDA probe of a machine without a GPU, and CUDA plugins
# registered twice (harmless, on GPU machines).
_START_UP_NOISE = (b'oneDNN custom operations are on',
                   b'Could not find cuda drivers',
                   b'failed call to cuInit',
                   b'rebuild TensorFlow with the appropriate compiler flags',
                   b'This TensorFlow binary is optimized to use available',
                   b'Unable to register cu')


def run(main):
    """app.run(main), with user errors printed as one line (see above)."""
    app.run(lambda argv: _run_reporting_errors(main, argv))


def verbose() -> bool:
    """--verbose, or DEEPLAB2_VERBOSE set to anything but '' or '0'."""
    if os.environ.get(VERBOSE_ENVIRONMENT_VARIABLE, '') not in ('', '0'):
        return True
    return flags.FLAGS.is_parsed() and _VERBOSE.value


def is_user_error(error: BaseException) -> bool:
    """Whether `error` is about the user's input rather than a bug here."""
    if isinstance(error, _USER_ERRORS):
        return True
    # Not imported for this: if TensorFlow is not loaded, nothing raised one.
    tensorflow = sys.modules.get('tensorflow')
    errors = getattr(tensorflow, 'errors', None)
    return errors is not None and isinstance(error, tuple(
        getattr(errors, name) for name in _TENSORFLOW_USER_ERRORS))


def error_message(error: BaseException) -> str:
    """The one line shown for a user error."""
    # TensorFlow's errors carry the op's stack in str(); .message is the text.
    message = getattr(error, 'message', None) or str(error)
    return message or type(error).__name__


def _run_reporting_errors(main, argv):
    try:
        if verbose():
            _load_tensorflow()  # with its full log
        else:
            start_tensorflow_quietly()
        return main(argv)
    except Exception as error:  # noqa: BLE001  (filtered just below)
        if verbose() or not is_user_error(error):
            raise
        print(f'error: {error_message(error)}', file=sys.stderr)
        print(f'(--verbose or {VERBOSE_ENVIRONMENT_VARIABLE}=1 shows the '
              'traceback)', file=sys.stderr)
        return USER_ERROR_EXIT_CODE


def start_tensorflow_quietly():
    """Imports TensorFlow and discovers the devices (where the CUDA probe
    logs), without the start-up noise: stderr is captured meanwhile and
    every other line written back."""
    sys.stderr.flush()
    try:
        saved_stderr = os.dup(2)
    except OSError:  # no stderr to filter
        _load_tensorflow()
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            _load_tensorflow()
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            captured.seek(0)
            kept = [line for line in captured if not _is_noise(line)]
            if kept:
                os.write(2, b''.join(kept))


def _load_tensorflow():
    import tensorflow as tf
    tf.config.list_physical_devices()


def _is_noise(line: bytes) -> bool:
    if line.startswith(_ABSL_PREAMBLE):
        return True
    if any(text in line for text in _START_UP_NOISE):
        return True
    return _below_log_level(line)


def _below_log_level(line: bytes) -> bool:
    """Whether a C++ log line is one TF_CPP_MIN_LOG_LEVEL asks to drop."""
    match = _CPP_LOG_LINE.match(line)
    if not match:
        return False
    severity = b'IWEF'.index(match['absl'] or match['older'])
    try:
        minimum = int(os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0'))
    except ValueError:
        minimum = 0
    return severity < minimum
