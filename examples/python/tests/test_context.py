"""Contexts: devices, properties, memory accounting, logging, device errors."""
import pytest

import libftq


def test_cpu_context():
    with libftq.Context("cpu", num_threads=2) as ctx:
        assert ctx.device_type == libftq.DeviceType.CPU
        assert ctx.device_name.startswith("cpu")
        assert ctx.num_threads == 2
        assert ctx.memory() == (0, 0)
        cur, peak = ctx.memory("weights")
        assert cur == 0
        free, total = ctx.device_memory()
        assert 0 < free <= total
        ctx.synchronize()
        ctx.set_log_level("debug")
        ctx.set_log_level(libftq.LogLevel.ERROR)
    assert ctx.closed
    with pytest.raises(libftq.ClosedError):
        ctx.num_threads


def test_bad_devices():
    with pytest.raises(libftq.InvalidArgumentError, match="tpu"):
        libftq.Context("tpu")
    n = libftq.cuda_device_count()
    assert n >= 0
    if n == 0:
        with pytest.raises(libftq.DeviceError) as e:
            libftq.Context("cuda")
        assert e.value.status == libftq.Status.NO_DEVICE and e.value.message
    with pytest.raises(libftq.FtqError):
        libftq.Context("cuda:999")


def test_bad_context_options():
    with pytest.raises(libftq.OptionRangeError, match="log_level"):
        libftq.Context("cpu", log_level="loud")


def test_log_callback_levels(ctx):
    from conftest import TINY_CONFIG
    seen = []
    ctx.set_log_callback(lambda level, msg: seen.append((level, msg)))
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=3):
        pass
    assert any(level == libftq.LogLevel.INFO and "random" in msg for level, msg in seen)
    seen.clear()
    ctx.set_log_level("warn")
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=3):
        pass
    assert not [s for s in seen if s[0] >= libftq.LogLevel.INFO]
    ctx.set_log_level("info")
    ctx.set_log_callback(None)
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=3):
        pass
    assert not seen


def test_log_keyword_and_memory_accounting():
    from conftest import TINY_CONFIG
    lines = []
    with libftq.Context("cpu", num_threads=1, log=lambda lvl, m: lines.append(m)) as ctx:
        m = libftq.Model.init_random(ctx, TINY_CONFIG, seed=0)
        cur, peak = ctx.memory()
        assert cur == m.memory() > 0 and peak >= cur
        assert ctx.memory(libftq.MemoryCategory.WEIGHTS)[0] == m.memory("weights")
        lora = libftq.Lora(m, r=4)
        assert ctx.memory("adapter")[0] > 0
        lora.close()
        assert ctx.memory("adapter")[0] == 0
        m.close()
        assert ctx.memory()[0] == 0 and ctx.memory()[1] >= peak
    assert lines
