//! A real Moat server in the test's own process, on loopback ports, with a clock the test moves.
//!
//! [`TestServer`] binds `127.0.0.1:0` for the public and the admin listener, writes a
//! configuration naming them (data directory in a temporary directory, the admin token
//! [`ADMIN_TOKEN`]), builds the state as `moat serve` does and serves it until
//! [`TestServer::stop`]. [`TestState`] is the same state without sockets, for tests that drive
//! the routers directly.
//!
//! Every function here panics when the server cannot be set up: these are test fixtures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moat_core::clock::ManualClock;
use moat_server::{AppState, Config};
use tokio::net::TcpListener;

/// The admin token of every test server.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghijkl";

/// The data directory's name in the temporary directory.
const DATA: &str = "data";

/// The configuration of a test server: `public_base_url` is `base`, the data under `data_dir`,
/// enrollment in `mode`, a small RSA pool (quick to fill), a 64 KiB body limit and a 5 s header
/// timeout. With `tls = Some((cert, key))` the public listener speaks HTTPS. `extra` is
/// appended inside the `[enrollment]` section, so it may start with enrollment settings and go
/// on with other sections.
#[must_use]
pub fn config_toml(
    base: &str,
    data_dir: &Path,
    mode: &str,
    extra: &str,
    tls: Option<&(PathBuf, PathBuf)>,
) -> String {
    let tls_section = tls
        .map(|(c, k)| {
            format!(
                "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                c.display(),
                k.display()
            )
        })
        .unwrap_or_default();
    format!(
        "[server]\npublic_base_url = \"{base}\"\ndata_dir = \"{}\"\nmax_body_bytes = 65536\nheader_timeout = 5\n\
         {tls_section}[admin]\ntoken = \"{ADMIN_TOKEN}\"\n[enrollment]\nmode = \"{mode}\"\nrsa_pool_size = 4\n{extra}",
        data_dir.display()
    )
}

/// A server's state built from a test configuration, without sockets.
pub struct TestState {
    /// The state, as `moat serve` builds it.
    pub state: AppState,
    /// The server's clock: the system clock until the test moves it.
    pub clock: ManualClock,
    /// The temporary directory holding the data directory; removed when dropped.
    pub dir: tempfile::TempDir,
}

impl TestState {
    /// The state of a server whose public base URL is `base`, in enrollment mode `mode`, with
    /// `extra` configuration (see [`config_toml`]).
    ///
    /// # Panics
    /// If the configuration is refused or the state cannot be built.
    pub async fn build(base: &str, mode: &str, extra: &str) -> Self {
        Self::build_full(base, mode, extra, None).await
    }

    /// [`TestState::build`] with TLS on the public listener when `tls = Some((cert, key))`.
    ///
    /// # Panics
    /// If the configuration is refused or the state cannot be built.
    pub async fn build_full(
        base: &str,
        mode: &str,
        extra: &str,
        tls: Option<&(PathBuf, PathBuf)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = config_toml(base, &dir.path().join(DATA), mode, extra, tls);
        let config = Config::load(Some(&toml), &Vec::new()).expect("config");
        let clock = ManualClock::new();
        let state = moat_server::build_state(config, Arc::new(clock.clone()))
            .await
            .expect("state");
        Self { state, clock, dir }
    }
}

/// A Moat server serving on loopback from this process, stopped by [`TestServer::stop`] (or
/// with the test's runtime).
pub struct TestServer {
    /// The public listener's base URL, `http://127.0.0.1:<port>` (`https` with TLS).
    pub base: String,
    /// The admin listener's base URL, `http://127.0.0.1:<port>`.
    pub admin: String,
    /// The server's clock: the system clock until the test moves it.
    pub clock: ManualClock,
    /// The served state, for tests that look behind the HTTP interface.
    pub state: AppState,
    /// The temporary directory holding the data directory; removed when dropped.
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server in enrollment mode `mode` (`static`, `dynamic`, `otp`), on the current tokio
    /// runtime.
    ///
    /// # Panics
    /// If the server cannot be set up.
    pub async fn start(mode: &str) -> Self {
        Self::start_with(mode, "").await
    }

    /// A server in mode `mode` with `extra` configuration (see [`config_toml`]).
    ///
    /// # Panics
    /// If the server cannot be set up.
    pub async fn start_with(mode: &str, extra: &str) -> Self {
        Self::start_full(mode, extra, None).await
    }

    /// A server whose `enrollment` lines go into the `[enrollment]` section, `extra` after it.
    ///
    /// # Panics
    /// If the server cannot be set up.
    pub async fn start_enrolling(mode: &str, enrollment: &str, extra: &str) -> Self {
        Self::start_full(mode, &format!("{enrollment}\n{extra}"), None).await
    }

    /// A server with `extra` configuration whose public listener speaks HTTPS with
    /// `tls = Some((cert, key))`.
    ///
    /// # Panics
    /// If the server cannot be set up.
    pub async fn start_full(mode: &str, extra: &str, tls: Option<(PathBuf, PathBuf)>) -> Self {
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", public.local_addr().expect("addr"));
        let admin_base = format!("http://{}", admin.local_addr().expect("addr"));
        let TestState { state, clock, dir } =
            TestState::build_full(&base, mode, extra, tls.as_ref()).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run_state = state.clone();
        let task = tokio::spawn(async move {
            moat_server::run(run_state, public, admin, async move {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            base,
            admin: admin_base,
            clock,
            state,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The server's data directory (`server.data_dir`).
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(DATA)
    }

    /// Moves the server clock by `seconds` (back with a negative value).
    pub fn advance(&self, seconds: i64) {
        self.clock.advance(seconds);
    }

    /// Stops the server: in-flight requests drain, then the serving task ends.
    ///
    /// # Panics
    /// If serving failed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}
