//! Conversions between Rust and C strings.
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::path::Path;

use crate::error::{Error, Result, Status};
use libftq_sys as sys;

/// A C string from Rust text (an interior NUL is an error naming @p what).
pub(crate) fn cstring(text: &str, what: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::new(Status::INVALID_ARGUMENT, format!("{what} contains a NUL byte")))
}

/// A C string from a path.
pub(crate) fn cpath(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(Status::INVALID_ARGUMENT, format!("path {} contains a NUL byte", path.display())))
}

/// Copies a NUL-terminated C string (NULL gives "").
pub(crate) fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the library hands out NUL-terminated text.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

/// Copies a C string the library allocated for the caller, then frees it.
pub(crate) fn take_text(ptr: *mut c_char, len: Option<usize>) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: ptr holds len bytes (or is NUL-terminated) and is ours to free.
    let s = unsafe {
        match len {
            Some(n) => String::from_utf8_lossy(std::slice::from_raw_parts(ptr as *const u8, n)).into_owned(),
            None => CStr::from_ptr(ptr).to_string_lossy().into_owned(),
        }
    };
    unsafe { sys::ftq_free(ptr as *mut _) };
    s
}

/// Copies n int32 values the library allocated for the caller, then frees them.
pub(crate) fn take_ids(ptr: *mut i32, n: usize) -> Vec<i32> {
    if ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: ptr holds n ids and is ours to free.
    let v = unsafe { std::slice::from_raw_parts(ptr, n) }.to_vec();
    unsafe { sys::ftq_free(ptr as *mut _) };
    v
}

/// A slice from a library pointer (empty for NULL).
///
/// # Safety
/// `ptr` must point at `n` values that outlive `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, n: usize) -> &'a [T] {
    if ptr.is_null() || n == 0 { &[] } else { std::slice::from_raw_parts(ptr, n) }
}
