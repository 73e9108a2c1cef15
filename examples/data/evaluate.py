#!/usr/bin/env python3
"""Exact-match evaluator of the catalog data set: the Python twin of
libftq's ftq_dataset_exact_match() (src/train/dataset_eval.c).

A prediction is right when it equals the reference after removing leading
and trailing ASCII white space (space, \\t, \\n, \\r, \\v, \\f) from both.

usage:
  evaluate.py predictions.jsonl [catalog_eval_prompts.jsonl]
      predictions: one {"prediction": "..."} per line, in the order of the
      eval prompts; prints {"exact_match": accuracy, "n": count}
  evaluate.py --selftest
      checks the shared cases in exact_match_cases.json (also read by the C test)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_WS = " \t\n\r\v\f"


def exact_match(prediction: str, reference: str) -> bool:
    return prediction.strip(_WS) == reference.strip(_WS)


def main(argv):
    if argv[1:] == ["--selftest"]:
        cases = json.load(open(os.path.join(HERE, "exact_match_cases.json"), encoding="utf-8"))
        bad = [c for c in cases if exact_match(c["prediction"], c["reference"]) != c["match"]]
        print(f"{len(cases) - len(bad)}/{len(cases)} cases agree")
        return 1 if bad else 0
    if len(argv) < 2:
        print(__doc__)
        return 2
    preds = [json.loads(l)["prediction"] for l in open(argv[1], encoding="utf-8") if l.strip()]
    ref_path = argv[2] if len(argv) > 2 else os.path.join(HERE, "catalog_eval_prompts.jsonl")
    refs = [json.loads(l)["reference"] for l in open(ref_path, encoding="utf-8") if l.strip()]
    if len(preds) != len(refs):
        print(f"{len(preds)} predictions for {len(refs)} references", file=sys.stderr)
        return 1
    hits = sum(exact_match(p, r) for p, r in zip(preds, refs))
    print(json.dumps({"exact_match": hits / len(refs), "n": len(refs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
