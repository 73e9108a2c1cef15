"""The stand-alone quantizer through the binding, against bitsandbytes: the
reference vectors tests/ref/quant/quant_ref.bin were made by bitsandbytes'
CUDA kernels (make_ref.py); INT8 against a float64 recomputation of its
definition. Inputs go in as NumPy arrays and as plain buffers."""
import array
import sys

import numpy as np
import pytest

import libftq
from conftest import REF

sys.path.insert(0, str(REF / "quant"))
import refio  # noqa: E402

DT = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


@pytest.fixture(scope="module")
def bnb():
    return refio.load(REF / "quant" / "quant_ref.bin")


@pytest.mark.parametrize("qt", ["nf4", "fp4"])
@pytest.mark.parametrize("dt", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("bs", [64, 256, 4096])
def test_4bit_matches_bitsandbytes(ctx, bnb, qt, dt, bs):
    name = f"q4/{qt}/{dt}/bs{bs}"
    x, deq = bnb[name + "/x"][1], bnb[name + "/deq"][1]
    with libftq.Quantizer(ctx, bnb_4bit_quant_type=qt, quant_blocksize=bs) as q:
        assert q.scheme == (libftq.QScheme.NF4 if qt == "nf4" else libftq.QScheme.FP4)
        with q.quantize(x, dtype=DT[dt]) as t:
            assert t.shape == x.shape and t.scheme == q.scheme and t.clipped == 0
            assert t.nbytes == q.quantized_bytes(x.shape)
            got = t.dequantize(DT[dt])
            assert got.dtype == deq.dtype
            np.testing.assert_array_equal(got.view(np.uint8), deq.view(np.uint8))  # bit for bit
        fake = q.fake_quantize(x, dtype=DT[dt])
        np.testing.assert_array_equal(fake.view(np.uint8), deq.view(np.uint8))


def test_double_quant_close_to_bitsandbytes(ctx, bnb):
    name = [k for k in bnb if k.startswith("dq/nf4/f32/")][0].rsplit("/", 1)[0]
    x, deq = bnb[name + "/x"][1], bnb[name + "/deq"][1]
    bs = int(name.split("/bs")[1].split("/")[0])
    with libftq.Quantizer(ctx, bnb_4bit_quant_type="nf4", quant_blocksize=bs, bnb_4bit_use_double_quant=True) as q:
        with q.quantize(x) as t:
            got = t.dequantize()
    # the nested absmax offset is libftq's deterministic mean, not torch's CUDA one: equal to rounding
    np.testing.assert_allclose(got, deq, rtol=1e-2, atol=1e-6)


def int8_reference(x, group=None):
    x64 = x.astype(np.float64)
    rows = x64.reshape(x.shape[0], -1) if group is None else x64.reshape(-1, group)
    scale = np.abs(rows).max(axis=1, keepdims=True) / 127.0
    codes = np.clip(np.round(rows / np.where(scale == 0, 1, scale)), -127, 127)
    return (codes * scale).reshape(x.shape)


@pytest.mark.parametrize("gran", ["channel", "group"])
def test_int8_symmetric_matches_definition(ctx, gran):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 96)) * rng.uniform(0.1, 3, (16, 1))).astype(np.float32)
    with libftq.Quantizer(ctx, load_in_8bit=True, int8_granularity=gran, int8_group_size=32) as q:
        assert q.scheme == libftq.QScheme.INT8_SYM
        got = q.quantize(x).dequantize()
        np.testing.assert_allclose(got, int8_reference(x, None if gran == "channel" else 32), rtol=1e-6, atol=1e-7)
        stats = q.error_stats(x)
        err = got.astype(np.float64) - x
        assert stats["mse"] == pytest.approx(np.mean(err ** 2), rel=1e-5)
        assert stats["max_abs_error"] == pytest.approx(np.abs(err).max(), rel=1e-5)
        sqnr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(err ** 2))
        assert stats["sqnr_db"] == pytest.approx(sqnr, rel=1e-5)
        assert stats["clipped_fraction"] == 0
        grad = q.fake_quantize_backward(x, np.ones_like(x))
        np.testing.assert_array_equal(grad, np.ones_like(x))  # nothing clipped without calibration


def test_calibration_and_clipping(ctx):
    x = np.linspace(-1, 3, 1000, dtype=np.float32)
    with libftq.Quantizer(ctx, load_in_8bit=True, int8_scheme="asymmetric", int8_granularity="tensor") as q:
        with pytest.raises(libftq.StateError):
            q.calibration()
        q.observe(x[:500])
        q.observe(array.array("f", x[500:].tolist()))
        scale, zp = q.calibration()
        assert scale == pytest.approx(4.0 / 255, rel=1e-6)
        assert zp == round(1.0 / scale)
        wide = np.array([-4, 0, 1, 6], dtype=np.float32)
        t = q.quantize(wide)
        assert t.clipped == 2
        g = q.fake_quantize_backward(wide, np.ones(4, np.float32))
        np.testing.assert_array_equal(g, [0, 1, 1, 0])
        q.reset_calibration()
        with pytest.raises(libftq.StateError):
            q.calibration()


