//! UniFFI's binding generator, built with the same uniffi version as the library (bindings
//! from another version would not match it). It reads the interface from the built library
//! ("library mode"):
//!
//! ```text
//! cargo build -p moat-ffi
//! cargo run -p moat-ffi --bin uniffi-bindgen -- generate target/debug/libmoat_ffi.so \
//!     --language kotlin --out-dir bindings/kotlin
//! ```

fn main() {
    uniffi::uniffi_bindgen_main();
}
