//! Phase one of loading: the environment laid over the file's TOML, then serde into the raw
//! sections, with every type error and unknown key reported in a user's words instead of
//! stopping at the first.

use serde::de::DeserializeOwned;

use super::errors::Errors;

/// Where configuration values come from besides the file: a list of `(name, value)` pairs,
/// normally `std::env::vars()`, a plain vector in tests.
pub trait Source {
    /// All variables.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Env;

impl Source for Env {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl Source for Vec<(String, String)> {
    fn vars(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

/// Most type errors reported for one file; each is one round of deserializing.
const MAX_TYPE_ERRORS: usize = 256;

/// Deserializes `table`, collecting every type error instead of stopping at the first: the
/// key an error names is removed (its default then applies) and the rest tried again. Each
/// error is said in words a user knows, not Rust type names. `None` if an error names no key.
pub(crate) fn deserialize_all<T: DeserializeOwned>(
    mut table: toml::Table,
    errors: &mut Errors,
) -> Option<T> {
    // Bounded: each round removes one key, and a file has finitely many.
    for _ in 0..MAX_TYPE_ERRORS {
        let e = match toml::Value::Table(table.clone()).try_into::<T>() {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let text = e.to_string();
        let key = text
            .rsplit_once("in `")
            .and_then(|(_, k)| k.split('`').next())
            .map(str::to_owned);
        let message = text.lines().next().unwrap_or("").trim();
        // An unknown key is reported against its section: set aside the key, not the section.
        let key = match message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            Some(field) => key
                .map(|k| format!("{k}.{field}"))
                .or(Some(field.to_owned())),
            None => key,
        };
        let located = key.as_deref().and_then(|k| locate::<T>(&table, k, &text));
        match located {
            Some((shown, path)) if remove_path(&mut table, &path) => {
                errors.push(format!("{shown}: {}", humanize(&shown, message)));
            }
            _ => {
                errors.push(humanize("", message));
                return None;
            }
        }
    }
    errors.push("too many errors in the configuration");
    None
}
/// One step of a key's path: a table key or an array index.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path of the value the deserializer's error `text` is about, from its dotted `key`,
/// and that key as a user writes it (`route[1].timeout`). The deserializer names an array of
/// tables without the index (`route.timeout`), so for an array each element is tried: the
/// one whose removal changes the error is the one at fault.
fn locate<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    text: &str,
) -> Option<(String, Vec<Step>)> {
    fn walk<'a>(table: &'a toml::Table, path: &[Step]) -> Option<&'a toml::Value> {
        let mut value: Option<&toml::Value> = None;
        for step in path {
            value = match (value, step) {
                (None, Step::Key(k)) => table.get(k),
                (Some(toml::Value::Table(t)), Step::Key(k)) => t.get(k),
                (Some(toml::Value::Array(a)), Step::Index(i)) => a.get(*i),
                _ => None,
            };
            value?;
        }
        value
    }
    let mut path = Vec::new();
    let mut shown = String::new();
    for part in key.split('.') {
        if let Some(toml::Value::Array(items)) = walk(table, &path)
            && part.parse::<usize>().is_err()
        {
            let index = (0..items.len()).find(|&i| {
                let mut trial = path.clone();
                trial.push(Step::Index(i));
                trial.push(Step::Key(part.to_owned()));
                let mut copy = table.clone();
                remove_path(&mut copy, &trial)
                    && toml::Value::Table(copy)
                        .try_into::<T>()
                        .map_or_else(|e| e.to_string() != text, |_| true)
            })?;
            path.push(Step::Index(index));
            shown.push_str(&format!("[{index}]"));
        }
        if !shown.is_empty() {
            shown.push('.');
        }
        shown.push_str(part);
        path.push(Step::Key(part.to_owned()));
    }
    Some((shown, path))
}

/// Removes the value at `path` from `table`. Whether it was there.
fn remove_path(table: &mut toml::Table, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut value: Option<&mut toml::Value> = None;
    for step in parents {
        let next = match (value, step) {
            (None, Step::Key(k)) => table.get_mut(k),
            (Some(toml::Value::Table(t)), Step::Key(k)) => t.get_mut(k),
            (Some(toml::Value::Array(a)), Step::Index(i)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => value = Some(v),
            None => return false,
        }
    }
    match (value, last) {
        (None, Step::Key(k)) => table.remove(k).is_some(),
        (Some(toml::Value::Table(t)), Step::Key(k)) => t.remove(k).is_some(),
        _ => false,
    }
}

/// A deserializer's message in a user's words: "expected u64" becomes "expected a whole
/// number of seconds", with the unit read from the key's name.
fn humanize(key: &str, message: &str) -> String {
    let unit = if key.ends_with("_bytes") {
        " of bytes"
    } else if key.ends_with("_ms") {
        " of milliseconds"
    } else if key.ends_with("_days") {
        " of days"
    } else if key.ends_with("_hour") {
        " (per hour)"
    } else if [
        "timeout",
        "ttl",
        "cooldown",
        "interval",
        "window",
        "block_for",
        "_seconds",
    ]
    .iter()
    .any(|s| key.ends_with(s))
    {
        " of seconds"
    } else {
        ""
    };
    let whole = format!("a whole number{unit}");
    let mut out = message.to_owned();
    for (rust, words) in [
        ("expected usize", format!("expected {whole}")),
        ("expected u64", format!("expected {whole}")),
        ("expected u32", format!("expected {whole}")),
        ("expected u16", format!("expected {whole}")),
        ("expected i64", format!("expected {whole}")),
        ("expected i32", format!("expected {whole}")),
        ("expected f64", "expected a number".to_owned()),
        ("expected a boolean", "expected true or false".to_owned()),
        (
            "expected a sequence",
            "expected a list, like [\"a\", \"b\"]".to_owned(),
        ),
        ("expected a string", "expected text in quotes".to_owned()),
    ] {
        if let Some(at) = out.find(rust) {
            out.replace_range(at..at + rust.len(), &words);
        }
    }
    // "invalid type: string \"1MB\", expected …" → "expected …, got the text \"1MB\"".
    if let Some(rest) = out.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.split_once(", ")
    {
        let got = got
            .replacen("string ", "the text ", 1)
            .replacen("integer ", "the number ", 1)
            .replacen("floating point ", "the number ", 1)
            .replacen("boolean ", "", 1)
            .replace("sequence", "a list")
            .replace("map", "a table");
        return format!("{expected}, got {got}");
    }
    if let Some(rest) = out.strip_prefix("invalid value: ")
        && let Some((got, expected)) = rest.split_once(", ")
    {
        return format!("{expected}, got {}", got.replacen("integer ", "", 1));
    }
    out.replace("unknown field", "unknown key")
}

/// Lays the `MOAT_<SECTION>__<KEY>` variables of `env` over `table`.
pub(crate) fn overlay_env(table: &mut toml::Table, env: &dyn Source, errors: &mut Errors) {
    for (name, value) in env.vars() {
        let Some(rest) = name.strip_prefix("MOAT_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        // A value that parses as a TOML value (number, bool, array) is taken as such;
        // anything else is a string.
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        match table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => {
                t.insert(key, parsed);
            }
            _ => errors.push(format!("{name}: `{section}` is not a section")),
        }
    }
}
