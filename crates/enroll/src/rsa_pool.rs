//! A pool of pre-generated RSA-2048 keys for `otp`-mode credentials.
//!
//! RSA-2048 key generation costs ~80 ms of CPU here (with wide variance: it is a random prime
//! search). Doing it inside the confirm request would make each confirmation slow and would
//! let anyone who can reach the endpoint spend a core per dozen requests. Instead one
//! background thread keeps a bounded queue full: the request path only pops a ready key, and
//! the CPU spent on RSA can never exceed one core, however many requests arrive. When the
//! queue is empty, a confirmation waits up to `wait` for the next key and then gets
//! `503 unavailable` with `Retry-After`, which is the honest answer under that load.

use std::time::Duration;

use moat_core::jwe::RsaPrivateKey;
use tokio::sync::{Mutex, mpsc};

/// The pool.
pub struct RsaPool {
    rx: Mutex<mpsc::Receiver<RsaPrivateKey>>,
    wait: Duration,
}

impl RsaPool {
    /// Starts the generator thread, keeping up to `size` keys ready.
    pub fn start(size: usize, wait: Duration) -> Self {
        let (tx, rx) = mpsc::channel(size.max(1));
        let spawned = std::thread::Builder::new()
            .name("moat-rsa-keygen".into())
            .spawn(move || {
                loop {
                    match RsaPrivateKey::generate_2048() {
                        // blocking_send waits while the queue is full and fails once the pool
                        // (the receiver) is dropped, which ends the thread.
                        Ok(key) => {
                            if tx.blocking_send(key).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "rsa key generation failed");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the rsa key generator thread");
        }
        Self {
            rx: Mutex::new(rx),
            wait,
        }
    }

    /// Takes a key, waiting up to the configured time; `None` if none became ready.
    pub async fn take(&self) -> Option<RsaPrivateKey> {
        tokio::time::timeout(self.wait, async { self.rx.lock().await.recv().await })
            .await
            .ok()
            .flatten()
    }
}
