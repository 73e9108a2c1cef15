#!/usr/bin/env python3
"""Reference data for libftq's data pipeline tests (tests/data/), computed
with transformers, TRL and datasets:

  data/rows.jsonl, rows.jsonl.gz   rows in every supported format
  data/rows_expected.json          per configuration: input ids and loss masks,
                                   following TRL's SFTTrainer preparation
                                   (add EOS, tokenize, prompt/completion by
                                   common prefix, chat templates through
                                   transformers' apply_chat_template,
                                   assistant masks through {% generation %}
                                   markers)
  data/group_by_length.json        transformers' get_length_grouped_indices on
                                   given permutations (torch.randperm patched)
  data/packing.json                TRL's pack_dataset (bfd, bfd_split, wrapped)
  data/collator.json               TRL's DataCollatorForLanguageModeling
                                   (padding, labels, padding-free positions)

usage: make_data_ref.py   (after make_ref.py, whose tokenizers it uses)
"""
import gzip
import json
import os
import random
import sys

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data")
sys.path.insert(0, HERE)
from make_ref import LLAMA2_TEMPLATE  # noqa: E402

ROWS = [
    {"text": "<s>[INST] What is the capital of France? [/INST] Paris. </s>"},
    {"text": "<s>[INST] a [/INST] b </s><s>[INST] c [/INST] d </s>"},
    {"text": "Plain text without an end token."},
    {"text": "Ends with the end token already</s>"},
    {"text": "Ünïcödé text: 日本語, emoji 🐍, and tabs\tand\nnew lines."},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."},
                  {"role": "assistant", "content": "Apple."}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    {"prompt": "Translate to French: cat", "completion": " chat"},
    {"prompt": "Q: how many legs has a spider?\nA:", "completion": " eight"},
    {"prompt": [{"role": "user", "content": "Hi there"}], "completion": [{"role": "assistant", "content": "Hello!"}]},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Say hi.", "output": "hi"},
    {"instruction": "Reverse the word.", "input": "", "output": "olleh"},
    {"conversations": [{"from": "user", "value": "q?"}, {"from": "assistant", "value": "a."}]},
]

ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n### Instruction:\n{}\n\n### Input:\n{}"
                "\n\n### Response:\n")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                   "request.\n\n### Instruction:\n{}\n\n### Response:\n")

# the same templates with transformers' {% generation %} markers around the
# assistant content and its end-of-turn token (renders identical text)
LLAMA2_GEN = LLAMA2_TEMPLATE.replace(
    "{{ ' '  + content.strip() + ' ' + eos_token }}",
    "{% generation %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endgeneration %}")
CHATML_GEN = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
              "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
              "<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n'}}"
              "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
              "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def load_tok(name):
    d = os.path.join(HERE, name)
    p = os.path.join(d, "tokenizer.json")
    text = open(p, encoding="utf-8").read() if os.path.exists(p) else gzip.open(p + ".gz").read().decode()
    cfg = json.load(open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8"))
    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(text), bos_token=cfg.get("bos_token"),
                                 eos_token=cfg.get("eos_token"))
    return hf


def spans_after(text, resp, instr):
    """Character spans trained after response_template (libftq's rule)."""
    spans, p = [], 0
    while True:
        r = text.find(resp, p)
        if r < 0:
            break
        a = r + len(resp)
        b = len(text)
        if instr:
            q = text.find(instr, a)
            if q >= 0:
                b = q
        else:
            spans = []
        spans.append((a, b))
        p = max(a, b)
    return spans


def common(a, b):
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return k


def convert(msgs):
    return [{"role": m.get("role", m.get("from")), "content": m.get("content", m.get("value"))} for m in msgs]


def expected_row(hf, row, cfg, gen_template):
    eos = hf.eos_token
    co, ao = cfg["completion_only_loss"], cfg["assistant_only_loss"]
    resp, instr = cfg.get("response_template", ""), cfg.get("instruction_template", "")
    if "text" in row:
        text = row["text"] if row["text"].endswith(eos) else row["text"] + eos
        enc = hf(text, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if co and resp:
            sp = spans_after(text, resp, instr)
            mask = [int(any(a <= s < b for a, b in sp) and not (s == 0 and e == 0 and i == 0 and ids[0] == hf.bos_token_id))
                    for i, (s, e) in enumerate(enc["offset_mapping"])]
        else:
            mask = [1] * len(ids)
        return ids, mask
    msgs = row.get("messages") or row.get("conversations")
    if msgs is not None or isinstance(row.get("prompt"), list):
        if msgs is not None:
            conv, n_prompt = convert(msgs), 0
        else:
            conv, n_prompt = convert(row["prompt"]) + convert(row["completion"]), len(row["prompt"])
        out = hf.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                     chat_template=gen_template)
        ids = list(out["input_ids"])
        mask = list(out["assistant_masks"]) if ao else [1] * len(ids)
        if n_prompt and co:
            p = hf.apply_chat_template(conv[:n_prompt], tokenize=False, add_generation_prompt=True,
                                       chat_template=gen_template)
            pids = hf(p, add_special_tokens=False)["input_ids"]
            k = common(pids, ids)
            mask = [0] * k + mask[k:]
        return ids, mask
    if "prompt" in row:
        prompt, comp = row["prompt"], row["completion"]
    else:
        prompt = (ALPACA_INPUT.format(row["instruction"], row["input"]) if row.get("input")
                  else ALPACA_NO_INPUT.format(row["instruction"]))
        comp = row["output"]
    comp = comp if comp.endswith(eos) else comp + eos
    pids = hf(prompt)["input_ids"]
    ids = hf(prompt + comp)["input_ids"]
    k = common(pids, ids) if co else 0
    return ids, [0] * k + [1] * (len(ids) - k)


