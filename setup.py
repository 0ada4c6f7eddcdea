"""Build hook: compile protos/deeplab2/*.proto into deeplab2/*_pb2.py.

Runs on every `pip install .` and `pip install -e .` (setuptools calls
build_py for both), so nobody runs protoc by hand. The modules are written
next to the sources, which is what an editable install needs and what a
regular install then packages.
"""

import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "protos"


def compile_protos():
    # Imported here: grpcio-tools exists only in the build environment.
    import grpc_tools
    from grpc_tools import protoc

    proto_files = sorted(
        str(path.relative_to(PROTO_ROOT))
        for path in (PROTO_ROOT / "deeplab2").glob("*.proto"))
    if not proto_files:
        raise RuntimeError(f"no .proto files found under {PROTO_ROOT}/deeplab2")
    well_known_protos = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    status = protoc.main([
        "protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known_protos}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        *proto_files,
    ])
    if status != 0:
        raise RuntimeError(f"protoc failed (exit {status}) on {proto_files}")


class BuildPyWithProtos(build_py):

    def run(self):
        compile_protos()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
