"""`python -m deeplab2.config`: check a config and print it with the
overrides applied, listing the `${...}` placeholders still to set.

Kept apart from loading so that `deeplab2.config` holds no argument parsing;
`deeplab2.config.main` hands over to `main` here.
"""

import argparse
import sys
from typing import Sequence

from google.protobuf import text_format

from deeplab2 import config as config_lib


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m deeplab2.config',
        description='Parse a DeepLab2 textproto config, apply overrides and '
        'print the result; placeholders left to set are listed.')
    parser.add_argument('--config_file', required=True)
    parser.add_argument('--config_override', action='append', default=[],
                        metavar='PATH=VALUE',
                        help='dotted.field.path=value; may repeat')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the config (stdout) and notes (stderr); 1 on a bad config."""
    args = _parser().parse_args(argv)
    try:
        config = config_lib.load_config(args.config_file,
                                        args.config_override)
    except (config_lib.ConfigError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    text = text_format.MessageToString(config)
    print(text, end='' if text.endswith('\n') else '\n')
    placeholders = config_lib.find_placeholders(config)
    for path, value in placeholders:
        print(f'note: {path} is still {value!r}; set it with '
              f'--config_override before using it.', file=sys.stderr)
    print(f'{args.config_file}: OK ({len(placeholders)} placeholders left)',
          file=sys.stderr)
    return 0
