"""Callbacks from Python: they see what the library reports, may stop work,
and exceptions raised inside them are re-raised by the call that ran them
(never lost, never unwinding into C), leaving everything usable."""
import gc

import pytest

import libftq
from conftest import REF, TINY_CONFIG
from libftq._core import call, live_handles, record_callback_exception


class Boom(Exception):
    pass


def test_token_callback_streams_and_stops(tiny_model):
    seen = []
    full = tiny_model.generate([1, 2, 3], max_new_tokens=6)
    out = tiny_model.generate([1, 2, 3], max_new_tokens=6, callback=lambda t, i: seen.append((t, i)))
    assert out == full and seen == [(t, i) for i, t in enumerate(full.tokens)]
    stopped = tiny_model.generate([1, 2, 3], max_new_tokens=6, callback=lambda t, i: i == 1)
    assert stopped.tokens == full.tokens[:2] and stopped.finish_reason == libftq.FinishReason.CALLBACK


def test_token_callback_exception_stops_and_propagates(tiny_model):
    calls = []

    def cb(token, index):
        calls.append(index)
        if index == 2:
            raise Boom("stop at 2")

    with pytest.raises(Boom, match="stop at 2") as e:
        tiny_model.generate([1, 2, 3], max_new_tokens=8, callback=cb)
    assert calls == [0, 1, 2]  # generation stopped at the exception
    assert any("cb" in str(tb.name) for tb in e.traceback)  # the callback's own traceback is kept
    # everything still works afterwards, and the exception does not leak into later calls
    assert len(tiny_model.generate([1, 2, 3], max_new_tokens=3).tokens) == 3
    libftq.Options(r=4).close()


def test_base_exceptions_in_callbacks_propagate(tiny_model):
    def cb(token, index):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_model.generate([1], max_new_tokens=4, callback=cb)

    def bad_return(token, index):
        return object()  # truthy: stops

    assert len(tiny_model.generate([1], max_new_tokens=4, callback=bad_return).tokens) == 1


def test_log_callback_exception_propagates(ctx):
    def log(level, message):
        raise Boom(message)

    ctx.set_log_callback(log)
    with pytest.raises(Boom, match="random initialisation"):
        libftq.Model.init_random(ctx, TINY_CONFIG, seed=0)
    # the model was made (the call succeeded), then destroyed again before the exception left
    assert ctx.memory()[0] == 0
    ctx.set_log_callback(None)
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=0):
        pass


def test_log_callback_exception_with_failing_call(tiny_model, ctx, tmp_path):
    def log(level, message):
        raise Boom("from log")

    ctx.set_log_callback(log)
    with pytest.raises(Boom) as e:  # the LoRA creation logs, then succeeds
        libftq.Lora(tiny_model, r=2)
    assert "from log" in str(e.value)
    assert ctx.memory("adapter")[0] == 0
    # a constructor that logs warnings: the data set is destroyed again, the exception raised
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"text": \n{"text": "fine"}\n')
    with libftq.Tokenizer(REF / "tok" / "sp_legacy") as tok:
        before = live_handles()
        with pytest.raises(Boom):
            libftq.Dataset(ctx, tok, bad, skip_malformed_rows=True)
        assert live_handles() == before
    ctx.set_log_callback(None)
    gc.collect()


def test_callback_objects_stay_alive(ctx):
    msgs = []
    ctx.set_log_callback(lambda level, m: msgs.append(m))  # only the context keeps the lambda
    gc.collect()
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=0):
        pass
    assert msgs


def test_callback_exception_of_a_failed_call_is_chained():
    def fake_c_function(*args):  # a C call that ran a raising callback, then failed
        record_callback_exception(Boom("in callback"))
        return int(libftq.Status.FORMAT)

    with pytest.raises(Boom) as e:
        call(fake_c_function)
    assert isinstance(e.value.__cause__, libftq.FormatError)
    with pytest.raises(libftq.FormatError):  # without a callback exception: the status
        call(lambda: int(libftq.Status.FORMAT))
