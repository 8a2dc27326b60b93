//! The cleanup job: removes expired mailbox items, expired or used enrollment codes, dormant
//! devices and expired replay entries (seed 000: "a periodic job to clean up dormant API
//! keys", "delete expired and used OTPs"). Revoked devices are not removed for dormancy: they
//! stay, without their credential, for `cleanup.revocation_retention_days`, so that their
//! re-enrollment stays refused (see `moat_store::Store::cleanup`).

use std::future::Future;

use moat_store::CleanupReport;

use crate::state::AppState;

/// What one pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Store rows.
    pub store: CleanupReport,
    /// Replay-cache entries.
    pub replay_entries: usize,
    /// Expired SMS codes and refresh tokens, old SMS.
    pub account_rows: u64,
    /// Expired items deleted from the Firebase Realtime Database.
    pub remote_items: u64,
    /// Audit events and daily counters past `audit.retention_days`.
    pub audit_rows: u64,
}

/// Most remote items deleted in one pass (the rest wait for the next).
const REMOTE_PER_PASS: u32 = 2_000;

/// Deletes expired mailbox items from the Realtime Database, then their index rows. Stops at
/// the first failure (the database is likely down; the next pass retries).
async fn purge_remote(state: &AppState, now: i64) -> Result<u64, moat_store::StoreError> {
    let Some(rtdb) = state.enrollment.rtdb() else {
        return Ok(0);
    };
    let mut removed = 0;
    while removed < u64::from(REMOTE_PER_PASS) {
        let due = state
            .store
            .expired_items(moat_store::Channel::Firebase, now, 200)
            .await?;
        if due.is_empty() {
            break;
        }
        for item in due {
            match item.identity.strip_prefix("fb:") {
                Some(uid) if moat_enroll::firebase::idtoken::uid_ok(uid) => {
                    if let Err(e) = rtdb.delete(uid, &item.id, now).await {
                        tracing::warn!(error = %e, "cannot delete expired items from the Realtime Database; next pass retries");
                        return Ok(removed);
                    }
                }
                // Not a path Moat could have written to: only the row exists.
                _ => {}
            }
            state.store.remove_mailbox_item(&item.id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Runs one pass and logs what it removed.
///
/// # Errors
/// The store's error, if it is unavailable.
pub async fn run_once(state: &AppState) -> Result<Removed, moat_store::StoreError> {
    let now = state.now();
    state.usage.flush(&*state.store).await;
    let dormant_before = now.saturating_sub(state.config.dormant_days.saturating_mul(86_400));
    let revoked_before = now.saturating_sub(
        state
            .config
            .revocation_retention_days
            .saturating_mul(86_400),
    );
    let remote_items = purge_remote(state, now).await?;
    let store = state
        .store
        .cleanup(now, dormant_before, revoked_before)
        .await?;
    // Sent and failed SMS stay a week for the operator to look at.
    let account_rows = state
        .accounts
        .cleanup_accounts(now, now - 7 * 86_400)
        .await?;
    let retention = state.config.audit_retention_days * 86_400;
    let audit_rows = state
        .ops
        .purge_ops(
            now - retention,
            moat_observe::stats::day_of(now - retention),
        )
        .await?;
    let replay_entries = purge_memory(state, now).await;
    for (kind, n) in [
        ("mailbox_items", store.mailbox_items),
        ("enrollment_otps", store.otps),
        ("dormant_devices", store.dormant_devices),
        ("revoked_credentials", store.revoked_credentials),
        ("expired_revocations", store.expired_revocations),
        ("account_rows", account_rows),
        ("remote_items", remote_items),
        ("audit_rows", audit_rows),
        ("replay_entries", replay_entries as u64),
    ] {
        state
            .metrics
            .cleanup_removed
            .get_or_create(&moat_observe::metrics::KindLabels { kind })
            .inc_by(n);
    }
    tracing::info!(
        mailbox_items = store.mailbox_items,
        enrollment_otps = store.otps,
        dormant_devices = store.dormant_devices,
        revoked_credentials = store.revoked_credentials,
        expired_revocations = store.expired_revocations,
        replay_entries,
        account_rows,
        remote_items,
        audit_rows,
        "cleanup removed"
    );
    Ok(Removed {
        store,
        replay_entries,
        account_rows,
        remote_items,
        audit_rows,
    })
}

/// Drops expired entries of this process's in-memory caches and limiters (every instance has
/// its own); returns the replay entries dropped.
async fn purge_memory(state: &AppState, now: i64) -> usize {
    let replay_entries = state.replay.purge(now).await;
    state.account_service.purge(now);
    state.attestation.purge(now);
    state.route_limiter.purge(now.saturating_mul(1000));
    state.enroll_limiter.purge(now.saturating_mul(1000));
    state.audit.flush_denied(now, false).await;
    replay_entries
}

/// The lease that lets one instance at a time run the store cleanup.
const LEASE: &str = "cleanup";

/// One periodic pass: the store cleanup if this instance holds (or takes) the cleanup lease,
/// else only its own memory. The holder renews the lease every pass; if it stops, another
/// instance takes over once the lease expires (two intervals and 30 s).
async fn periodic_pass(state: &AppState) {
    let now = state.now();
    let hold = i64::try_from(state.config.cleanup_interval.as_secs())
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(2)
        .saturating_add(30);
    match state
        .store
        .acquire_lease(LEASE, &state.instance, now, now.saturating_add(hold))
        .await
    {
        Ok(true) => {
            if let Err(e) = run_once(state).await {
                tracing::warn!(error = %e, "cleanup failed; will retry next interval");
            }
        }
        Ok(false) => {
            purge_memory(state, now).await;
            tracing::debug!("store cleanup runs on another instance");
        }
        Err(e) => {
            purge_memory(state, now).await;
            tracing::warn!(error = %e, "cannot take the cleanup lease; will retry next interval");
        }
    }
}

/// Runs the job every `cleanup.interval` (the store part on one instance at a time), reloads
/// signing keys and integrity secrets every [`moat_accounts::tokens::RELOAD_EVERY`] and flushes
/// last-use times every minute, until `shutdown` resolves; then flushes once more.
pub async fn run_periodic(state: AppState, shutdown: impl Future<Output = ()>) {
    // The first pass comes one interval after start, not at start: instances restarting
    // together would otherwise all race for the lease at once, for nothing.
    let mut cleanup = tokio::time::interval_at(
        tokio::time::Instant::now() + state.config.cleanup_interval,
        state.config.cleanup_interval,
    );
    let mut flush = tokio::time::interval(std::time::Duration::from_secs(60));
    // Keys were loaded at start; the first reload is one period later.
    let mut reload = tokio::time::interval_at(
        tokio::time::Instant::now() + moat_accounts::tokens::RELOAD_EVERY,
        moat_accounts::tokens::RELOAD_EVERY,
    );
    cleanup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats = tokio::time::interval(moat_observe::stats::FLUSH_EVERY);
    stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = tokio::time::interval(PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Sizes were loaded at start.
    let decoy_every = moat_attest::challenge::DECOY_RELOAD;
    let mut decoys =
        tokio::time::interval_at(tokio::time::Instant::now() + decoy_every, decoy_every);
    decoys.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = cleanup.tick() => periodic_pass(&state).await,
            _ = flush.tick() => state.usage.flush(&*state.store).await,
            _ = stats.tick() => {
                if let Err(e) = state.stats.flush().await {
                    tracing::warn!(error = %e, "could not write dashboard counters; kept for the next flush");
                }
                state.audit.flush_denied(state.now(), false).await;
            }
            _ = probe.tick() => probe_store(&state).await,
            _ = decoys.tick() => {
                if let Err(e) = state.attestation.reload_decoys().await {
                    tracing::warn!(error = %e, "could not reload registered package sizes; keeping the last ones");
                }
            }
            _ = reload.tick() => {
                if let Err(e) = state.tokens.reload(&*state.accounts, &state.keys, state.now()).await {
                    tracing::warn!(error = %e, "could not reload token signing keys");
                }
                let initial = state.keys.initial_integrity_secret.expose();
                if let Err(e) = state.attestation.reload_integrity(&state.keys.data, initial, state.now()).await {
                    tracing::warn!(error = %e, "could not reload integrity secrets");
                }
            }
            () = &mut shutdown => break,
        }
    }
    state.usage.flush(&*state.store).await;
    if let Err(e) = state.stats.flush().await {
        tracing::warn!(error = %e, "could not write dashboard counters at shutdown");
    }
    // Windows still open are summarised now, or their counts would be lost.
    state.audit.flush_denied(state.now(), true).await;
}

/// How often the store's round trip is measured when idle.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One store round trip into `moat_store_latency_seconds`.
async fn probe_store(state: &AppState) {
    let _ = moat_observe::metrics::timed(&state.metrics.store_latency, state.store.ping()).await;
}
