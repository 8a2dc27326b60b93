//! How admin commands print: text for people, or JSON with `--json`.

use anyhow::Result;

/// Prints `value` as JSON, or `text` for people. A closed pipe (`moat admin … | head`) ends
/// the output quietly.
pub fn emit(
    json: bool,
    value: &impl serde::Serialize,
    text: impl FnOnce() -> String,
) -> Result<()> {
    use std::io::Write as _;
    let out = if json {
        serde_json::to_string_pretty(value)?
    } else {
        text().trim_end().to_owned()
    };
    if out.is_empty() {
        return Ok(());
    }
    match writeln!(std::io::stdout().lock(), "{out}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
