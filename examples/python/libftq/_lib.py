"""Finds libftq.so and declares the C functions the binding calls.

Every public function of include/libftq/*.h is listed in PROTOTYPES with its
ctypes signature. All are resolved when the library is loaded; a symbol the
library lacks (an older libftq) is recorded and calling it raises
LibraryError naming it, so the rest of the binding still works.
"""
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import threading
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t, c_uint,
                    c_uint64, c_void_p)

# The ABI major version this binding speaks (libftq.so.MAJOR).
ABI_MAJOR = 0

LOG_CALLBACK = CFUNCTYPE(None, c_void_p, c_int, c_char_p)
TOKEN_CALLBACK = CFUNCTYPE(c_int, c_void_p, c_int32, c_size_t)
TRAINER_LOG_CALLBACK = CFUNCTYPE(c_int, c_void_p, c_char_p)
TRAINER_PROGRESS_CALLBACK = CFUNCTYPE(c_int, c_void_p, c_int64, c_int64, c_double, c_double, c_double)
TRAINER_EVAL_CALLBACK = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int64, POINTER(c_double))

_H = c_void_p           # any opaque handle
_PH = POINTER(c_void_p)  # handle out-parameter, or a pointer out-parameter
_S = c_int              # ftq_status
_Z = c_size_t
_PZ = POINTER(c_size_t)
_I64 = c_int64
_PI64 = POINTER(c_int64)
_STR = c_char_p
_PSTR = POINTER(c_char_p)

