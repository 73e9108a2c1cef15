"""Status codes and exceptions, the call wrapper that turns statuses (and
exceptions raised inside callbacks) into Python exceptions, and the base
class of every handle (deterministic release, parents outlive children)."""
import ctypes
import enum
import threading
import weakref

from ._lib import lib


class Status(enum.IntEnum):
    """ftq_status values (ftq_status.h)."""
    OK = 0
    INVALID_ARGUMENT = -1
    OUT_OF_MEMORY = -2
    DEVICE_OUT_OF_MEMORY = -3
    IO = -4
    FORMAT = -5
    UNSUPPORTED = -6
    UNKNOWN_OPTION = -7
    OPTION_TYPE = -8
    OPTION_RANGE = -9
    NO_DEVICE = -10
    CUDA = -11
    CUBLAS = -12
    NCCL = -13
    STATE = -14
    NOT_FOUND = -15
    SHAPE = -16
    NUMERIC = -17
    CANCELLED = -18
    TIMEOUT = -19
    INTERNAL = -20
    COMM = -21


class FtqError(Exception):
    """A libftq call failed. `status` is the ::ftq_status, `message` the text
    of ftq_last_error() (it names the file, tensor or option involved)."""

    def __init__(self, status, message):
        self.status = status
        self.message = message
        try:
            name = Status(status).name
        except ValueError:
            name = str(status)
        super().__init__(f"{message} [{name}]" if message else name)


class InvalidArgumentError(FtqError, ValueError):
    """FTQ_ERR_INVALID_ARGUMENT."""


class OutOfMemoryError(FtqError, MemoryError):
    """FTQ_ERR_OUT_OF_MEMORY or FTQ_ERR_DEVICE_OUT_OF_MEMORY."""


class FileError(FtqError):
    """FTQ_ERR_IO: a file could not be opened, read, written or renamed."""


class FormatError(FtqError, ValueError):
    """FTQ_ERR_FORMAT: malformed input."""


class UnsupportedError(FtqError):
    """FTQ_ERR_UNSUPPORTED."""


class OptionError(FtqError):
    """An option error: unknown name, wrong type or value out of range."""


class UnknownOptionError(OptionError, LookupError):
    """FTQ_ERR_UNKNOWN_OPTION."""


class OptionTypeError(OptionError, TypeError):
    """FTQ_ERR_OPTION_TYPE."""


class OptionRangeError(OptionError, ValueError):
    """FTQ_ERR_OPTION_RANGE."""


class DeviceError(FtqError):
    """FTQ_ERR_NO_DEVICE, FTQ_ERR_CUDA, FTQ_ERR_CUBLAS, FTQ_ERR_NCCL."""


class StateError(FtqError):
    """FTQ_ERR_STATE: the call is not valid in the object's current state."""


class NotFoundError(FtqError, LookupError):
    """FTQ_ERR_NOT_FOUND."""


class ShapeError(FtqError, ValueError):
    """FTQ_ERR_SHAPE."""


class NumericError(FtqError, ArithmeticError):
    """FTQ_ERR_NUMERIC."""


class CancelledError(FtqError):
    """FTQ_ERR_CANCELLED: a callback asked to stop."""


class CommError(FtqError):
    """FTQ_ERR_COMM: a communicator peer failed, left or aborted (the
    communicator is then unusable; close it)."""


_CLASSES = {
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.OUT_OF_MEMORY: OutOfMemoryError,
    Status.DEVICE_OUT_OF_MEMORY: OutOfMemoryError,
    Status.IO: FileError,
    Status.FORMAT: FormatError,
    Status.UNSUPPORTED: UnsupportedError,
    Status.UNKNOWN_OPTION: UnknownOptionError,
    Status.OPTION_TYPE: OptionTypeError,
    Status.OPTION_RANGE: OptionRangeError,
    Status.NO_DEVICE: DeviceError,
    Status.CUDA: DeviceError,
    Status.CUBLAS: DeviceError,
    Status.NCCL: DeviceError,
    Status.STATE: StateError,
    Status.NOT_FOUND: NotFoundError,
    Status.SHAPE: ShapeError,
    Status.NUMERIC: NumericError,
    Status.CANCELLED: CancelledError,
    Status.COMM: CommError,
}


def error(status):
    """The exception for a non-OK status, with the calling thread's
    ftq_last_error() text."""
    raw = lib().ftq_last_error()
    return _CLASSES.get(status, FtqError)(status, raw.decode("utf-8", "replace") if raw else "")


def check(status):
    """Raises the exception for a non-OK status."""
    if status != 0:
        raise error(status)


class ClosedError(ValueError):
    """A handle was used after close()."""


