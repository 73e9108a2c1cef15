"""Caller buffers to C pointers: NumPy arrays, any buffer-protocol object
(array.array, bytearray, memoryview, ...), raw device addresses and objects
with __cuda_array_interface__; token-id sequences to int32 arrays."""
import ctypes
import enum
import math

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class FloatType(enum.IntEnum):
    """ftq_float_type: element type of a caller's buffer."""
    FLOAT32 = 0
    FLOAT16 = 1
    BFLOAT16 = 2


class MemoryLocation(enum.IntEnum):
    """ftq_memory_location: where a caller's buffer lives."""
    HOST = 0
    DEVICE = 1


_DTYPE_NAMES = {"float32": FloatType.FLOAT32, "f32": FloatType.FLOAT32, "float": FloatType.FLOAT32,
                "float16": FloatType.FLOAT16, "f16": FloatType.FLOAT16, "half": FloatType.FLOAT16,
                "bfloat16": FloatType.BFLOAT16, "bf16": FloatType.BFLOAT16}
_TYPESTRS = {"f4": FloatType.FLOAT32, "f2": FloatType.FLOAT16}
_ITEMSIZE = {FloatType.FLOAT32: 4, FloatType.FLOAT16: 2, FloatType.BFLOAT16: 2}


def numpy():
    """The numpy module, or None when it is not installed."""
    try:
        import numpy as np
        return np
    except ImportError:
        return None


def require_numpy(what):
    np = numpy()
    if np is None:
        raise ImportError(f"{what} returns NumPy arrays: pip install numpy (or pass a buffer to the *_into form)")
    return np


def float_type(dtype):
    """A FloatType from a FloatType, a name ("float32", "bf16", ...) or a NumPy dtype."""
    if dtype is None or isinstance(dtype, FloatType):
        return dtype
    if isinstance(dtype, int) and not isinstance(dtype, bool):
        return FloatType(dtype)
    if isinstance(dtype, str):
        try:
            return _DTYPE_NAMES[dtype.lower()]
        except KeyError:
            raise ValueError(f"unknown float type {dtype!r}: float32, float16 or bfloat16") from None
    np = numpy()
    if np is not None:
        dt = np.dtype(dtype)
        if dt == np.float32:
            return FloatType.FLOAT32
        if dt == np.float16:
            return FloatType.FLOAT16
    raise ValueError(f"unsupported float type {dtype!r}: float32, float16 or bfloat16")


def location(where):
    if where is None or isinstance(where, MemoryLocation):
        return where
    if isinstance(where, str):
        return {"host": MemoryLocation.HOST, "device": MemoryLocation.DEVICE}[where.lower()]
    return MemoryLocation(where)


class FloatBuffer:
    """A caller's float buffer as the C API takes it: address, element type,
    shape and location; `keep` holds whatever must stay alive meanwhile."""

    def __init__(self, address, ftype, shape, where, keep=None):
        self.address = address
        self.ftype = ftype
        self.shape = tuple(int(s) for s in shape)
        self.where = where
        self.keep = keep

    @property
    def count(self):
        return math.prod(self.shape)

    def shape_array(self):
        return (ctypes.c_int64 * len(self.shape))(*self.shape)


def _address_of(mv, writable):
    """Address of a C-contiguous memoryview's first byte; read-only views are copied."""
    if not mv.c_contiguous:
        raise ValueError("the buffer must be C-contiguous")
    if mv.nbytes == 0:
        return 0, None
    if mv.readonly:
        if writable:
            raise ValueError("the output buffer is read-only")
        copy = (ctypes.c_char * mv.nbytes).from_buffer_copy(mv)
        return ctypes.addressof(copy), copy
    raw = mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv
    arr = (ctypes.c_char * mv.nbytes).from_buffer(raw)
    return ctypes.addressof(arr), (arr, raw)


def _memoryview_type(mv, dtype):
    fmt = mv.format.lstrip("@=<")
    if dtype is FloatType.BFLOAT16:
        if mv.itemsize != 2:
            raise ValueError(f"bfloat16 data needs a buffer of 2-byte items, not format {mv.format!r}")
        return dtype
    if fmt == "f":
        got = FloatType.FLOAT32
    elif fmt == "e":
        got = FloatType.FLOAT16
    else:
        raise TypeError(f"buffer format {mv.format!r} is not float32 ('f') or float16 ('e'); "
                        "pass dtype='bfloat16' for bf16 data held as 2-byte integers")
    if dtype is not None and dtype != got:
        raise TypeError(f"buffer holds {got.name.lower()} but dtype {dtype.name.lower()} was given")
    return got


