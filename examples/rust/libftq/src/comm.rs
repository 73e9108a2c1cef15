//! Communicators (ftq_comm.h): data-parallel training over several
//! devices, processes and hosts. One process makes a [`CommId`], every rank
//! gets it by any channel (its text: `to_string()` / `parse()`), joins with
//! [`Comm::new`] or [`Comm::from_env`] and attaches it to its trainer
//! ([`Trainer::set_comm`](crate::Trainer::set_comm)) before the first step.
use std::fmt;
use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::{self, NonNull};
use std::str::FromStr;

use crate::context::{Context, DeviceType};
use crate::error::{check, guarded, Error, Result, Status};
use crate::options::{opt_ptr, Options};
use crate::util::cstring;
use libftq_sys as sys;

/// A communicator id (FTQ_COMM_ID_SIZE bytes). Made on one process with
/// [`CommId::new`]; its text (`Display`, `FromStr`) is printable ASCII for an
/// environment variable or a file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommId([u8; sys::FTQ_COMM_ID_SIZE]);

impl CommId {
    /// A new id for ranks whose contexts are of type `device`. CUDA ids hold
    /// an NCCL unique id (the CUDA module with NCCL); CPU ids name a
    /// shared-memory object (ranks on this host).
    pub fn new(device: DeviceType) -> Result<CommId> {
        let mut id = [0u8; sys::FTQ_COMM_ID_SIZE];
        // SAFETY: id holds FTQ_COMM_ID_SIZE bytes.
        check(unsafe { sys::ftq_comm_id_create(device as c_int, id.as_mut_ptr()) })?;
        Ok(CommId(id))
    }

