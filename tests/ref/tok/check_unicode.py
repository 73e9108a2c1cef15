#!/usr/bin/env python3
"""Checks the character classes of src/tok/gen_unicode_tables.py (from which
src/tok/unicode_tables.c is generated) and the case folding of the
Llama-3/Qwen2 contractions in src/tok/pretok.c against what the `tokenizers`
package actually does, on every Unicode code point. Slow (a few minutes);
run by hand after changing the generator or upgrading `tokenizers`.

usage: check_unicode.py   (exits non-zero and lists differences on failure)
"""
import importlib.util
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("gen", os.path.join(HERE, "../../../src/tok/gen_unicode_tables.py"))
sys.argv = [sys.argv[0], "--allow-version"]  # the generator checks its own version when run; here we import it
gen_src = open(spec.origin).read().replace("\nmain()\n", "\n")
gen = {}
exec(compile(gen_src, spec.origin, "exec"), gen)
flags, F_LETTER, F_NUMBER, F_SPACE, F_WORD = gen["flags"], gen["F_LETTER"], gen["F_NUMBER"], gen["F_SPACE"], gen["F_WORD"]
print("unicode data", gen["ud"].unidata_version)

bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
RE_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
l3 = pre_tokenizers.Split(Regex(RE_LLAMA3), "isolated")
word_tok = Tokenizer(models.BPE())
word_tok.add_tokens([AddedToken("@@", single_word=True, normalized=False)])
WORD_ID = word_tok.token_to_id("@@")


def cls_tokenizers(c):
    if len(bl.pre_tokenize_str("a" + c)) == 1:
        return "L"
    if len(bl.pre_tokenize_str("1" + c)) == 1:
        return "N"
    if len(bl.pre_tokenize_str("!" + c)) == 1:
        return "O"
    return "S"


def cls_tables(f):
    return "L" if f & F_LETTER else "N" if f & F_NUMBER else "S" if f & F_SPACE else "O"


def fold(c):  # pretok.c: fold_at()
    return "s" if c == "\u017f" else c.lower() if c.isascii() else None


bad = []
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
        continue
    c = chr(cp)
    f = flags(cp)
    a, b = cls_tokenizers(c), cls_tables(f)
    if a != b:
        bad.append(("class", hex(cp), a, b))
    w = WORD_ID not in word_tok.encode(c + "@@").ids
    if w != bool(f & F_WORD):
        bad.append(("word", hex(cp), w, bool(f & F_WORD)))
    # one-character contractions: for a letter c, "'" + c + "a" starts with
    # the piece "'c" only through a contraction (else "'ca" is one piece)
    if f & F_LETTER:
        first = l3.pre_tokenize_str("'" + c + "a")[0][0]
        if (first == "'" + c) != (fold(c) in ("s", "t", "m", "d")):
            bad.append(("contraction", hex(cp), first))
for c1 in "rRvVlL":
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or not flags(cp) & F_LETTER:
            continue
        c2 = chr(cp)
        first = l3.pre_tokenize_str("'" + c1 + c2 + "a")[0][0]
        want = (fold(c1) + (fold(c2) or "?")) in ("re", "ve", "ll")
        if (first == "'" + c1 + c2) != want:
            bad.append(("contraction2", c1, hex(cp), first))
import collections
print(collections.Counter(b[0] for b in bad))
for b in bad[:50]:
    print(*b)
print(f"{len(bad)} differences")
sys.exit(1 if bad else 0)
