//! Gives this crate's tests and examples the run path of the libftq that
//! libftq-sys linked (DEP_FTQ_LIB_DIR), so they run in place.
fn main() {
    if let Ok(dir) = std::env::var("DEP_FTQ_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
