"""Writes beam_2_77_descriptors.pb: the FileDescriptorSet of Apache Beam's model protos,
taken from the generated `*_pb2` modules of the installed apache-beam wheel.

Run with apache-beam==2.77.0 installed:   python dump_beam_descriptors.py
With --check it writes nothing and fails when the committed file differs from the wheel's
(the test script runs that, so the fixture cannot drift from what Beam ships).
The comparison itself is ../proto_wire_contract.rs.
"""
import importlib
import pathlib
import sys

import apache_beam
from google.protobuf import descriptor_pb2

MODULES = [
    "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.beam_runner_api_pb2",
    "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.endpoints_pb2",
    "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.metrics_pb2",
    "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.schema_pb2",
    "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.standard_window_fns_pb2",
    "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.external_transforms_pb2",
    "apache_beam.portability.api.org.apache.beam.model.fn_execution.v1.beam_fn_api_pb2",
    "apache_beam.portability.api.org.apache.beam.model.fn_execution.v1.beam_provision_api_pb2",
    "apache_beam.portability.api.org.apache.beam.model.job_management.v1.beam_job_api_pb2",
    "apache_beam.portability.api.org.apache.beam.model.job_management.v1.beam_artifact_api_pb2",
]
OUT = pathlib.Path(__file__).with_name("beam_2_77_descriptors.pb")


def descriptor_set():
    if apache_beam.__version__ != "2.77.0":
        sys.exit(f"apache-beam 2.77.0 needed, found {apache_beam.__version__}")
    files = {}

    def add(fd):
        if fd.name in files:
            return
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        files[fd.name] = proto

    for name in MODULES:
        add(importlib.import_module(name).DESCRIPTOR)
    out = descriptor_pb2.FileDescriptorSet()
    out.file.extend(files[name] for name in sorted(files))
    return out.SerializeToString(deterministic=True)


def main():
    data = descriptor_set()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_bytes() != data:
            sys.exit(f"{OUT.name} differs from apache-beam 2.77.0's descriptors: rerun {__file__}")
        print(f"{OUT.name}: matches apache-beam 2.77.0")
        return
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
