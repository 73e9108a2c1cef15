"""LoRA adapters: PEFT names, shapes and initialisation, tensor access, errors."""
import math

import numpy as np
import pytest

import libftq
from conftest import TINY_CONFIG


def test_peft_names_shapes_and_init(tiny_model):
    with libftq.Lora(tiny_model, r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], seed=9) as lora:
        assert lora.name == "default" and not lora.active
        assert lora.scaling == 2.0
        assert len(lora) == 2 * 2 * TINY_CONFIG["num_hidden_layers"]
        names = lora.tensor_names()
        assert names[:4] == [
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
            "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight",
            "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"]
        h, i = TINY_CONFIG["hidden_size"], TINY_CONFIG["intermediate_size"]
        assert [lora.tensor_info(k)[1] for k in range(4)] == [(4, h), (h, 4), (4, i), (h, 4)]
        assert lora.num_parameters == sum(a * b for a, b in (lora.tensor_info(k)[1] for k in range(len(lora))))
        # PEFT's default init: A ~ kaiming-uniform U(-1/sqrt(in), 1/sqrt(in)), B = 0
        a = lora.get_tensor(0)
        assert a.dtype == np.float32 and a.shape == (4, h)
        assert 0 < np.abs(a).max() <= 1 / math.sqrt(h)
        assert np.all(lora.get_tensor(1) == 0)
        assert lora.find_tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") == 0
        assert set(lora.state_dict()) == set(names)
        np.testing.assert_array_equal(lora.get_grad(0), np.zeros((4, h), np.float32))
        lora.zero_grad()


def test_set_get_and_errors(tiny_model):
    with libftq.Lora(tiny_model, "mine", r=2, seed=1) as lora:
        assert lora.name == "mine"
        shape = lora.tensor_info(1)[1]
        vals = np.arange(shape[0] * shape[1], dtype=np.float64).reshape(shape)
        lora.set_tensor(1, vals)  # float64 is converted
        np.testing.assert_array_equal(lora.get_tensor(1), vals.astype(np.float32))
        out = np.empty(shape, np.float32)
        assert lora.get_tensor(1, out=out) is out
        np.testing.assert_array_equal(out, vals)
        with pytest.raises(libftq.ShapeError):
            lora.set_tensor(1, np.zeros(3, np.float32))
        with pytest.raises(libftq.NotFoundError, match="nope"):
            lora.get_tensor("nope")
        with pytest.raises(libftq.NotFoundError):
            lora.tensor_info(len(lora))
        with pytest.raises(libftq.NotFoundError):
            lora.get_tensor(-1)
        with pytest.raises(ValueError):
            lora.get_tensor(0, out=np.empty(1, np.float32))


def test_several_adapters_one_active(tiny_model):
    a = libftq.Lora(tiny_model, "a", seed=1)
    b = libftq.Lora(tiny_model, "b", seed=2)
    a.active = True
    assert a.active and not b.active
    b.set_active()
    assert b.active and not a.active
    b.active = False
    assert not a.active and not b.active
    a.close()
    b.close()


def test_lora_option_errors(tiny_model):
    with pytest.raises(libftq.OptionRangeError, match="r"):
        libftq.Lora(tiny_model, r=0)
    with pytest.raises(libftq.OptionRangeError, match="bias"):
        libftq.Lora(tiny_model, bias="all")
    with pytest.raises(libftq.OptionRangeError, match="target_modules"):
        libftq.Lora(tiny_model, target_modules=["attention"])
