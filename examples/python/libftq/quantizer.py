"""Stand-alone quantization (ftq_quantizer.h), like bitsandbytes.functional:
NF4 / FP4 (optionally double-quantized) and INT8 on NumPy arrays, any
buffer-protocol object, or device memory."""
import ctypes
import enum
import math

from . import _buffers
from ._buffers import FloatType, MemoryLocation
from ._core import Handle, check, construct, out_value
from ._lib import lib
from .options import options_arg


class QScheme(enum.IntEnum):
    """ftq_qscheme."""
    NONE = 0
    NF4 = 1
    FP4 = 2
    INT8_SYM = 3
    INT8_ASYM = 4


class QStat(enum.IntEnum):
    """ftq_qstat: indices of the error statistics."""
    MSE = 0
    SQNR_DB = 1
    MAX_ABS_ERROR = 2
    ZEROED_FRACTION = 3
    COLLAPSED_FRACTION = 4
    CLIPPED_FRACTION = 5


def _shape_arg(shape):
    shape = tuple(int(s) for s in shape)
    return len(shape), (ctypes.c_int64 * max(len(shape), 1))(*shape)


class Quantizer(Handle):
    """A quantization scheme on a context, from options of group "quant"
    (bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
    quant_blocksize=64, load_in_8bit=True, int8_scheme, int8_granularity,
    int8_group_size, observer, observer_percentile).

    Inputs are NumPy arrays (float32, float16; other dtypes are converted to
    float32), buffer-protocol objects of format 'f' or 'e', or device memory
    (an object with __cuda_array_interface__, or an integer address with
    dtype= and shape=). bfloat16 data comes as 2-byte integers with
    dtype="bfloat16". `shape=` overrides the buffer's own shape.
    """

    _destroy_name = "ftq_quantizer_destroy"

    def __init__(self, ctx, options=None, **kwargs):
        self.context = ctx
        with options_arg(options, kwargs) as o:
            construct(self, ctx, lib().ftq_quantizer_create, ctx, o)

    @property
    def scheme(self):
        """The QScheme."""
        return QScheme(lib().ftq_quantizer_scheme(self))

    def quantized_bytes(self, shape):
        """Device bytes a tensor of @p shape takes once quantized."""
        ndim, dims = _shape_arg(shape)
        return out_value(ctypes.c_size_t, lib().ftq_quantizer_quantized_bytes, self, ndim, dims)

    def quantize(self, src, *, dtype=None, shape=None, where=None):
        """Quantizes @p src; returns a QTensor on the context's device."""
        buf = _buffers.float_input(src, dtype, shape, where)
        ndim, dims = _shape_arg(buf.shape)
        t = QTensor.__new__(QTensor)
        t.context = self.context
        return construct(t, self.context, lib().ftq_quantizer_quantize, self, buf.address, int(buf.ftype),
                         int(buf.where), ndim, dims)

    def fake_quantize(self, src, out=None, *, dtype=None, shape=None, where=None):
        """dequantize(quantize(src)) in src's type: into @p out (any writable
        buffer of the same type; may be src itself), else a new NumPy array."""
        buf = _buffers.float_input(src, dtype, shape, where)
        dst, result = self._output(out, buf)
        ndim, dims = _shape_arg(buf.shape)
        check(lib().ftq_quantizer_fake_quantize(self, buf.address, dst.address, int(buf.ftype), int(buf.where), ndim,
                                                dims))
        return result

    def fake_quantize_backward(self, src, grad_out, out=None, *, dtype=None, shape=None, where=None):
        """Straight-through gradient of fake_quantize(): grad_out where src was
        not clipped, 0 where it was."""
        buf = _buffers.float_input(src, dtype, shape, where)
        g = _buffers.float_input(grad_out, buf.ftype, buf.shape, buf.where)
        dst, result = self._output(out, buf)
        ndim, dims = _shape_arg(buf.shape)
        check(lib().ftq_quantizer_fake_quantize_backward(self, buf.address, g.address, dst.address, int(buf.ftype),
                                                         int(buf.where), ndim, dims))
        return result

    @staticmethod
    def _output(out, like):
        if out is None:
            if like.where != MemoryLocation.HOST:
                raise ValueError("results of device inputs need out= (device memory)")
            arr = _buffers.new_float_array(like.shape, like.ftype)
            return _buffers.float_input(arr, like.ftype, like.shape, like.where, writable=True), arr
        raw = isinstance(out, int) and not isinstance(out, bool)
        dst = _buffers.float_input(out, like.ftype, like.shape if raw else None, like.where, writable=not raw)
        _buffers.check_capacity(dst, like.count)
        return dst, out

    def error_stats(self, src, *, dtype=None, shape=None, where=None):
        """Quantizes @p src and returns what quantization did to it: a dict
        {QStat name in lower case: value} (mse, sqnr_db, max_abs_error,
        zeroed_fraction, collapsed_fraction, clipped_fraction)."""
        buf = _buffers.float_input(src, dtype, shape, where)
        ndim, dims = _shape_arg(buf.shape)
        stats = (ctypes.c_double * len(QStat))()
        check(lib().ftq_quantizer_error_stats(self, buf.address, int(buf.ftype), int(buf.where), ndim, dims, stats,
                                              len(QStat)))
        return {s.name.lower(): stats[s] for s in QStat}

    def observe(self, src, *, dtype=None, where=None):
        """Adds a batch of activations to the calibration observer."""
        buf = _buffers.float_input(src, dtype, None, where)
        check(lib().ftq_quantizer_observe(self, buf.address, int(buf.ftype), int(buf.where), buf.count))

    def calibration(self):
        """(scale, zero_point) of what was observed (StateError before any finite value)."""
        scale, zp = ctypes.c_float(), ctypes.c_int32()
        check(lib().ftq_quantizer_calibration(self, ctypes.byref(scale), ctypes.byref(zp)))
        return scale.value, zp.value

    def reset_calibration(self):
        """Forgets everything observed."""
        lib().ftq_quantizer_reset_calibration(self)


