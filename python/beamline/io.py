"""Text files (read and written by Rust; lines never enter Python unless you map them)."""

from beamline.transforms import PTransform


class ReadFromText(PTransform):
    """Lines of the files matching a glob (``.gz`` read as gzip)."""

    def __init__(self, file_pattern):
        super().__init__()
        self.file_pattern = file_pattern

    def expand(self, pbegin):
        native = pbegin.pipeline._native.read_text(self._name(), self.file_pattern)
        return self._out(pbegin, native)


class WriteToText(PTransform):
    """Writes ``str`` of each element as a line to ``PREFIX-SSSSS-of-NNNNN[SUFFIX]``."""

    def __init__(self, file_path_prefix, file_name_suffix="", num_shards=0):
        super().__init__()
        self.prefix, self.suffix, self.num_shards = file_path_prefix, file_name_suffix, num_shards

    def expand(self, pcoll):
        native = pcoll.pipeline._native.write_text(
            pcoll._native, self._name(), self.prefix, self.suffix, self.num_shards
        )
        return self._out(pcoll, native)