PROTOTYPES = {
    # ftq_version.h
    "ftq_version_number": (c_int, []),
    "ftq_version_string": (_STR, []),
    "ftq_version": (None, [POINTER(c_int), POINTER(c_int), POINTER(c_int)]),
    "ftq_build_info": (_STR, []),
    # ftq_status.h
    "ftq_status_string": (_STR, [c_int]),
    "ftq_last_error": (_STR, []),
    "ftq_last_error_status": (c_int, []),
    "ftq_clear_error": (None, []),
    "ftq_free": (None, [c_void_p]),
    # ftq_options.h: registry
    "ftq_option_count": (_Z, []),
    "ftq_option_find": (_S, [_STR, _PZ]),
    "ftq_option_name": (_STR, [_Z]),
    "ftq_option_type_of": (c_int, [_Z]),
    "ftq_option_group": (_STR, [_Z]),
    "ftq_option_doc": (_STR, [_Z]),
    "ftq_option_default": (_STR, [_Z]),
    "ftq_option_range": (_S, [_Z, POINTER(c_double), POINTER(c_double)]),
    "ftq_option_choices": (_STR, [_Z]),
    "ftq_option_is_list": (c_int, [_Z]),
    # ftq_options.h: sets
    "ftq_options_create": (_S, [_PH]),
    "ftq_options_destroy": (None, [_H]),
    "ftq_options_copy": (_S, [_H, _PH]),
    "ftq_options_set_int": (_S, [_H, _STR, c_int64]),
    "ftq_options_set_float": (_S, [_H, _STR, c_double]),
    "ftq_options_set_bool": (_S, [_H, _STR, c_int]),
    "ftq_options_set_string": (_S, [_H, _STR, _STR]),
    "ftq_options_set_parse": (_S, [_H, _STR, _STR]),
    "ftq_options_unset": (_S, [_H, _STR]),
    "ftq_options_is_set": (_S, [_H, _STR, POINTER(c_int)]),
    "ftq_options_get_int": (_S, [_H, _STR, _PI64]),
    "ftq_options_get_float": (_S, [_H, _STR, POINTER(c_double)]),
    "ftq_options_get_bool": (_S, [_H, _STR, POINTER(c_int)]),
    "ftq_options_get_string": (_S, [_H, _STR, _PSTR]),
    "ftq_options_load_json": (_S, [_H, _STR]),
    "ftq_options_load_json_file": (_S, [_H, _STR]),
    "ftq_options_to_json": (_S, [_H, c_int, _PH]),
    # ftq_context.h
    "ftq_context_create": (_S, [_STR, _H, _PH]),
    "ftq_context_destroy": (None, [_H]),
    "ftq_context_set_log_callback": (_S, [_H, LOG_CALLBACK, c_void_p]),
    "ftq_context_set_log_level": (_S, [_H, c_int]),
    "ftq_context_device_type": (c_int, [_H]),
    "ftq_context_device_name": (_STR, [_H]),
    "ftq_context_num_threads": (c_int, [_H]),
    "ftq_context_memory": (_S, [_H, c_int, _PZ, _PZ]),
    "ftq_context_device_memory": (_S, [_H, _PZ, _PZ]),
    "ftq_context_synchronize": (_S, [_H]),
    "ftq_cuda_device_count": (_S, [POINTER(c_int)]),
    # ftq_model.h
    "ftq_model_load": (_S, [_H, _STR, _H, _PH]),
    "ftq_model_init_random": (_S, [_H, _STR, c_uint64, _H, _PH]),
    "ftq_model_destroy": (None, [_H]),
    "ftq_model_config_int": (_S, [_H, _STR, _PI64]),
    "ftq_model_config_float": (_S, [_H, _STR, POINTER(c_double)]),
    "ftq_model_config_string": (_S, [_H, _STR, _PSTR]),
    "ftq_model_eos_token_ids": (_S, [_H, _PI64, _Z, _PZ]),
    "ftq_model_config_json": (_S, [_H, _PH]),
    "ftq_model_parameter_count": (_S, [_H, c_int, _PI64]),
    "ftq_model_parameter_bytes": (_S, [_H, c_int, _PZ]),
    "ftq_model_memory": (_S, [_H, c_int, _PZ]),
    # ftq_generate.h
    "ftq_model_generate": (_S, [_H, POINTER(c_int32), _Z, _H, c_uint64, POINTER(c_int32), _Z, TOKEN_CALLBACK,
                                c_void_p, POINTER(c_int32), _Z, _PZ, POINTER(c_int)]),
    # ftq_quantizer.h
    "ftq_quantizer_create": (_S, [_H, _H, _PH]),
    "ftq_quantizer_destroy": (None, [_H]),
    "ftq_quantizer_scheme": (c_int, [_H]),
    "ftq_quantizer_quantized_bytes": (_S, [_H, c_int, _PI64, _PZ]),
    "ftq_quantizer_quantize": (_S, [_H, c_void_p, c_int, c_int, c_int, _PI64, _PH]),
    "ftq_quantizer_fake_quantize": (_S, [_H, c_void_p, c_void_p, c_int, c_int, c_int, _PI64]),
    "ftq_quantizer_fake_quantize_backward": (_S, [_H, c_void_p, c_void_p, c_void_p, c_int, c_int, c_int, _PI64]),
    "ftq_quantizer_error_stats": (_S, [_H, c_void_p, c_int, c_int, c_int, _PI64, POINTER(c_double), _Z]),
    "ftq_quantizer_observe": (_S, [_H, c_void_p, c_int, c_int, _Z]),
    "ftq_quantizer_calibration": (_S, [_H, POINTER(c_float), POINTER(c_int32)]),
    "ftq_quantizer_reset_calibration": (None, [_H]),
    "ftq_qtensor_destroy": (None, [_H]),
    "ftq_qtensor_scheme": (c_int, [_H]),
    "ftq_qtensor_shape": (c_int, [_H, _PI64, c_int]),
    "ftq_qtensor_bytes": (_Z, [_H]),
    "ftq_qtensor_clipped": (c_int64, [_H]),
    "ftq_qtensor_dequantize_into": (_S, [_H, c_void_p, c_int, c_int, _Z]),
    # ftq_lora.h
    "ftq_lora_create": (_S, [_H, _STR, _H, c_uint64, _PH]),
    "ftq_lora_destroy": (None, [_H]),
    "ftq_lora_set_active": (_S, [_H, c_int]),
    "ftq_lora_is_active": (c_int, [_H]),
    "ftq_lora_name": (_STR, [_H]),
    "ftq_lora_num_parameters": (_S, [_H, _PI64]),
    "ftq_lora_scaling": (_S, [_H, POINTER(c_double)]),
    "ftq_lora_tensor_count": (_Z, [_H]),
    "ftq_lora_tensor_info": (_S, [_H, _Z, c_char_p, _Z, _PI64]),
    "ftq_lora_find_tensor": (_S, [_H, _STR, _PZ]),
    "ftq_lora_get_tensor": (_S, [_H, _Z, c_void_p, _Z]),
    "ftq_lora_set_tensor": (_S, [_H, _Z, c_void_p, _Z]),
    "ftq_lora_get_grad": (_S, [_H, _Z, c_void_p, _Z]),
    "ftq_lora_zero_grad": (_S, [_H]),
    "ftq_lora_save": (_S, [_H, _STR, _H]),
    "ftq_lora_load": (_S, [_H, _STR, _STR, _H, _PH]),
    "ftq_model_merged_weight": (_S, [_H, _H, _STR, c_void_p, _Z, _PI64]),
    "ftq_model_save_merged": (_S, [_H, _H, _STR, _H]),
    # ftq_tokenizer.h
    "ftq_tokenizer_load": (_S, [_STR, _H, _PH]),
    "ftq_tokenizer_load_json": (_S, [c_void_p, _Z, _H, _PH]),
    "ftq_tokenizer_destroy": (None, [_H]),
    "ftq_tokenizer_encode": (_S, [_H, c_void_p, _Z, c_uint, _PH, _PZ]),
    "ftq_tokenizer_encode_offsets": (_S, [_H, c_void_p, _Z, c_uint, _PH, _PH, _PZ]),
    "ftq_tokenizer_decode": (_S, [_H, POINTER(c_int32), _Z, c_uint, _PH, _PZ]),
    "ftq_tokenizer_token_to_piece": (_S, [_H, c_int32, _PH, _PZ]),
    "ftq_tokenizer_id_to_token": (_S, [_H, c_int32, _PH, _PZ]),
    "ftq_tokenizer_token_to_id": (_S, [_H, c_void_p, _Z, POINTER(c_int32)]),
    "ftq_tokenizer_vocab_size": (c_int64, [_H]),
    "ftq_tokenizer_special_id": (c_int32, [_H, c_int]),
    "ftq_tokenizer_is_special": (c_int, [_H, c_int32]),
    "ftq_tokenizer_chat_template": (_STR, [_H]),
    "ftq_tokenizer_apply_chat_template": (_S, [_H, _STR, c_int, _PH, _PZ]),
    # ftq_dataset.h
    "ftq_dataset_load": (_S, [_H, _H, _STR, _H, _PH]),
    "ftq_dataset_destroy": (None, [_H]),
    "ftq_dataset_num_examples": (c_int64, [_H, c_int]),
    "ftq_dataset_stat": (c_int64, [_H, c_int]),
    "ftq_dataset_example": (_S, [_H, c_int, c_int64, _PH, _PH, _PI64, _PI64]),
    "ftq_dataset_num_batches": (c_int64, [_H, c_int]),
    "ftq_dataset_get_batch": (_S, [_H, c_int, c_int64, c_int64, _H]),
    "ftq_dataset_next_batch": (_S, [_H, _H]),
    "ftq_dataset_cursor": (_S, [_H, _PI64, _PI64]),
    "ftq_dataset_seek": (_S, [_H, c_int64, c_int64]),
    "ftq_dataset_fingerprint": (c_uint64, [_H]),
    "ftq_dataset_exact_match": (c_int, [c_void_p, _Z, c_void_p, _Z]),
    "ftq_batch_create": (_S, [_PH]),
    "ftq_batch_destroy": (None, [_H]),
    "ftq_batch_rows": (c_int64, [_H]),
    "ftq_batch_seq_len": (c_int64, [_H]),
    "ftq_batch_input_ids": (c_void_p, [_H]),
    "ftq_batch_labels": (c_void_p, [_H]),
    "ftq_batch_position_ids": (c_void_p, [_H]),
    "ftq_batch_sequence_ids": (c_void_p, [_H]),
    "ftq_batch_attention_mask": (c_void_p, [_H]),
    "ftq_batch_sequences": (_S, [_H, _PI64, _PH, _PH]),
    "ftq_batch_num_tokens": (c_int64, [_H]),
    "ftq_batch_num_loss_tokens": (c_int64, [_H]),
    "ftq_batch_example_indices": (c_void_p, [_H]),
    "ftq_batch_num_examples": (c_int64, [_H]),
    "ftq_batch_position": (_S, [_H, _PI64, _PI64]),
    # ftq_trainer.h
    "ftq_model_forward_backward": (_S, [_H, _H, _H, c_uint64, c_uint64, c_double, POINTER(c_double), _PI64]),
    "ftq_model_eval_batch": (_S, [_H, _H, POINTER(c_double), _PI64]),
    "ftq_optimizer_create": (_S, [_H, _H, c_int64, _PH]),
    "ftq_optimizer_destroy": (None, [_H]),
    "ftq_optimizer_step": (_S, [_H, POINTER(c_double), POINTER(c_double), POINTER(c_int)]),
    "ftq_optimizer_steps_done": (c_int64, [_H]),
    "ftq_optimizer_learning_rate": (c_double, [_H]),
    "ftq_trainer_create": (_S, [_H, _H, _H, _H, _PH]),
    "ftq_trainer_destroy": (None, [_H]),
    "ftq_trainer_set_log_callback": (_S, [_H, TRAINER_LOG_CALLBACK, c_void_p]),
    "ftq_trainer_set_progress_callback": (_S, [_H, TRAINER_PROGRESS_CALLBACK, c_void_p]),
    "ftq_trainer_set_eval_callback": (_S, [_H, TRAINER_EVAL_CALLBACK, c_void_p]),
    "ftq_trainer_plan": (_S, [_H, _PH]),
    "ftq_trainer_train": (_S, [_H]),
    "ftq_trainer_step": (_S, [_H, POINTER(c_double)]),
    "ftq_trainer_evaluate": (_S, [_H, POINTER(c_double)]),
    "ftq_trainer_save_checkpoint": (_S, [_H, _STR]),
    "ftq_trainer_load_checkpoint": (_S, [_H, _STR]),
    "ftq_trainer_global_step": (c_int64, [_H]),
    "ftq_trainer_total_steps": (c_int64, [_H]),
    "ftq_trainer_nonfinite_steps": (c_int64, [_H]),
    "ftq_trainer_optimizer": (c_void_p, [_H]),
    "ftq_trainer_set_comm": (_S, [_H, _H]),
    # ftq_comm.h (ids are FTQ_COMM_ID_SIZE-byte buffers)
    "ftq_comm_id_create": (_S, [c_int, c_void_p]),
    "ftq_comm_id_to_string": (_S, [c_void_p, c_void_p, _Z]),
    "ftq_comm_id_from_string": (_S, [_STR, c_void_p]),
    "ftq_comm_create": (_S, [_H, c_void_p, c_int, c_int, _H, _PH]),
    "ftq_comm_create_from_env": (_S, [_H, _H, _PH]),
    "ftq_comm_destroy": (None, [_H]),
    "ftq_comm_rank": (c_int, [_H]),
    "ftq_comm_size": (c_int, [_H]),
    "ftq_comm_check": (_S, [_H]),
    "ftq_comm_abort": (_S, [_H]),
    "ftq_comm_barrier": (_S, [_H]),
    "ftq_comm_allreduce": (_S, [_H, POINTER(c_double), _Z, c_int]),
}


