//! Status codes, the error type every fallible call returns, and the
//! plumbing that carries a panic out of a callback to the caller.
use std::any::Any;
use std::cell::RefCell;
use std::ffi::CStr;
use std::fmt;

use libftq_sys as sys;

/// A libftq status code (`ftq_status`; values pinned forever).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub i32);

#[allow(missing_docs)]
impl Status {
    pub const OK: Status = Status(sys::FTQ_OK);
    pub const INVALID_ARGUMENT: Status = Status(sys::FTQ_ERR_INVALID_ARGUMENT);
    pub const OUT_OF_MEMORY: Status = Status(sys::FTQ_ERR_OUT_OF_MEMORY);
    pub const DEVICE_OUT_OF_MEMORY: Status = Status(sys::FTQ_ERR_DEVICE_OUT_OF_MEMORY);
    pub const IO: Status = Status(sys::FTQ_ERR_IO);
    pub const FORMAT: Status = Status(sys::FTQ_ERR_FORMAT);
    pub const UNSUPPORTED: Status = Status(sys::FTQ_ERR_UNSUPPORTED);
    pub const UNKNOWN_OPTION: Status = Status(sys::FTQ_ERR_UNKNOWN_OPTION);
    pub const OPTION_TYPE: Status = Status(sys::FTQ_ERR_OPTION_TYPE);
    pub const OPTION_RANGE: Status = Status(sys::FTQ_ERR_OPTION_RANGE);
    pub const NO_DEVICE: Status = Status(sys::FTQ_ERR_NO_DEVICE);
    pub const CUDA: Status = Status(sys::FTQ_ERR_CUDA);
    pub const CUBLAS: Status = Status(sys::FTQ_ERR_CUBLAS);
    pub const NCCL: Status = Status(sys::FTQ_ERR_NCCL);
    pub const STATE: Status = Status(sys::FTQ_ERR_STATE);
    pub const NOT_FOUND: Status = Status(sys::FTQ_ERR_NOT_FOUND);
    pub const SHAPE: Status = Status(sys::FTQ_ERR_SHAPE);
    pub const NUMERIC: Status = Status(sys::FTQ_ERR_NUMERIC);
    pub const CANCELLED: Status = Status(sys::FTQ_ERR_CANCELLED);
    pub const TIMEOUT: Status = Status(sys::FTQ_ERR_TIMEOUT);
    pub const INTERNAL: Status = Status(sys::FTQ_ERR_INTERNAL);
    pub const COMM: Status = Status(sys::FTQ_ERR_COMM);

    /// The library's short name for the status (e.g. "invalid argument").
    pub fn name(self) -> String {
        // SAFETY: returns static storage for any value.
        unsafe { CStr::from_ptr(sys::ftq_status_string(self.0)) }.to_string_lossy().into_owned()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A failed libftq call: its status and the text of `ftq_last_error()`,
/// which names the file, tensor or option involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure.
    pub status: Status,
    /// What failed and why.
    pub message: String,
}

impl Error {
    /// An error made by the binding itself (e.g. a string with a NUL byte).
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    /// The error of the calling thread's last failed libftq call.
    pub(crate) fn last(status: i32) -> Error {
        // SAFETY: ftq_last_error never returns NULL; the text is copied at once.
        let msg = unsafe { CStr::from_ptr(sys::ftq_last_error()) }.to_string_lossy().into_owned();
        Error { status: Status(status), message: msg }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for Error {}

/// The result of a fallible call.
pub type Result<T> = std::result::Result<T, Error>;

/// Turns a status into a Result.
pub(crate) fn check(status: i32) -> Result<()> {
    if status == sys::FTQ_OK { Ok(()) } else { Err(Error::last(status)) }
}

// ---------------------------------------------------------------------------
// Panics in callbacks. A panic must not unwind through C, so each trampoline
// catches it, keeps the payload here and asks the library to stop; `guarded`
// resumes the panic once the C function has returned. libftq runs callbacks
// on the thread that made the call, so a thread-local slot is enough.

thread_local! {
    static PANIC: RefCell<Option<Box<dyn Any + Send>>> = const { RefCell::new(None) };
}

/// Keeps the first panic payload of a callback during the current call.
pub(crate) fn record_panic(payload: Box<dyn Any + Send>) {
    PANIC.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_none() {
            *p = Some(payload);
        }
    });
}

/// Runs a C call that may run callbacks, then re-raises a callback's panic.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> T {
    PANIC.with(|p| p.borrow_mut().take());
    let out = f();
    if let Some(payload) = PANIC.with(|p| p.borrow_mut().take()) {
        std::panic::resume_unwind(payload);
    }
    out
}
