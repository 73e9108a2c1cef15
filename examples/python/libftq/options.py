"""Options by name (ftq_options.h): the registry, option sets, and the
keyword arguments every constructor takes (`Lora(model, r=16, lora_alpha=32)`)."""
import contextlib
import ctypes
import enum
import json
from collections import namedtuple

from ._core import Handle, OptionTypeError, Status, check, out_value
from ._lib import lib


class OptionType(enum.IntEnum):
    """ftq_option_type."""
    INT = 0
    FLOAT = 1
    BOOL = 2
    STRING = 3


OptionInfo = namedtuple("OptionInfo", "name type group doc default min max choices is_list")
OptionInfo.__doc__ = """One registered option: type, group, description, default (as text),
numeric range (None for bool/string options), choices (a list, or None) and
whether a string option holds a comma-separated list."""


def _text(b):
    return None if b is None else b.decode("utf-8")


def _index(name):
    return out_value(ctypes.c_size_t, lib().ftq_option_find, name.encode())


def _info(i):
    L = lib()
    t = OptionType(L.ftq_option_type_of(i))
    lo = hi = None
    if t in (OptionType.INT, OptionType.FLOAT):
        a, b = ctypes.c_double(), ctypes.c_double()
        check(L.ftq_option_range(i, ctypes.byref(a), ctypes.byref(b)))
        lo, hi = a.value, b.value
    choices = _text(L.ftq_option_choices(i))
    return OptionInfo(_text(L.ftq_option_name(i)), t, _text(L.ftq_option_group(i)), _text(L.ftq_option_doc(i)),
                      _text(L.ftq_option_default(i)), lo, hi, choices.split("|") if choices else None,
                      bool(L.ftq_option_is_list(i)))


def option_info(name):
    """The registry entry of option @p name (UnknownOptionError if there is none)."""
    return _info(_index(name))


def list_options(group=None):
    """Every registered option (of one group, e.g. "lora", if given), in registry order."""
    out = [_info(i) for i in range(lib().ftq_option_count())]
    return [o for o in out if group is None or o.group == group]


class Options(Handle):
    """A set of option values. Set with keyword arguments, item assignment or
    JSON; unknown names, wrong types and values out of range raise OptionError
    subclasses whose message names the option.

        opts = Options(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"])
        opts["learning_rate"] = 2e-4
    """

    _destroy_name = "ftq_options_destroy"

    def __init__(self, _copy_of=None, **values):
        out = ctypes.c_void_p()
        if _copy_of is not None:
            check(lib().ftq_options_copy(_copy_of, ctypes.byref(out)))
        else:
            check(lib().ftq_options_create(ctypes.byref(out)))
        self._init_handle(out.value)
        self.update(values)

    @classmethod
    def from_json(cls, text):
        """A set from a JSON object text (`{"r": 64, "target_modules": ["q_proj"]}`)."""
        o = cls()
        o.load_json(text)
        return o

    @classmethod
    def from_json_file(cls, path):
        """A set from a JSON file."""
        o = cls()
        o.load_json_file(path)
        return o

    def copy(self):
        """An independent copy."""
        return Options(_copy_of=self)

    def update(self, values=None, **kw):
        """Sets several options: a dict and/or keyword arguments (None unsets)."""
        for src in (values or {}, kw):
            for k, v in src.items():
                self[k] = v
        return self

    def __setitem__(self, name, value):
        L = lib()
        key = name.encode()
        if value is None:
            check(L.ftq_options_unset(self, key))
            return
        info = _info(_index(name))
        t = info.type
        if isinstance(value, str) and t != OptionType.STRING:
            check(L.ftq_options_set_parse(self, key, value.encode()))
        elif t == OptionType.BOOL:
            check(L.ftq_options_set_bool(self, key, 1 if value else 0) if isinstance(value, (bool, int))
                  else L.ftq_options_set_parse(self, key, str(value).encode()))
        elif t == OptionType.INT:
            if isinstance(value, float) and not value.is_integer():
                raise _type_error(name, value)
            try:
                iv = int(value)
            except (TypeError, ValueError):
                raise _type_error(name, value) from None
            check(L.ftq_options_set_int(self, key, iv))
        elif t == OptionType.FLOAT:
            try:
                fv = float(value)
            except (TypeError, ValueError):
                raise _type_error(name, value) from None
            check(L.ftq_options_set_float(self, key, fv))
        else:
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (list, tuple)):
                text = ",".join(str(v) for v in value)
            else:
                text = str(value)
            check(L.ftq_options_set_string(self, key, text.encode()))

    def __getitem__(self, name):
        """The value set, or the default; list options come as lists."""
        return self.get(name)

    def __delitem__(self, name):
        check(lib().ftq_options_unset(self, name.encode()))

    def get(self, name, _=None):
        L = lib()
        info = _info(_index(name))
        key = name.encode()
        if info.type == OptionType.INT:
            return out_value(ctypes.c_int64, L.ftq_options_get_int, self, key)
        if info.type == OptionType.FLOAT:
            return out_value(ctypes.c_double, L.ftq_options_get_float, self, key)
        if info.type == OptionType.BOOL:
            return bool(out_value(ctypes.c_int, L.ftq_options_get_bool, self, key))
        v = ctypes.c_char_p()
        check(L.ftq_options_get_string(self, key, ctypes.byref(v)))
        text = _text(v.value) or ""
        if info.is_list:
            return [s for s in text.split(",") if s]
        return text

    def is_set(self, name):
        """True if @p name was set explicitly."""
        return bool(out_value(ctypes.c_int, lib().ftq_options_is_set, self, name.encode()))

    def __contains__(self, name):
        return self.is_set(name)

    def load_json(self, text):
        """Sets options from a JSON object text (str, bytes or dict); all keys
        are checked before any is applied."""
        if isinstance(text, dict):
            text = json.dumps(text)
        if isinstance(text, str):
            text = text.encode()
        check(lib().ftq_options_load_json(self, text))
        return self

    def load_json_file(self, path):
        """Sets options from a JSON file."""
        check(lib().ftq_options_load_json_file(self, str(path).encode()))
        return self

    def to_json(self, include_defaults=False):
        """The set as JSON text (keys in registry order)."""
        out = ctypes.c_void_p()
        check(lib().ftq_options_to_json(self, 1 if include_defaults else 0, ctypes.byref(out)))
        try:
            return ctypes.string_at(out.value).decode("utf-8")
        finally:
            lib().ftq_free(out)

    def to_dict(self, include_defaults=False):
        """The set as a dict."""
        return json.loads(self.to_json(include_defaults))


def _type_error(name, value):
    return OptionTypeError(int(Status.OPTION_TYPE), f"option '{name}': {value!r} is not a number")


@contextlib.contextmanager
def options_arg(options, kwargs):
    """The Options a call passes: @p options (an Options, a dict, JSON text or
    None) with @p kwargs applied on a copy; None when both are empty. A set
    made here is destroyed when the block ends."""
    if options is None and not kwargs:
        yield None
        return
    if isinstance(options, Options) and not kwargs:
        yield options
        return
    if isinstance(options, Options):
        o = options.copy()
    elif options is None:
        o = Options()
    elif isinstance(options, dict):
        o = Options(**options)
    elif isinstance(options, (str, bytes)):
        o = Options.from_json(options)
    else:
        raise TypeError(f"options must be an Options, a dict or JSON text, not {type(options).__name__}")
    with o:
        o.update(kwargs)
        yield o


__all__ = ["Options", "OptionInfo", "OptionType", "option_info", "list_options", "options_arg"]