class QTensor(Handle):
    """A quantized tensor on a context's device (made by Quantizer.quantize)."""

    _destroy_name = "ftq_qtensor_destroy"

    def __init__(self, *_):
        raise TypeError("QTensors come from Quantizer.quantize()")

    @property
    def scheme(self):
        """The QScheme."""
        return QScheme(lib().ftq_qtensor_scheme(self))

    @property
    def shape(self):
        """The logical (unquantized) shape."""
        dims = (ctypes.c_int64 * 4)()
        n = lib().ftq_qtensor_shape(self, dims, 4)
        return tuple(dims[:max(n, 0)])

    @property
    def size(self):
        """Number of logical elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self):
        """Device bytes held (codes, scales and every other buffer)."""
        return lib().ftq_qtensor_bytes(self)

    @property
    def clipped(self):
        """Values clipped to the code range when quantized (0 for NF4 / FP4)."""
        return lib().ftq_qtensor_clipped(self)

    def dequantize(self, dtype="float32"):
        """The values as a new NumPy array of the logical shape (bfloat16 as uint16)."""
        ftype = _buffers.float_type(dtype)
        arr = _buffers.new_float_array(self.shape, ftype)
        self.dequantize_into(arr, dtype=ftype)
        return arr

    def dequantize_into(self, out, *, dtype=None, where=None):
        """Writes the values into @p out: any writable float buffer, or device
        memory (an integer address with dtype=, or a __cuda_array_interface__
        object)."""
        if isinstance(out, int) and not isinstance(out, bool):
            dst = _buffers.float_input(out, dtype, self.shape, where)
        else:
            dst = _buffers.float_input(out, dtype, None, where, writable=True)
        _buffers.check_capacity(dst, self.size)
        check(lib().ftq_qtensor_dequantize_into(self, dst.address, int(dst.ftype), int(dst.where), dst.count))
        return out


__all__ = ["Quantizer", "QTensor", "QScheme", "QStat", "FloatType", "MemoryLocation"]
