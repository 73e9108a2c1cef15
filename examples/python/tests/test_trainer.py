"""Training through the binding: the loss against a float64 NumPy forward
pass of the definition (llama_ref.py), the three levels (Trainer.train,
Trainer.step, forward_backward + Optimizer.step) giving the same adapter,
callbacks that log, stop and raise, evaluation, checkpoints, the plan."""
import math

import numpy as np
import pytest

import libftq
from conftest import DATA, REF
from llama_ref import batch_loss, random_llama

CFG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
           vocab_size=1481, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=256, bos_token_id=1,
           eos_token_id=2)
TRAIN = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", learning_rate=0.01,
             lr_scheduler_type="cosine", warmup_steps=1, max_grad_norm=1.0, weight_decay=0.001, seed=5,
             logging_steps=1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("llama")
    w = random_llama(d, CFG, seed=3)
    return d, w


@pytest.fixture(scope="module")
def tok():
    with libftq.Tokenizer(REF / "tok" / "sp_meta") as t:
        yield t


@pytest.fixture
def data(ctx, tok):
    with libftq.Dataset(ctx, tok, DATA / "catalog_train_text.jsonl", max_seq_length=48,
                        per_device_train_batch_size=4, test_size=0.01, seed=7) as ds:
        yield ds


def test_eval_loss_matches_float64_definition(ctx, model_dir, data):
    folder, w = model_dir
    with libftq.Model.load(ctx, folder) as model:
        for index in (0, 3):
            b = data.get_batch(index)
            got_sum, got_n = model.eval_batch(b)
            want_sum, want_n = batch_loss(w, CFG, b.input_ids, b.labels, b.attention_mask, b.position_ids)
            assert got_n == want_n == b.num_loss_tokens
            assert got_sum == pytest.approx(want_sum, rel=2e-5)
            # with a no-op adapter (B = 0) the training loss is the same mean
            with libftq.Lora(model, seed=1, **{k: TRAIN[k] for k in ("r", "lora_alpha", "target_modules")}) as lora:
                lora.active = True
                loss, n = model.forward_backward(b)
                assert n == want_n and loss == pytest.approx(want_sum / want_n, rel=2e-5)
                assert any(np.abs(lora.get_grad(i)).max() > 0 for i in range(len(lora)))
                lora.zero_grad()
                assert all(np.abs(lora.get_grad(i)).max() == 0 for i in range(len(lora)))


