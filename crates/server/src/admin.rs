//! The admin listener (PROTOCOL section 7): device listing and revocation, cleanup on demand.
//!
//! Each operation is one public function taking the state ([`devices`], [`revoke`],
//! [`run_cleanup`], [`outbox`], [`rotate_signing_key`], [`apps`], [`register`], [`retire`],
//! [`rotate_integrity`], [`audit`]); the HTTP handlers here and `moat admin` on the store
//! both call it, so the two paths cannot drift apart.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use moat_store::{Device, MAX_PAGE};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use moat_core::clock::rfc3339;
use moat_observe::audit;

/// A device as the admin API shows it: no credential material, not even hashes.
#[derive(Debug, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DeviceView {
    pub id: Uuid,
    pub identity: String,
    pub device_id: String,
    pub mode: String,
    pub platform: Option<String>,
    pub status: String,
    pub client_id: Option<String>,
    pub created_at: String,
    pub rotated_at: String,
    pub last_used_at: String,
    pub revoked_at: Option<String>,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        Self {
            id: d.id,
            identity: d.identity.clone(),
            device_id: d.device_id.clone(),
            mode: d.mode.clone(),
            platform: d.platform.clone(),
            status: d.status.as_str().to_owned(),
            client_id: d.credential.client_id.clone(),
            created_at: rfc3339(d.created_at),
            rotated_at: rfc3339(d.rotated_at),
            last_used_at: rfc3339(d.last_used_at),
            revoked_at: d.revoked_at.map(rfc3339),
        }
    }
}

/// Paging of the device list, and an optional exact search.
#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<u32>,
    offset: Option<u32>,
    /// A device uuid, app device id, identity or client id (exact).
    q: Option<String>,
}

/// `GET /admin/v1/devices?limit=&offset=`
///
/// # Errors
/// `422` for a limit over the maximum, `503` when the store is down.
pub async fn list_devices(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let views = devices(
        &state,
        page.limit.unwrap_or(100),
        page.offset.unwrap_or(0),
        page.q.as_deref(),
    )
    .await?;
    Ok(Json(serde_json::json!({ "devices": views })))
}

/// Devices, newest first, or those an exact search `q` finds.
///
/// # Errors
/// `422` for a limit over the maximum or a long `q`, `503` when the store is down.
pub async fn devices(
    state: &AppState,
    limit: u32,
    offset: u32,
    q: Option<&str>,
) -> Result<Vec<DeviceView>, ApiError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::validation(format!(
            "limit must be 1..={MAX_PAGE}"
        )));
    }
    let devices = match q.map(str::trim) {
        Some(q) if !q.is_empty() => {
            if q.len() > 512 {
                return Err(ApiError::validation("q is longer than 512 bytes"));
            }
            state.store.search_devices(q, limit).await?
        }
        _ => state.store.list_devices(limit, offset).await?,
    };
    Ok(devices.iter().map(DeviceView::from).collect())
}

/// `GET /admin/v1/devices/{id}`
///
/// # Errors
/// `404` for an unknown device.
pub async fn get_device(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceView>, ApiError> {
    let device = state
        .store
        .device(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(DeviceView::from(&device)))
}

/// `POST /admin/v1/devices/{id}/revoke`
///
/// # Errors
/// `404` for an unknown device.
pub async fn revoke_device(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(revoke(&state, id, "admin").await?))
}

/// Revokes device `id`, recording `actor` (`admin` for the API, `cli` for `moat admin`) in
/// the audit log.
///
/// # Errors
/// `404` for an unknown device, `503` when the store is down.
pub async fn revoke(state: &AppState, id: Uuid, actor: &str) -> Result<DeviceView, ApiError> {
    if !state.store.revoke_device(id, state.now()).await? {
        return Err(ApiError::not_found());
    }
    // Take effect on this instance at once; others see it within the device cache TTL.
    state.device_cache.clear();
    tracing::info!(device = %id, actor, "device revoked by admin");
    let event = audit::event(state.now(), audit::kind::DEVICE_REVOKED, actor).subject(id);
    state.audit.record(event).await;
    let device = state
        .store
        .device(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(DeviceView::from(&device))
}

/// What one cleanup pass removed.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CleanupView {
    pub mailbox_items: u64,
    pub enrollment_otps: u64,
    pub dormant_devices: u64,
    pub revoked_credentials: u64,
    pub expired_revocations: u64,
    pub remote_items: u64,
    pub account_rows: u64,
    pub replay_entries: u64,
    pub audit_rows: u64,
}

