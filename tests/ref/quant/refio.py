"""The reference-vector container read by tests/quant/ref_file.h: a magic line,
then records (name, dtype, shape, raw little-endian data). dtype codes are
libftq's ftq_dtype values (src/core/dtype.h)."""
import struct

import numpy as np

MAGIC = b"FTQREF1\n"
DTYPES = {"f32": 0, "f16": 1, "bf16": 2, "f64": 3, "i8": 4, "u8": 5, "i32": 8, "i64": 10}
NP = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16, "f64": np.float64, "i8": np.int8,
      "u8": np.uint8, "i32": np.int32, "i64": np.int64}


class Writer:
    def __init__(self):
        self.records = []
        self.names = set()

    def add(self, name, array, dtype=None):
        a = np.asarray(array)
        if dtype is None:
            dtype = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.float64): "f64",
                     np.dtype(np.int8): "i8", np.dtype(np.uint8): "u8", np.dtype(np.int32): "i32",
                     np.dtype(np.int64): "i64"}[a.dtype]
        a = np.ascontiguousarray(a.astype(NP[dtype], copy=False))
        assert name not in self.names, name
        self.names.add(name)
        self.records.append((name, dtype, a))

    def add_text(self, name, text):
        self.add(name, np.frombuffer(text.encode(), dtype=np.uint8), "u8")

    def save(self, path):
        with open(path, "wb") as f:
            f.write(MAGIC)
            for name, dtype, a in self.records:
                nb = name.encode()
                shape = a.shape if a.ndim else (1,)
                f.write(struct.pack("<I", len(nb)) + nb)
                f.write(struct.pack("<II", DTYPES[dtype], len(shape)))
                f.write(struct.pack("<%dq" % len(shape), *shape))
                data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
                f.write(struct.pack("<Q", len(data)) + data)


def load(path):
    out = {}
    inv = {v: k for k, v in DTYPES.items()}
    with open(path, "rb") as f:
        assert f.read(len(MAGIC)) == MAGIC
        while True:
            h = f.read(4)
            if not h:
                break
            (ln,) = struct.unpack("<I", h)
            name = f.read(ln).decode()
            dt, nd = struct.unpack("<II", f.read(8))
            shape = struct.unpack("<%dq" % nd, f.read(8 * nd))
            (nbytes,) = struct.unpack("<Q", f.read(8))
            a = np.frombuffer(f.read(nbytes), dtype=np.dtype(NP[inv[dt]]).newbyteorder("<")).reshape(shape)
            out[name] = (inv[dt], a)
    return out