CONFIGS = [
    ("sp_legacy", {"completion_only_loss": True, "assistant_only_loss": False}, LLAMA2_GEN),
    ("sp_legacy", {"completion_only_loss": False, "assistant_only_loss": True}, LLAMA2_GEN),
    ("sp_legacy", {"completion_only_loss": True, "assistant_only_loss": False, "response_template": "[/INST]",
                   "instruction_template": "[INST]"}, LLAMA2_GEN),
    ("sp_legacy", {"completion_only_loss": True, "assistant_only_loss": False, "response_template": "[/INST]"},
     LLAMA2_GEN),
    ("smollm2", {"completion_only_loss": True, "assistant_only_loss": True}, CHATML_GEN),
]


def rows_expected():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rows.jsonl"), "w", encoding="utf-8") as f:
        for r in ROWS:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "rows.jsonl"), "rb") as f, gzip.GzipFile(os.path.join(OUT, "rows.jsonl.gz"), "wb",
                                                                         mtime=0) as g:
        g.write(f.read())
    out = []
    for name, cfg, gen in CONFIGS:
        hf = load_tok(name)
        rows = []
        for r in ROWS:
            ids, mask = expected_row(hf, r, cfg, gen)
            rows.append({"ids": ids, "mask": mask})
        out.append({"tokenizer": name, "options": cfg, "rows": rows})
    return out


def group_by_length_cases():
    from transformers.trainer_pt_utils import get_length_grouped_indices
    rng = np.random.default_rng(5)
    cases = []
    for n, bs in [(1, 1), (3, 4), (10, 2), (37, 4), (100, 8), (1000, 4), (1003, 16), (257, 1), (64, 16), (4000, 4)]:
        for dist in ("uniform", "ties"):
            lengths = (rng.integers(1, 1024, n) if dist == "uniform" else rng.integers(1, 6, n)).tolist()
            perm = rng.permutation(n).tolist()
            real = torch.randperm
            torch.randperm = lambda k, generator=None, _p=perm: torch.tensor(_p)
            try:
                want = get_length_grouped_indices(lengths, bs)
            finally:
                torch.randperm = real
            cases.append({"lengths": lengths, "batch_size": bs, "perm": perm, "expected": want})
    return cases


def packing_cases():
    import datasets
    from trl.data_utils import pack_dataset
    rng = np.random.default_rng(11)
    cases = []
    for n, seq, hi in [(5, 8, 6), (50, 32, 40), (300, 128, 200), (2500, 512, 700), (1200, 64, 64)]:
        lengths = rng.integers(0, hi, n).tolist()
        ids = [[i * 100000 + k for k in range(L)] for i, L in enumerate(lengths)]
        ds = datasets.Dataset.from_dict({"input_ids": ids})
        for strategy in ("bfd", "bfd_split", "wrapped"):
            packed = pack_dataset(ds, seq, strategy)
            rows = []
            for r in packed:
                segs, cur = [], None
                for t in r["input_ids"]:
                    ex, off = divmod(t, 100000)
                    if cur and cur[0] == ex and cur[1] + cur[2] == off:
                        cur[2] += 1
                    else:
                        cur = [ex, off, 1]
                        segs.append(cur)
                rows.append({"segments": segs, "seq_lengths": r.get("seq_lengths")})
            cases.append({"lengths": lengths, "seq_length": seq, "strategy": strategy, "rows": rows})
    return cases


def collator_cases():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as C
    rng = random.Random(3)
    cases = []
    for padding_free in (False, True):
        for mult in (None, 8):
            ex = []
            for _ in range(4):
                n = rng.randint(1, 13)
                ids = [rng.randint(3, 99) for _ in range(n)]
                labels = [t if rng.random() < 0.7 else -100 for t in ids]
                segs = None
                if padding_free and n > 3:
                    cut = rng.randint(1, n - 1)
                    segs = [cut, n - cut]
                e = {"input_ids": ids, "labels": labels}
                if segs:
                    e["seq_lengths"] = segs
                ex.append(e)
            if padding_free:
                for e in ex:
                    e.setdefault("seq_lengths", [len(e["input_ids"])])
            coll = C(pad_token_id=2, padding_free=padding_free, pad_to_multiple_of=mult, return_position_ids=True)
            out = coll(ex)
            cases.append({"padding_free": padding_free, "pad_to_multiple_of": mult or 0, "examples": ex,
                          **{k: out[k].tolist() for k in ("input_ids", "labels", "position_ids")},
                          "attention_mask": out["attention_mask"].tolist() if "attention_mask" in out else None})
    return cases


def dump(obj, name):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    dump({"configs": rows_expected()}, "rows_expected.json")
    dump({"cases": group_by_length_cases()}, "group_by_length.json")
    dump({"cases": packing_cases()}, "packing.json")
    dump({"cases": collator_cases()}, "collator.json")


if __name__ == "__main__":
    main()
