"""PEFT adapter folders and merging through the binding (Lora.load, Lora.save,
Model.merged_weight, Model.save_merged), against what PEFT itself wrote and
computed (tests/ref/peft, made by make_ref.py with peft 0.21.2: the tiny
model folder, adapters saved by PeftModel.save_pretrained, and the logits of
PeftModel and of merge_and_unload()) and a float64 recomputation of
W' = dequant(W) + scaling * B @ A."""
import json
import math

import numpy as np
import pytest

import libftq
import st
from conftest import REF, TINY_CONFIG

PEFT = REF / "peft"
PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj"]


def projections(n_layers=2):
    return [f"model.layers.{i}.{p}.weight" for i in range(n_layers) for p in PROJ]


def peft_pairs(tensors):
    """{HF weight name: (A, B)} of a PEFT adapter's tensors, in float64."""
    out = {}
    for k, a in tensors.items():
        if ".lora_A." in k:
            stem = k[len("base_model.model."):].split(".lora_A.")[0]
            b = tensors[k.replace(".lora_A.", ".lora_B.")]
            out[stem + ".weight"] = (a.astype(np.float64), b.astype(np.float64))
    return out


def merged_ref(w, pairs, scaling, name):
    """float64 dequant(W) + scaling * B @ A (W alone for a projection the adapter leaves alone)."""
    w = np.asarray(w, np.float64)
    if name not in pairs:
        return w
    a, b = pairs[name]
    return w + scaling * (b @ a)


@pytest.fixture
def peft_tiny(ctx):
    with libftq.Model.load(ctx, PEFT / "tiny") as m:
        yield m


@pytest.fixture(scope="module")
def tiny_weights():
    return st.load(PEFT / "tiny" / "model.safetensors")[0]


def test_load_matches_peft_files(peft_tiny):
    for folder, scaling in (("adapter_qvod", 8 / 4), ("adapter_all", 16 / math.sqrt(8)), ("adapter_old", 8 / 4)):
        ref = st.load(PEFT / folder / "adapter_model.safetensors")[0]
        with libftq.Lora.load(peft_tiny, PEFT / folder, name="peft") as lora:
            assert lora.name == "peft" and not lora.active
            assert lora.scaling == pytest.approx(scaling, rel=1e-7)  # held in float32
            assert set(lora.tensor_names()) == set(ref)
            for name, values in ref.items():
                got = lora.get_tensor(name)
                assert got.shape == values.shape
                np.testing.assert_array_equal(got, values)
            assert lora.num_parameters == sum(v.size for v in ref.values())
    with libftq.Lora.load(peft_tiny, str(PEFT / "adapter_qvod")) as lora:  # str path, default name
        assert lora.name == "default"


