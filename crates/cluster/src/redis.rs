//! What several Moat instances share through Redis (`redis.url`): the replay cache, rate limits
//! and SMS budgets, and pending attestation challenges.
//!
//! Every operation is one atomic Redis command or script, so instances never race each other:
//! a nonce is recorded with `SET NX PX` (first writer wins), a challenge is taken with
//! `GETDEL` (one taker), and rate limits run GCRA inside a Lua script over all of a request's
//! keys at once (all pass and are charged, or none is). Times inside the script come from
//! Redis's own clock (`TIME`), so instances with slightly different clocks still share one
//! budget.
//!
//! Keys carry the configured prefix and the SHA-256 of the caller's key, truncated to 128 bits:
//! fixed size whatever the input, and no phone number or IP address stored in clear.
//!
//! Failure is closed: every call has a deadline (`redis.timeout_ms`), and any error or timeout
//! is [`Unavailable`], which callers turn into `503`. The connection manager reconnects by
//! itself, so service resumes when Redis is back.

use std::fmt::Write as _;
use std::time::Duration;

use aws_lc_rs::digest;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::quota::{Quota, Refusal};

/// Redis did not answer in time, or answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable")]
pub struct Unavailable;

/// Redis settings.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` or `rediss://…` (TLS).
    pub url: String,
    /// Deadline of each call.
    pub timeout: Duration,
    /// Prefix of every key Moat writes.
    pub prefix: String,
}

/// GCRA over several keys, atomically. KEYS are the limiter keys; ARGV[1] is `check` (charge
/// if all pass) or `peek` (only look); then ARGV[2i], ARGV[2i+1] are key i's emission interval
/// (µs) and burst. Returns `{1, headroom of the first key, 0}` if all pass, else
/// `{0, index of the first refusing key, longest wait in µs}`. Numbers are Lua doubles:
/// microsecond timestamps (~2^51) are exact in them; they are written with `%.0f` because
/// Lua's default number formatting would round them.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local refused, longest = 0, 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - now - interval * burst
  if wait > 0 then
    if refused == 0 then refused = i end
    if wait > longest then longest = wait end
  end
  tats[i] = new_tat
end
if refused > 0 then return {0, refused, longest} end
if ARGV[1] == 'check' then
  for i, key in ipairs(KEYS) do
    local ttl_ms = math.ceil((tats[i] - now) / 1000) + 1
    redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', ttl_ms)
  end
end
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local headroom = interval * burst - (tats[1] - now)
return {1, math.floor(headroom / interval), 0}
";

/// Gives back one request on a GCRA key: its arrival time moves back one emission interval
/// (ARGV[1], µs). A key that expired meanwhile has nothing to give back; `DECRBY` keeps the
/// key's expiry.
const GCRA_REFUND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DECRBY', KEYS[1], ARGV[1])
end
return 0
";

/// Moat's connection to Redis.
pub struct Redis {
    conn: ConnectionManager,
    timeout: Duration,
    prefix: String,
    gcra: redis::Script,
    gcra_refund: redis::Script,
    latency: std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>,
}

