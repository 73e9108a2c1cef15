//! Tokenizer and chat templates (ftq_tokenizer.h).
use std::os::raw::{c_char, c_uint};
use std::path::Path;
use std::ptr::{self, NonNull};

use crate::error::{check, Result};
use crate::options::{opt_ptr, Options};
use crate::util::{cpath, cstring, take_ids, take_text, text};
use libftq_sys as sys;

/// Flags of encode(); combine with `|`.
pub mod encode {
    /// The tokenizer's default special tokens (add_special_tokens=True).
    pub const ADD_SPECIAL: u32 = 1;
    /// Prepend BOS.
    pub const ADD_BOS: u32 = 2;
    /// Append EOS.
    pub const ADD_EOS: u32 = 4;
    /// Special tokens in the text are plain text.
    pub const SPECIAL_AS_TEXT: u32 = 8;
}

/// Flags of decode().
pub mod decode {
    /// Leave special tokens out.
    pub const SKIP_SPECIAL: u32 = 1;
}

/// The special tokens a tokenizer may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SpecialToken {
    Bos = 0,
    Eos = 1,
    Pad = 2,
    Unk = 3,
}

/// A tokenizer (immutable: shareable between threads).
pub struct Tokenizer {
    ptr: NonNull<sys::ftq_tokenizer>,
}

// SAFETY: a loaded tokenizer is immutable and documented as thread-safe.
unsafe impl Send for Tokenizer {}
unsafe impl Sync for Tokenizer {}

impl Tokenizer {
    /// Loads from a model folder, a tokenizer.json(.gz) or a GGUF file;
    /// options of group "tokenizer".
    pub fn load(path: impl AsRef<Path>, opts: Option<&Options>) -> Result<Tokenizer> {
        let p = cpath(path.as_ref())?;
        let mut out = ptr::null_mut();
        // SAFETY: valid C string, optional options and out-pointer.
        check(unsafe { sys::ftq_tokenizer_load(p.as_ptr(), opt_ptr(opts), &mut out) })?;
        Ok(Tokenizer { ptr: NonNull::new(out).expect("ftq_tokenizer_load returned NULL") })
    }

