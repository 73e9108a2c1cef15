"""The binding against the C headers: every declared function is bound and
resolves, enum values agree, version and error plumbing work."""
import re

import pytest

import libftq
from libftq import _lib
from conftest import ROOT

HEADERS = sorted((ROOT / "include" / "libftq").glob("*.h"))


def header_text():
    return "\n".join(h.read_text() for h in HEADERS)


def declared_functions():
    text = re.sub(r"/\*.*?\*/", "", header_text(), flags=re.S)
    return set(re.findall(r"FTQ_API[^;(]*?\b(ftq_[a-z0-9_]+)\s*\(", text))


def header_enums():
    """{typedef name: {constant: value}} of every enum in the public headers."""
    text = re.sub(r"/\*.*?\*/", "", header_text(), flags=re.S)
    out = {}
    for body, name in re.findall(r"typedef enum \w+ \{(.*?)\}\s*(\w+);", text, flags=re.S):
        out[name] = {k: int(v) for k, v in re.findall(r"(FTQ_\w+)\s*=\s*(-?\d+)", body)}
    return out


def test_every_symbol_resolves():
    lib = libftq.load_library()
    assert lib.missing == [], f"{lib.path} lacks {lib.missing}"
    for name in _lib.PROTOTYPES:
        assert callable(getattr(lib, name))


def test_every_declared_function_is_bound():
    declared = declared_functions()
    assert len(declared) > 100
    unbound = sorted(declared - set(_lib.PROTOTYPES))
    assert not unbound, f"public functions without a binding (add them to examples/python/libftq/_lib.py): {unbound}"
    stale = sorted(set(_lib.PROTOTYPES) - declared)
    assert not stale, f"bound functions no header declares: {stale}"


def test_missing_symbol_is_reported(tmp_path):
    lib = libftq.load_library()
    missing = _lib._Missing("ftq_not_there", lib.path)
    with pytest.raises(libftq.LibraryError, match="ftq_not_there"):
        missing()


ENUMS = {
    "ftq_status": (libftq.Status, lambda n: "FTQ_OK" if n == "OK" else "FTQ_ERR_" + n),
    "ftq_option_type": (libftq.OptionType, lambda n: "FTQ_OPTION_" + n),
    "ftq_device_type": (libftq.DeviceType, lambda n: "FTQ_DEVICE_" + n),
    "ftq_log_level": (libftq.LogLevel, lambda n: "FTQ_LOG_" + n),
    "ftq_memory_category": (libftq.MemoryCategory, lambda n: "FTQ_MEM_" + n),
    "ftq_param_kind": (libftq.ParamKind, lambda n: "FTQ_PARAMS_" + n),
    "ftq_qscheme": (libftq.QScheme, lambda n: "FTQ_QSCHEME_" + n),
    "ftq_qstat": (libftq.QStat, lambda n: "FTQ_QSTAT_" + n),
    "ftq_float_type": (libftq.FloatType, lambda n: "FTQ_" + n),
    "ftq_memory_location": (libftq.MemoryLocation, lambda n: "FTQ_" + n),
    "ftq_finish_reason": (libftq.FinishReason, lambda n: "FTQ_FINISH_" + n),
    "ftq_special_token": (libftq.SpecialToken, lambda n: "FTQ_TOKEN_" + n),
    "ftq_encode_flag": (libftq.EncodeFlag, lambda n: "FTQ_ENCODE_" + n),
    "ftq_decode_flag": (libftq.DecodeFlag, lambda n: "FTQ_DECODE_" + n),
    "ftq_split": (libftq.Split, lambda n: "FTQ_SPLIT_" + n),
    "ftq_dataset_stat_id": (libftq.DatasetStat, lambda n: "FTQ_DATA_" + n),
    "ftq_comm_reduce": (libftq.ReduceOp, lambda n: "FTQ_COMM_" + n),
}
# ftq_qgranularity is only an option's choices ("tensor|channel|group"): nothing takes it as a number
UNBOUND_ENUMS = {"ftq_qgranularity"}


@pytest.mark.parametrize("cname", sorted(ENUMS))
def test_enum_values_match_headers(cname):
    enums = header_enums()
    py, cnamer = ENUMS[cname]
    c = enums[cname]
    mine = {cnamer(m.name): m.value for m in py if m.value != 0 or cnamer(m.name) in c}
    assert mine == c


def test_every_header_enum_is_bound():
    assert set(header_enums()) - set(ENUMS) - UNBOUND_ENUMS == set()


def test_version():
    text = (ROOT / "include" / "libftq" / "ftq_version.h").read_text()
    parts = [int(re.search(rf"FTQ_VERSION_{p} (\d+)", text).group(1)) for p in ("MAJOR", "MINOR", "PATCH")]
    assert libftq.version() == "%d.%d.%d" % tuple(parts)
    assert libftq.version_number() == parts[0] * 10000 + parts[1] * 100 + parts[2]
    info = libftq.build_info()
    assert info["version"] == libftq.version()
    assert {"cuda", "nccl", "blas", "sanitize"} <= set(info)


def test_status_strings_and_last_error():
    assert libftq.status_string(0)
    assert libftq.status_string(-1) != libftq.status_string(-4)
    assert "unknown" in libftq.status_string(12345)
    libftq.clear_error()
    assert libftq.last_error() == (libftq.Status.OK, "")
    with pytest.raises(libftq.UnknownOptionError) as e:
        libftq.Options(no_such_option=1)
    assert e.value.status == libftq.Status.UNKNOWN_OPTION
    assert "no_such_option" in e.value.message and "no_such_option" in str(e.value)
    assert libftq.last_error()[0] == libftq.Status.UNKNOWN_OPTION
    libftq.clear_error()
    assert libftq.last_error()[1] == ""


def test_library_search(monkeypatch, tmp_path):
    lib = libftq.load_library()
    monkeypatch.setenv("FTQ_LIBRARY", str(tmp_path))
    assert _lib.candidates() == [str(tmp_path / "libftq.so")]
    with pytest.raises(libftq.LibraryError, match="FTQ_LIBRARY|not found"):
        _lib.find_library()
    monkeypatch.setenv("FTQ_LIBRARY", lib.path)
    assert _lib.find_library().path == lib.path
    monkeypatch.delenv("FTQ_LIBRARY")
    assert "libftq.so.0" in _lib.candidates()
    with pytest.raises(libftq.LibraryError, match="already loaded"):
        libftq.load_library(str(tmp_path / "other.so"))
    assert libftq.load_library(lib.path) is lib