/// `POST /admin/v1/cleanup`: runs the cleanup job now.
///
/// # Errors
/// `503` when the store is down.
pub async fn cleanup(State(state): State<AppState>) -> Result<Json<CleanupView>, ApiError> {
    Ok(Json(run_cleanup(&state).await?))
}

/// Runs one cleanup pass now.
///
/// # Errors
/// `503` when the store is down.
pub async fn run_cleanup(state: &AppState) -> Result<CleanupView, ApiError> {
    let removed = crate::cleanup::run_once(state).await?;
    Ok(CleanupView {
        mailbox_items: removed.store.mailbox_items,
        enrollment_otps: removed.store.otps,
        dormant_devices: removed.store.dormant_devices,
        revoked_credentials: removed.store.revoked_credentials,
        expired_revocations: removed.store.expired_revocations,
        remote_items: removed.remote_items,
        account_rows: removed.account_rows,
        replay_entries: removed.replay_entries as u64,
        audit_rows: removed.audit_rows,
    })
}

/// Query of the SMS listings.
#[derive(Debug, Deserialize)]
pub struct SmsQuery {
    phone: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/v1/sms/outbox?phone=`: messages kept by the `outbox` sender, with their text
/// (development only: a real sender's messages are listed without text).
///
/// # Errors
/// `503` when the store is down.
pub async fn sms_outbox(
    State(state): State<AppState>,
    Query(q): Query<SmsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let messages = outbox(&state, q.phone.as_deref(), q.limit.unwrap_or(100)).await?;
    Ok(Json(serde_json::json!({ "messages": messages })))
}

/// A message kept by the `outbox` sender, with its text.
#[derive(Debug, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct OutboxMessage {
    pub id: String,
    pub to: String,
    pub body: String,
    pub created_at: String,
    pub purpose: String,
    pub status: String,
}

/// Messages kept by the `outbox` sender, newest first, of one phone or all.
///
/// # Errors
/// `422` for a bad phone, `503` when the store is down.
pub async fn outbox(
    state: &AppState,
    phone: Option<&str>,
    limit: u32,
) -> Result<Vec<OutboxMessage>, ApiError> {
    state
        .account_service
        .settled(std::time::Duration::from_secs(2))
        .await;
    let phone = match phone {
        Some(p) => Some(moat_accounts::phone::parse(p)?.e164),
        None => None,
    };
    let limit = limit.clamp(1, MAX_PAGE);
    let mut messages = Vec::new();
    for m in state.accounts.list_sms(phone.as_deref(), limit).await? {
        if m.sender != "outbox" {
            continue;
        }
        let body = state.keys.data.open(m.id.as_bytes(), &m.body_sealed)?;
        messages.push(OutboxMessage {
            body: String::from_utf8_lossy(body.expose()).into_owned(),
            created_at: rfc3339(m.created_at),
            id: m.id,
            to: m.phone,
            purpose: m.purpose,
            status: m.status,
        });
    }
    Ok(messages)
}

/// `GET /admin/v1/sms/messages?phone=`: every queued, sent and failed SMS with its status and
/// last error (no text), for any sender.
///
/// # Errors
/// `503` when the store is down.
pub async fn sms_messages(
    State(state): State<AppState>,
    Query(q): Query<SmsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .account_service
        .settled(std::time::Duration::from_secs(2))
        .await;
    let phone = match q.phone.as_deref() {
        Some(p) => Some(moat_accounts::phone::parse(p)?.e164),
        None => None,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let messages: Vec<serde_json::Value> = state
        .accounts
        .list_sms(phone.as_deref(), limit)
        .await?
        .into_iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id, "to": m.phone, "country": m.country, "purpose": m.purpose, "sender": m.sender,
                "status": m.status, "attempts": m.attempts, "last_error": m.last_error, "provider_id": m.provider_id,
                "created_at": rfc3339(m.created_at), "sent_at": m.sent_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "messages": messages, "blocked_since_start": state.account_service.blocked_sms() }),
    ))
}

/// `POST /admin/v1/keys/rotate`: new access-token signing key; the old one keeps verifying
/// (and stays in the JWKS) until its last token expires.
///
/// # Errors
/// `503` when the store is down.
pub async fn rotate_keys(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kid = rotate_signing_key(&state, "admin").await?;
    Ok(Json(serde_json::json!({ "kid": kid })))
}

/// Makes a new access-token signing key, recording `actor`; returns its key id.
///
/// # Errors
/// `503` when the store is down.
pub async fn rotate_signing_key(state: &AppState, actor: &str) -> Result<String, ApiError> {
    let kid = state
        .tokens
        .rotate(&*state.accounts, &state.keys, state.now())
        .await?;
    let event = audit::event(state.now(), audit::kind::KEYS_ROTATED, actor).subject(&kid);
    state.audit.record(event).await;
    Ok(kid)
}

/// A registered package.
#[derive(Debug, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct AppView {
    pub app_id: String,
    pub version: String,
    pub sha256: String,
    pub size: i64,
    pub status: String,
    pub created_at: String,
}

/// `GET /admin/v1/apps`: registered packages.
///
/// # Errors
/// `503` when the store is down.
pub async fn list_apps(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::json!({ "apps": apps(&state).await? })))
}

/// Registered packages.
///
/// # Errors
/// `503` when the store is down.
pub async fn apps(state: &AppState) -> Result<Vec<AppView>, ApiError> {
    Ok(state
        .attest
        .releases(MAX_PAGE)
        .await?
        .into_iter()
        .map(|r| AppView {
            sha256: moat_core::b64::url_encode(&r.sha256),
            created_at: rfc3339(r.created_at),
            app_id: r.app_id,
            version: r.version,
            size: r.size,
            status: r.status,
        })
        .collect())
}

/// Largest package accepted for registration.
pub const MAX_PACKAGE: usize = 512 * 1024 * 1024;

/// `PUT /admin/v1/apps/{app_id}/{version}` with the package bytes as the body.
///
/// # Errors
/// `409` if registered already, `413` over 512 MiB.
pub async fn register_app(
    State(state): State<AppState>,
    Path((app_id, version)): Path<(String, String)>,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bytes = crate::extract::body_bytes(body, MAX_PACKAGE).await?;
    let release = register(&state, &app_id, &version, &bytes).await?;
    Ok(Json(release))
}

/// Unknown apps' challenge sizes are drawn from the registered ones: take a change into
/// account now on this instance (the others reload within `DECOY_RELOAD`).
async fn reload_decoys(state: &AppState) {
    if let Err(e) = state.attestation.reload_decoys().await {
        tracing::warn!(error = %e, "could not reload registered package sizes; the periodic reload retries");
    }
}

/// Registers a package (shared by the HTTP endpoint and the CLI).
///
/// # Errors
/// `422` for bad labels or an empty package, `409` if registered already.
pub async fn register(
    state: &AppState,
    app_id: &str,
    version: &str,
    bytes: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let ok = |s: &str| (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
    if !ok(app_id) || !ok(version) || bytes.is_empty() {
        return Err(ApiError::validation(
            "app id and version must be 1-128 visible characters, and the package not empty",
        ));
    }
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let r = state
        .attest
        .put_release(app_id, version, bytes, sha.as_ref(), state.now())
        .await
        .map_err(|e| match e {
            moat_store::StoreError::Conflict(_) => ApiError::new(
                crate::error::Code::Conflict,
                "this app id and version are registered",
            ),
            other => other.into(),
        })?;
    tracing::info!(app_id, version, size = r.size, "app package registered");
    reload_decoys(state).await;
    Ok(
        serde_json::json!({"app_id": r.app_id, "version": r.version, "sha256": moat_core::b64::url_encode(&r.sha256), "size": r.size, "status": r.status}),
    )
}

/// `POST /admin/v1/apps/{app_id}/{version}/retire`
///
/// # Errors
/// `404` for an unknown package.
pub async fn retire_app(
    State(state): State<AppState>,
    Path((app_id, version)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(retire(&state, &app_id, &version).await?))
}

/// Stops accepting a package.
///
/// # Errors
/// `404` for an unknown package, `503` when the store is down.
pub async fn retire(
    state: &AppState,
    app_id: &str,
    version: &str,
) -> Result<serde_json::Value, ApiError> {
    if !state.attest.retire_release(app_id, version).await? {
        return Err(ApiError::not_found());
    }
    reload_decoys(state).await;
    Ok(serde_json::json!({"app_id": app_id, "version": version, "status": "retired"}))
}

/// `POST /admin/v1/integrity/rotate`
///
/// # Errors
/// `503` when the store is down.
pub async fn rotate_integrity(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kid = rotate_integrity_secret(&state, "admin").await?;
    Ok(Json(serde_json::json!({ "kid": kid })))
}

/// Makes a new integrity secret, recording `actor`; returns its key id.
///
/// # Errors
/// `503` when the store is down.
pub async fn rotate_integrity_secret(state: &AppState, actor: &str) -> Result<String, ApiError> {
    let kid = state
        .attestation
        .rotate_integrity(&state.keys.data, state.now())
        .await?;
    let event = audit::event(state.now(), audit::kind::INTEGRITY_ROTATED, actor).subject(&kid);
    state.audit.record(event).await;
    Ok(kid)
}

/// Filters of `GET /admin/v1/audit`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct AuditFilter {
    pub kind: Option<String>,
    pub subject: Option<String>,
    /// Unix seconds.
    pub since: Option<i64>,
    /// Unix seconds.
    pub until: Option<i64>,
    /// The last id of the previous page.
    pub before: Option<String>,
    pub limit: Option<u32>,
}

/// A page of the audit log: `next` is the `before` of the next page (absent on the last).
#[derive(Debug, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct AuditPage {
    pub events: Vec<AuditView>,
    pub next: Option<String>,
}

/// An audit event as the admin API shows it.
#[derive(Debug, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct AuditView {
    pub id: String,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub subject: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// `GET /admin/v1/audit?kind=&subject=&since=&until=&before=&limit=`: security events,
/// newest first; `next` is the `before` of the next page (absent on the last).
///
/// # Errors
/// `422` for a bad limit, `503` when the store is down.
pub async fn audit_log(
    State(state): State<AppState>,
    Query(f): Query<AuditFilter>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(audit(&state, f).await?))
}

/// Security events, newest first.
///
/// # Errors
/// `422` for a bad limit or long filters, `503` when the store is down.
pub async fn audit(state: &AppState, f: AuditFilter) -> Result<AuditPage, ApiError> {
    use moat_store::ops::MAX_AUDIT_PAGE;
    let limit = f.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(ApiError::validation(format!(
            "limit must be 1..={MAX_AUDIT_PAGE}"
        )));
    }
    for value in [&f.kind, &f.subject, &f.before].into_iter().flatten() {
        if value.len() > 256 {
            return Err(ApiError::validation("filters are at most 256 bytes"));
        }
    }
    let events = state
        .ops
        .audit(&moat_store::ops::AuditQuery {
            kind: f.kind,
            subject: f.subject,
            since: f.since,
            until: f.until,
            before_id: f.before,
            limit,
        })
        .await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten();
    let views: Vec<AuditView> = events
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            at: rfc3339(e.event.at),
            kind: e.event.kind,
            actor: e.event.actor,
            subject: e.event.subject,
            ip: e.event.ip,
            detail: e.event.detail.and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect();
    Ok(AuditPage {
        events: views,
        next,
    })
}

/// Range of `GET /admin/v1/stats`.
#[derive(Debug, Deserialize)]
pub struct StatsRange {
    /// Days back from today, 1..=90 (default 14).
    days: Option<i64>,
}

/// `GET /admin/v1/stats?days=14`: the dashboard's figures, per UTC day (oldest first) and
/// in total: enrollments by mode/channel, attestation pass/fail, SMS sent/blocked/failed and
/// estimated spend, refusals by reason (problem code) per day and, over the last 24 hours,
/// per hour, the ten devices and IPs refused most, and per route (a gateway route's patterns
/// in one row, with its upstream) requests, refusals and latency. Every date and time in it
/// is UTC.
///
/// # Errors
/// `422` for a bad range, `503` when the store is down.
pub async fn stats(
    State(state): State<AppState>,
    Query(range): Query<StatsRange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use moat_observe::stats::metric;
    let days = range.days.unwrap_or(14);
    if !(1..=90).contains(&days) {
        return Err(ApiError::validation("days must be 1..=90"));
    }
    // This instance's latest counts first, so what the operator just did shows.
    state.stats.flush().await?;
    let today = moat_observe::stats::day_of(state.now());
    let from = today - days + 1;
    let date = |day: i64| rfc3339(day * 86_400)[..10].to_owned();
    let dates: Vec<String> = (from..=today).map(date).collect();
    let rows = |name| state.ops.stats(name, from, today);
    let (enroll, attest, sms, cost) = (
        rows(metric::ENROLL).await?,
        rows(metric::ATTEST).await?,
        rows(metric::SMS).await?,
        rows(metric::SMS_COST_MICROS).await?,
    );
    let series = |rows: &[moat_store::ops::StatRow]| -> Vec<serde_json::Value> {
        rows.iter()
            .map(|r| serde_json::json!({"date": date(r.day), "label": r.label, "value": r.value}))
            .collect()
    };
    // The total of `rows`, of one label or of all.
    let total = |rows: &[moat_store::ops::StatRow], label: Option<&str>| -> i64 {
        rows.iter()
            .filter(|r| label.is_none_or(|l| r.label == l))
            .map(|r| r.value)
            .sum()
    };
    let top = |rows: Vec<(String, i64)>| -> Vec<serde_json::Value> {
        rows.into_iter()
            .map(|(key, count)| serde_json::json!({"key": key, "count": count}))
            .collect()
    };
    let refused = rows(metric::REFUSED_CODE).await?;
    let routes = route_table(&state, from, today).await?;
    let (hours, hourly) = last_day_by_hour(&state).await?;
    let top_devices = top(state
        .ops
        .top_stats(metric::REFUSED_DEVICE, from, today, 10)
        .await?);
    let top_ips = top(state
        .ops
        .top_stats(metric::REFUSED_IP, from, today, 10)
        .await?);
    let (pass, fail) = (total(&attest, Some("pass")), total(&attest, Some("fail")));
    #[allow(clippy::cast_precision_loss)]
    let pass_rate = (pass + fail > 0).then(|| pass as f64 / (pass + fail) as f64);
    #[allow(clippy::cast_precision_loss)]
    let spend = total(&cost, None) as f64 / 1e6;
    Ok(Json(serde_json::json!({
        "from": dates.first(),
        "to": dates.last(),
        "dates": dates,
        "enrollments": series(&enroll),
        "attestations": series(&attest),
        "sms": series(&sms),
        "refusals": series(&refused),
        "hours": hours,
        "refusals_hourly": hourly,
        "routes": routes,
        "time_zone": "UTC",
        "generated_at": rfc3339(state.now()),
        "totals": {
            "refusals": total(&refused, None),
            "enrollments": total(&enroll, None),
            "attestation_pass": pass,
            "attestation_fail": fail,
            "attestation_pass_rate": pass_rate,
            "sms_sent": total(&sms, Some("sent")),
            "sms_blocked": total(&sms, Some("blocked")),
            "sms_failed": total(&sms, Some("failed")),
            "sms_estimated_spend": spend,
            "currency": state.config.sms.currency,
        },
        "top_refused_devices": top_devices,
        "top_refused_ips": top_ips,
    })))
}

/// The last 24 UTC hours (oldest first, the current one last, each as
/// `YYYY-MM-DDTHH:00Z`) and the refusals by reason in each.
async fn last_day_by_hour(
    state: &AppState,
) -> Result<(Vec<String>, Vec<serde_json::Value>), ApiError> {
    use moat_observe::stats::HOURLY_REFUSALS;
    let now_hour = state.now().div_euclid(3_600);
    let mut hours = Vec::with_capacity(24);
    let mut points = Vec::new();
    for hour in now_hour - 23..=now_hour {
        let (day, of_day) = (hour.div_euclid(24), hour.rem_euclid(24));
        let name = format!("{}:00Z", &rfc3339(hour * 3_600)[..13]);
        let metric = HOURLY_REFUSALS[usize::try_from(of_day).unwrap_or(0)];
        for r in state.ops.stats(metric, day, day).await? {
            points.push(serde_json::json!({"date": name, "label": r.label, "value": r.value}));
        }
        hours.push(name);
    }
    Ok((hours, points))
}

/// One row of the dashboard's route table.
#[derive(Default)]
struct RouteTotals {
    requests: i64,
    refused: i64,
    latency_us: i64,
    buckets: [i64; moat_observe::stats::LATENCY_BUCKETS_MS.len()],
}

/// Requests, refusals and latency per route over the days, busiest first. The three router
/// patterns of a gateway route (`/events`, `/events/`, `/events/{*rest}`) are one row, named
/// by its prefix and its upstream's origin, and is listed even without traffic. Latency: the
/// mean, and the upper bound of the bucket holding the 95th percentile (`null` when beyond
/// the last bound); both `null` for a route without requests.
async fn route_table(
    state: &AppState,
    from: i64,
    today: i64,
) -> Result<Vec<serde_json::Value>, ApiError> {
    use moat_observe::stats::{LATENCY_BUCKETS_MS, metric};
    // Route pattern → (row name, upstream origin).
    let mut upstreams: HashMap<String, (String, String)> = HashMap::new();
    for route in &state.gateway.routes {
        let cfg = &route.config;
        let origin = cfg.upstream.origin().ascii_serialization();
        for pattern in [
            cfg.prefix.clone(),
            format!("{}/", cfg.prefix),
            format!("{}/{{*rest}}", cfg.prefix),
        ] {
            upstreams.insert(pattern, (cfg.prefix.clone(), origin.clone()));
        }
    }
    let mut table: HashMap<(String, Option<String>), RouteTotals> = HashMap::new();
    let mut add = |rows: Vec<moat_store::ops::StatRow>, into: &dyn Fn(&mut RouteTotals, i64)| {
        for r in rows {
            let key = match upstreams.get(&r.label) {
                Some((prefix, origin)) => (prefix.clone(), Some(origin.clone())),
                None => (r.label, None),
            };
            into(table.entry(key).or_default(), r.value);
        }
    };
    let rows = |name| state.ops.stats(name, from, today);
    add(rows(metric::ROUTE_REQUESTS).await?, &|t, v| t.requests += v);
    add(rows(metric::ROUTE_REFUSED).await?, &|t, v| t.refused += v);
    add(rows(metric::ROUTE_LATENCY_US).await?, &|t, v| {
        t.latency_us += v
    });
    for (i, (_, name)) in LATENCY_BUCKETS_MS.iter().enumerate() {
        add(rows(name).await?, &|t, v| t.buckets[i] += v);
    }
    // Every gateway route has its row, so an upstream that gets nothing shows as such.
    for route in &state.gateway.routes {
        let cfg = &route.config;
        let origin = cfg.upstream.origin().ascii_serialization();
        table.entry((cfg.prefix.clone(), Some(origin))).or_default();
    }
    let mut table: Vec<_> = table
        .into_iter()
        .filter(|((_, upstream), t)| t.requests > 0 || upstream.is_some())
        .collect();
    table.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
    Ok(table
        .into_iter()
        .map(|((route, upstream), t)| {
            #[allow(clippy::cast_precision_loss)]
            let mean_ms = (t.requests > 0)
                .then(|| (t.latency_us as f64 / t.requests as f64 / 10.0).round() / 100.0);
            // The smallest bound under which at least 95 % of the requests fall.
            let needed = (t.requests * 95 + 99) / 100;
            let mut seen = 0;
            let p95 = LATENCY_BUCKETS_MS
                .iter()
                .zip(t.buckets)
                .find(|(_, n)| {
                    seen += n;
                    seen >= needed
                })
                .and_then(|((ms, _), _)| (*ms != u64::MAX).then_some(*ms));
            serde_json::json!({
                "route": route,
                "kind": if upstream.is_some() { "upstream" } else { "api" },
                "upstream": upstream,
                "requests": t.requests,
                "refused": t.refused,
                "mean_ms": mean_ms,
                "p95_ms_at_most": if t.requests > 0 { p95 } else { None },
            })
        })
        .collect())
}