def test_buffer_kinds(ctx):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(256).astype(np.float32)
    with libftq.Quantizer(ctx, bnb_4bit_quant_type="nf4") as q:
        ref = q.fake_quantize(x)
        # array.array, bytearray, bytes (read-only), memoryview with a shape
        a = array.array("f", x.tobytes())
        assert np.array_equal(np.frombuffer(q.fake_quantize(a), np.float32), ref)
        out = array.array("f", bytes(1024))
        assert q.fake_quantize(a, out) is out
        assert np.array_equal(np.frombuffer(out, np.float32), ref)
        ro = memoryview(x.tobytes()).cast("f")
        assert np.array_equal(q.fake_quantize(ro), ref)
        ba = bytearray(x.tobytes())
        q.fake_quantize(memoryview(ba).cast("f"), memoryview(ba).cast("f"))  # in place
        assert np.array_equal(np.frombuffer(ba, np.float32), ref)
        two_d = memoryview(x.tobytes()).cast("f", (16, 16))
        assert q.quantize(two_d).shape == (16, 16)
        assert q.quantize(x, shape=(4, 64)).shape == (4, 64)
        # float64 and non-contiguous NumPy input is converted
        assert np.array_equal(q.fake_quantize(x.astype(np.float64)), ref)
        strided = np.repeat(x, 2)[::2]
        assert not strided.flags.c_contiguous
        assert np.array_equal(q.fake_quantize(strided), ref)
        # float16, and bfloat16 as uint16
        h = x.astype(np.float16)
        assert q.fake_quantize(h).dtype == np.float16
        bf = (x.view(np.uint32) >> 16).astype(np.uint16)
        assert q.quantize(bf, dtype="bfloat16").dequantize("bf16").dtype == np.uint16
        # device memory of a CPU context is host memory: an address with dtype and shape
        dst = np.zeros_like(x)
        with q.quantize(x.ctypes.data, dtype="float32", shape=x.shape, where="device") as t:
            t.dequantize_into(dst.ctypes.data, dtype="float32", where="device")
        assert np.array_equal(dst, ref)
        q.fake_quantize(x.ctypes.data, dst.ctypes.data, dtype="float32", shape=x.shape, where="device")
        assert np.array_equal(dst, ref)
        # errors
        with pytest.raises(TypeError, match="format"):
            q.quantize(array.array("i", [1, 2, 3]))
        with pytest.raises(ValueError, match="read-only"):
            q.fake_quantize(x, memoryview(bytes(1024)).cast("f"))
        with pytest.raises(ValueError, match="holds"):
            q.fake_quantize(x, np.zeros(10, np.float32))
        with pytest.raises(ValueError, match="dtype= and shape="):
            q.quantize(x.ctypes.data)
        with pytest.raises(ValueError, match="out="):
            q.fake_quantize(x.ctypes.data, dtype="float32", shape=x.shape)
        with pytest.raises(ValueError, match="2-byte"):
            q.quantize(x, dtype="bfloat16")
        with pytest.raises(libftq.InvalidArgumentError):
            q.quantize(np.zeros((2, 2, 2, 2, 2), np.float32))
        with pytest.raises(ValueError):
            q.quantize(x, dtype="float8")


def test_quantizer_options_errors(ctx):
    with pytest.raises(libftq.OptionRangeError, match="quant_blocksize"):
        libftq.Quantizer(ctx, quant_blocksize=100)
    with pytest.raises(libftq.OptionRangeError):
        libftq.Quantizer(ctx, load_in_4bit=True, load_in_8bit=True)


class FakeDeviceArray:
    """An object exposing __cuda_array_interface__ over host memory: on a CPU
    context device memory is host memory, so the device path can be run."""

    def __init__(self, arr):
        self.arr = arr
        self.__cuda_array_interface__ = {"data": (arr.ctypes.data, False), "shape": arr.shape,
                                         "typestr": arr.dtype.str, "strides": None, "version": 3}


def test_device_arrays_and_output_checks(ctx):
    x = np.linspace(-2, 2, 128, dtype=np.float32).reshape(2, 64)
    with libftq.Quantizer(ctx, bnb_4bit_quant_type="fp4") as q:
        ref = q.fake_quantize(x)
        out = np.zeros_like(x)
        with q.quantize(FakeDeviceArray(x)) as t:
            assert t.shape == (2, 64)
            t.dequantize_into(FakeDeviceArray(out))
        np.testing.assert_array_equal(out, ref)
        out[:] = 0
        q.fake_quantize(FakeDeviceArray(x), FakeDeviceArray(out))
        np.testing.assert_array_equal(out, ref)
        with pytest.raises(TypeError, match="float32 or float16"):
            q.quantize(FakeDeviceArray(np.zeros(4, np.int32)))
        # dtype given as a NumPy dtype, a FloatType, or a name; mismatched outputs are refused
        assert q.fake_quantize(x, dtype=np.float16).dtype == np.float16
        assert q.fake_quantize(x, dtype=libftq.FloatType.FLOAT32).dtype == np.float32
        with pytest.raises(TypeError, match="float16"):
            q.fake_quantize(x, np.zeros(x.shape, np.float16))
        with pytest.raises(TypeError, match="float32 or float16"):
            q.fake_quantize(x, np.zeros(x.shape, np.float64))
        with pytest.raises(ValueError, match="C-contiguous"):
            q.fake_quantize(x, np.zeros((64, 2), np.float32).T)
        ro = np.zeros_like(x)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            q.fake_quantize(x, ro)
        with pytest.raises(ValueError, match="unsupported"):
            q.quantize(x, dtype=np.int8)
