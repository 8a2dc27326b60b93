//! SMS: the senders, the SMS-pumping guard, and the worker that sends off the request path.
//!
//! A request that should send an SMS only writes the message into the store's queue (in the
//! same transaction as the code it carries). The [`worker`] sends it with retries and records
//! the outcome; a message that cannot be sent ends `failed` with its error, visible to the
//! operator, never silently dropped.

pub mod guard;
pub mod sender;
pub mod worker;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// How long detached work waits before it starts.
const DETACH_DELAY: Duration = Duration::from_millis(25);

/// The account flows' work that depends on whether a phone has an account (the lookup, then
/// a real code and its SMS, or a decoy), run after the `202` is sent.
///
/// Answering first is what makes the answer's timing the same for every phone: done before
/// answering, the two paths differed by a queued message (about 1 ms in a debug build; the
/// attacker review reported 0.5 ms for the release binary before decoys existed). A failure is logged as an error; the caller
/// already had its `202`, as it would for a phone without an account, and can ask again.
#[derive(Debug, Default)]
pub struct Detached {
    running: AtomicUsize,
    idle: Notify,
}

impl Detached {
    /// Runs `work` on its own task, a moment after the caller answers.
    pub fn spawn(
        self: &std::sync::Arc<Self>,
        what: &'static str,
        work: impl std::future::Future<Output = Result<(), crate::Error>> + Send + 'static,
    ) {
        self.running.fetch_add(1, Ordering::AcqRel);
        let this = self.clone();
        tokio::spawn(async move {
            // Started at once, the work (and the SMS worker it wakes) competes with the
            // answer still being written, and a phone with an account was measurably slower
            // to answer (about 10 % in a debug build on two cores). A short pause lets the
            // answer leave first; the SMS is 25 ms later.
            tokio::time::sleep(DETACH_DELAY).await;
            if let Err(e) = work.await {
                tracing::error!(flow = what, error = ?e, "account flow failed after its answer");
            }
            if this.running.fetch_sub(1, Ordering::AcqRel) == 1 {
                this.idle.notify_waiters();
            }
        });
    }

    /// Waits (up to `limit`) until no detached work runs, so that what an operator reads
    /// (the outbox, the message list) includes every request already answered.
    pub async fn settled(&self, limit: Duration) {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.running.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}