def test_saved_folder_is_peft_and_loads_back(peft_tiny, tmp_path):
    peft_cfg = json.loads((PEFT / "adapter_qvod" / "adapter_config.json").read_text())
    with libftq.Lora.load(peft_tiny, PEFT / "adapter_qvod") as lora:
        lora.save(tmp_path / "again")
    # peft's own file, byte for byte, and the settings peft wrote
    assert (tmp_path / "again" / "adapter_model.safetensors").read_bytes() == \
        (PEFT / "adapter_qvod" / "adapter_model.safetensors").read_bytes()
    cfg = json.loads((tmp_path / "again" / "adapter_config.json").read_text())
    for key in ("r", "lora_alpha", "lora_dropout", "use_rslora", "bias", "peft_type", "task_type",
                "init_lora_weights"):
        assert cfg[key] == peft_cfg[key], key
    assert sorted(cfg["target_modules"]) == sorted(peft_cfg["target_modules"])
    assert cfg["base_model_name_or_path"].endswith("tiny")

    # a new adapter with trained-looking values: the file holds exactly its tensors, and loads back equal
    with libftq.Lora(peft_tiny, r=2, lora_alpha=6, target_modules=["k_proj", "up_proj"], use_rslora=True,
                     init_lora_weights="false", seed=5) as lora:
        state = lora.state_dict()
        lora.save(tmp_path / "new", base_model_name_or_path="my/base")
        with libftq.Lora.load(peft_tiny, tmp_path / "new", name="back") as back:
            assert back.tensor_names() == lora.tensor_names()
            for name, values in state.items():
                np.testing.assert_array_equal(back.get_tensor(name), values)
            assert back.scaling == lora.scaling == pytest.approx(6 / math.sqrt(2), rel=1e-7)
    saved, _ = st.load(tmp_path / "new" / "adapter_model.safetensors")
    assert set(saved) == set(state)
    for name, values in state.items():
        assert saved[name].dtype == np.float32
        np.testing.assert_array_equal(saved[name], values)
    cfg = json.loads((tmp_path / "new" / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["use_rslora"], cfg["base_model_name_or_path"]) == \
        (2, 6, True, "my/base")
    assert sorted(cfg["target_modules"]) == ["k_proj", "up_proj"]


def test_merged_weight_is_w_plus_scaled_ba(peft_tiny, tiny_weights):
    tensors = st.load(PEFT / "adapter_qvod" / "adapter_model.safetensors")[0]
    pairs = peft_pairs(tensors)
    assert len(pairs) == 8
    with libftq.Lora.load(peft_tiny, PEFT / "adapter_qvod") as lora:
        for name in projections():
            w = tiny_weights[name]
            assert peft_tiny.weight_shape(name) == w.shape
            base = peft_tiny.merged_weight(name)
            assert base.dtype == np.float32 and base.shape == w.shape
            np.testing.assert_array_equal(base, w)  # an fp32 base: dequant(W) is W
            got = peft_tiny.merged_weight(name, lora)
            ref = merged_ref(w, pairs, 2.0, name)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
            if name not in pairs:
                np.testing.assert_array_equal(got, w)
        # into a caller's buffer
        name = "model.layers.1.mlp.down_proj.weight"
        out = np.empty(peft_tiny.weight_shape(name), np.float32)
        assert peft_tiny.merged_weight(name, lora, out=out) is out
        np.testing.assert_array_equal(out, peft_tiny.merged_weight(name, lora))
        flat = bytearray(4 * out.size)
        peft_tiny.merged_weight(name, lora, out=memoryview(flat).cast("f"))
        np.testing.assert_array_equal(np.frombuffer(flat, np.float32).reshape(out.shape), out)


def test_merged_weight_on_an_nf4_base(ctx, tiny_weights):
    """A QLoRA base: dequant(W) is the stand-alone quantizer's fake
    quantization of W (checked against bitsandbytes in test_quantizer)."""
    q = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
    pairs = peft_pairs(st.load(PEFT / "adapter_qvod" / "adapter_model.safetensors")[0])
    with libftq.Model.load(ctx, PEFT / "tiny", **q) as model, \
            libftq.Quantizer(ctx, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True) as quantizer, \
            libftq.Lora.load(model, PEFT / "adapter_qvod") as lora:
        for name in projections():
            deq = quantizer.fake_quantize(tiny_weights[name])
            np.testing.assert_array_equal(model.merged_weight(name), deq)
            ref = merged_ref(deq, pairs, lora.scaling, name)
            np.testing.assert_allclose(model.merged_weight(name, lora), ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_first_tokens_agree_with_peft_logits(peft_tiny, tmp_path):
    """Greedy next tokens of the loaded adapter and of the merged folder equal
    the argmax of PeftModel's and merge_and_unload()'s logits."""
    ref = st.load(PEFT / "ref.safetensors")[0]
    ids = ref["input_ids"]

    def checked_rows(logits):
        rows = []
        for r in range(ids.shape[0]):
            top2 = np.sort(logits[r, -1])[-2:]
            if top2[1] - top2[0] > 1e-3:  # a clear argmax
                rows.append((r, int(np.argmax(logits[r, -1]))))
        assert rows
        return rows

    with libftq.Lora.load(peft_tiny, PEFT / "adapter_qvod") as lora:
        lora.active = True
        for r, token in checked_rows(ref["logits_qvod"]):
            assert peft_tiny.generate(ids[r], max_new_tokens=1).tokens == [token]
        lora.active = False
        for r, token in checked_rows(ref["logits_base"]):
            assert peft_tiny.generate(ids[r], max_new_tokens=1).tokens == [token]
        peft_tiny.save_merged(tmp_path / "merged", lora)
    with libftq.Model.load(peft_tiny.context, tmp_path / "merged") as merged:
        for r, token in checked_rows(ref["logits_qvod_merged"]):
            assert merged.generate(ids[r], max_new_tokens=1).tokens == [token]


def test_save_merged_folder(peft_tiny, tiny_weights, tmp_path):
    pairs = peft_pairs(st.load(PEFT / "adapter_qvod" / "adapter_model.safetensors")[0])
    with libftq.Lora.load(peft_tiny, PEFT / "adapter_qvod") as lora:
        peft_tiny.save_merged(tmp_path / "merged", lora)
        peft_tiny.save_merged(tmp_path / "bf16", lora, torch_dtype="bfloat16", max_shard_size="100KB")
        peft_tiny.save_merged(tmp_path / "nf4", lora, options={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})
    peft_tiny.save_merged(tmp_path / "base")  # no adapter: the base model again

    merged, _ = st.load(tmp_path / "merged" / "model.safetensors")
    assert set(merged) == set(tiny_weights)
    for name, w in tiny_weights.items():
        assert merged[name].dtype == np.float32
        ref = merged_ref(w, pairs, 2.0, name)
        np.testing.assert_allclose(merged[name], ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    base, _ = st.load(tmp_path / "base" / "model.safetensors")
    for name, w in tiny_weights.items():
        np.testing.assert_array_equal(base[name], w)
    cfg = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert cfg["hidden_size"] == 32 and "quantization_config" not in cfg
    assert (tmp_path / "merged" / "tokenizer.json").read_bytes() == (PEFT / "tiny" / "tokenizer.json").read_bytes()

    # options reach the library: bf16 shards with an index, a bitsandbytes 4-bit folder
    index = json.loads((tmp_path / "bf16" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and set(index["weight_map"]) == set(tiny_weights)
    for shard in shards:
        tensors, _ = st.load(tmp_path / "bf16" / shard)
        for name, bits in tensors.items():
            assert bits.dtype == np.uint16  # BF16
            got = (bits.astype(np.uint32) << 16).view(np.float32)
            ref = merged_ref(tiny_weights[name], pairs, 2.0, name)
            np.testing.assert_allclose(got, ref, rtol=2 ** -8, atol=1e-30)
    cfg = json.loads((tmp_path / "nf4" / "config.json").read_text())
    assert cfg["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    nf4, _ = st.load(tmp_path / "nf4" / "model.safetensors")
    assert "model.layers.0.self_attn.q_proj.weight.absmax" in nf4


def test_errors_carry_the_library_message(ctx, peft_tiny, tmp_path):
    missing = tmp_path / "no_such_adapter"
    with pytest.raises(libftq.NotFoundError, match="no_such_adapter") as e:
        libftq.Lora.load(peft_tiny, missing)
    assert e.value.status == libftq.Status.NOT_FOUND and str(missing) in e.value.message
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "adapter_config.json").write_text("{not json")
    (tmp_path / "bad" / "adapter_model.safetensors").write_bytes(
        (PEFT / "adapter_qvod" / "adapter_model.safetensors").read_bytes())
    with pytest.raises(libftq.FormatError, match="adapter_config.json"):
        libftq.Lora.load(peft_tiny, tmp_path / "bad")
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=1) as other:  # hidden size 64, not 32
        with pytest.raises(libftq.ShapeError):
            libftq.Lora.load(other, PEFT / "adapter_qvod")
        with libftq.Lora(other) as foreign:
            with pytest.raises(libftq.InvalidArgumentError):
                peft_tiny.merged_weight("model.layers.0.self_attn.q_proj.weight", foreign)
    with pytest.raises(libftq.UnknownOptionError, match="lora_rank"):
        libftq.Lora.load(peft_tiny, PEFT / "adapter_qvod", lora_rank=3)
    with libftq.Lora(peft_tiny) as lora:
        with pytest.raises(libftq.FileError, match="no_parent"):
            lora.save(tmp_path / "no_parent" / "adapter")
        with pytest.raises(libftq.NotFoundError, match="model.layers.0.self_attn.nope.weight"):
            peft_tiny.merged_weight("model.layers.0.self_attn.nope.weight", lora)
        with pytest.raises(libftq.NotFoundError):
            peft_tiny.weight_shape("model.embed_tokens.weight")  # not a linear projection
        with pytest.raises(ValueError):
            peft_tiny.merged_weight("model.layers.0.self_attn.q_proj.weight", out=np.empty(3, np.float32))
        with pytest.raises(TypeError):
            peft_tiny.merged_weight("model.layers.0.self_attn.q_proj.weight", out=np.empty((32, 32), np.float64))
        with pytest.raises(libftq.UnsupportedError, match="8"):
            peft_tiny.save_merged(tmp_path / "int8", lora, load_in_8bit=True)
    assert not (tmp_path / "no_parent").exists()


def test_loaded_adapters_are_released(peft_tiny, tmp_path):
    ctx = peft_tiny.context
    base = ctx.memory("adapter")[0]
    live = libftq._core.live_handles()
    for i in range(20):
        lora = libftq.Lora.load(peft_tiny, PEFT / "adapter_all", name=f"a{i}")
        assert ctx.memory("adapter")[0] > base
        if i % 2:
            lora.close()
        else:
            del lora  # released by the garbage collector
    assert ctx.memory("adapter")[0] == base
    assert libftq._core.live_handles() == live
    # closing the model closes an adapter loaded onto it
    with libftq.Model.load(ctx, PEFT / "tiny") as model:
        lora = libftq.Lora.load(model, PEFT / "adapter_qvod")
    assert lora.closed
    with pytest.raises(libftq.ClosedError):
        lora.save(tmp_path / "closed")
