//! SMS-pumping defence: every request that could send an SMS passes here first.
//!
//! Budgets, all GCRA and all checked together (a refusal consumes none of them): a cooldown
//! between sends to one phone and an hourly budget per phone, per device, per client IP, per
//! country, and in total. The global budget is the circuit breaker: when it is spent, every
//! SMS is refused until it refills, and the log says so loudly (once a minute). Countries can
//! be narrowed to an allow-list. The guard runs *before* Moat looks at whether the phone is
//! registered, so a refusal never reveals that.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use moat_cluster::ratelimit::{Quota, RateLimiter, Refusal};

use crate::Error;

/// The configured budgets.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Seconds between two SMS to one phone.
    pub cooldown: u64,
    /// Per phone, per hour.
    pub per_phone_hour: u32,
    /// Per device, per hour.
    pub per_device_hour: u32,
    /// Per client IP, per hour.
    pub per_ip_hour: u32,
    /// Per country, per hour.
    pub per_country_hour: u32,
    /// In total, per hour: the circuit breaker.
    pub global_hour: u32,
    /// ISO 3166 regions served; empty means all.
    pub allowed_countries: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cooldown: 30,
            per_phone_hour: 5,
            per_device_hour: 5,
            per_ip_hour: 20,
            per_country_hour: 200,
            global_hour: 1000,
            allowed_countries: Vec::new(),
        }
    }
}

/// Who is asking to send to which phone.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    /// E.164 phone.
    pub phone: &'a str,
    /// ISO 3166 region of the phone.
    pub region: &'a str,
    /// Device uuid (or `static`).
    pub device: &'a str,
    /// Client IP.
    pub ip: &'a str,
}

/// The guard.
pub struct SmsGuard {
    limits: Limits,
    limiter: RateLimiter,
    breaker_logged: AtomicI64,
    /// SMS refused by the guard since start.
    pub blocked: AtomicU64,
}

impl SmsGuard {
    /// A guard with these budgets, kept in `limiter` (in memory, or shared through Redis).
    pub fn new(limits: Limits, limiter: RateLimiter) -> Self {
        Self {
            limits,
            limiter,
            breaker_logged: AtomicI64::new(0),
            blocked: AtomicU64::new(0),
        }
    }

    /// Whether the phone's country is served.
    pub fn country_allowed(&self, region: &str) -> bool {
        self.limits.allowed_countries.is_empty()
            || self
                .limits
                .allowed_countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(region))
    }

    /// Counts one SMS against every budget, or refuses.
    ///
    /// # Errors
    /// [`Error::SmsBlocked`] with the seconds to wait; [`Error::Invalid`] for a country not
    /// served; [`Error::Unavailable`] if the limiter is full.
    pub async fn admit(&self, now: i64, ask: &Ask<'_>) -> Result<(), Error> {
        if !self.country_allowed(ask.region) {
            self.blocked.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Invalid(
                "phone numbers of this country are not served".into(),
            ));
        }
        let l = &self.limits;
        let items = [
            (format!("cool\0{}", ask.phone), Quota::cooldown(l.cooldown)),
            (
                format!("phone\0{}", ask.phone),
                Quota::per_hour(l.per_phone_hour),
            ),
            (
                format!("device\0{}", ask.device),
                Quota::per_hour(l.per_device_hour),
            ),
            (format!("ip\0{}", ask.ip), Quota::per_hour(l.per_ip_hour)),
            (
                format!("country\0{}", ask.region),
                Quota::per_hour(l.per_country_hour),
            ),
            ("global".to_owned(), Quota::per_hour(l.global_hour)),
        ];
        match self.limiter.check(now.saturating_mul(1000), &items).await {
            Ok(()) => Ok(()),
            Err(Refusal::Limited { key, retry_after }) => {
                self.blocked.fetch_add(1, Ordering::Relaxed);
                let scope = key.split('\0').next().unwrap_or("global").to_owned();
                if scope == "global" && self.breaker_logged.swap(now, Ordering::Relaxed) + 60 <= now
                {
                    tracing::error!(
                        retry_after,
                        "SMS circuit breaker open: the global hourly SMS budget is spent; all SMS refused"
                    );
                } else {
                    tracing::info!(scope = %scope, retry_after, "SMS refused by the pumping guard");
                }
                Err(Error::SmsBlocked { retry_after })
            }
            Err(Refusal::Unavailable) => Err(Error::Unavailable),
        }
    }

    /// Drops budgets that are full again.
    pub fn purge(&self, now: i64) -> usize {
        self.limiter.purge(now.saturating_mul(1000))
    }
}
