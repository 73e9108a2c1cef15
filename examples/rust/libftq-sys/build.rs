//! Finds libftq.so and links against it. In order: the folder named by
//! FTQ_LIB_DIR; pkg-config's libdir for libftq (an installed library);
//! the build folder of the source tree this crate sits in (../../../build).
//! The folder is passed on to dependent crates as DEP_FTQ_LIB_DIR, and test
//! and example binaries get it as their run path.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn has_lib(dir: &Path) -> bool {
    dir.join("libftq.so").exists() || dir.join("libftq.so.0").exists()
}

fn pkg_config_libdir() -> Option<PathBuf> {
    let out = Command::new("pkg-config").args(["--variable=libdir", "libftq"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if has_lib(&dir) { Some(dir) } else { None }
}

fn main() {
    println!("cargo:rerun-if-env-changed=FTQ_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let dir = if let Ok(d) = env::var("FTQ_LIB_DIR") {
        let d = PathBuf::from(d);
        if !has_lib(&d) {
            panic!("FTQ_LIB_DIR={} holds no libftq.so", d.display());
        }
        d
    } else if let Some(d) = pkg_config_libdir() {
        d
    } else {
        let d = manifest.join("../../../build");
        if !has_lib(&d) {
            panic!("libftq not found: set FTQ_LIB_DIR to the folder holding libftq.so \
                    (e.g. the CMake build folder), or install libftq where pkg-config finds it");
        }
        d.canonicalize().unwrap()
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=ftq");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
}
