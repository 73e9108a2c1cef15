"""Data sets and batches through the binding, against TRL's tokenization
(tests/ref/tok/data/rows_expected.json, make_data_ref.py) and the example
evaluator's twin (examples/data/exact_match_cases.json)."""
import numpy as np
import pytest

import libftq
from conftest import DATA, REF, load_json

ROWS = REF / "tok" / "data" / "rows.jsonl"


def test_rows_match_trl():
    ref = load_json(REF / "tok" / "data" / "rows_expected.json")
    toks = {}
    try:
        for cfg in ref["configs"]:
            name = cfg["tokenizer"]
            tok = toks.get(name) or toks.setdefault(name, libftq.Tokenizer(REF / "tok" / name))
            with libftq.Dataset(None, tok, ROWS, cfg["options"], max_seq_length=0) as ds:
                assert ds.num_examples() == len(cfg["rows"])
                assert ds.num_examples("eval") == 0
                for i, row in enumerate(cfg["rows"]):
                    ex = ds.example(i)
                    assert ex.ids == row["ids"] and ex.loss_mask == row["mask"]
                    assert ex.line >= 1
    finally:
        for t in toks.values():
            t.close()


def test_batches(ctx, smollm2_tokenizer):
    with libftq.Dataset(ctx, smollm2_tokenizer, DATA / "catalog_train_messages.jsonl", test_size=0.1,
                        per_device_train_batch_size=4, assistant_only_loss=True, max_seq_length=128) as ds:
        n_train, n_eval = ds.num_examples("train"), ds.num_examples(libftq.Split.EVAL)
        assert n_train + n_eval == 1000 and n_eval == 100 and len(ds) == n_train
        stats = ds.stats
        assert stats["rows"] == 1000 and stats["tokens"] > 0 and stats["loss_tokens"] < stats["tokens"]
        assert ds.num_batches() == (n_train + 3) // 4
        assert ds.cursor == (0, 0)
        b = ds.next_batch()
        assert ds.cursor == (0, 1)
        assert b.position == (0, 0)
        assert b.rows == 4 and b.num_examples == 4
        ids, labels, mask = b.input_ids, b.labels, b.attention_mask
        assert ids.shape == labels.shape == mask.shape == (4, b.seq_len) and ids.dtype == np.int32
        assert b.num_tokens == int(mask.sum())
        assert b.num_loss_tokens == int((labels[:, 1:] != libftq.IGNORE_INDEX).sum())
        assert np.all(labels[mask == 0] == libftq.IGNORE_INDEX)
        pos, seq = b.position_ids, b.sequence_ids
        assert np.all(pos[:, 0] == 0) and np.all(seq[mask == 0] == -1)
        starts, lengths = b.sequences()
        assert len(starts) == 4 and sum(lengths) == b.num_tokens
        for r, k in enumerate(b.example_indices):
            ex = ds.example(k)
            assert ids[r, :len(ex.ids)].tolist() == ex.ids
        same = ds.get_batch(0, epoch=0)
        assert np.array_equal(same.input_ids, ids)
        ds.get_batch(0, epoch=0, batch=b)  # refills the given batch
        ev = ds.get_batch(0, split="eval")
        assert ev.rows == min(8, n_eval)
        fp = ds.fingerprint
        assert fp != 0
        ds.seek(1, 2)
        assert ds.cursor == (1, 2)
        with pytest.raises(libftq.InvalidArgumentError):
            ds.seek(0, ds.num_batches() + 1)
        with pytest.raises(libftq.InvalidArgumentError):
            ds.get_batch(10 ** 6)


def test_dataset_errors(ctx, sp_tokenizer, tmp_path):
    with pytest.raises(libftq.FileError, match="missing.jsonl"):
        libftq.Dataset(ctx, sp_tokenizer, tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(libftq.FormatError, match="bad.jsonl:2"):
        libftq.Dataset(ctx, sp_tokenizer, bad)
    with libftq.Dataset(ctx, sp_tokenizer, bad, skip_malformed_rows=True) as ds:
        assert ds.stat("skipped") == 1 and ds.stat(libftq.DatasetStat.ROWS) == 1
    with pytest.raises(libftq.OptionRangeError, match="test_size"):
        libftq.Dataset(ctx, sp_tokenizer, ROWS, test_size=2.0)


def test_exact_match_twin():
    for case in load_json(DATA / "exact_match_cases.json"):
        assert libftq.exact_match(case["prediction"], case["reference"]) == case["match"], case