class LibraryError(ImportError):
    """libftq could not be found or loaded, or lacks a function the binding needs."""


class _Missing:
    """Stands in for a function the loaded library does not export."""

    def __init__(self, name, path):
        self.name = name
        self.path = path

    def __call__(self, *args):
        raise LibraryError(f"{self.path} does not export {self.name}: the library is older than this binding")


def _unwrapping(fn):
    """@p fn taking binding handles too: each is replaced by its C pointer
    (a closed handle raises ClosedError here, not inside ctypes)."""
    def call(*args):
        return fn(*[a._ftq_ptr() if hasattr(a, "_ftq_ptr") else a for a in args])
    call.__name__ = fn.__name__
    call.c_function = fn
    return call


class Library:
    """The loaded shared library with every prototype applied."""

    def __init__(self, path):
        self.path = path
        try:
            self.dll = ctypes.CDLL(path)
        except OSError as e:
            raise LibraryError(f"cannot load libftq from {path}: {e}") from None
        self.missing = []
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(self.dll, name)
            except AttributeError:
                self.missing.append(name)
                setattr(self, name, _Missing(name, path))
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, _unwrapping(fn))
        if "ftq_version" not in self.missing:
            major = c_int()
            self.ftq_version(ctypes.byref(major), None, None)
            if major.value != ABI_MAJOR:
                raise LibraryError(f"{path} is libftq {self.ftq_version_string().decode()}; "
                                   f"this binding needs ABI version {ABI_MAJOR}")


