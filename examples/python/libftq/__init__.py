"""libftq from Python: QLoRA fine-tuning of Llama-family models through the
library's C ABI (pure ctypes, no compile step).

The library is found through FTQ_LIBRARY (libftq.so or its folder), a build
folder of the source tree holding this package, or an installed libftq.so.0
(see libftq._lib.find_library()); call libftq.load_library(path) before
anything else to choose one explicitly.

Every handle is a class with close() and a context manager; objects made on
a context (or model) are released before it. Every non-OK status raises an
FtqError subclass carrying ftq_last_error()'s text. Options are keyword
arguments named as PEFT / transformers / bitsandbytes name them.

    import libftq
    with libftq.Context("cpu", num_threads=2) as ctx:
        model = libftq.Model.load(ctx, "SmolLM2-135M-Instruct.Q4_1.gguf",
                                  load_in_4bit=True, bnb_4bit_quant_type="nf4")
        lora = libftq.Lora(model, r=16, lora_alpha=32, target_modules="all-linear")
        lora.active = True
        out = model.generate([1, 2, 3], max_new_tokens=16)
"""
from ._core import (CancelledError, ClosedError, CommError, DeviceError, FileError, FormatError, FtqError,
                    InvalidArgumentError, NotFoundError, NumericError, OptionError, OptionRangeError, OptionTypeError,
                    OutOfMemoryError, ShapeError, StateError, Status, UnknownOptionError, UnsupportedError)
from ._buffers import FloatType, MemoryLocation
from ._lib import LibraryError
from .comm import Comm, ReduceOp, comm_id_create, comm_id_from_string, comm_id_to_string
from .context import Context, DeviceType, LogLevel, MemoryCategory, cuda_device_count
from .data import (IGNORE_INDEX, Batch, Dataset, DatasetStat, DecodeFlag, EncodeFlag, Example, SpecialToken, Split,
                   Tokenizer, exact_match)
from .model import FinishReason, Generation, Lora, Model, ParamKind
from .options import OptionInfo, Options, OptionType, list_options, option_info
from .quantizer import QScheme, QStat, QTensor, Quantizer
from .trainer import Optimizer, StopTraining, Trainer, eval_batch, forward_backward

__version__ = "0.1.0"


def load_library(path=None):
    """Loads libftq from @p path (else searches for it) and returns the
    loaded Library (its .path says which file). Later calls return the same one."""
    from ._lib import load
    return load(path)


def version():
    """The running library's version string, e.g. "0.1.0"."""
    from ._lib import lib
    return lib().ftq_version_string().decode()


def version_number():
    """The running library's version as major*10000 + minor*100 + patch."""
    from ._lib import lib
    return lib().ftq_version_number()


def build_info():
    """How the running library was built: a dict of its key=value words."""
    from ._lib import lib
    return dict(w.split("=", 1) for w in lib().ftq_build_info().decode().split() if "=" in w)


def status_string(status):
    """The library's short name for a status code."""
    from ._lib import lib
    return lib().ftq_status_string(int(status)).decode()


def last_error():
    """(status, message) of the calling thread's last libftq error."""
    from ._lib import lib
    L = lib()
    return Status(L.ftq_last_error_status()), (L.ftq_last_error() or b"").decode("utf-8", "replace")


def clear_error():
    """Clears the calling thread's last error."""
    from ._lib import lib
    lib().ftq_clear_error()


__all__ = [
    "CancelledError",
    "ClosedError",
    "CommError",
    "DeviceError",
    "FileError",
    "FormatError",
    "FtqError",
    "InvalidArgumentError",
    "NotFoundError",
    "NumericError",
    "OptionError",
    "OptionRangeError",
    "OptionTypeError",
    "OutOfMemoryError",
    "ShapeError",
    "StateError",
    "Status",
    "UnknownOptionError",
    "UnsupportedError",
    "FloatType",
    "MemoryLocation",
    "LibraryError",
    "Comm",
    "ReduceOp",
    "comm_id_create",
    "comm_id_from_string",
    "comm_id_to_string",
    "Context",
    "DeviceType",
    "LogLevel",
    "MemoryCategory",
    "cuda_device_count",
    "IGNORE_INDEX",
    "Batch",
    "Dataset",
    "DatasetStat",
    "DecodeFlag",
    "EncodeFlag",
    "Example",
    "SpecialToken",
    "Split",
    "Tokenizer",
    "exact_match",
    "FinishReason",
    "Generation",
    "Lora",
    "Model",
    "ParamKind",
    "OptionInfo",
    "Options",
    "OptionType",
    "list_options",
    "option_info",
    "QScheme",
    "QStat",
    "QTensor",
    "Quantizer",
    "Optimizer",
    "StopTraining",
    "Trainer",
    "eval_batch",
    "forward_backward",
    "load_library",
    "version",
    "version_number",
    "build_info",
    "status_string",
    "last_error",
    "clear_error",
]
