//! Prints the public listener's OpenAPI document (the one served at `/openapi.json`).
//!
//! `cargo run -p moat-server --example openapi > openapi.json`

fn main() {
    match moat_server::endpoints::document().to_pretty_json() {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("openapi: {e}");
            std::process::exit(1);
        }
    }
}
