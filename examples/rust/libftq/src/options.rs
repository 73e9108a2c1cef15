//! Options by name with typed values (ftq_options.h) and the registry.
use std::os::raw::{c_char, c_int};
use std::path::Path;
use std::ptr::{self, NonNull};

use crate::error::{check, Error, Result, Status};
use crate::util::{cpath, cstring, take_text, text};
use libftq_sys as sys;

/// The type of an option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionType {
    /// 64-bit integer.
    Int,
    /// double.
    Float,
    /// true / false.
    Bool,
    /// UTF-8 text (a comma-separated list for list options).
    String,
}

impl OptionType {
    fn from_c(v: c_int) -> OptionType {
        match v {
            sys::FTQ_OPTION_INT => OptionType::Int,
            sys::FTQ_OPTION_FLOAT => OptionType::Float,
            sys::FTQ_OPTION_BOOL => OptionType::Bool,
            _ => OptionType::String,
        }
    }
}

/// A value given to or read from an option.
#[derive(Clone, Debug, PartialEq)]
pub enum OptionValue {
    /// For int options (also accepted by float options).
    Int(i64),
    /// For float options.
    Float(f64),
    /// For bool options.
    Bool(bool),
    /// For string options; for other types the text is parsed.
    Str(String),
}

macro_rules! from_int {
    ($($t:ty),*) => {$(impl From<$t> for OptionValue { fn from(v: $t) -> Self { OptionValue::Int(v as i64) } })*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, usize);
impl From<f64> for OptionValue {
    fn from(v: f64) -> Self { OptionValue::Float(v) }
}
impl From<f32> for OptionValue {
    fn from(v: f32) -> Self { OptionValue::Float(v as f64) }
}
impl From<bool> for OptionValue {
    fn from(v: bool) -> Self { OptionValue::Bool(v) }
}
impl From<&str> for OptionValue {
    fn from(v: &str) -> Self { OptionValue::Str(v.to_string()) }
}
impl From<String> for OptionValue {
    fn from(v: String) -> Self { OptionValue::Str(v) }
}
impl From<&[&str]> for OptionValue {
    fn from(v: &[&str]) -> Self { OptionValue::Str(v.join(",")) }
}
impl<const N: usize> From<[&str; N]> for OptionValue {
    fn from(v: [&str; N]) -> Self { OptionValue::Str(v.join(",")) }
}
impl From<Vec<&str>> for OptionValue {
    fn from(v: Vec<&str>) -> Self { OptionValue::Str(v.join(",")) }
}

/// A getter of one option type: the value, or OPTION_TYPE for another type.
macro_rules! typed_getter {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $t:ty, $what:literal) => {
        $(#[$doc])*
        pub fn $name(&self, name: &str) -> Result<$t> {
            match self.get(name)? {
                OptionValue::$variant(v) => Ok(v),
                _ => Err(Error::new(Status::OPTION_TYPE, format!("option '{name}' is not {} option", $what))),
            }
        }
    };
}

/// One registered option.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionInfo {
    /// Its name, e.g. "lora_alpha".
    pub name: String,
    /// Its value type.
    pub ty: OptionType,
    /// The object group reading it ("context", "lora", "quant", ...).
    pub group: String,
    /// One-line description.
    pub doc: String,
    /// Default value as text.
    pub default: String,
    /// Inclusive numeric range of int / float options.
    pub range: Option<(f64, f64)>,
    /// Allowed values of a string option (None: any text).
    pub choices: Option<Vec<String>>,
    /// Whether a string option holds a comma-separated list.
    pub is_list: bool,
}

