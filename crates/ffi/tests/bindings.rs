//! The bindings as an app gets them: `uniffi-bindgen` in library mode on the built
//! `libmoat_ffi`, then
//! - the Kotlin and Swift sources checked for the interface,
//! - the C header (what Swift imports) compiled and linked against the library, with the
//!   checksums the Swift bindings verify at load time checked in C, and one object made and
//!   called through the raw ABI,
//! - the Kotlin bindings compiled with kotlinc and run on the JVM (JNA) against real servers.
//!
//! A test whose tools are missing (a C compiler; java, JNA or npm for Kotlin) says so on
//! stderr and passes without running: it never pretends. Swift itself cannot be compiled
//! here (no Swift toolchain on Debian); see docs/mobile-bindings.md.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use moat_testkit::server::TestServer;

/// Printed past libtest's capture, so a skipped check shows in a plain `cargo test`. Under
/// `MOAT_REQUIRE_TOOLS=1` (set by `.ci/run`, which installs every tool) a skip is a failure,
/// so CI never counts a check that did not run as passed.
fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("MOAT_REQUIRE_TOOLS").is_none(),
        "{test} cannot run: {why}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

fn cdylib_name() -> String {
    format!(
        "{}moat_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The directory of the `libmoat_ffi` that this test run built: `cargo test` leaves the
/// cdylib beside the test binaries (`target/<profile>/deps`), `cargo build` one level up.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        if dir.join(cdylib_name()).is_file() {
            return dir.to_path_buf();
        }
    }
    panic!(
        "{} not found next to {}; build it with `cargo build -p moat-ffi`",
        cdylib_name(),
        exe.display()
    );
}

#[track_caller]
fn ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `uniffi-bindgen generate <lib> --language <language> --out-dir <out>`.
fn generate(language: &str, out: &Path) {
    let lib = lib_dir().join(cdylib_name());
    let output = Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .arg("generate")
        .arg(&lib)
        .args(["--language", language, "--no-format", "--metadata-no-deps"])
        .arg("--out-dir")
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run uniffi-bindgen");
    ok(&format!("uniffi-bindgen for {language}"), &output);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[track_caller]
fn assert_has(text: &str, file: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{file} lacks `{needle}`");
    }
}