def run_trainer(ctx, folder, data, steps, how, **extra):
    """Trains @p steps steps one of three ways; returns (losses, adapter tensors)."""
    with libftq.Model.load(ctx, folder) as model:
        lora = libftq.Lora(model, seed=9, **{k: TRAIN[k] for k in ("r", "lora_alpha", "target_modules",
                                                                   "lora_dropout")})
        opts = dict(TRAIN, max_steps=steps, **extra)
        losses = []
        if how == "manual":
            lora.active = True
            opt = libftq.Optimizer(lora, steps, **{k: opts[k] for k in ("learning_rate", "lr_scheduler_type",
                                                                        "warmup_steps", "max_grad_norm",
                                                                        "weight_decay")})
            nb = data.num_batches()
            for k in range(steps):
                b = data.get_batch(k % nb, epoch=k // nb)
                lora.zero_grad()
                loss, _ = model.forward_backward(b, seed=opts["seed"], micro_step=k, num_items=b.num_loss_tokens)
                norm, lr, skipped = opt.step()
                assert not skipped and norm > 0
                losses.append(loss)
            assert opt.steps_done == steps
        else:
            with libftq.Trainer(model, lora, data, **opts) as t:
                assert t.total_steps == steps and lora.active
                if how == "train":
                    records = []
                    t.set_log_callback(records.append)
                    assert t.train() is True
                    losses = [r["loss"] for r in records if "loss" in r]
                else:
                    while t.global_step < steps:
                        losses.append(t.step())
                    with pytest.raises(libftq.StateError):
                        t.step()
                assert t.global_step == steps and t.optimizer.steps_done == steps
        return losses, lora.state_dict()


def test_three_levels_agree(ctx, model_dir, data):
    folder, _ = model_dir
    l_train, w_train = run_trainer(ctx, folder, data, 4, "train")
    l_step, w_step = run_trainer(ctx, folder, data, 4, "step")
    l_manual, w_manual = run_trainer(ctx, folder, data, 4, "manual")
    assert len(l_train) == 4
    np.testing.assert_allclose(l_step, l_train, rtol=1e-6)
    np.testing.assert_allclose(l_manual, l_train, rtol=1e-6)
    for name in w_train:
        np.testing.assert_array_equal(w_step[name], w_train[name])
        np.testing.assert_allclose(w_manual[name], w_train[name], rtol=1e-5, atol=1e-7)


def test_learns_and_logs(ctx, model_dir, data):
    folder, _ = model_dir
    records, progress = [], []
    with libftq.Model.load(ctx, folder) as model, \
            libftq.Lora(model, r=8, lora_alpha=16, target_modules="all-linear") as lora:
        with libftq.Trainer(model, lora, data, max_steps=30, learning_rate=0.02, logging_steps=10,
                            on_log=records.append, on_progress=lambda *a: progress.append(a)) as t:
            plan = t.plan()
            assert isinstance(plan, dict) and plan
            assert t.train()
            assert t.nonfinite_steps == 0
    assert [p[0] for p in progress] == list(range(1, 31)) and all(p[1] == 30 for p in progress)
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [10, 20, 30]
    assert train[-1]["loss"] < train[0]["loss"]
    assert "train_loss" in records[-1]
    assert all(math.isfinite(p[2]) and p[4] > 0 for p in progress)


def test_callbacks_stop_and_raise(ctx, model_dir, data):
    folder, _ = model_dir
    with libftq.Model.load(ctx, folder) as model, libftq.Lora(model, r=4) as lora:
        with libftq.Trainer(model, lora, data, max_steps=6, logging_steps=1) as t:
            t.set_progress_callback(lambda step, *rest: step == 2)  # True stops
            assert t.train() is False and t.stop_requested and t.global_step == 2

            def stop_at_3(record):
                if record.get("step") == 3:
                    raise libftq.StopTraining

            t.set_progress_callback(None)
            t.set_log_callback(stop_at_3)
            assert t.train() is False and t.global_step == 3

            class Boom(Exception):
                pass

            def boom(step, total, loss, lr, tps):
                raise Boom(f"at {step}")

            t.set_log_callback(None)
            t.set_progress_callback(boom)
            with pytest.raises(Boom, match="at 4") as e:
                t.train()
            assert isinstance(e.value.__cause__, libftq.CancelledError)
            assert t.global_step == 4
            t.set_progress_callback(None)
            t.set_eval_callback(lambda trainer, step: None)
            t.set_eval_callback(None)
            assert t.step() > 0 and not t.stop_requested
            assert t.train() is True and t.global_step == 6


def test_eval_and_metric_callback(ctx, model_dir, tok):
    folder, _ = model_dir
    with libftq.Dataset(ctx, tok, DATA / "catalog_train_text.jsonl", max_seq_length=48, test_size=0.02,
                        per_device_train_batch_size=4) as ds, libftq.Model.load(ctx, folder) as model, \
            libftq.Lora(model, r=4) as lora:
        records, seen = [], []

        def metric(trainer, step):
            seen.append(step)
            assert trainer is t
            out = model.generate([1, 5, 6], max_new_tokens=2)  # generation inside the callback
            return len(out.tokens) / 2

        with libftq.Trainer(model, lora, ds, max_steps=4, eval_steps=2, logging_steps=2, on_log=records.append,
                            on_eval=metric) as t:
            assert t.train()
            ev = [r for r in records if "eval_loss" in r]
            assert [r["step"] for r in ev] == [2, 4] and seen == [2, 4]
            assert all(r["eval_metric"] == 1.0 for r in ev)
            assert t.evaluate() == pytest.approx(ev[-1]["eval_loss"], rel=1e-9)


def test_checkpoint_resume_is_exact(ctx, model_dir, data, tmp_path):
    folder, _ = model_dir
    _, uninterrupted = run_trainer(ctx, folder, data, 5, "train")
    with libftq.Model.load(ctx, folder) as model:
        lora = libftq.Lora(model, seed=9, **{k: TRAIN[k] for k in ("r", "lora_alpha", "target_modules",
                                                                   "lora_dropout")})
        with libftq.Trainer(model, lora, data, **dict(TRAIN, max_steps=5)) as t:
            t.step()
            t.step()
            t.save_checkpoint(tmp_path / "ckpt")
        lora.close()
        lora = libftq.Lora(model, seed=123, **{k: TRAIN[k] for k in ("r", "lora_alpha", "target_modules",
                                                                     "lora_dropout")})
        with libftq.Trainer(model, lora, data, **dict(TRAIN, max_steps=5)) as t:
            t.load_checkpoint(tmp_path / "ckpt")
            assert t.global_step == 2
            assert t.train()
        resumed = lora.state_dict()
    for name in uninterrupted:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name])
    with libftq.Model.load(ctx, folder) as model, libftq.Lora(model, r=8) as other, \
            libftq.Trainer(model, other, data, max_steps=5) as t:
        with pytest.raises(libftq.ShapeError):
            t.load_checkpoint(tmp_path / "ckpt")
        with pytest.raises(libftq.FtqError, match="nothere"):
            t.load_checkpoint(tmp_path / "nothere")


def test_trainer_lifetime_and_errors(ctx, model_dir, data, tok):
    folder, _ = model_dir
    model = libftq.Model.load(ctx, folder)
    lora = libftq.Lora(model, r=4)
    t = libftq.Trainer(model, lora, data, max_steps=2)
    opt = t.optimizer
    assert opt.learning_rate >= 0 and opt.steps_done == 0
    lora.close()  # closes the trainer (and its optimizer view) first
    assert t.closed and opt.closed
    with pytest.raises(libftq.ClosedError):
        t.global_step
    lora = libftq.Lora(model, r=4)
    with pytest.raises(libftq.OptionRangeError, match="max_steps"):
        libftq.Trainer(model, lora, data, max_steps=-5)
    other = libftq.Model.load(ctx, folder)
    with pytest.raises(libftq.InvalidArgumentError):
        libftq.Trainer(other, lora, data)
    with libftq.Dataset(ctx, tok, REF / "tok" / "data" / "rows.jsonl", chat_template="llama-2") as no_eval:
        with pytest.raises(libftq.StateError):
            libftq.Trainer(model, lora, no_eval, max_steps=1).evaluate()  # no eval split
    t = libftq.Trainer(model, lora, data, max_steps=1)
    data.close()  # the data set too
    assert t.closed
    model.close()
    other.close()
