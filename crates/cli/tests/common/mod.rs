//! Helpers shared by the `moat` binary's test files: run the binary, start a server on free
//! ports, read JSON output.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn moat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moat"))
}

pub use moat_testkit::free_port;

/// A `moat serve` child process on free ports; killed when dropped (a failing test leaves
/// no server behind).
pub struct Server {
    child: Child,
    pub base: String,
    pub port: u16,
    pub admin_port: u16,
}

pub fn server_base_port(enrolled: &serde_json::Value) -> String {
    let server = enrolled["server"].as_str().expect("server");
    server.rsplit(':').next().expect("port").to_owned()
}

impl Server {
    pub fn start(dir: &Path, mode: &str) -> Self {
        Self::start_on(dir, mode, &free_port().to_string())
    }

    pub fn start_on(dir: &Path, mode: &str, port: &str) -> Self {
        let port: u16 = port.parse().expect("port");
        let admin = free_port();
        let child = moat()
            .arg("serve")
            .current_dir(dir)
            .env("MOAT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("MOAT_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            .env("MOAT_ENROLLMENT__MODE", mode)
            .env("MOAT_ENROLLMENT__RSA_POOL_SIZE", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn moat serve");
        let base = format!("http://127.0.0.1:{port}");
        // Serving, not merely listening: a request signed before the server started is
        // refused as possibly replayed.
        moat_testkit::wait_for_http_ok(port, "/healthz", Duration::from_secs(30));
        Self {
            child,
            base,
            port,
            admin_port: admin,
        }
    }

    /// Stops the server with SIGTERM and returns how it exited and what it logged.
    pub fn terminate(mut self) -> Output {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = Vec::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_end(&mut stderr).expect("server log");
        }
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    moat()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run moat")
}

#[track_caller]
pub fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

pub fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
}