fn info_at(i: usize) -> OptionInfo {
    // SAFETY: i < ftq_option_count(); the strings are static.
    unsafe {
        let ty = OptionType::from_c(sys::ftq_option_type_of(i));
        let range = if matches!(ty, OptionType::Int | OptionType::Float) {
            let (mut lo, mut hi) = (0.0, 0.0);
            if sys::ftq_option_range(i, &mut lo, &mut hi) == sys::FTQ_OK { Some((lo, hi)) } else { None }
        } else {
            None
        };
        let ch = sys::ftq_option_choices(i);
        OptionInfo {
            name: text(sys::ftq_option_name(i)),
            ty,
            group: text(sys::ftq_option_group(i)),
            doc: text(sys::ftq_option_doc(i)),
            default: text(sys::ftq_option_default(i)),
            range,
            choices: if ch.is_null() { None } else { Some(text(ch).split('|').map(String::from).collect()) },
            is_list: sys::ftq_option_is_list(i) != 0,
        }
    }
}

fn index_of(name: &str) -> Result<usize> {
    let n = cstring(name, "option name")?;
    let mut idx = 0usize;
    // SAFETY: valid C string and out-pointer.
    check(unsafe { sys::ftq_option_find(n.as_ptr(), &mut idx) })?;
    Ok(idx)
}

/// Every registered option, in registry order.
pub fn list_options() -> Vec<OptionInfo> {
    // SAFETY: no arguments.
    (0..unsafe { sys::ftq_option_count() }).map(info_at).collect()
}

/// The registry entry of one option.
pub fn option_info(name: &str) -> Result<OptionInfo> {
    Ok(info_at(index_of(name)?))
}

/// A set of option values; options not set keep the registry's default.
/// Unknown names, wrong types and values out of range are errors naming the option.
///
/// ```no_run
/// # fn main() -> libftq::Result<()> {
/// let opts = libftq::Options::new()?
///     .with("r", 16)?
///     .with("lora_alpha", 32)?
///     .with("target_modules", ["q_proj", "v_proj"])?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Options {
    ptr: NonNull<sys::ftq_options>,
}

// SAFETY: an option set is plain data owned by this handle.
unsafe impl Send for Options {}