#[test]
fn kotlin_and_swift_sources_declare_the_interface() {
    let dir = tempfile::tempdir().expect("tmp");
    generate("kotlin", &dir.path().join("kotlin"));
    generate("swift", &dir.path().join("swift"));

    let kotlin = read(&dir.path().join("kotlin/uniffi/moat/moat.kt"));
    assert_has(
        &kotlin,
        "moat.kt",
        &[
            "package uniffi.moat",
            "return \"moat_ffi\"",
            "open class MoatClient",
            "constructor(`serverUrl`: kotlin.String)",
            "fun `newPinned`(`serverUrl`: kotlin.String, `pins`: List<kotlin.String>): MoatClient",
            "fun `fromStateJson`(`stateJson`: kotlin.String): MoatClient",
            "fun `stateJson`(): kotlin.String",
            "fun `thumbprint`(): kotlin.String",
            "suspend fun `enroll`(`deviceId`: kotlin.String, `platform`: kotlin.String? = null): kotlin.String",
            "suspend fun `enrollAndFetch`(`deviceId`: kotlin.String, `platform`: kotlin.String? = null): CredentialInfo",
            "suspend fun `readMailbox`(): List<MailboxItem>",
            "suspend fun `confirm`(`deviceId`: kotlin.String, `otp`: kotlin.String): kotlin.String",
            "suspend fun `call`(`method`: kotlin.String, `path`: kotlin.String, `bodyJson`: kotlin.String? = null, `options`: CallOptions? = null): MoatResponse",
            "fun `signRequest`(`method`: kotlin.String, `url`: kotlin.String, `headers`: List<HttpHeader>, `body`: kotlin.ByteArray?, `auth`: AuthMode? = null): List<HttpHeader>",
            "fun `encryptJson`(`json`: kotlin.String): kotlin.String",
            "fun `adoptCredential`(`itemJson`: kotlin.String): CredentialInfo",
            "data class MoatResponse",
            "data class HttpHeader",
            "enum class AuthMode",
            "sealed class MoatException",
            "class Problem(",
            "val `code`: kotlin.String",
        ],
    );

    let swift = read(&dir.path().join("swift/moat.swift"));
    assert_has(
        &swift,
        "moat.swift",
        &[
            "open class MoatClient",
            "public convenience init(serverUrl: String)throws",
            "public static func fromStateJson(stateJson: String)throws  -> MoatClient",
            "open func stateJson()throws  -> String",
            "open func enrollAndFetch(deviceId: String, platform: String? = nil)async throws  -> CredentialInfo",
            "open func call(method: String, path: String, bodyJson: String? = nil, options: CallOptions? = nil)async throws  -> MoatResponse",
            "open func signRequest(method: String, url: String, headers: [HttpHeader], body: Data?, auth: AuthMode? = nil)throws  -> [HttpHeader]",
            "public struct MoatResponse",
            "enum MoatError: Swift.Error",
            "case Problem(",
        ],
    );
    let header = read(&dir.path().join("swift/moatFFI.h"));
    assert_has(
        &header,
        "moatFFI.h",
        &[
            "uniffi_moat_ffi_fn_constructor_moatclient_new(",
            "uniffi_moat_ffi_fn_method_moatclient_sign_request(",
            "uniffi_moat_ffi_fn_method_moatclient_enroll_and_fetch(",
            "ffi_moat_ffi_uniffi_contract_version(",
        ],
    );
    let modulemap = read(&dir.path().join("swift/moatFFI.modulemap"));
    assert_has(
        &modulemap,
        "moatFFI.modulemap",
        &["module moatFFI", "header \"moatFFI.h\""],
    );
}

