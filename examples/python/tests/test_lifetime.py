"""Handles: context managers, close() releasing at once, parents closing
their children first, use after close, and garbage collection in any order."""
import gc

import numpy as np
import pytest

import libftq
from conftest import TINY_CONFIG


def test_close_is_idempotent_and_final():
    o = libftq.Options(r=4)
    o.close()
    o.close()
    assert o.closed
    with pytest.raises(libftq.ClosedError):
        o["r"]
    assert "closed" in repr(o)


def test_parent_closes_children_first():
    ctx = libftq.Context("cpu", num_threads=1)
    model = libftq.Model.init_random(ctx, TINY_CONFIG, seed=0)
    lora = libftq.Lora(model, r=2)
    q = libftq.Quantizer(ctx)
    t = q.quantize(np.ones(64, np.float32))
    ctx.close()
    assert all(h.closed for h in (model, lora, q, t))
    for call in (lambda: model.config, lambda: lora.name, lambda: t.shape, lambda: q.scheme):
        with pytest.raises(libftq.ClosedError):
            call()


def test_model_close_closes_its_adapters(ctx):
    model = libftq.Model.init_random(ctx, TINY_CONFIG, seed=0)
    lora = libftq.Lora(model)
    model.close()
    assert lora.closed and not ctx.closed
    assert ctx.memory()[0] == 0


def test_qtensor_outlives_quantizer(ctx):
    q = libftq.Quantizer(ctx, bnb_4bit_quant_type="nf4")
    t = q.quantize(np.linspace(-1, 1, 64, dtype=np.float32))
    q.close()
    assert not t.closed and t.dequantize().shape == (64,)


def test_garbage_collection_in_any_order():
    for order in range(3):
        ctx = libftq.Context("cpu", num_threads=1)
        model = libftq.Model.init_random(ctx, TINY_CONFIG, seed=0)
        lora = libftq.Lora(model)
        cycle = [ctx, model, lora]
        cycle.append(cycle)  # a reference cycle: the collector picks the order
        objs = [ctx, model, lora]
        del ctx, model, lora
        objs = objs[order:] + objs[:order]
        del objs
        del cycle
        gc.collect()


def test_children_keep_parents_alive():
    def make():
        ctx = libftq.Context("cpu", num_threads=1)
        return libftq.Model.init_random(ctx, TINY_CONFIG, seed=0)

    model = make()
    gc.collect()
    assert model.generate([1, 2], max_new_tokens=2).tokens  # its context is still there
    assert model.context.memory()[0] > 0
    model.close()


def test_constructors_cannot_be_called_directly():
    with pytest.raises(TypeError):
        libftq.Model()
    with pytest.raises(TypeError):
        libftq.QTensor()