impl Options {
    /// An empty set (every option at its default).
    pub fn new() -> Result<Options> {
        let mut out = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::ftq_options_create(&mut out) })?;
        Ok(Options { ptr: NonNull::new(out).expect("ftq_options_create returned NULL") })
    }

    /// A set from a JSON object text (`{"r": 64, "target_modules": ["q_proj"]}`).
    pub fn from_json(json: &str) -> Result<Options> {
        let mut o = Options::new()?;
        o.load_json(json)?;
        Ok(o)
    }

    /// A set from a JSON file.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Options> {
        let mut o = Options::new()?;
        o.load_json_file(path)?;
        Ok(o)
    }

    /// An independent copy.
    pub fn try_clone(&self) -> Result<Options> {
        let mut out = ptr::null_mut();
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::ftq_options_copy(self.ptr.as_ptr(), &mut out) })?;
        Ok(Options { ptr: NonNull::new(out).expect("ftq_options_copy returned NULL") })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ftq_options {
        self.ptr.as_ptr()
    }

    /// Sets an option. Integers may be given to float options; text is
    /// parsed for int, float and bool options; a list of strings is joined
    /// with commas.
    pub fn set(&mut self, name: &str, value: impl Into<OptionValue>) -> Result<&mut Self> {
        let n = cstring(name, "option name")?;
        let p = self.as_ptr();
        // SAFETY: valid handle and C strings.
        let st = unsafe {
            match value.into() {
                OptionValue::Int(v) => sys::ftq_options_set_int(p, n.as_ptr(), v),
                OptionValue::Float(v) => sys::ftq_options_set_float(p, n.as_ptr(), v),
                OptionValue::Bool(v) => sys::ftq_options_set_bool(p, n.as_ptr(), v as c_int),
                OptionValue::Str(s) => {
                    let v = cstring(&s, "option value")?;
                    if option_info(name)?.ty == OptionType::String {
                        sys::ftq_options_set_string(p, n.as_ptr(), v.as_ptr())
                    } else {
                        sys::ftq_options_set_parse(p, n.as_ptr(), v.as_ptr())
                    }
                }
            }
        };
        check(st)?;
        Ok(self)
    }

    /// As set(), consuming and returning the set (for chaining).
    pub fn with(mut self, name: &str, value: impl Into<OptionValue>) -> Result<Self> {
        self.set(name, value)?;
        Ok(self)
    }

    /// Returns an option to its default.
    pub fn unset(&mut self, name: &str) -> Result<()> {
        let n = cstring(name, "option name")?;
        // SAFETY: valid handle and C string.
        check(unsafe { sys::ftq_options_unset(self.as_ptr(), n.as_ptr()) })
    }

    /// Whether an option was set explicitly.
    pub fn is_set(&self, name: &str) -> Result<bool> {
        let n = cstring(name, "option name")?;
        let mut v = 0;
        // SAFETY: valid handle, C string and out-pointer.
        check(unsafe { sys::ftq_options_is_set(self.as_ptr(), n.as_ptr(), &mut v) })?;
        Ok(v != 0)
    }

    /// The value set (or the default), typed as the registry says.
    pub fn get(&self, name: &str) -> Result<OptionValue> {
        let ty = option_info(name)?.ty;
        let n = cstring(name, "option name")?;
        let p = self.as_ptr();
        // SAFETY: valid handle, C string and out-pointers; the text is copied at once.
        unsafe {
            Ok(match ty {
                OptionType::Int => {
                    let mut v = 0i64;
                    check(sys::ftq_options_get_int(p, n.as_ptr(), &mut v))?;
                    OptionValue::Int(v)
                }
                OptionType::Float => {
                    let mut v = 0f64;
                    check(sys::ftq_options_get_float(p, n.as_ptr(), &mut v))?;
                    OptionValue::Float(v)
                }
                OptionType::Bool => {
                    let mut v = 0;
                    check(sys::ftq_options_get_bool(p, n.as_ptr(), &mut v))?;
                    OptionValue::Bool(v != 0)
                }
                OptionType::String => {
                    let mut v: *const c_char = ptr::null();
                    check(sys::ftq_options_get_string(p, n.as_ptr(), &mut v))?;
                    OptionValue::Str(text(v))
                }
            })
        }
    }

    typed_getter!(
        /// An int option's value.
        get_int, Int, i64, "an int");
    typed_getter!(
        /// A float option's value.
        get_float, Float, f64, "a float");
    typed_getter!(
        /// A bool option's value.
        get_bool, Bool, bool, "a bool");
    typed_getter!(
        /// A string option's value.
        get_string, Str, String, "a string");

    /// Sets options from a JSON object text; all keys are checked first.
    pub fn load_json(&mut self, json: &str) -> Result<()> {
        let t = cstring(json, "JSON text")?;
        // SAFETY: valid handle and C string.
        check(unsafe { sys::ftq_options_load_json(self.as_ptr(), t.as_ptr()) })
    }

    /// Sets options from a JSON file.
    pub fn load_json_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let p = cpath(path.as_ref())?;
        // SAFETY: valid handle and C string.
        check(unsafe { sys::ftq_options_load_json_file(self.as_ptr(), p.as_ptr()) })
    }

    /// The set as JSON text (with every default too if asked).
    pub fn to_json(&self, include_defaults: bool) -> Result<String> {
        let mut out = ptr::null_mut();
        // SAFETY: valid handle and out-pointer; the text is ours to free.
        check(unsafe { sys::ftq_options_to_json(self.as_ptr(), include_defaults as c_int, &mut out) })?;
        Ok(take_text(out, None))
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and destroyed once.
        unsafe { sys::ftq_options_destroy(self.ptr.as_ptr()) }
    }
}

/// The C pointer of an optional option set.
pub(crate) fn opt_ptr(o: Option<&Options>) -> *const sys::ftq_options {
    o.map_or(ptr::null(), |o| o.as_ptr())
}
