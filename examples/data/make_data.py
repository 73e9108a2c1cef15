#!/usr/bin/env python3
"""Generates libftq's example instruction data set: "catalog records".

The task is a deterministic string transformation with exactly one right
answer, which a small instruct model cannot guess (the output format is not
described in the instruction) and learns from examples in a few hundred
steps:

    user:      Convert this record to catalog form.
               name: Alice Smith; born: 1987-03-05; city: Paris
    assistant: SMITH, Alice (05.03.1987) - Paris

(surname in capitals, comma, given name, birth date as DD.MM.YYYY in
parentheses, " - ", city). Names and cities come from short fixed lists, so
every surname's capitalised form is seen often in training.

Files written next to this script (the eval rows are combinations that never
occur in train):
  catalog_train_text.jsonl      {"text": "<s>[INST] ... [/INST] ... </s>"}   (guanaco Llama-2 format)
  catalog_train_messages.jsonl  {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}
  catalog_eval_text.jsonl, catalog_eval_messages.jsonl   the held-out split
  catalog_eval_prompts.jsonl    {"prompt": ..., "reference": ...} for generation + exact match

usage: make_data.py [--train 1000] [--eval 200] [--seed 7]
"""
import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
INSTRUCTION = "Convert this record to catalog form."
FIRST = ["Alice", "Bruno", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Irene", "Jonas", "Karin", "Lucas",
         "Maria", "Nils", "Olga", "Peter", "Rosa", "Simon", "Tara", "Victor"]
LAST = ["Smith", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Moore", "Taylor", "Anderson", "Thomas", "Martin",
        "Jackson", "White", "Harris", "Clark", "Lewis", "Walker", "Young", "King", "Wright"]
CITIES = ["Paris", "Berlin", "Madrid", "Rome", "Vienna", "Lisbon", "Oslo", "Prague", "Dublin", "Athens", "Warsaw",
          "Zurich", "Geneva", "Munich", "Lyon", "Porto"]


def record(rng):
    first, last, city = rng.choice(FIRST), rng.choice(LAST), rng.choice(CITIES)
    y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
    prompt = f"{INSTRUCTION}\nname: {first} {last}; born: {y:04d}-{m:02d}-{d:02d}; city: {city}"
    answer = f"{last.upper()}, {first} ({d:02d}.{m:02d}.{y:04d}) - {city}"
    return prompt, answer


def rows(n, rng, seen):
    out = []
    while len(out) < n:
        p, a = record(rng)
        if p in seen:
            continue
        seen.add(p)
        out.append((p, a))
    return out


def write(path, items):
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    seen = set()
    train, ev = rows(a.train, rng, seen), rows(a.eval, rng, seen)
    for name, part in (("train", train), ("eval", ev)):
        # guanaco-llama2-1k layout: "<s>[INST] {user} [/INST] {assistant} </s>"
        write(os.path.join(HERE, f"catalog_{name}_text.jsonl"),
              [{"text": f"<s>[INST] {p} [/INST] {r} </s>"} for p, r in part])
        write(os.path.join(HERE, f"catalog_{name}_messages.jsonl"),
              [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]} for p, r in part])
    write(os.path.join(HERE, "catalog_eval_prompts.jsonl"), [{"prompt": p, "reference": r} for p, r in ev])


if __name__ == "__main__":
    main()
