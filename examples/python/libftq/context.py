"""The compute context (ftq_context.h): a device, its memory accounting and its log."""
import ctypes
import enum

from ._core import Handle, call, check, out_value, record_callback_exception
from ._lib import LOG_CALLBACK, lib
from .options import options_arg


class DeviceType(enum.IntEnum):
    """ftq_device_type."""
    CPU = 0
    CUDA = 1


class LogLevel(enum.IntEnum):
    """ftq_log_level."""
    ERROR = 0
    WARN = 1
    INFO = 2
    DEBUG = 3


class MemoryCategory(enum.IntEnum):
    """ftq_memory_category."""
    ALL = 0
    WEIGHTS = 1
    ADAPTER = 2
    GRADIENTS = 3
    OPTIMIZER = 4
    ACTIVATIONS = 5
    WORKSPACE = 6
    OTHER = 7


def _category(c):
    return MemoryCategory[c.upper()] if isinstance(c, str) else MemoryCategory(c)


class Context(Handle):
    """A compute device ("cpu", "cuda", "cuda:N") with its options (group
    "context": num_threads, log_level, cuda_workspace_mb) as keywords:

        with Context("cpu", num_threads=2, log=print_log) as ctx: ...

    `log` is a callable (level: LogLevel, message: str). Closing the context
    first closes every object created on it.
    """

    _destroy_name = "ftq_context_destroy"

    def __init__(self, device="cpu", options=None, *, log=None, **kwargs):
        out = ctypes.c_void_p()
        with options_arg(options, kwargs) as o:
            check(lib().ftq_context_create(device.encode(), o, ctypes.byref(out)))
        self._init_handle(out.value)
        self._log_trampoline = None
        if log is not None:
            self.set_log_callback(log)

    def set_log_callback(self, callback):
        """Installs @p callback(level, message) as the log receiver (None removes it).
        An exception it raises is re-raised by the libftq call that logged."""
        if callback is None:
            check(lib().ftq_context_set_log_callback(self, LOG_CALLBACK(), None))
            self._log_trampoline = None
            return

        def trampoline(user, level, message):
            try:
                callback(LogLevel(level), message.decode("utf-8", "replace"))
            except BaseException as e:  # noqa: B902 - must not unwind into C
                record_callback_exception(e)

        tramp = LOG_CALLBACK(trampoline)
        check(lib().ftq_context_set_log_callback(self, tramp, None))
        self._log_trampoline = tramp  # the C side keeps the pointer: keep the object alive

    def set_log_level(self, level):
        """Sets the most verbose level passed to the log callback."""
        if isinstance(level, str):
            level = LogLevel[level.upper()]
        check(lib().ftq_context_set_log_level(self, int(level)))

    @property
    def device_type(self):
        """DeviceType of the context."""
        return DeviceType(lib().ftq_context_device_type(self))

    @property
    def device_name(self):
        """Description of the device, e.g. "cpu (2 threads, openblas)"."""
        return lib().ftq_context_device_name(self).decode("utf-8", "replace")

    @property
    def num_threads(self):
        """CPU worker threads the context uses."""
        return lib().ftq_context_num_threads(self)

    def memory(self, category=MemoryCategory.ALL):
        """(current, peak) bytes libftq objects on this context hold in @p category."""
        cur, peak = ctypes.c_size_t(), ctypes.c_size_t()
        check(lib().ftq_context_memory(self, int(_category(category)), ctypes.byref(cur), ctypes.byref(peak)))
        return cur.value, peak.value

    def device_memory(self):
        """(free, total) bytes of the device as the driver (or the OS) sees it."""
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        check(lib().ftq_context_device_memory(self, ctypes.byref(free), ctypes.byref(total)))
        return free.value, total.value

    def synchronize(self):
        """Waits for all work queued on the device."""
        call(lib().ftq_context_synchronize, self)


def cuda_device_count():
    """Number of CUDA devices libftq can use (0 when CUDA is unavailable)."""
    return out_value(ctypes.c_int, lib().ftq_cuda_device_count)
