"""Coders, named as Beam's ``apache_beam.coders``: state specs and ``with_output_types``
accept them. Beamline encodes Python values itself (the engine's standard coders for
numbers, strings, bytes, tuples and lists; pickle for others), so a coder given to a spec
documents the type; ``encode``/``decode`` use Beam's byte formats where Beam has one."""

import pickle
import struct

__all__ = [
    "BooleanCoder", "BytesCoder", "Coder", "FastPrimitivesCoder", "FloatCoder", "IterableCoder",
    "ListCoder", "NullableCoder", "PickleCoder", "StrUtf8Coder", "TupleCoder", "VarIntCoder",
]


class Coder:
    """Encodes values of one type to bytes and back."""

    def encode(self, value):
        return pickle.dumps(value)

    def decode(self, encoded):
        return pickle.loads(encoded)

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash(type(self))

    def __repr__(self):
        return f"{type(self).__name__}()"


class BytesCoder(Coder):
    """Bytes as they are."""

    def encode(self, value):
        return bytes(value)

    def decode(self, encoded):
        return bytes(encoded)


class StrUtf8Coder(Coder):
    """Strings as UTF-8."""

    def encode(self, value):
        return value.encode("utf-8")

    def decode(self, encoded):
        return bytes(encoded).decode("utf-8")


class VarIntCoder(Coder):
    """Integers as Beam's varint (two's complement, 64 bits)."""

    def encode(self, value):
        v = value & 0xFFFFFFFFFFFFFFFF
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                return bytes(out)

    def decode(self, encoded):
        v = shift = 0
        for b in bytes(encoded):
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return v - (1 << 64) if v >= 1 << 63 else v


class FloatCoder(Coder):
    """Floats as big-endian IEEE doubles."""

    def encode(self, value):
        return struct.pack(">d", value)

    def decode(self, encoded):
        return struct.unpack(">d", bytes(encoded))[0]


class BooleanCoder(Coder):
    """Booleans as one byte."""

    def encode(self, value):
        return b"\x01" if value else b"\x00"

    def decode(self, encoded):
        return bytes(encoded) != b"\x00"


class PickleCoder(Coder):
    """Any picklable value."""


class FastPrimitivesCoder(Coder):
    """Any value (pickled here)."""

    def __init__(self, fallback_coder=None):
        self.fallback_coder = fallback_coder


class _Composite(Coder):
    def __init__(self, *components):
        self.components = components


class TupleCoder(_Composite):
    """Tuples of the component coders' values."""

    def __init__(self, components):
        super().__init__(*components)


class IterableCoder(_Composite):
    """Iterables of the element coder's values."""

    def __init__(self, elem_coder):
        super().__init__(elem_coder)


class ListCoder(IterableCoder):
    """Lists of the element coder's values."""


class NullableCoder(_Composite):
    """The value coder's values, or None."""

    def __init__(self, value_coder):
        super().__init__(value_coder)
