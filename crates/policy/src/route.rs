//! One protected route as the verifier sees it: its requirements, its rate limit, its name.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use moat_cluster::ratelimit::{Quota, Refusal};

use crate::error::Error;
use crate::verifier::{RateLimitHeaders, Verifier};
use crate::{Principal, RateKey, RateLimit, Requirement};

/// A route's policy, built once when the router is: every request to it is checked against
/// this.
#[derive(Clone, Debug)]
pub struct Route {
    /// Requirements, all of which must hold.
    pub(crate) requirements: Arc<[Requirement]>,
    /// The route's rate limit, if any, with its quota and `RateLimit-Policy` value.
    limit: Option<(RateKey, Quota, HeaderValue)>,
    /// The route's name in rate-limit keys and logs.
    name: Arc<str>,
}

impl Route {
    /// The policy of route `name`: every requirement in `requirements`, then `rate_limit`.
    pub fn new(
        requirements: Arc<[Requirement]>,
        rate_limit: Option<RateLimit>,
        name: Arc<str>,
    ) -> Self {
        let limit = rate_limit.map(|rl| {
            let period = f64::from(rl.burst) / rl.per_second;
            let window = period.ceil().max(1.0);
            let quota = Quota {
                burst: rl.burst,
                period: std::time::Duration::from_secs_f64(period),
            };
            let policy = HeaderValue::from_str(&format!("\"moat\";q={};w={window}", rl.burst))
                .unwrap_or_else(|_| HeaderValue::from_static("\"moat\""));
            (rl.key, quota, policy)
        });
        Self {
            requirements,
            limit,
            name,
        }
    }

    /// The route's requirements.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the route requires `r`.
    pub(crate) fn requires(&self, r: Requirement) -> bool {
        self.requirements.contains(&r)
    }
}

impl Verifier {
    /// Applies the route's rate limit to a verified caller; returns the `RateLimit` header
    /// values. `client_ip` is asked only by routes limited per IP.
    pub(crate) async fn rate_limit(
        &self,
        route: &Route,
        principal: &Principal,
        now_ms: i64,
        client_ip: impl FnOnce() -> IpAddr,
    ) -> Result<Option<RateLimitHeaders>, Error> {
        let Some((rate_key, quota, policy)) = &route.limit else {
            return Ok(None);
        };
        let mut key = String::with_capacity(route.name.len() + 48);
        key.push_str(&route.name);
        key.push('\0');
        match rate_key {
            RateKey::Device => match &principal.device {
                Some(d) => key.push_str(
                    d.id.hyphenated()
                        .encode_lower(&mut uuid::Uuid::encode_buffer()),
                ),
                None => key.push_str("static"),
            },
            RateKey::User => match &principal.user {
                Some(u) => {
                    key.push_str(&u.issuer);
                    key.push('\0');
                    key.push_str(&u.id);
                }
                None => key.push_str("anonymous"),
            },
            RateKey::Ip => {
                use std::fmt::Write as _;
                let _ = write!(key, "{}", client_ip());
            }
            RateKey::Route => {}
        }
        let (quota, policy) = (*quota, policy.clone());
        match self
            .services
            .route_limiter
            .check_one(now_ms, &key, quota)
            .await
        {
            Ok(remaining) => {
                let remaining = HeaderValue::from_str(&format!("\"moat\";r={remaining}"))
                    .map_err(|e| Error::Internal(e.to_string()))?;
                Ok(Some(RateLimitHeaders { policy, remaining }))
            }
            Err(Refusal::Limited { retry_after, .. }) => Err(Error::RateLimited {
                retry_after,
                policy,
                state: HeaderValue::from_str(&format!("\"moat\";r=0;t={retry_after}"))
                    .map_err(|e| Error::Internal(e.to_string()))?,
            }),
            Err(Refusal::Unavailable) => Err(Error::Unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Route;
    use crate::{RateKey, RateLimit, Requirement};

    #[test]
    fn a_route_states_its_quota_and_window() {
        let route = Route::new(
            Arc::from([Requirement::Device, Requirement::User]),
            Some(RateLimit {
                key: RateKey::Device,
                per_second: 2.0,
                burst: 5,
            }),
            Arc::from("/api/x"),
        );
        assert!(route.requires(Requirement::User));
        assert!(!route.requires(Requirement::Signature));
        assert_eq!(route.name(), "/api/x");
        let (key, quota, policy) = route.limit.as_ref().expect("a rate limit");
        assert_eq!(*key, RateKey::Device);
        assert_eq!(quota.burst, 5);
        assert_eq!(quota.period, std::time::Duration::from_millis(2500));
        // The window is the refill period rounded up to whole seconds.
        assert_eq!(policy, "\"moat\";q=5;w=3");
        let unlimited = Route::new(Arc::from([]), None, Arc::from("/"));
        assert!(unlimited.limit.is_none());
    }
}
