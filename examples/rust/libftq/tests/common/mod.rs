//! Test helpers: the source tree's reference files, a small JSON reader,
//! and readers / writers of safetensors and tests/ref/quant's container.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap()
}

pub fn reference(rel: &str) -> PathBuf {
    root().join("tests/ref").join(rel)
}

pub const TINY_CONFIG: &str = r#"{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 128}"#;

// ---------------------------------------------------------------------------
// JSON

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn parse(text: &str) -> Json {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing JSON text");
        v
    }
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(key).unwrap_or_else(|| panic!("no key {key}")),
            _ => panic!("not an object"),
        }
    }
    pub fn has(&self, key: &str) -> bool {
        matches!(self, Json::Obj(m) if m.contains_key(key))
    }
    pub fn arr(&self) -> &[Json] {
        match self { Json::Arr(a) => a, _ => panic!("not an array") }
    }
    pub fn str(&self) -> &str {
        match self { Json::Str(s) => s, _ => panic!("not a string") }
    }
    pub fn num(&self) -> f64 {
        match self { Json::Num(n) => *n, _ => panic!("not a number") }
    }
    pub fn bool(&self) -> bool {
        match self { Json::Bool(b) => *b, _ => panic!("not a bool") }
    }
    pub fn ints(&self) -> Vec<i64> {
        self.arr().iter().map(|v| v.num() as i64).collect()
    }
    pub fn obj(&self) -> &BTreeMap<String, Json> {
        match self { Json::Obj(m) => m, _ => panic!("not an object") }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && b" \t\r\n".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s[self.i], c, "JSON: expected '{}' at {}", c as char, self.i);
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(m);
                }
                loop {
                    self.ws();
                    let k = self.string();
                    self.eat(b':');
                    let v = self.value();
                    m.insert(k, v);
                    self.ws();
                    let c = self.s[self.i];
                    self.i += 1;
                    if c == b'}' {
                        return Json::Obj(m);
                    }
                    assert_eq!(c, b',');
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    let c = self.s[self.i];
                    self.i += 1;
                    if c == b']' {
                        return Json::Arr(a);
                    }
                    assert_eq!(c, b',');
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => { self.i += 4; Json::Bool(true) }
            b'f' => { self.i += 5; Json::Bool(false) }
            b'n' => { self.i += 4; Json::Null }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                Json::Num(std::str::from_utf8(&self.s[start..self.i]).unwrap().parse().unwrap())
            }
        }
    }
    fn hex4(&mut self) -> u32 {
        let h = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
        self.i += 4;
        u32::from_str_radix(h, 16).unwrap()
    }
    fn string(&mut self) -> String {
        assert_eq!(self.s[self.i], b'"');
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).unwrap(),
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    let ch = match e {
                        b'n' => '\n', b't' => '\t', b'r' => '\r', b'b' => '\u{8}', b'f' => '\u{c}',
                        b'/' => '/', b'\\' => '\\', b'"' => '"',
                        b'u' => {
                            let mut u = self.hex4();
                            if (0xD800..0xDC00).contains(&u) && self.s[self.i] == b'\\' && self.s[self.i + 1] == b'u' {
                                self.i += 2;
                                let lo = self.hex4();
                                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                            }
                            char::from_u32(u).unwrap_or('\u{FFFD}')
                        }
                        _ => panic!("bad JSON escape"),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                c => out.push(c),
            }
        }
    }
}

pub fn load_json(path: &Path) -> Json {
    Json::parse(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Decodes standard base64.
pub fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("base64"),
        }
    };
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in b.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// binary containers

/// A tensor read from a file: dtype name and raw little-endian bytes.
#[derive(Clone, Debug)]
pub struct Raw {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Raw {
    pub fn f32(&self) -> Vec<f32> {
        assert!(self.dtype == "F32" || self.dtype == "f32");
        self.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }
    pub fn u16(&self) -> Vec<u16> {
        self.data.chunks_exact(2).map(|b| u16::from_le_bytes(b.try_into().unwrap())).collect()
    }
    pub fn i32(&self) -> Vec<i32> {
        assert!(self.dtype == "I32" || self.dtype == "i32");
        self.data.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect()
    }
}

/// A safetensors file: tensors and metadata.
pub fn read_safetensors(path: &Path) -> (BTreeMap<String, Raw>, BTreeMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = Json::parse(std::str::from_utf8(&bytes[8..8 + n]).unwrap());
    let data = &bytes[8 + n..];
    let (mut out, mut meta) = (BTreeMap::new(), BTreeMap::new());
    for (k, v) in header.obj() {
        if k == "__metadata__" {
            for (mk, mv) in v.obj() {
                meta.insert(mk.clone(), mv.str().to_string());
            }
            continue;
        }
        let off = v.get("data_offsets").ints();
        out.insert(k.clone(), Raw {
            dtype: v.get("dtype").str().to_string(),
            shape: v.get("shape").ints().iter().map(|&x| x as usize).collect(),
            data: data[off[0] as usize..off[1] as usize].to_vec(),
        });
    }
    (out, meta)
}

/// Writes F32 tensors as a safetensors file.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Raw>) {
    let mut header = String::from("{");
    let mut off = 0usize;
    let mut blob = Vec::new();
    for (i, (k, t)) in tensors.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        let shape: Vec<String> = t.shape.iter().map(|s| s.to_string()).collect();
        header.push_str(&format!("\"{k}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                                 t.dtype, shape.join(","), off, off + t.data.len()));
        off += t.data.len();
        blob.extend_from_slice(&t.data);
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&blob);
    std::fs::write(path, out).unwrap();
}

/// tests/ref/quant/quant_ref.bin (refio.py's container).
pub fn read_refio(path: &Path) -> BTreeMap<String, Raw> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"FTQREF1\n");
    let mut i = 8;
    let rd = |n: usize, i: &mut usize| {
        let s = &b[*i..*i + n];
        *i += n;
        s.to_vec()
    };
    let mut out = BTreeMap::new();
    while i < b.len() {
        let ln = u32::from_le_bytes(rd(4, &mut i).try_into().unwrap()) as usize;
        let name = String::from_utf8(rd(ln, &mut i)).unwrap();
        let dt = u32::from_le_bytes(rd(4, &mut i).try_into().unwrap());
        let nd = u32::from_le_bytes(rd(4, &mut i).try_into().unwrap()) as usize;
        let shape: Vec<usize> =
            (0..nd).map(|_| i64::from_le_bytes(rd(8, &mut i).try_into().unwrap()) as usize).collect();
        let nbytes = u64::from_le_bytes(rd(8, &mut i).try_into().unwrap()) as usize;
        let data = rd(nbytes, &mut i);
        let dtype = match dt { 0 => "f32", 1 => "f16", 2 => "bf16", 3 => "f64", 4 => "i8", 5 => "u8", 8 => "i32",
                               10 => "i64", _ => "?" };
        out.insert(name, Raw { dtype: dtype.to_string(), shape, data });
    }
    out
}
