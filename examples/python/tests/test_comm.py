"""Communicators through the binding: ids and their text, one-rank and
two-rank (threads, shared memory) collectives, a peer's abort reaching the
other rank, and two trainer ranks against one trainer with twice the
gradient accumulation."""
import threading

import pytest

import libftq
from conftest import DATA, REF
from llama_ref import random_llama

CFG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
           vocab_size=1481, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=256, bos_token_id=1,
           eos_token_id=2)
RANK_VARS = ["FTQ_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "FTQ_WORLD_SIZE", "WORLD_SIZE",
             "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "FTQ_COMM_ID", "FTQ_COMM_ID_FILE"]


def ranks(n, fn):
    """Runs fn(rank) on n threads; returns their results, re-raising the first exception."""
    out, errors = [None] * n, []

    def run(r):
        try:
            out[r] = fn(r)
        except BaseException as e:  # noqa: B902 - handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return out


def test_id_text_round_trip():
    cid = libftq.comm_id_create("cpu")
    assert isinstance(cid, bytes) and len(cid) == libftq.comm.ID_SIZE
    text = libftq.comm_id_to_string(cid)
    assert text.startswith("ftq1-shm-") and len(text) < libftq.comm.ID_STRING_SIZE
    assert libftq.comm_id_from_string("  " + text + "\n") == cid
    assert libftq.comm_id_create(libftq.DeviceType.CPU) != cid  # a fresh object each time
    with pytest.raises(libftq.FormatError, match="ftq1-"):
        libftq.comm_id_from_string("not an id")
    with pytest.raises(libftq.FormatError, match="hex"):
        libftq.comm_id_from_string(text[:-1] + "g")
    with pytest.raises(libftq.InvalidArgumentError, match="not a communicator id"):
        libftq.comm_id_to_string(bytes(libftq.comm.ID_SIZE))
    with pytest.raises(ValueError, match="160 bytes"):
        libftq.comm_id_to_string(b"short")


def test_one_rank(ctx):
    with libftq.Comm(ctx, libftq.comm_id_create("cpu"), 0, 1, comm_timeout_s=5) as comm:
        assert (comm.rank, comm.size) == (0, 1)
        comm.barrier()
        comm.check()
        assert comm.allreduce([1.5, -2.0]) == [1.5, -2.0]
        assert comm.allreduce(3, op="max") == 3.0
        assert comm.allreduce([]) == []
    with pytest.raises(libftq.InvalidArgumentError, match="rank 2 of world size 2"):
        libftq.Comm(ctx, libftq.comm_id_create("cpu"), 2, 2)


def test_from_env(ctx, monkeypatch):
    for v in RANK_VARS:
        monkeypatch.delenv(v, raising=False)
    with libftq.Comm.from_env(ctx) as comm:  # no launcher: one rank
        assert (comm.rank, comm.size) == (0, 1)
    monkeypatch.setenv("FTQ_RANK", "0")
    monkeypatch.setenv("FTQ_WORLD_SIZE", "1")
    monkeypatch.setenv("FTQ_COMM_ID", libftq.comm_id_to_string(libftq.comm_id_create("cpu")))
    with libftq.Comm.from_env(ctx, comm_timeout_s=5) as comm:
        assert comm.size == 1
    monkeypatch.setenv("FTQ_COMM_ID", "garbage")
    with pytest.raises(libftq.FormatError, match="FTQ_COMM_ID"):
        libftq.Comm.from_env(ctx)


def test_two_ranks_and_abort():
    cid = libftq.comm_id_create("cpu")
    aborted = threading.Event()

    def rank(r):
        with libftq.Context("cpu", num_threads=1) as c, libftq.Comm(c, cid, r, 2, comm_timeout_s=20) as comm:
            got = (comm.allreduce([r + 1.0, 10.0 * r]), comm.allreduce(r, op=libftq.ReduceOp.MAX),
                   comm.allreduce(r, op="min"))
            comm.barrier()
            if r == 0:
                comm.abort()
                aborted.set()
                return got, None
            aborted.wait(20)
            with pytest.raises(libftq.CommError) as e:
                comm.barrier()
            return got, e.value

    out = ranks(2, rank)
    for got, _ in out:
        assert got == ([3.0, 10.0], 1.0, 0.0)
    err = out[1][1]
    assert err.status == libftq.Status.COMM and "abort" in err.message


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("llama")
    random_llama(d, CFG, seed=3)
    return d


def train(folder, steps, accum, comm_id=None, rank=0, world=1):
    """Losses of a run on its own context (one rank of `world` when comm_id is given)."""
    losses = []
    with libftq.Context("cpu", num_threads=1) as c, libftq.Tokenizer(REF / "tok" / "sp_meta") as tok:
        model = libftq.Model.load(c, folder)
        lora = libftq.Lora(model, seed=9, r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear")
        data = libftq.Dataset(c, tok, DATA / "catalog_train_text.jsonl", max_seq_length=48,
                              per_device_train_batch_size=2, gradient_accumulation_steps=accum, seed=7)
        trainer = libftq.Trainer(model, lora, data, max_steps=steps, learning_rate=0.01, logging_steps=1, seed=5,
                                 gradient_accumulation_steps=accum,
                                 on_progress=lambda step, total, loss, lr, tps: losses.append(loss))
        if comm_id is not None:
            comm = libftq.Comm(c, comm_id, rank, world, comm_timeout_s=30)
            trainer.set_comm(comm)
            assert trainer.total_steps == steps
        trainer.train()
    return losses


def test_two_trainer_ranks_follow_one_with_double_accumulation(model_dir):
    one = train(model_dir, 4, 2)
    cid = libftq.comm_id_create("cpu")
    two = ranks(2, lambda r: train(model_dir, 4, 1, cid, r, 2))
    assert two[0] == two[1]  # every rank logs the reduced loss
    assert two[0] == pytest.approx(one, rel=1e-5)


def test_closing_the_comm_closes_its_trainer_first(model_dir):
    with libftq.Context("cpu", num_threads=1) as c, libftq.Tokenizer(REF / "tok" / "sp_meta") as tok:
        model = libftq.Model.load(c, model_dir)
        lora = libftq.Lora(model, seed=9, r=4, lora_alpha=8)
        data = libftq.Dataset(c, tok, DATA / "catalog_train_text.jsonl", max_seq_length=48)
        trainer = libftq.Trainer(model, lora, data, max_steps=1)
        comm = libftq.Comm(c, libftq.comm_id_create("cpu"), 0, 1)
        trainer.set_comm(comm)
        trainer.set_comm(None)  # detached before the first step
        trainer.set_comm(comm)
        comm.close()
        assert trainer.closed and not model.closed