def float_input(obj, dtype=None, shape=None, where=None, writable=False):
    """Describes a float buffer: NumPy array (other float dtypes are converted
    to float32), buffer-protocol object, __cuda_array_interface__ object, or
    an integer device address (then dtype and shape are required)."""
    dtype = float_type(dtype)
    where = location(where)
    if isinstance(obj, int) and not isinstance(obj, bool):
        if dtype is None or shape is None:
            raise ValueError("a raw address needs dtype= and shape=")
        return FloatBuffer(obj, dtype, shape, where if where is not None else MemoryLocation.DEVICE)
    iface = getattr(obj, "__cuda_array_interface__", None)
    if iface is not None:
        if iface.get("strides") not in (None, ()):
            raise ValueError("the device array must be C-contiguous")
        typestr = iface["typestr"]
        got = dtype if dtype is FloatType.BFLOAT16 else _TYPESTRS.get(typestr[1:])
        if got is None:
            raise TypeError(f"device array of type {typestr} is not float32 or float16")
        return FloatBuffer(iface["data"][0], got, shape if shape is not None else iface["shape"],
                           MemoryLocation.DEVICE, obj)
    np = numpy()
    if np is not None and (isinstance(obj, np.ndarray) or (hasattr(obj, "__array__") and not _has_buffer(obj))):
        arr = np.asarray(obj)
        if dtype is FloatType.BFLOAT16:
            if arr.dtype.itemsize != 2:
                raise ValueError(f"bfloat16 data needs a 2-byte dtype (e.g. uint16), not {arr.dtype}")
            got = dtype
        elif arr.dtype == np.float32 or arr.dtype == np.float16:
            got = FloatType.FLOAT32 if arr.dtype == np.float32 else FloatType.FLOAT16
            if dtype is not None and dtype != got:
                if writable:
                    raise TypeError(f"output array is {arr.dtype}, dtype {dtype.name.lower()} was asked for")
                arr = arr.astype(np.float32 if dtype is FloatType.FLOAT32 else np.float16)
                got = dtype
        else:
            if writable:
                raise TypeError(f"output array must be float32 or float16, not {arr.dtype}")
            got = dtype or FloatType.FLOAT32
            arr = arr.astype(np.float32 if got is FloatType.FLOAT32 else np.float16)
        if not arr.flags.c_contiguous:
            if writable:
                raise ValueError("the output array must be C-contiguous")
            arr = np.ascontiguousarray(arr)
        if writable and not arr.flags.writeable:
            raise ValueError("the output array is read-only")
        return FloatBuffer(arr.ctypes.data, got, shape if shape is not None else arr.shape,
                           where if where is not None else MemoryLocation.HOST, arr)
    mv = memoryview(obj)
    got = _memoryview_type(mv, dtype)
    address, keep = _address_of(mv, writable)
    return FloatBuffer(address, got, shape if shape is not None else mv.shape,
                       where if where is not None else MemoryLocation.HOST, (obj, keep))


def _has_buffer(obj):
    try:
        memoryview(obj)
        return True
    except TypeError:
        return False


def new_float_array(shape, ftype):
    """A new NumPy array for results (bfloat16 results come as uint16)."""
    np = require_numpy("this call")
    return np.empty(tuple(shape), dtype={FloatType.FLOAT32: np.float32, FloatType.FLOAT16: np.float16,
                                         FloatType.BFLOAT16: np.uint16}[ftype])


def check_capacity(buf, count):
    if buf.count < count:
        raise ValueError(f"the output buffer holds {buf.count} elements, {count} are needed")


# ---------------------------------------------------------------------------
# token ids

class IdArray:
    """Token ids as a C int32 array (pointer, length)."""

    def __init__(self, pointer, n, keep):
        self.pointer = pointer
        self.n = n
        self.keep = keep


def _check_range(lo, hi):
    if lo < INT32_MIN or hi > INT32_MAX:
        raise OverflowError("token ids must fit in int32")


def ids_input(obj):
    """Token ids from a NumPy integer array, an int32 buffer (array.array('i'),
    memoryview) or any sequence of ints."""
    np = numpy()
    if np is not None and isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "iu":
            raise TypeError(f"token ids must be integers, not {obj.dtype}")
        flat = obj.reshape(-1)
        if flat.dtype != np.int32:
            if flat.size:
                _check_range(int(flat.min()), int(flat.max()))
            flat = flat.astype(np.int32)
        flat = np.ascontiguousarray(flat)
        return IdArray(flat.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), flat.size, flat)
    try:
        mv = memoryview(obj)
    except TypeError:
        mv = None
    if mv is not None and mv.format.lstrip("@=<") in ("i", "l") and mv.itemsize == 4 and mv.c_contiguous:
        n = mv.nbytes // 4
        if n == 0:
            return IdArray(None, 0, None)
        address, keep = _address_of(mv, False)
        return IdArray(ctypes.cast(address, ctypes.POINTER(ctypes.c_int32)), n, (obj, keep))
    values = [int(v) for v in (mv.tolist() if mv is not None and mv.ndim == 1 else obj)]
    if values:
        _check_range(min(values), max(values))
    arr = (ctypes.c_int32 * len(values))(*values)
    return IdArray(ctypes.cast(arr, ctypes.POINTER(ctypes.c_int32)) if values else None, len(values), arr)


def int32_list(address, n):
    """A Python list from n int32 values at a C address."""
    if n == 0:
        return []
    return list((ctypes.c_int32 * n).from_address(address))
