//! A real Moat server on 127.0.0.1:0 for the binding tests, run in this process.

#![allow(dead_code, missing_docs)]

use std::sync::Arc;

use moat_server::Config;
use moat_server::clock::SystemClock;
use tokio::net::TcpListener;

pub struct TestServer {
    pub base: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server in enrollment mode `mode` (`static`, `dynamic`, `otp`), on the current
    /// tokio runtime.
    pub async fn start(mode: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", public.local_addr().expect("addr"));
        let toml = format!(
            "[server]\npublic_base_url = \"{base}\"\ndata_dir = \"{}\"\n\
             [enrollment]\nmode = \"{mode}\"\nrsa_pool_size = 2\n",
            dir.path().join("data").display()
        );
        let config = Config::load(Some(&toml), &Vec::new()).expect("config");
        let state = moat_server::build_state(config, Arc::new(SystemClock))
            .await
            .expect("state");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            moat_server::run(state, public, admin, async move {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            base,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}
