"""Models (ftq_model.h), generation (ftq_generate.h) and LoRA adapters (ftq_lora.h)."""
import ctypes
import enum
import json
from collections import namedtuple

from . import _buffers
from ._core import Handle, NotFoundError, call, check, construct, out_value, record_callback_exception
from ._lib import TOKEN_CALLBACK, lib
from .context import MemoryCategory, _category
from .options import options_arg


class ParamKind(enum.IntEnum):
    """ftq_param_kind."""
    ALL = 0
    LINEAR = 1
    EMBEDDING = 2
    LM_HEAD = 3
    NORM = 4
    BIAS = 5


class FinishReason(enum.IntEnum):
    """ftq_finish_reason: why generation stopped."""
    LENGTH = 0
    EOS = 1
    STOP_SEQUENCE = 2
    CALLBACK = 3


Generation = namedtuple("Generation", "tokens finish_reason")
Generation.__doc__ = "Generated token ids (a list, without the prompt) and the FinishReason."


def _kind(k):
    return ParamKind[k.upper()] if isinstance(k, str) else ParamKind(k)


def _stop_list(stop_sequences):
    """[[13, 13], [2277]] -> int32 array {13, 13, -1, 2277, -1}."""
    if not stop_sequences:
        return None, 0
    flat = []
    for seq in stop_sequences:
        seq = [int(t) for t in seq]
        if not seq:
            raise ValueError("a stop sequence is empty")
        flat.extend(seq)
        flat.append(-1)
    return (ctypes.c_int32 * len(flat))(*flat), len(flat)


class Model(Handle):
    """A Llama-family model on a context. Build one with Model.load() or
    Model.init_random(); options (group "model" and the quantization options,
    e.g. load_in_4bit=True, bnb_4bit_quant_type="nf4") as keywords."""

    _destroy_name = "ftq_model_destroy"

    def __init__(self, *_):
        raise TypeError("use Model.load() or Model.init_random()")

    @classmethod
    def _new(cls, ctx):
        self = cls.__new__(cls)
        self.context = ctx
        return self

    @classmethod
    def load(cls, ctx, path, options=None, **kwargs):
        """Loads a Hugging Face model folder or a GGUF file onto @p ctx."""
        with options_arg(options, kwargs) as o:
            return construct(cls._new(ctx), ctx, lib().ftq_model_load, ctx, str(path).encode(), o)

    @classmethod
    def init_random(cls, ctx, config, seed=0, options=None, **kwargs):
        """A model with random weights from a config.json text or dict."""
        if isinstance(config, dict):
            config = json.dumps(config)
        with options_arg(options, kwargs) as o:
            return construct(cls._new(ctx), ctx, lib().ftq_model_init_random, ctx, config.encode(), int(seed), o)

    # -- configuration ------------------------------------------------------
    def config_int(self, name):
        """An integer config.json field (hidden_size, vocab_size, ...)."""
        return out_value(ctypes.c_int64, lib().ftq_model_config_int, self, name.encode())

    def config_float(self, name):
        """A floating-point config.json field (rms_norm_eps, rope_theta, ...)."""
        return out_value(ctypes.c_double, lib().ftq_model_config_float, self, name.encode())

    def config_string(self, name):
        """A text config.json field (architectures, model_type, torch_dtype, ...)."""
        v = ctypes.c_char_p()
        check(lib().ftq_model_config_string(self, name.encode(), ctypes.byref(v)))
        return v.value.decode("utf-8")

    def config_json(self):
        """The configuration as config.json text."""
        out = ctypes.c_void_p()
        check(lib().ftq_model_config_json(self, ctypes.byref(out)))
        try:
            return ctypes.string_at(out.value).decode("utf-8")
        finally:
            lib().ftq_free(out)

    @property
    def config(self):
        """The configuration as a dict."""
        return json.loads(self.config_json())

    @property
    def eos_token_ids(self):
        """The end-of-sequence ids (a list)."""
        n = ctypes.c_size_t()
        check(lib().ftq_model_eos_token_ids(self, None, 0, ctypes.byref(n)))
        ids = (ctypes.c_int64 * max(n.value, 1))()
        check(lib().ftq_model_eos_token_ids(self, ids, n.value, ctypes.byref(n)))
        return list(ids[:n.value])

    def parameter_count(self, kind=ParamKind.ALL):
        """Number of parameters of one ParamKind."""
        return out_value(ctypes.c_int64, lib().ftq_model_parameter_count, self, int(_kind(kind)))

    def parameter_bytes(self, kind=ParamKind.ALL):
        """Device bytes of the parameters of one ParamKind."""
        return out_value(ctypes.c_size_t, lib().ftq_model_parameter_bytes, self, int(_kind(kind)))

    def memory(self, category=MemoryCategory.ALL):
        """Device bytes the model holds in one MemoryCategory."""
        return out_value(ctypes.c_size_t, lib().ftq_model_memory, self, int(_category(category)))

    # -- generation ---------------------------------------------------------
    def generate(self, prompt, *, seed=0, stop_sequences=None, callback=None, options=None, **kwargs):
        """Continues @p prompt (token ids: a list, NumPy array or int32 buffer)
        with the active adapter, if any. Options of group "generate"
        (max_new_tokens, do_sample, temperature, top_k, top_p,
        repetition_penalty) as keywords. @p callback(token, index) sees every
        new token and stops generation by returning True; an exception it
        raises stops generation and is re-raised here.
        Returns a Generation(tokens, finish_reason)."""
        ids = _buffers.ids_input(prompt)
        stops, n_stops = _stop_list(stop_sequences)
        with options_arg(options, kwargs) as o:
            max_new = ctypes.c_int64(20)
            if o is not None:
                check(lib().ftq_options_get_int(o, b"max_new_tokens", ctypes.byref(max_new)))
            cap = max(int(max_new.value), 1)
            out = (ctypes.c_int32 * cap)()
            n_out = ctypes.c_size_t()
            reason = ctypes.c_int()
            cb = TOKEN_CALLBACK()  # NULL
            if callback is not None:
                def trampoline(user, token, index):
                    try:
                        return 1 if callback(int(token), int(index)) else 0
                    except BaseException as e:  # noqa: B902 - must not unwind into C
                        record_callback_exception(e)
                        return 1
                cb = TOKEN_CALLBACK(trampoline)
            call(lib().ftq_model_generate, self, ids.pointer, ids.n, o, int(seed), stops, n_stops, cb, None, out,
                 cap, ctypes.byref(n_out), ctypes.byref(reason))
        return Generation(list(out[:n_out.value]), FinishReason(reason.value))

    def forward_backward(self, batch, **kwargs):
        """See libftq.trainer.forward_backward()."""
        from .trainer import forward_backward
        return forward_backward(self, batch, **kwargs)

    def eval_batch(self, batch):
        """See libftq.trainer.eval_batch()."""
        from .trainer import eval_batch
        return eval_batch(self, batch)