/// The `if (uniffi_…_checksum_…() != N)` lines of the Swift bindings, as (function, N).
fn swift_checksums(swift: &str) -> Vec<(String, String)> {
    swift
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("if (")?;
            let (function, rest) = rest.split_once("() != ")?;
            let value = rest.split_once(')')?.0;
            (function.starts_with("uniffi_moat_ffi_checksum_")
                && value.bytes().all(|b| b.is_ascii_digit()))
            .then(|| (function.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Every function the header declares (`<type> <name>(`), to be linked from C.
fn header_functions(header: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in header.lines() {
        if line.starts_with("typedef") || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let Some((before, _)) = line.split_once('(') else {
            continue;
        };
        let name = before
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default();
        if (name.starts_with("uniffi_moat_ffi_") || name.starts_with("ffi_moat_ffi_"))
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
    }
    names
}

#[test]
fn c_header_links_and_matches_the_swift_checks() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if Command::new(&cc).arg("--version").output().is_err() {
        skip(
            "c_header_links_and_matches_the_swift_checks",
            &format!("no C compiler (`{cc}`); set CC"),
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let swift_dir = dir.path().join("swift");
    generate("swift", &swift_dir);
    let swift = read(&swift_dir.join("moat.swift"));
    let header = read(&swift_dir.join("moatFFI.h"));

    let contract = swift
        .lines()
        .find_map(|l| l.trim().strip_prefix("let bindings_contract_version = "))
        .expect("contract version in moat.swift")
        .trim()
        .to_owned();
    let checksums = swift_checksums(&swift);
    // One per constructor and method of MoatClient.
    assert!(checksums.len() >= 18, "checksums: {checksums:?}");
    let functions = header_functions(&header);
    assert!(functions.len() > 40, "functions: {functions:?}");

    let mut c = String::from(
        "/* Generated by crates/ffi/tests/bindings.rs. */\n\
         #ifndef __clang__\n#define _Nullable\n#define _Nonnull\n#endif\n\
         #include \"moatFFI.h\"\n#include <stdio.h>\n#include <string.h>\n\n\
         static void *const linked[] = {\n",
    );
    for f in &functions {
        c.push_str(&format!("    (void *)&{f},\n"));
    }
    c.push_str(
        "};\n\n\
         static RustBuffer text(const char *s) {\n\
         \x20   RustCallStatus status = {0};\n\
         \x20   ForeignBytes bytes = {(int32_t)strlen(s), (const uint8_t *)s};\n\
         \x20   return ffi_moat_ffi_rustbuffer_from_bytes(bytes, &status);\n\
         }\n\n\
         int main(void) {\n\
         \x20   int bad = 0;\n",
    );
    c.push_str(&format!(
        "    if (ffi_moat_ffi_uniffi_contract_version() != {contract}) {{ puts(\"contract version\"); bad++; }}\n"
    ));
    for (function, value) in &checksums {
        c.push_str(&format!(
            "    if ({function}() != {value}) {{ puts(\"{function}\"); bad++; }}\n"
        ));
    }
    c.push_str(
        "    RustCallStatus status = {0};\n\
         \x20   uint64_t client = uniffi_moat_ffi_fn_constructor_moatclient_new(text(\"https://api.example.com\"), &status);\n\
         \x20   if (status.code != 0) { puts(\"constructor failed\"); return 1; }\n\
         \x20   RustBuffer thumbprint = uniffi_moat_ffi_fn_method_moatclient_thumbprint(client, &status);\n\
         \x20   if (status.code != 0 || thumbprint.len != 43) { puts(\"thumbprint\"); bad++; }\n\
         \x20   printf(\"thumbprint %.*s\\n\", (int)thumbprint.len, (const char *)thumbprint.data);\n\
         \x20   ffi_moat_ffi_rustbuffer_free(thumbprint, &status);\n\
         \x20   uniffi_moat_ffi_fn_free_moatclient(client, &status);\n\
         \x20   /* An error comes back as status 1 (a MoatError) with the error serialized. */\n\
         \x20   RustCallStatus refused = {0};\n\
         \x20   uniffi_moat_ffi_fn_constructor_moatclient_new(text(\"ftp://example.com\"), &refused);\n\
         \x20   if (refused.code != 1 || refused.errorBuf.len == 0) { puts(\"error status\"); bad++; }\n\
         \x20   ffi_moat_ffi_rustbuffer_free(refused.errorBuf, &status);\n\
         \x20   printf(\"%zu functions linked, %d failed\\n\", sizeof linked / sizeof linked[0], bad);\n\
         \x20   return bad != 0;\n\
         }\n",
    );
    let source = dir.path().join("check.c");
    std::fs::write(&source, c).expect("write check.c");
    let exe = dir.path().join("check");
    let libs = lib_dir();
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-O0", "-I"])
        .arg(&swift_dir)
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", libs.display()))
        .arg("-lmoat_ffi")
        .arg(format!("-Wl,-rpath,{}", libs.display()))
        .output()
        .expect("run cc");
    ok("compiling and linking the C check", &out);
    let out = Command::new(&exe).output().expect("run the C check");
    ok("the C check", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        stdout.contains(&format!("{} functions linked, 0 failed", functions.len())),
        "{stdout}"
    );
}

/// Runs `command`, killing it after `limit`.
fn run_for(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "timed out after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

fn works(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Kotlin distribution (`bin/kotlinc`, `lib/`): `MOAT_KOTLIN_HOME`, else the npm package
/// `kotlin-compiler` pinned in tests/kotlin/package-lock.json, installed on first use.
fn kotlin_home() -> Result<PathBuf, String> {
    if let Some(home) = std::env::var_os("MOAT_KOTLIN_HOME") {
        let home = PathBuf::from(home);
        return if home.join("lib/kotlin-compiler.jar").is_file() {
            Ok(home)
        } else {
            Err(format!(
                "MOAT_KOTLIN_HOME={} has no lib/kotlin-compiler.jar",
                home.display()
            ))
        };
    }
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kotlin");
    let home = project.join("node_modules/kotlin-compiler");
    let lock = read(&project.join("package-lock.json"));
    let stamp = home.join(".moat-stamp");
    if home.join("lib/kotlin-compiler.jar").is_file()
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s == lock)
    {
        return Ok(home);
    }
    if !works("npm", "--version") {
        return Err("npm not found (the Kotlin compiler comes from the npm package `kotlin-compiler`); install Node.js and npm, or set MOAT_KOTLIN_HOME".into());
    }
    let out = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(&project)
        .env("NO_UPDATE_NOTIFIER", "1")
        .output()
        .expect("run npm ci");
    ok("npm ci in crates/ffi/tests/kotlin", &out);
    std::fs::write(&stamp, lock).expect("write stamp");
    Ok(home)
}

fn jna_jar() -> Option<PathBuf> {
    std::env::var_os("MOAT_JNA_JAR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/share/java/jna.jar")))
        .filter(|p| p.is_file())
}

fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn classpath(parts: &[&Path]) -> String {
    std::env::join_paths(parts)
        .expect("class path")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn kotlin_bindings_run_on_the_jvm_against_real_servers() {
    const TEST: &str = "kotlin_bindings_run_on_the_jvm_against_real_servers";
    if std::env::var_os("MOAT_SKIP_KOTLIN").is_some() {
        skip(TEST, "MOAT_SKIP_KOTLIN is set");
        return;
    }
    if !works("java", "-version") {
        skip(
            TEST,
            "no `java` (a JDK 17 or newer runs kotlinc and the test)",
        );
        return;
    }
    let Some(jna) = jna_jar() else {
        skip(
            TEST,
            "no JNA jar: `apt-get install libjna-java` (/usr/share/java/jna.jar) or set MOAT_JNA_JAR",
        );
        return;
    };
    let home = match kotlin_home() {
        Ok(home) => home,
        Err(why) => {
            skip(TEST, &why);
            return;
        }
    };
    let stdlib = home.join("lib/kotlin-stdlib.jar");
    let coroutines = home.join("lib/kotlinx-coroutines-core-jvm.jar");
    assert!(coroutines.is_file(), "{} missing", coroutines.display());

    let generated = tempfile::tempdir().expect("tmp");
    generate("kotlin", generated.path());
    let bindings = generated.path().join("uniffi/moat/moat.kt");
    let test_source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kotlin/MoatBindingsTest.kt");

    // kotlinc takes a minute on two cores: compile once per change of the generated
    // bindings, the test or the compiler.
    let key = hex_sha256(&[
        read(&bindings).as_bytes(),
        read(&test_source).as_bytes(),
        read(&home.join("build.txt")).as_bytes(),
    ]);
    let classes = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("kotlin-bindings")
        .join(&key[..16]);
    let done = classes.join(".complete");
    if !done.is_file() {
        let _ = std::fs::remove_dir_all(&classes);
        let mut kotlinc = Command::new("bash");
        kotlinc
            .arg(home.join("bin/kotlinc"))
            .args(["-nowarn", "-jvm-target", "17", "-cp"])
            .arg(classpath(&[&jna, &coroutines]))
            .arg("-d")
            .arg(&classes)
            .arg(&bindings)
            .arg(&test_source);
        let out = run_for(kotlinc, Duration::from_secs(600));
        ok("kotlinc", &out);
        std::fs::write(&done, "").expect("stamp");
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (dynamic, otp) = rt.block_on(async {
        (
            TestServer::start("dynamic").await,
            TestServer::start("otp").await,
        )
    });
    let mut java = Command::new("java");
    java.arg(format!("-Djna.library.path={}", lib_dir().display()))
        .arg("-cp")
        .arg(classpath(&[&classes, &stdlib, &jna, &coroutines]))
        .arg("MoatBindingsTestKt")
        .arg(&dynamic.base)
        .arg(&otp.base);
    let out = run_for(java, Duration::from_secs(300));
    rt.block_on(async {
        dynamic.stop().await;
        otp.stop().await;
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    ok("the Kotlin test", &out);
    assert!(stdout.contains("kotlin: 4 passed, 0 failed"), "{stdout}");
}