    /// Loads tokenizer.json text.
    pub fn from_json(json: &str, opts: Option<&Options>) -> Result<Tokenizer> {
        let mut out = ptr::null_mut();
        // SAFETY: json holds json.len() bytes.
        check(unsafe {
            sys::ftq_tokenizer_load_json(json.as_ptr() as *const c_char, json.len(), opt_ptr(opts), &mut out)
        })?;
        Ok(Tokenizer { ptr: NonNull::new(out).expect("ftq_tokenizer_load_json returned NULL") })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ftq_tokenizer {
        self.ptr.as_ptr()
    }

    /// Token ids of `text` (flags from [`encode`]).
    pub fn encode(&self, text: &str, flags: u32) -> Result<Vec<i32>> {
        let (mut ids, mut n) = (ptr::null_mut(), 0usize);
        // SAFETY: text holds text.len() bytes; the ids are ours to free.
        check(unsafe {
            sys::ftq_tokenizer_encode(self.as_ptr(), text.as_ptr() as *const c_char, text.len(), flags as c_uint,
                                      &mut ids, &mut n)
        })?;
        Ok(take_ids(ids, n))
    }

    /// (ids, byte offset of each token in `text`).
    pub fn encode_offsets(&self, text: &str, flags: u32) -> Result<(Vec<i32>, Vec<i32>)> {
        let (mut ids, mut offs, mut n) = (ptr::null_mut(), ptr::null_mut(), 0usize);
        // SAFETY: as encode(); both arrays are ours to free.
        let st = unsafe {
            sys::ftq_tokenizer_encode_offsets(self.as_ptr(), text.as_ptr() as *const c_char, text.len(),
                                              flags as c_uint, &mut ids, &mut offs, &mut n)
        };
        check(st)?;
        Ok((take_ids(ids, n), take_ids(offs, n)))
    }

    /// Text of token ids (flags from [`decode`]).
    pub fn decode(&self, ids: &[i32], flags: u32) -> Result<String> {
        let (mut t, mut n) = (ptr::null_mut(), 0usize);
        // SAFETY: ids holds ids.len() values; the text is ours to free.
        check(unsafe { sys::ftq_tokenizer_decode(self.as_ptr(), ids.as_ptr(), ids.len(), flags as c_uint, &mut t, &mut n) })?;
        Ok(take_text(t, Some(n)))
    }

    /// The bytes one token stands for in text (for streaming output).
    pub fn token_to_piece(&self, id: i32) -> Result<Vec<u8>> {
        let (mut p, mut n) = (ptr::null(), 0usize);
        // SAFETY: the piece lives with the tokenizer and is copied.
        check(unsafe { sys::ftq_tokenizer_token_to_piece(self.as_ptr(), id, &mut p, &mut n) })?;
        Ok(unsafe { crate::util::slice(p as *const u8, n) }.to_vec())
    }

    /// The vocabulary entry of a token as written in the file.
    pub fn id_to_token(&self, id: i32) -> Result<String> {
        let (mut p, mut n) = (ptr::null(), 0usize);
        // SAFETY: the entry lives with the tokenizer and is copied.
        check(unsafe { sys::ftq_tokenizer_id_to_token(self.as_ptr(), id, &mut p, &mut n) })?;
        Ok(String::from_utf8_lossy(unsafe { crate::util::slice(p as *const u8, n) }).into_owned())
    }

    /// The id of a vocabulary entry.
    pub fn token_to_id(&self, token: &str) -> Result<i32> {
        let mut id = 0;
        // SAFETY: token holds token.len() bytes.
        check(unsafe {
            sys::ftq_tokenizer_token_to_id(self.as_ptr(), token.as_ptr() as *const c_char, token.len(), &mut id)
        })?;
        Ok(id)
    }

    /// One more than the largest token id.
    pub fn vocab_size(&self) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_tokenizer_vocab_size(self.as_ptr()) }
    }

    /// A special token's id, if the tokenizer has one.
    pub fn special_id(&self, which: SpecialToken) -> Option<i32> {
        // SAFETY: valid handle.
        let v = unsafe { sys::ftq_tokenizer_special_id(self.as_ptr(), which as i32) };
        if v < 0 { None } else { Some(v) }
    }

    /// Whether `id` is a special token.
    pub fn is_special(&self, id: i32) -> bool {
        // SAFETY: valid handle.
        unsafe { sys::ftq_tokenizer_is_special(self.as_ptr(), id) != 0 }
    }

    /// The chat template in use ("llama-2", "chatml", "llama-3"), if any.
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: valid handle; static text.
        let p = unsafe { sys::ftq_tokenizer_chat_template(self.as_ptr()) };
        if p.is_null() { None } else { Some(text(p)) }
    }

    /// Renders a conversation: a JSON array of {"role", "content"} objects.
    pub fn apply_chat_template(&self, messages_json: &str, add_generation_prompt: bool) -> Result<String> {
        let m = cstring(messages_json, "messages")?;
        let (mut t, mut n) = (ptr::null_mut(), 0usize);
        // SAFETY: valid C string; the text is ours to free.
        check(unsafe {
            sys::ftq_tokenizer_apply_chat_template(self.as_ptr(), m.as_ptr(), add_generation_prompt as i32, &mut t, &mut n)
        })?;
        Ok(take_text(t, Some(n)))
    }

    /// As apply_chat_template(), from (role, content) pairs.
    pub fn chat(&self, messages: &[(&str, &str)], add_generation_prompt: bool) -> Result<String> {
        let items: Vec<String> = messages
            .iter()
            .map(|(r, c)| format!("{{\"role\":{},\"content\":{}}}", json_string(r), json_string(c)))
            .collect();
        self.apply_chat_template(&format!("[{}]", items.join(",")), add_generation_prompt)
    }
}

impl Drop for Tokenizer {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once.
        unsafe { sys::ftq_tokenizer_destroy(self.ptr.as_ptr()) }
    }
}

/// A JSON string literal of `s`.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
