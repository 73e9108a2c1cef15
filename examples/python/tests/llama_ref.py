"""A float64 NumPy Llama forward pass (the transformers definition:
RMSNorm, rotary embeddings, grouped-query causal attention, SwiGLU MLP) and
the shifted cross-entropy, as the independent reference for losses the
binding reports; and a writer of such a model as a Hugging Face folder."""
import json

import numpy as np

import st


def random_llama(folder, cfg, seed=0):
    """Writes config.json + model.safetensors with random float32 weights; returns the weights."""
    rng = np.random.default_rng(seed)
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = h // nh
    w = {"model.embed_tokens.weight": rng.standard_normal((v, h)),
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(h),
         "lm_head.weight": rng.standard_normal((v, h)) / np.sqrt(h)}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        for name, shape in (("self_attn.q_proj", (nh * d, h)), ("self_attn.k_proj", (kv * d, h)),
                            ("self_attn.v_proj", (kv * d, h)), ("self_attn.o_proj", (h, nh * d)),
                            ("mlp.gate_proj", (i, h)), ("mlp.up_proj", (i, h)), ("mlp.down_proj", (h, i))):
            w[p + name + ".weight"] = rng.standard_normal(shape) / np.sqrt(shape[1])
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(h)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(h)
    w = {k: a.astype(np.float32) for k, a in w.items()}
    folder.mkdir(parents=True, exist_ok=True)
    full = dict(cfg, architectures=["LlamaForCausalLM"], model_type="llama", torch_dtype="float32",
                tie_word_embeddings=False)
    (folder / "config.json").write_text(json.dumps(full))
    st.save(folder / "model.safetensors", w)
    return w


def _rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


def logits(w, cfg, ids, pos):
    """Logits [T, vocab] of one sequence (causal), float64."""
    h, nh, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps, theta = h // nh, cfg.get("rms_norm_eps", 1e-5), cfg.get("rope_theta", 10000.0)
    W = {k: a.astype(np.float64) for k, a in w.items()}
    x = W["model.embed_tokens.weight"][ids]
    T = len(ids)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        a = _rms(x, W[p + "input_layernorm.weight"], eps)
        q = (a @ W[p + "self_attn.q_proj.weight"].T).reshape(T, nh, d).transpose(1, 0, 2)
        k = (a @ W[p + "self_attn.k_proj.weight"].T).reshape(T, kv, d).transpose(1, 0, 2)
        v = (a @ W[p + "self_attn.v_proj.weight"].T).reshape(T, kv, d).transpose(1, 0, 2)
        q, k = _rope(q, pos, theta), _rope(k, pos, theta)
        k, v = np.repeat(k, nh // kv, 0), np.repeat(v, nh // kv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(d) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(T, nh * d)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        m = _rms(x, W[p + "post_attention_layernorm.weight"], eps)
        g, u = m @ W[p + "mlp.gate_proj.weight"].T, m @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    return _rms(x, W["model.norm.weight"], eps) @ W["lm_head.weight"].T


def batch_loss(w, cfg, input_ids, labels, attention_mask, position_ids):
    """(sum of token cross-entropies, labelled tokens) of a right-padded batch,
    labels shifted as transformers' causal LM loss."""
    total, n = 0.0, 0
    for r in range(input_ids.shape[0]):
        L = int(attention_mask[r].sum())
        lg = logits(w, cfg, input_ids[r, :L], position_ids[r, :L].astype(np.float64))
        lab = labels[r, 1:L]
        lse = np.log(np.exp(lg[:-1] - lg[:-1].max(-1, keepdims=True)).sum(-1)) + lg[:-1].max(-1)
        for t, y in enumerate(lab):
            if y != -100:
                total += lse[t] - lg[t, y]
                n += 1
    return total, n
