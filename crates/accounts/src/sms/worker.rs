//! The SMS worker: claims queued messages, sends them, records the outcome, retries with
//! exponential backoff (2, 4, 8, 16 s), and gives up after [`MAX_ATTEMPTS`] with the message
//! marked `failed` and an error in the log.

use std::sync::Arc;
use std::time::Duration;

use moat_core::clock::Clock;
use moat_observe::metrics::{CurrencyLabels, Metrics, OutcomeLabels};
use moat_observe::stats::{DailyStats, metric};
use moat_store::accounts::{AccountStore, SmsOutcome};
use tokio::sync::Notify;

use super::sender::{Outgoing, SmsSender};
use crate::KeyRing;

/// Attempts before a message is marked failed.
pub const MAX_ATTEMPTS: i64 = 5;

/// What the worker uses: the queue, the key that opens the texts, the sender, and where it
/// counts outcomes. Made by [`crate::Accounts::sms_worker`].
pub struct SmsWorker {
    pub(crate) store: Arc<dyn AccountStore>,
    pub(crate) keys: Arc<dyn KeyRing>,
    pub(crate) sender: Arc<dyn SmsSender>,
    pub(crate) notify: Arc<Notify>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stats: Arc<DailyStats>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Estimated price of one SMS, in `currency`.
    pub(crate) cost_per_sms: f64,
    pub(crate) currency: String,
}

impl SmsWorker {
    /// Counts a send's outcome (metrics, dashboard); a sent message adds its estimated cost.
    fn count(&self, outcome: &SmsOutcome) {
        let outcome = match outcome {
            SmsOutcome::Sent { .. } => "sent",
            SmsOutcome::Failed { .. } => "failed",
            _ => return,
        };
        let now = self.clock.now();
        self.metrics
            .sms
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.stats.add(now, metric::SMS, outcome, 1);
        if outcome == "sent" {
            self.metrics
                .sms_cost
                .get_or_create(&CurrencyLabels {
                    currency: self.currency.clone(),
                })
                .inc_by(self.cost_per_sms);
            #[allow(clippy::cast_possible_truncation)]
            let micros = (self.cost_per_sms * 1e6).round() as i64;
            self.stats
                .add(now, metric::SMS_COST_MICROS, &self.currency, micros);
        }
    }

    /// Sends every message that is due now; returns how many were attempted.
    pub async fn run_once(&self) -> usize {
        let accounts: &dyn AccountStore = &*self.store;
        let now = self.clock.now();
        let due = match accounts.claim_due_sms(now, 32).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the SMS queue");
                return 0;
            }
        };
        let n = due.len();
        for message in due {
            let body = match self
                .keys
                .data()
                .open(message.id.as_bytes(), &message.body_sealed)
            {
                Ok(b) => String::from_utf8_lossy(b.expose()).into_owned(),
                Err(e) => {
                    let _ = accounts
                        .finish_sms(
                            &message.id,
                            SmsOutcome::Failed {
                                error: format!("cannot open body: {e}"),
                            },
                            now,
                        )
                        .await;
                    continue;
                }
            };
            let out = Outgoing {
                id: &message.id,
                to: &message.phone,
                body: &body,
                purpose: &message.purpose,
                created_at: message.created_at,
            };
            let outcome = match self.sender.send(&out).await {
                Ok(provider_id) => SmsOutcome::Sent { provider_id },
                Err(e) if e.retryable && message.attempts < MAX_ATTEMPTS => {
                    tracing::warn!(sms = %message.id, attempt = message.attempts, error = %e.detail, "SMS send failed; will retry");
                    SmsOutcome::Retry {
                        error: e.detail,
                        next_attempt_at: self.clock.now() + (1 << message.attempts.clamp(1, 10)),
                    }
                }
                Err(e) => {
                    tracing::error!(sms = %message.id, attempts = message.attempts, error = %e.detail, "SMS send failed for good");
                    SmsOutcome::Failed { error: e.detail }
                }
            };
            self.count(&outcome);
            if let Err(e) = accounts
                .finish_sms(&message.id, outcome, self.clock.now())
                .await
            {
                tracing::warn!(error = %e, sms = %message.id, "cannot record the SMS outcome");
            }
        }
        n
    }
}

/// A message claimed this long ago and still `sending` was left by a crash: no send attempt
/// lasts this long (the provider clients time out well before).
const STUCK_AFTER_SECS: i64 = 300;

impl SmsWorker {
    /// Runs until `shutdown`: wakes when a message is queued or every second.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_requeue: Option<tokio::time::Instant> = None;
        loop {
            // Messages left `sending` by a crashed instance (this one or another) go back in the
            // queue once they are older than any send can take; checked at start and every minute.
            if last_requeue.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                last_requeue = Some(tokio::time::Instant::now());
                if let Ok(n) = self
                    .store
                    .requeue_stuck_sms(self.clock.now() - STUCK_AFTER_SECS)
                    .await
                    && n > 0
                {
                    tracing::warn!(messages = n, "requeued SMS left in flight by a crashed run");
                }
            }
            while self.run_once().await > 0 {}
            tokio::select! {
                () = self.notify.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = &mut shutdown => break,
            }
        }
    }
}
