"""Package attributes that import their module on first use (PEP 562).

`import deeplab2` runs in converter worker processes that never touch a
model; importing TensorFlow there costs seconds and hundreds of megabytes
per worker. So the package namespaces name their public entry points
without importing them: the defining module loads when a name is first
read, and stays cached on the package afterwards.
"""

import importlib
from typing import Callable, Mapping


def attach(package: str, exports: Mapping[str, str]
           ) -> tuple[Callable[[str], object], Callable[[], list]]:
    """(`__getattr__`, `__dir__`) for `package`, serving `exports`: public
    name -> the module that defines it under that name."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(
                f'module {package!r} has no attribute {name!r}')
        value = getattr(importlib.import_module(exports[name]), name)
        # Cached in the package's namespace: later reads skip this hook.
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list:
        namespace = vars(importlib.import_module(package))
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
