"""Generates the gRPC stubs from proto/ at build time (regular and editable installs).

The generated modules live in policy/api/ (git-ignored) and are never edited by hand.
"""
import pathlib
import re

from setuptools import setup

ROOT = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "policy" / "api"  # proto package smspolicy.v1 -> python package policy.api.v1


def generate_stubs() -> None:
    from grpc_tools import protoc
    import grpc_tools

    import shutil
    import tempfile

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(
            ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={tmp}", f"--pyi_out={tmp}",
             f"--grpc_python_out={tmp}", *protos]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(pathlib.Path(tmp) / "smspolicy", OUT)
    # protoc writes absolute imports ("from smspolicy.v1 import x_pb2"); make them package-relative
    for path in OUT.rglob("*.py"):
        text = path.read_text()
        fixed = re.sub(r"^from smspolicy\.v1 import", "from . import", text, flags=re.M)
        if fixed != text:
            path.write_text(fixed)
    for d in [OUT, *[p for p in OUT.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()


generate_stubs()
setup()
