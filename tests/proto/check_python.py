#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Compiles proto/ for Python with Debian's protoc and imports every module.

This is the base the gRPC conformance tests build on: a client nobody here
wrote (grpcio + protobuf) must see the same protocol rmq compiles.  Run with
Debian's /usr/bin/python3, which has python3-grpcio and python3-protobuf.
Exits 0 when every module imports and every service resolves.
"""
import argparse
import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()

    proto_dir = pathlib.Path(args.proto_dir).resolve()
    out = pathlib.Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    subprocess.run(
        ["protoc", "--fatal_warnings", f"-I{proto_dir}", "-I/usr/include",
         f"--python_out={out}", *protos],
        check=True, cwd=proto_dir)

    import grpc  # noqa: F401  (python3-grpcio must be importable)
    sys.path.insert(0, str(out))
    services = 0
    messages = 0
    for rel in protos:
        name = rel[:-len(".proto")].replace("/", ".") + "_pb2"
        if name.startswith("grpc."):
            # grpcio owns the "grpc" package name (its health module ships
            # separately), so the vendored grpc.health.v1 file is loaded
            # by path; its messages still register as grpc.health.v1.*.
            path = out / (rel[:-len(".proto")] + "_pb2.py")
            spec = importlib.util.spec_from_file_location("rmq_" + name.replace(".", "_"), path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(name)
        fd = mod.DESCRIPTOR
        for svc in fd.services_by_name.values():
            services += 1
            for m in svc.methods:
                # Request and response types must resolve to real classes.
                assert m.input_type.full_name and m.output_type.full_name, m.full_name
        messages += len(fd.message_types_by_name)

    # A RecordBatch encoded by Python decodes to the same fields: the wire
    # format both sides share.
    types_pb2 = importlib.import_module("common.types_pb2")
    b = types_pb2.RecordBatch(magic=2, base_offset=7, record_count=1)
    b.records.add(key=b"k", value=b"v")
    again = types_pb2.RecordBatch.FromString(b.SerializeToString())
    assert again == b

    if services < 12 or messages < 100:
        print(f"too few services ({services}) or messages ({messages})", file=sys.stderr)
        return 1
    print(f"python: {len(protos)} modules, {services} services, {messages} top-level messages import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
