"""Communicators (ftq_comm.h): data-parallel training over several devices,
processes and hosts. One process makes an id (comm_id_create), every rank
gets it by any channel (comm_id_to_string / comm_id_from_string make it
text), joins with Comm(ctx, id, rank, world_size) or Comm.from_env(ctx), and
attaches it to its Trainer (Trainer.set_comm) before the first step:

    ctx = libftq.Context("cuda:%d" % local_rank)
    comm = libftq.Comm.from_env(ctx, comm_timeout_s=120)   # FTQ_RANK, FTQ_WORLD_SIZE, FTQ_COMM_ID ...
    trainer = libftq.Trainer(model, lora, data, ...)
    trainer.set_comm(comm)
    trainer.train()
"""
import ctypes
import enum

from ._core import Handle, call, check, construct
from ._lib import lib
from .context import DeviceType
from .options import options_arg

#: Bytes of a communicator id (FTQ_COMM_ID_SIZE).
ID_SIZE = 160
#: Bytes a printable id takes with its NUL (FTQ_COMM_ID_STRING_SIZE).
ID_STRING_SIZE = 336


class ReduceOp(enum.IntEnum):
    """ftq_comm_reduce: how Comm.allreduce combines the ranks' values."""
    SUM = 0
    MAX = 1
    MIN = 2


def _device_type(device):
    if isinstance(device, str):
        return DeviceType.CUDA if device.lower().startswith("cuda") else DeviceType[device.upper()]
    return DeviceType(device)


def _id_buffer(comm_id):
    if isinstance(comm_id, str):
        comm_id = comm_id_from_string(comm_id)
    comm_id = bytes(comm_id)
    if len(comm_id) != ID_SIZE:
        raise ValueError(f"a communicator id has {ID_SIZE} bytes, not {len(comm_id)}")
    return ctypes.create_string_buffer(comm_id, ID_SIZE)


def comm_id_create(device="cpu"):
    """A new communicator id (bytes) for ranks whose contexts are of @p
    device type ("cpu", "cuda" or a DeviceType). Make it on one process only.
    CUDA ids hold an NCCL unique id (needs the CUDA module with NCCL); CPU ids
    name a shared-memory object (ranks on this host only)."""
    buf = ctypes.create_string_buffer(ID_SIZE)
    check(lib().ftq_comm_id_create(int(_device_type(device)), buf))
    return buf.raw


def comm_id_to_string(comm_id):
    """The printable text of an id ("ftq1-shm-..." / "ftq1-nccl-...": letters,
    digits and '-'), e.g. for an environment variable or a file."""
    buf = ctypes.create_string_buffer(ID_STRING_SIZE)
    check(lib().ftq_comm_id_to_string(_id_buffer(comm_id), buf, ID_STRING_SIZE))
    return buf.value.decode()


def comm_id_from_string(text):
    """The id (bytes) of a text made by comm_id_to_string (FormatError otherwise)."""
    buf = ctypes.create_string_buffer(ID_SIZE)
    check(lib().ftq_comm_id_from_string(text.encode() if isinstance(text, str) else bytes(text), buf))
    return buf.raw


class Comm(Handle):
    """One rank's membership of a communicator, on a Context. Joining is
    collective: the constructor returns once every rank has joined (or fails
    after comm_timeout_s). Options of group "dist" (comm_timeout_s) as
    keywords. A failed collective raises CommError (a peer died, left or
    aborted), FtqError with Status.TIMEOUT, or DeviceError (NCCL); the
    communicator is then unusable. Not thread-safe, except abort()."""

    _destroy_name = "ftq_comm_destroy"

    def __init__(self, ctx, comm_id, rank, world_size, options=None, **kwargs):
        buf = _id_buffer(comm_id)
        self.context = ctx
        with options_arg(options, kwargs) as o:
            construct(self, ctx, lib().ftq_comm_create, ctx, buf, int(rank), int(world_size), o)

    @classmethod
    def from_env(cls, ctx, options=None, **kwargs):
        """Joins as the environment says, as launchers set it: rank and world
        size from FTQ_RANK / FTQ_WORLD_SIZE, RANK / WORLD_SIZE,
        OMPI_COMM_WORLD_RANK / _SIZE or PMI_RANK / PMI_SIZE; the id from
        FTQ_COMM_ID (text) or the file FTQ_COMM_ID_FILE (rank 0 writes it).
        Without a rank variable: a one-rank communicator."""
        self = cls.__new__(cls)
        self.context = ctx
        with options_arg(options, kwargs) as o:
            construct(self, ctx, lib().ftq_comm_create_from_env, ctx, o)
        return self

    @property
    def rank(self):
        """This process's rank."""
        return lib().ftq_comm_rank(self)

    @property
    def size(self):
        """The number of ranks."""
        return lib().ftq_comm_size(self)

    def check(self):
        """Raises the error that stopped the communicator, if any (does not wait)."""
        call(lib().ftq_comm_check, self)

    def abort(self):
        """Makes pending and later operations fail here and on every peer
        (the one call allowed from another thread)."""
        call(lib().ftq_comm_abort, self)

    def barrier(self):
        """Waits until every rank has called it."""
        call(lib().ftq_comm_barrier, self)

    def allreduce(self, values, op=ReduceOp.SUM):
        """The reduction over the ranks of @p values (a number or a sequence
        of numbers); every rank gets the same bits.
        Returns a float for a number, else a list of floats."""
        scalar = not hasattr(values, "__len__")
        seq = [float(values)] if scalar else [float(v) for v in values]
        arr = (ctypes.c_double * max(len(seq), 1))(*seq)
        if isinstance(op, str):
            op = ReduceOp[op.upper()]
        call(lib().ftq_comm_allreduce, self, arr, len(seq), int(op))
        out = list(arr[:len(seq)])
        return out[0] if scalar else out


__all__ = ["ID_SIZE", "ID_STRING_SIZE", "ReduceOp", "Comm", "comm_id_create", "comm_id_to_string",
           "comm_id_from_string"]
