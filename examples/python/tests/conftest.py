"""Fixtures shared by the binding tests: the source tree's reference files,
a CPU context, a tiny random model and the SmolLM2 tokenizer."""
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "examples" / "python"))  # the package, without installing it

import libftq  # noqa: E402

REF = ROOT / "tests" / "ref"
DATA = ROOT / "examples" / "data"
SMOLLM2_TOKENIZER = REF / "tok" / "smollm2"
TINY_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=256, max_position_embeddings=128)


def pytest_report_header(config):
    return f"libftq {libftq.version()} from {libftq.load_library().path}"


@pytest.fixture
def ctx():
    with libftq.Context("cpu", num_threads=2) as c:
        yield c


@pytest.fixture
def tiny_model(ctx):
    with libftq.Model.init_random(ctx, TINY_CONFIG, seed=1) as m:
        yield m


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    with libftq.Tokenizer(SMOLLM2_TOKENIZER) as t:
        yield t


@pytest.fixture(scope="session")
def sp_tokenizer():
    with libftq.Tokenizer(REF / "tok" / "sp_legacy") as t:
        yield t


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def smollm2_gguf():
    """The real SmolLM2 GGUF (scripts/get-model.sh), or None."""
    p = os.environ.get("FTQ_SMOLLM2_GGUF") or os.path.expanduser("~/.cache/libftq/SmolLM2-135M-Instruct.Q4_1.gguf")
    return p if os.path.isfile(p) else None
