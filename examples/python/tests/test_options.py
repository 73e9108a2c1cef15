"""Options: the registry, typed keyword arguments, JSON, and their errors."""
import json
import math

import pytest

import libftq


def test_registry_lists_every_option():
    opts = libftq.list_options()
    names = [o.name for o in opts]
    assert len(names) == len(set(names)) > 30
    for must in ("num_threads", "r", "lora_alpha", "target_modules", "bnb_4bit_quant_type", "max_new_tokens",
                 "per_device_train_batch_size", "learning_rate"):
        assert must in names
    lora = libftq.list_options("lora")
    assert lora and all(o.group == "lora" for o in lora)


def test_option_info():
    r = libftq.option_info("r")
    assert r.type == libftq.OptionType.INT and r.group == "lora" and r.default == "8" and r.doc
    assert r.min >= 1 and r.max > r.min
    qt = libftq.option_info("bnb_4bit_quant_type")
    assert qt.type == libftq.OptionType.STRING and set(qt.choices) == {"nf4", "fp4"} and qt.min is None
    tm = libftq.option_info("target_modules")
    assert tm.is_list
    with pytest.raises(libftq.UnknownOptionError, match="nonexistent"):
        libftq.option_info("nonexistent")


def test_keyword_values_by_type():
    with libftq.Options(r=16, lora_alpha=32, lora_dropout=0.05, use_rslora=True,
                        target_modules=["q_proj", "v_proj"], bnb_4bit_quant_type="nf4") as o:
        assert o["r"] == 16 and isinstance(o["r"], int)
        assert o["lora_alpha"] == 32.0 and isinstance(o["lora_alpha"], float)
        assert o["lora_dropout"] == pytest.approx(0.05)
        assert o["use_rslora"] is True
        assert o["target_modules"] == ["q_proj", "v_proj"]
        assert o["bnb_4bit_quant_type"] == "nf4"
        assert o.is_set("r") and "r" in o and not o.is_set("max_new_tokens")
        assert o["max_new_tokens"] == 20  # the default
        o["r"] = "12"                     # text is parsed as the option's type
        assert o["r"] == 12
        o["use_rslora"] = "off"
        assert o["use_rslora"] is False
        o["r"] = None                     # None unsets
        assert not o.is_set("r") and o["r"] == 8
        del o["lora_alpha"]
        assert not o.is_set("lora_alpha")


def test_option_errors_name_the_option():
    with libftq.Options() as o:
        with pytest.raises(libftq.UnknownOptionError, match="lora_rank"):
            o["lora_rank"] = 3
        with pytest.raises(libftq.OptionRangeError, match="bnb_4bit_quant_type"):
            o["bnb_4bit_quant_type"] = "nf5"
        with pytest.raises(libftq.OptionRangeError, match="num_threads"):
            o["num_threads"] = -1
        with pytest.raises(libftq.OptionRangeError):
            o["learning_rate"] = math.nan
        with pytest.raises(libftq.OptionTypeError, match="r"):
            o["r"] = 1.5
        with pytest.raises(libftq.OptionTypeError, match="r"):
            o["r"] = "many"
        with pytest.raises(libftq.OptionTypeError):
            o["r"] = [1, 2]
        # exceptions are also the Python built-in kinds
        with pytest.raises(ValueError):
            o["bnb_4bit_quant_type"] = "nf5"
        with pytest.raises(LookupError):
            o["lora_rank"] = 3
        assert not o.is_set("r")  # nothing was applied


def test_json_round_trip(tmp_path):
    with libftq.Options.from_json('{"r": 64, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}') as o:
        d = o.to_dict()
        assert d == {"r": 64, "lora_alpha": 16.0, "target_modules": "q_proj,v_proj"}
        full = json.loads(o.to_json(include_defaults=True))
        assert len(full) == len(libftq.list_options())
        p = tmp_path / "cfg.json"
        p.write_text(o.to_json())
        with libftq.Options.from_json_file(p) as o2:
            assert o2.to_json() == o.to_json()
        with o.copy() as c:
            c["r"] = 4
            assert o["r"] == 64 and c["r"] == 4
    with libftq.Options() as o:
        o.load_json({"learning_rate": 2e-4})
        assert o["learning_rate"] == pytest.approx(2e-4)
        with pytest.raises(libftq.FormatError, match="line"):
            o.load_json('{"r": 1,,}')
        with pytest.raises(libftq.UnknownOptionError, match="bogus"):
            o.load_json('{"r": 2, "bogus": 1}')
        assert o["r"] == 8  # all keys checked before any is applied
        with pytest.raises(libftq.FileError, match="nothere.json"):
            o.load_json_file(tmp_path / "nothere.json")


def test_constructors_take_options_objects_dicts_and_json(ctx):
    with libftq.Options(bnb_4bit_quant_type="nf4") as o:
        with libftq.Quantizer(ctx, o) as q:
            assert q.scheme == libftq.QScheme.NF4
        with libftq.Quantizer(ctx, o, load_in_8bit=True) as q:  # keywords apply on a copy
            assert q.scheme == libftq.QScheme.INT8_SYM
        assert not o.is_set("load_in_8bit")
    with libftq.Quantizer(ctx, {"bnb_4bit_quant_type": "nf4"}) as q:
        assert q.scheme == libftq.QScheme.NF4
    with libftq.Quantizer(ctx, '{"bnb_4bit_quant_type": "fp4"}') as q:
        assert q.scheme == libftq.QScheme.FP4
    with pytest.raises(TypeError):
        libftq.Quantizer(ctx, 42)