def _here_build_candidates():
    """libftq.so in a build folder of the source tree this package sits in."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    if not os.path.isfile(os.path.join(root, "include", "libftq", "ftq.h")):
        return []
    out = []
    for name in ["build"] + sorted(d for d in os.listdir(root) if d.startswith("build") and d != "build"):
        out.append(os.path.join(root, name, "libftq.so"))
    return out


def candidates():
    """The places searched for libftq, in order (see find_library())."""
    env = os.environ.get("FTQ_LIBRARY")
    if env:
        return [os.path.join(env, "libftq.so") if os.path.isdir(env) else env]
    out = _here_build_candidates()
    out.append("libftq.so.%d" % ABI_MAJOR)  # the dynamic loader's search path (installed)
    found = ctypes.util.find_library("ftq")
    if found:
        out.append(found)
    if shutil.which("pkg-config"):
        try:
            libdir = subprocess.run(["pkg-config", "--variable=libdir", "libftq"], capture_output=True, text=True,
                                    timeout=10).stdout.strip()
            if libdir:
                out.append(os.path.join(libdir, "libftq.so.%d" % ABI_MAJOR))
        except (OSError, subprocess.SubprocessError):
            pass
    for prefix in ("/usr/local/lib", "/usr/local/lib64", "/usr/lib", "/usr/lib64"):
        out.append(os.path.join(prefix, "libftq.so.%d" % ABI_MAJOR))
    return out


def find_library():
    """Returns the first loadable libftq: FTQ_LIBRARY (a file or a folder) if
    set, else a build folder of the source tree holding this package, the
    dynamic loader's path (an installed libftq.so.0), pkg-config's libdir and
    the usual prefixes."""
    tried = []
    for path in candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} (absent)")
            continue
        try:
            return Library(path)
        except LibraryError as e:
            tried.append(str(e))
            if os.environ.get("FTQ_LIBRARY"):
                break
    raise LibraryError("libftq not found; set FTQ_LIBRARY to libftq.so or its folder. Tried:\n  " + "\n  ".join(tried))


_lock = threading.Lock()
_lib = None


def load(path=None):
    """Loads libftq (from @p path, else as find_library() searches) once and
    returns it; later calls return the same library."""
    global _lib
    with _lock:
        if _lib is None:
            _lib = Library(path) if path else find_library()
        elif path and os.path.realpath(path) != os.path.realpath(_lib.path):
            raise LibraryError(f"libftq is already loaded from {_lib.path}")
        return _lib


def lib():
    """The loaded library (loading it on first use)."""
    return _lib if _lib is not None else load()