impl Redis {
    /// Connects (the first connection must succeed; later outages are retried in the
    /// background).
    ///
    /// # Errors
    /// A message naming the problem, without the URL (it may hold a password).
    pub async fn connect(config: &RedisConfig) -> Result<Self, String> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("redis.url is not a valid Redis URL ({:?})", e.kind()))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            config.timeout * 3,
            ConnectionManager::new_with_config(client, manager),
        )
        .await
        .map_err(|_| "Redis did not answer in time".to_owned())?
        .map_err(|e| format!("cannot connect to Redis: {:?}", e.kind()))?;
        Ok(Self {
            conn,
            timeout: config.timeout,
            prefix: config.prefix.clone(),
            gcra: redis::Script::new(GCRA),
            gcra_refund: redis::Script::new(GCRA_REFUND),
            latency: std::sync::OnceLock::new(),
        })
    }

    /// Where call latencies go (`moat_redis_latency_seconds`); set once, by the state.
    pub fn set_latency(&self, histogram: prometheus_client::metrics::histogram::Histogram) {
        let _ = self.latency.set(histogram);
    }

    /// The Redis key for `(kind, key)`: prefix, kind, and 128 bits of the key's SHA-256 in hex.
    fn key(&self, kind: &str, key: &[u8]) -> String {
        let d = digest::digest(&digest::SHA256, key);
        let mut out = String::with_capacity(self.prefix.len() + kind.len() + 33);
        out.push_str(&self.prefix);
        out.push_str(kind);
        out.push(':');
        for b in d.as_ref().iter().take(16) {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, Unavailable> {
        let mut conn = self.conn.clone();
        let call = tokio::time::timeout(self.timeout, cmd(&mut conn));
        let outcome = match self.latency.get() {
            Some(h) => moat_observe::metrics::timed(h, call).await,
            None => call.await,
        };
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::warn!(error = ?e.kind(), "redis call failed");
                Err(Unavailable)
            }
            Err(_) => {
                tracing::warn!("redis call timed out");
                Err(Unavailable)
            }
        }
    }

    /// Checks Redis answers.
    ///
    /// # Errors
    /// [`Unavailable`].
    pub async fn ping(&self) -> Result<(), Unavailable> {
        self.run(async |c| redis::cmd("PING").query_async::<String>(c).await)
            .await
            .map(|_| ())
    }

    /// Records `key` of `kind` for `ttl_ms`; false if it is recorded already (first writer
    /// wins across instances).
    ///
    /// # Errors
    /// [`Unavailable`].
    pub async fn set_once(
        &self,
        kind: &str,
        key: &[u8],
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, Unavailable> {
        let k = self.key(kind, key);
        let set: Option<String> = self
            .run(async |c| {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1))
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    /// Removes and returns the value of `key` of `kind` (one taker across instances).
    ///
    /// # Errors
    /// [`Unavailable`].
    pub async fn take(&self, kind: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Unavailable> {
        let k = self.key(kind, key);
        self.run(async |c| redis::cmd("GETDEL").arg(&k).query_async(c).await)
            .await
    }

    /// GCRA over `items` of limiter `name`: charges all if all pass (`charge`), else none.
    /// Returns the headroom left on the first key.
    ///
    /// # Errors
    /// [`Refusal::Limited`] naming the first refusing key; [`Refusal::Unavailable`] if Redis
    /// cannot answer.
    pub async fn gcra(
        &self,
        name: &str,
        items: &[(String, Quota)],
        charge: bool,
    ) -> Result<u32, Refusal> {
        if items.is_empty() {
            return Ok(u32::MAX);
        }
        let mut invocation = self.gcra.prepare_invoke();
        invocation.arg(if charge { "check" } else { "peek" });
        for (key, quota) in items {
            invocation
                .key(self.key(name, key.as_bytes()))
                .arg(quota.interval_us())
                .arg(quota.burst.max(1));
        }
        let (ok, n, wait): (i64, i64, i64) = self
            .run(async |c| invocation.invoke_async(c).await)
            .await
            .map_err(|Unavailable| Refusal::Unavailable)?;
        if ok == 1 {
            return Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX));
        }
        let index = usize::try_from(n - 1).unwrap_or(0);
        Err(Refusal::Limited {
            key: items
                .get(index)
                .map_or_else(String::new, |(k, _)| k.clone()),
            retry_after: crate::quota::retry_after(wait),
        })
    }

    /// Gives back one request charged on `key` of limiter `name` (see
    /// [`crate::ratelimit::Limiter::refund`]).
    ///
    /// # Errors
    /// [`Refusal::Unavailable`] if Redis cannot answer.
    pub async fn gcra_refund(&self, name: &str, key: &str, quota: Quota) -> Result<(), Refusal> {
        let mut invocation = self.gcra_refund.prepare_invoke();
        invocation
            .key(self.key(name, key.as_bytes()))
            .arg(quota.interval_us());
        self.run(async |c| invocation.invoke_async::<i64>(c).await)
            .await
            .map(|_| ())
            .map_err(|Unavailable| Refusal::Unavailable)
    }
}