    /// An id from its bytes (as [`as_bytes`](Self::as_bytes) gave them).
    pub fn from_bytes(bytes: &[u8]) -> Result<CommId> {
        let id: [u8; sys::FTQ_COMM_ID_SIZE] = bytes.try_into().map_err(|_| {
            Error::new(Status::INVALID_ARGUMENT,
                       format!("a communicator id has {} bytes, not {}", sys::FTQ_COMM_ID_SIZE, bytes.len()))
        })?;
        let id = CommId(id);
        id.text()?; // the library checks it is one
        Ok(id)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn text(&self) -> Result<String> {
        let mut buf = vec![0u8; sys::FTQ_COMM_ID_STRING_SIZE];
        // SAFETY: valid id and buffer of the given size.
        check(unsafe { sys::ftq_comm_id_to_string(self.0.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
        let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl fmt::Display for CommId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // every CommId was checked when made, so its text exists
        f.write_str(&self.text().map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for CommId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommId({self})")
    }
}

impl FromStr for CommId {
    type Err = Error;

    /// Reads the text `to_string()` wrote (surrounding white space ignored).
    fn from_str(text: &str) -> Result<CommId> {
        let t = cstring(text, "communicator id")?;
        let mut id = [0u8; sys::FTQ_COMM_ID_SIZE];
        // SAFETY: C string and FTQ_COMM_ID_SIZE bytes out.
        check(unsafe { sys::ftq_comm_id_from_string(t.as_ptr(), id.as_mut_ptr()) })?;
        Ok(CommId(id))
    }
}

/// How [`Comm::allreduce`] combines the ranks' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum over the ranks.
    Sum = 0,
    /// Maximum over the ranks.
    Max = 1,
    /// Minimum over the ranks.
    Min = 2,
}

/// One rank's membership of a communicator, on a context it borrows.
/// Joining is collective (it returns once every rank has joined, or fails
/// after `comm_timeout_s`). A failed collective returns an error with
/// [`Status::COMM`] (a peer died, left or aborted), [`Status::TIMEOUT`] or
/// [`Status::NCCL`]; the communicator is then unusable.
pub struct Comm<'c> {
    ptr: NonNull<sys::ftq_comm>,
    _ctx: PhantomData<&'c Context>,
}

impl<'c> Comm<'c> {
    /// Joins communicator `id` as `rank` of `world_size` (options of group
    /// "dist": comm_timeout_s).
    pub fn new(ctx: &'c Context, id: &CommId, rank: usize, world_size: usize, opts: Option<&Options>)
               -> Result<Comm<'c>> {
        let too_big = |what: &str| Error::new(Status::INVALID_ARGUMENT, format!("{what} does not fit a C int"));
        let rank = c_int::try_from(rank).map_err(|_| too_big("rank"))?;
        let size = c_int::try_from(world_size).map_err(|_| too_big("world_size"))?;
        let mut out = ptr::null_mut();
        // SAFETY: valid handles, id bytes and out-pointer.
        check(unsafe { sys::ftq_comm_create(ctx.as_ptr(), id.0.as_ptr(), rank, size, opt_ptr(opts), &mut out) })?;
        Ok(Comm { ptr: NonNull::new(out).expect("ftq_comm_create returned NULL"), _ctx: PhantomData })
    }

    /// Joins as the environment says, as launchers set it: rank and world
    /// size from FTQ_RANK / FTQ_WORLD_SIZE, RANK / WORLD_SIZE,
    /// OMPI_COMM_WORLD_RANK / _SIZE or PMI_RANK / PMI_SIZE; the id from
    /// FTQ_COMM_ID (its text) or the file FTQ_COMM_ID_FILE. Without a rank
    /// variable: a one-rank communicator.
    pub fn from_env(ctx: &'c Context, opts: Option<&Options>) -> Result<Comm<'c>> {
        let mut out = ptr::null_mut();
        // SAFETY: valid handles and out-pointer.
        check(unsafe { sys::ftq_comm_create_from_env(ctx.as_ptr(), opt_ptr(opts), &mut out) })?;
        Ok(Comm { ptr: NonNull::new(out).expect("ftq_comm_create_from_env returned NULL"), _ctx: PhantomData })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ftq_comm {
        self.ptr.as_ptr()
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_comm_rank(self.as_ptr()) }.max(0) as usize
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_comm_size(self.as_ptr()) }.max(0) as usize
    }

    /// The error that stopped the communicator, if any (does not wait).
    pub fn check(&self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::ftq_comm_check(self.as_ptr()) })
    }

    /// Makes pending and later operations fail here and on every peer.
    pub fn abort(&self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::ftq_comm_abort(self.as_ptr()) })
    }

    /// A handle another thread may use to abort this communicator (e.g. a
    /// signal-watching thread); it borrows the communicator.
    pub fn abort_handle(&self) -> AbortHandle<'_> {
        AbortHandle { ptr: self.ptr, _comm: PhantomData }
    }

    /// Waits until every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: valid handle.
        guarded(|| check(unsafe { sys::ftq_comm_barrier(self.as_ptr()) }))
    }

    /// Reduces `values` in place over the ranks; every rank gets the same bits.
    pub fn allreduce(&self, values: &mut [f64], op: ReduceOp) -> Result<()> {
        // SAFETY: valid handle; values holds values.len() doubles.
        guarded(|| {
            check(unsafe { sys::ftq_comm_allreduce(self.as_ptr(), values.as_mut_ptr(), values.len(), op as c_int) })
        })
    }
}

impl Drop for Comm<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once; trainers using it borrow it, so they are gone.
        unsafe { sys::ftq_comm_destroy(self.ptr.as_ptr()) }
    }
}

/// Aborts a communicator from any thread ([`Comm::abort_handle`]).
pub struct AbortHandle<'a> {
    ptr: NonNull<sys::ftq_comm>,
    _comm: PhantomData<&'a ()>,
}

// SAFETY: ftq_comm_abort is the one communicator call documented as safe
// from another thread, and the handle cannot outlive the communicator.
unsafe impl Send for AbortHandle<'_> {}
unsafe impl Sync for AbortHandle<'_> {}

impl AbortHandle<'_> {
    /// Makes pending and later operations fail on the communicator and its peers.
    pub fn abort(&self) {
        // SAFETY: the communicator is alive (borrowed); abort is thread-safe.
        unsafe { sys::ftq_comm_abort(self.ptr.as_ptr()) };
    }
}