class Lora(Handle):
    """A LoRA adapter on a model (PEFT's LoraConfig names as keywords: r,
    lora_alpha, lora_dropout, target_modules, use_rslora, init_lora_weights,
    bias). It starts inactive; `lora.active = True` makes it the model's
    adapter. Tensors are indexed in PEFT's order or named as PEFT names them."""

    _destroy_name = "ftq_lora_destroy"

    def __init__(self, model, name=None, seed=0, options=None, **kwargs):
        self.model = model
        with options_arg(options, kwargs) as o:
            construct(self, model, lib().ftq_lora_create, model, name.encode() if name else None, o, int(seed))

    @property
    def active(self):
        """True if this is its model's active adapter."""
        return bool(lib().ftq_lora_is_active(self))

    @active.setter
    def active(self, value):
        call(lib().ftq_lora_set_active, self, 1 if value else 0)

    def set_active(self, value=True):
        """Activates (or deactivates) the adapter."""
        self.active = value

    @property
    def name(self):
        """The adapter's name ("default" unless given)."""
        return lib().ftq_lora_name(self).decode("utf-8")

    @property
    def num_parameters(self):
        """Trainable parameters (elements of every A and B)."""
        return out_value(ctypes.c_int64, lib().ftq_lora_num_parameters, self)

    @property
    def scaling(self):
        """lora_alpha / r (or / sqrt(r) with use_rslora)."""
        return out_value(ctypes.c_double, lib().ftq_lora_scaling, self)

    def __len__(self):
        return lib().ftq_lora_tensor_count(self)

    def tensor_info(self, index):
        """(PEFT name, (rows, cols)) of tensor @p index."""
        name = ctypes.create_string_buffer(256)
        shape = (ctypes.c_int64 * 2)()
        check(lib().ftq_lora_tensor_info(self, int(index), name, len(name), shape))
        return name.value.decode("utf-8"), (shape[0], shape[1])

    def tensor_names(self):
        """Every tensor's PEFT name, in index order."""
        return [self.tensor_info(i)[0] for i in range(len(self))]

    def find_tensor(self, name):
        """Index of the tensor named @p name (with or without the adapter name)."""
        return out_value(ctypes.c_size_t, lib().ftq_lora_find_tensor, self, name.encode())

    def _index(self, key):
        if isinstance(key, str):
            return self.find_tensor(key)
        if not 0 <= int(key) < len(self):
            raise NotFoundError(-15, f"LoRA tensor index {key} is out of range (0..{len(self) - 1})")
        return int(key)

    def _read(self, fn, key, out):
        i = self._index(key)
        shape = self.tensor_info(i)[1]
        if out is None:
            out = _buffers.new_float_array(shape, _buffers.FloatType.FLOAT32)
        buf = _buffers.float_input(out, dtype="float32", writable=True)
        _buffers.check_capacity(buf, shape[0] * shape[1])
        check(fn(self, i, buf.address, shape[0] * shape[1]))
        return out

    def get_tensor(self, key, out=None):
        """Values of a tensor (index or name) as a float32 [rows, cols] NumPy
        array, or written into the writable float32 buffer @p out."""
        return self._read(lib().ftq_lora_get_tensor, key, out)

    def get_grad(self, key, out=None):
        """Accumulated gradient of a tensor, as get_tensor()."""
        return self._read(lib().ftq_lora_get_grad, key, out)

    def set_tensor(self, key, values):
        """Overwrites a tensor from float32 values (NumPy array or buffer)."""
        i = self._index(key)
        buf = _buffers.float_input(values, dtype="float32")
        check(lib().ftq_lora_set_tensor(self, i, buf.address, buf.count))

    def zero_grad(self):
        """Sets every gradient to zero."""
        check(lib().ftq_lora_zero_grad(self))

    def state_dict(self):
        """{PEFT name: float32 array} of every tensor."""
        return {self.tensor_info(i)[0]: self.get_tensor(i) for i in range(len(self))}
