"""Tokenizer through the binding, against Hugging Face tokenizers' output
(tests/ref/tok/*/expected.json and chat.json, from make_ref.py)."""
import base64

import numpy as np
import pytest

import libftq
from conftest import REF, load_json


@pytest.mark.parametrize("name", ["smollm2", "sp_legacy", "llama3", "qwen2"])
def test_encode_decode_match_tokenizers(name):
    ref = load_json(REF / "tok" / name / "expected.json")
    texts = [base64.b64decode(t) for t in load_json(REF / "tok" / "corpus.json")["texts_b64"]]
    assert len(texts) == len(ref["cases"])
    with libftq.Tokenizer(REF / "tok" / name) as tok:
        for text, case in zip(texts, ref["cases"]):
            assert tok.encode(text) == case["ids"], text  # bytes go in as they are (ill-formed UTF-8 too)
            assert tok.encode(text, add_special_tokens=True) == case["ids_special"]
            assert tok.encode(text, libftq.EncodeFlag.SPECIAL_AS_TEXT) == \
                case["ids_special_as_text"]
            assert tok.decode(case["ids"]) == case["decoded"]
            assert tok.decode(np.array(case["ids_special"], dtype=np.int64), skip_special_tokens=True) == \
                case["decoded_skip"]
        for case in ref["random_decodes"]:
            assert tok.decode(case["ids"]) == case["decoded"]
            assert tok.decode(case["ids"], libftq.DecodeFlag.SKIP_SPECIAL) == case["decoded_skip"]


def test_encode_variants(sp_tokenizer):
    tok = sp_tokenizer
    text = "Hello world"
    ids = tok.encode(text)
    assert tok.encode(text.encode()) == ids
    with_special = tok.encode(text, libftq.EncodeFlag.ADD_SPECIAL)
    assert with_special == [tok.bos_id] + ids
    assert tok.encode(text, libftq.EncodeFlag.ADD_BOS | libftq.EncodeFlag.ADD_EOS) == [tok.bos_id] + ids + [tok.eos_id]
    ids2, offsets = tok.encode_offsets(text)
    assert ids2 == ids and len(offsets) == len(ids) and offsets[0] == 0
    assert tok.encode("</s>") == [tok.eos_id]
    assert tok.encode("</s>", libftq.EncodeFlag.SPECIAL_AS_TEXT) != [tok.eos_id]
    assert tok.encode("") == []
    assert b"".join(tok.token_to_piece(i) for i in ids).strip() == b"Hello world"


def test_vocabulary(sp_tokenizer, smollm2_tokenizer):
    tok = sp_tokenizer
    assert tok.vocab_size > 256
    assert tok.special_id("bos") == tok.bos_id == tok.token_to_id("<s>")
    assert tok.id_to_token(tok.eos_id) == "</s>"
    assert tok.is_special(tok.eos_id) and not tok.is_special(tok.encode("a")[-1])
    assert tok.unk_id is not None
    im_end = smollm2_tokenizer.token_to_id("<|im_end|>")
    assert smollm2_tokenizer.id_to_token(im_end) == "<|im_end|>"
    with pytest.raises(libftq.NotFoundError):
        tok.token_to_id("<definitely-not-a-token>")
    with pytest.raises(libftq.NotFoundError):
        tok.id_to_token(10 ** 8)
    with pytest.raises(libftq.NotFoundError):
        tok.decode([10 ** 8])


def test_chat_templates_match_transformers():
    cases = load_json(REF / "tok" / "chat.json")["cases"]
    toks = {}
    try:
        for case in cases:
            name = case["tokenizer"]
            if name not in toks:
                path = REF / "tok" / name
                toks[name] = libftq.Tokenizer(path)
            tok = toks[name]
            if "error" in case:
                with pytest.raises(libftq.FormatError, match="alternate"):
                    tok.apply_chat_template(case["messages"], case["add_generation_prompt"])
                continue
            text = tok.apply_chat_template(case["messages"], case["add_generation_prompt"])
            assert text == case["text"], case
            assert tok.encode(text) == case["ids"]
            assert tok.chat_template == case["kind"]
    finally:
        for t in toks.values():
            t.close()


def test_tokenizer_errors(tmp_path):
    with pytest.raises(libftq.FtqError, match="nothing-here"):
        libftq.Tokenizer(tmp_path / "nothing-here")
    with pytest.raises(libftq.FormatError):
        libftq.Tokenizer.from_json("{]")
    with pytest.raises(libftq.OptionRangeError, match="chat_template"):
        libftq.Tokenizer(REF / "tok" / "sp_legacy", chat_template="vicuna")
    with libftq.Tokenizer(REF / "tok" / "sp_legacy", chat_template="none") as t:
        assert t.chat_template is None
        with pytest.raises(libftq.StateError):
            t.apply_chat_template([{"role": "user", "content": "hi"}])
    text = (REF / "tok" / "sp_legacy" / "tokenizer.json").read_text()
    with libftq.Tokenizer.from_json(text, eos_token="<unk>") as t:
        assert t.eos_id == t.token_to_id("<unk>")
