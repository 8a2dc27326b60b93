//! Throwaway PostgreSQL clusters and Redis servers on loopback, for tests.
//!
//! Each [`Postgres`] or [`Redis`] is a real server started from the Debian packages
//! (`postgresql`, `redis-server`) in its own temporary directory, on a free port, and stopped
//! when dropped. Tests own their servers, so one test may stop and restart its server (to check
//! that Moat fails closed and recovers) without disturbing any other test. PostgreSQL refuses
//! to run as root, so under root the cluster is run as the `postgres` user the package creates.
//!
//! With the feature `server`, the module `server` starts a real Moat server in the test's own
//! process.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(feature = "server")]
pub mod server;

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
///
/// # Panics
/// If no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    #[allow(clippy::expect_used)]
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest PostgreSQL server binaries installed (`/usr/lib/postgresql/<version>/bin`), or
/// `MOAT_PG_BIN`.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("MOAT_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found: install the Debian package `postgresql` \
             (or set MOAT_PG_BIN to the directory holding initdb and pg_ctl)"
        ),
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL cluster of its own, trusting local connections, stopped when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    databases: Mutex<u32>,
}

impl Postgres {
    /// Creates a cluster (`initdb`) and starts it.
    ///
    /// # Panics
    /// If PostgreSQL is not installed or does not start.
    #[must_use]
    pub fn start() -> Self {
        let bin = pg_bin();
        let as_postgres = is_root();
        #[allow(clippy::expect_used)]
        let dir = tempfile::Builder::new()
            .prefix("moat-pg-")
            .tempdir()
            .expect("temp dir");
        if as_postgres {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres").arg(dir.path());
                    c
                },
                "chown the cluster directory to postgres",
            );
        }
        let pg = Self {
            dir,
            bin,
            as_postgres,
            port: free_port(),
            databases: Mutex::new(0),
        };
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(pg.data())
            .args(["-A", "trust", "-U", "postgres", "-N", "-E", "UTF8"]);
        run(initdb, "initdb");
        pg.resume();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// The port it listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    ///
    /// # Panics
    /// If `psql` fails.
    #[must_use]
    pub fn database(&self) -> String {
        let n = {
            let mut n = self
                .databases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n += 1;
            *n
        };
        let name = format!("moat_{n}");
        let mut psql = Command::new("psql");
        psql.args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .arg(self.url("postgres"));
        run(psql, "psql CREATE DATABASE");
        self.url(&name)
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        run(c, "pg_ctl stop");
    }

    /// Starts the (stopped) server again on the same port and data.
    ///
    /// # Panics
    /// If it does not start.
    pub fn resume(&self) {
        // fsync off is safe for a test cluster that the OS keeps running: a killed server
        // loses nothing it reported committed (synchronous_commit stays on, so commits are
        // in the WAL, in the page cache, before they are acknowledged).
        let data = self.data();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "30", "start"]);
        run(c, "pg_ctl start");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = c.status();
    }
}

/// A Redis server of its own (no persistence), stopped when dropped.
pub struct Redis {
    child: Mutex<Option<Child>>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits until it answers.
    ///
    /// # Panics
    /// If Redis is not installed or does not start.
    #[must_use]
    pub fn start() -> Self {
        #[allow(clippy::expect_used)]
        let dir = tempfile::Builder::new()
            .prefix("moat-redis-")
            .tempdir()
            .expect("temp dir");
        let redis = Self {
            child: Mutex::new(None),
            port: free_port(),
            dir,
        };
        redis.resume();
        redis
    }

    /// The URL to connect to.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn stop(&self) {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the (stopped) server again on the same port, empty.
    ///
    /// # Panics
    /// If `redis-server` is missing or does not answer within 10 s.
    pub fn resume(&self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "redis-server: cannot start ({e}); install the Debian package `redis-server`"
                )
            });
        *self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(child);
        wait_for_port(self.port, Duration::from_secs(10), "redis-server");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until something accepts connections on `127.0.0.1:port`.
///
/// # Panics
/// After `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "{what} did not listen on port {port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `GET <path>` on `127.0.0.1:port` answers 200 (a listener can accept
/// connections before the server behind it is serving: a request made then may be refused as
/// older than the server).
///
/// # Panics
/// After `timeout`.
pub fn wait_for_http_ok(port: u16, path: &str, timeout: Duration) {
    use std::io::{Read as _, Write as _};
    let start = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut head = [0u8; 12];
            if s.write_all(request.as_bytes()).is_ok()
                && s.read_exact(&mut head).is_ok()
                && head.ends_with(b" 200")
            {
                return;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "GET {path} on port {port} did not answer 200 within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
