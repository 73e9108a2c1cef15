"""Models and generation, checked against transformers + PEFT: the
reference file tests/ref/model/gqa.safetensors (gen_ref.py) holds random
weights, a LoRA adapter and the greedy generations transformers made with
and without it; here they go through the binding (a HF folder written from
the reference weights, Model.load, Lora.set_tensor, Model.generate)."""
import json

import numpy as np
import pytest

import libftq
import st
from conftest import REF, TINY_CONFIG


def write_hf_folder(ref_name, folder):
    tensors, meta = st.load(REF / "model" / f"{ref_name}.safetensors")
    c = json.loads(meta["config"])
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": c["hidden_size"],
           "intermediate_size": c["intermediate_size"], "num_hidden_layers": c["num_hidden_layers"],
           "num_attention_heads": c["num_attention_heads"], "num_key_value_heads": c["num_key_value_heads"],
           "vocab_size": c["vocab_size"], "rms_norm_eps": c["rms_norm_eps"], "rope_theta": c["rope_theta"],
           "max_position_embeddings": 256, "tie_word_embeddings": c["tie"], "attention_bias": c["bias"],
           "bos_token_id": 1, "eos_token_id": c["eos_token_id"], "pad_token_id": 0, "torch_dtype": "float32"}
    assert c["dtype"] == "f32" and not c["rope"] and not c["nf4"]
    weights = {k[2:]: v for k, v in tensors.items() if k.startswith("w.")}
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    st.save(folder / "model.safetensors", weights)
    return tensors, c


def test_generation_matches_transformers_and_peft(ctx, tmp_path):
    ref, c = write_hf_folder("gqa", tmp_path / "gqa")
    with libftq.Model.load(ctx, tmp_path / "gqa") as model:
        assert model.config_int("hidden_size") == c["hidden_size"]
        assert model.config_int("num_key_value_heads") == c["num_key_value_heads"]
        assert model.config_float("rms_norm_eps") == pytest.approx(1e-5)
        assert model.config_string("architectures") == "LlamaForCausalLM"
        assert model.config_string("model_type") == "llama"
        assert model.eos_token_ids == [c["eos_token_id"]]
        n_weights = sum(v.size for k, v in ref.items() if k.startswith("w."))
        assert model.parameter_count() == n_weights
        assert model.parameter_count("embedding") == c["vocab_size"] * c["hidden_size"]
        assert model.parameter_bytes(libftq.ParamKind.ALL) == 4 * n_weights
        prompt = ref["input_ids"][0, :6]
        base = model.generate(prompt, max_new_tokens=8)
        assert base.tokens == ref["generate.base"].tolist()
        lc = c["lora"]
        with libftq.Lora(model, r=lc["r"], lora_alpha=lc["lora_alpha"], target_modules=lc["target_modules"],
                         init_lora_weights="false") as lora:
            assert lora.tensor_names() == c["lora_tensors"]
            for name in c["lora_tensors"]:
                lora.set_tensor(name, ref["lora." + name])
                np.testing.assert_array_equal(lora.get_tensor(name), ref["lora." + name])
            lora.active = True
            assert lora.active
            out = model.generate(prompt, max_new_tokens=8)
            assert out.tokens == ref["generate.lora"].tolist()
            assert out.finish_reason == libftq.FinishReason.LENGTH
            lora.active = False
            assert model.generate(prompt, max_new_tokens=8).tokens == base.tokens


def test_init_random_config_and_errors(ctx):
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=5) as m:
        cfg = m.config
        assert cfg["hidden_size"] == 64 and cfg["vocab_size"] == 256
        with libftq.Model.init_random(ctx, m.config_json(), seed=5) as m2:
            assert m2.config == cfg
        assert m.parameter_count(libftq.ParamKind.LM_HEAD) == 256 * 64
        assert m.parameter_count("bias") == 0
        with pytest.raises(libftq.NotFoundError, match="no_such_field"):
            m.config_int("no_such_field")
    with pytest.raises(libftq.FormatError):
        libftq.Model.init_random(ctx, "{not json", seed=0)
    with pytest.raises(libftq.FtqError, match="hidden_size"):
        libftq.Model.init_random(ctx, dict(TINY_CONFIG, hidden_size=-4), seed=0)
    with pytest.raises(libftq.OptionRangeError, match="torch_dtype"):
        libftq.Model.init_random(ctx, TINY_CONFIG, torch_dtype="float8")


def test_quantize_at_load(ctx):
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=2) as full, \
            libftq.Model.init_random(ctx, TINY_CONFIG, seed=2, load_in_4bit=True, bnb_4bit_quant_type="nf4") as q4:
        assert q4.parameter_count() == full.parameter_count()
        assert q4.parameter_bytes("linear") < full.parameter_bytes("linear") / 4


def test_load_errors(ctx, tmp_path):
    with pytest.raises(libftq.FtqError) as e:
        libftq.Model.load(ctx, tmp_path / "missing")
    assert "missing" in e.value.message
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\0" * 12)
    with pytest.raises(libftq.FtqError, match="bad.gguf"):
        libftq.Model.load(ctx, tmp_path / "bad.gguf")


def test_generate_arguments(ctx, tiny_model):
    g = tiny_model.generate(np.array([1, 2, 3], dtype=np.int64), max_new_tokens=4)
    assert len(g.tokens) <= 4
    import array
    assert tiny_model.generate(array.array("i", [1, 2, 3]), max_new_tokens=4).tokens == g.tokens
    assert tiny_model.generate((1, 2, 3), max_new_tokens=4).tokens == g.tokens
    assert tiny_model.generate([1, 2, 3], max_new_tokens=0).tokens == []
    s1 = tiny_model.generate([1, 2, 3], max_new_tokens=6, do_sample=True, temperature=1.5, seed=7)
    s2 = tiny_model.generate([1, 2, 3], max_new_tokens=6, do_sample=True, temperature=1.5, seed=7)
    assert s1 == s2
    first = g.tokens[0]
    stop = tiny_model.generate([1, 2, 3], max_new_tokens=4, stop_sequences=[[first]])
    assert stop.tokens == [first] and stop.finish_reason == libftq.FinishReason.STOP_SEQUENCE
    with pytest.raises(libftq.InvalidArgumentError, match="prompt"):
        tiny_model.generate([], max_new_tokens=2)
    with pytest.raises(libftq.InvalidArgumentError):
        tiny_model.generate([1, 100000], max_new_tokens=2)
    with pytest.raises(OverflowError):
        tiny_model.generate([1, 1 << 40], max_new_tokens=2)
    with pytest.raises(libftq.OptionRangeError, match="top_p"):
        tiny_model.generate([1], top_p=2.0)
    with pytest.raises(ValueError):
        tiny_model.generate([1], stop_sequences=[[]])