# ---------------------------------------------------------------------------
# Exceptions raised inside callbacks. A callback runs inside a C call, where
# an exception cannot unwind; the trampoline records the first one (and asks
# the library to stop where the callback can), and call() re-raises it once
# the C function has returned.

_tls = threading.local()
_foreign = []  # exceptions of callbacks run on threads the library started
_foreign_lock = threading.Lock()


def record_callback_exception(exc):
    """Keeps the first exception raised by a callback during the current call."""
    # threads the library started appear as _DummyThread: no call() of theirs will look
    if isinstance(threading.current_thread(), threading._DummyThread):
        with _foreign_lock:
            _foreign.append(exc)
    elif getattr(_tls, "exc", None) is None:
        _tls.exc = exc


def _take_callback_exception():
    exc = getattr(_tls, "exc", None)
    _tls.exc = None
    if exc is None and _foreign:
        with _foreign_lock:
            if _foreign:
                exc = _foreign.pop(0)
    return exc


def call(fn, *args):
    """Calls a C function that returns an ftq_status; raises the exception a
    callback raised during the call (even if the call succeeded), else the
    FtqError of a failed status."""
    _tls.exc = None
    status = fn(*args)
    exc = _take_callback_exception()
    if exc is not None:
        if status != 0:
            raise exc from error(status)
        raise exc
    check(status)
    return status


def construct(obj, parent, fn, *args):
    """Calls a constructor `fn(*args, &out)` and makes @p obj (a Handle) own
    the new C object, created on @p parent. If a callback raised during the
    call, the new object is destroyed again and the exception re-raised."""
    out = ctypes.c_void_p()
    _tls.exc = None
    status = fn(*args, ctypes.byref(out))
    exc = _take_callback_exception()
    if status != 0:
        if exc is not None:
            raise exc from error(status)
        raise error(status)
    obj._init_handle(out.value, parent)
    if exc is not None:
        obj.close()
        raise exc
    return obj


def out_value(ctype, fn, *args):
    """Calls `fn(*args, &out)` (a status-returning C function with one
    out-parameter of type @p ctype) and returns the value it wrote."""
    v = ctype()
    check(fn(*args, ctypes.byref(v)))
    return v.value


# ---------------------------------------------------------------------------
# Handles

class _Cell:
    """Owns one C handle. Parents keep their children's cells, so closing a
    parent first destroys what was created on it, whatever order Python's
    garbage collector finalizes objects in. A handle may have several
    parents (a trainer uses a model, an adapter and a data set)."""

    __slots__ = ("ptr", "destroy", "children", "parents", "__weakref__")
    live = 0  # C objects held now, over every handle type (for leak tests)

    def __init__(self, ptr, destroy, parents):
        _Cell.live += 1
        self.ptr = ptr
        self.destroy = destroy
        self.children = set()
        self.parents = [p for p in parents if p is not None]
        for p in self.parents:
            p.children.add(self)

    def close(self):
        if not self.ptr:
            return
        for child in list(self.children):
            child.close()
        ptr, self.ptr = self.ptr, None
        _Cell.live -= 1
        if self.destroy is not None:
            self.destroy(ptr)
        for p in self.parents:
            p.children.discard(self)
        self.parents = []


def live_handles():
    """Number of C objects the binding holds now (closed ones not counted)."""
    return _Cell.live


class Handle:
    """Base of every wrapped handle: a context manager whose close() releases
    the C object at once (and, first, every object created on it). A handle
    that is not closed explicitly is released when garbage-collected."""

    _destroy_name = None  # the C destroy function

    def _init_handle(self, ptr, parent=None, owned=True):
        """Adopts a new C handle @p ptr created on @p parent (a Handle, a
        sequence of Handles, or None); @p owned False for a view of an object
        another handle owns (never destroyed here)."""
        parents = parent if isinstance(parent, (list, tuple)) else [parent]
        self._parents = [p for p in parents if p is not None]
        destroy = getattr(lib(), self._destroy_name) if owned else None
        self._cell = _Cell(ptr, destroy, [p._cell for p in self._parents])
        self._finalizer = weakref.finalize(self, self._cell.close)

    def _ftq_ptr(self):
        """The C pointer (ClosedError once closed)."""
        ptr = self._cell.ptr if hasattr(self, "_cell") else None
        if not ptr:
            raise ClosedError(f"{type(self).__name__} is closed")
        return ptr

    @property
    def closed(self):
        """True once close() has run (or the parent was closed)."""
        return not (hasattr(self, "_cell") and self._cell.ptr)

    def close(self):
        """Destroys the C object now (and every object created on it). Idempotent."""
        if hasattr(self, "_cell"):
            self._cell.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else hex(self._cell.ptr)
        return f"<libftq.{type(self).__name__} {state}>"
