//! `moat_server::config::Config::load`: the TOML configuration file, and `MOAT_<SECTION>__<KEY>`
//! environment overrides.
//!
//! Input (UTF-8): the TOML text; if it contains a line `#@env`, the lines after it are
//! `NAME=value` environment variables. Load must return `Ok` or `Err`, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_server::config::Config;

fuzz_target!(init: moat_fuzz::seeds::on_request(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once("\n#@env\n").unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = Config::load(Some(toml), &env);
});
