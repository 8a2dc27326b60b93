//! The attestation service: issuing a challenge, checking its answer (the expected
//! measurement, or a platform's proof), issuing the integrity token that results, and what
//! is recorded about it.

use std::sync::Arc;

use moat_cluster::redis::Redis;
use moat_core::seal::DataKey;
use moat_observe::metrics::Metrics;
use moat_observe::stats::DailyStats;
use moat_store::attest::AttestStore;
use serde_json::{Map, Value};

use crate::app_attest::AppAttestSettings;
use crate::challenge::{self, Challenge, Challenges, DecoySizes};
use crate::error::Error;
use crate::integrity::IntegrityService;
use crate::platform::{AppCheckSettings, Platforms, PlayIntegritySettings};

/// What the service is built from: plain values, key text already resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The integrity tokens' `iss` (the server's public base URL).
    pub issuer: String,
    /// Integrity token lifetime, seconds.
    pub integrity_ttl: i64,
    /// Play Integrity, when configured.
    pub play_integrity: Option<PlayIntegritySettings>,
    /// App Attest, when configured.
    pub app_attest: Option<AppAttestSettings>,
    /// Firebase App Check, when configured.
    pub app_check: Option<AppCheckSettings>,
}

/// A challenge issued to a device: what the client is sent.
#[derive(Clone, Debug)]
pub struct IssuedChallenge {
    /// Its id (`ch_...`), quoted in the answer.
    pub id: String,
    /// 32 random bytes.
    pub nonce: [u8; 32],
    /// `(offset, length)` ranges of the package to measure, in order.
    pub ranges: Vec<(u64, u64)>,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// A device's answer to a challenge.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// The challenge answered.
    pub challenge_id: &'a str,
    /// base64url(SHA-256(nonce ‖ bytes of each range)), for a package measurement.
    pub measurement: Option<&'a str>,
    /// `app_attest`, `play_integrity` or `firebase_app_check`, for a platform attestation.
    pub platform: Option<&'a str>,
    /// base64url(SHA-256(Authorization header value)) to copy into the token's `pay`.
    pub bind: Option<&'a str>,
    /// The platform's fields (`token`, `attestation`, `assertion`, `key_id`, ...).
    pub fields: &'a Map<String, Value>,
}

/// The integrity token an answer earns, genuine or not (they look alike).
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The JWS.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// Attestation: challenges, their answers and the integrity tokens that result.
pub struct Attestation {
    store: Arc<dyn AttestStore>,
    challenges: Challenges,
    decoys: DecoySizes,
    platforms: Platforms,
    integrity: IntegrityService,
    metrics: Arc<Metrics>,
    stats: Arc<DailyStats>,
}

fn label_ok(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Attestation {
    /// The service over `store`, with challenges in Redis when instances share one; unknown
    /// apps' challenge sizes are keyed by `decoy_key` (the data key: every instance draws
    /// the same). Call [`Self::reload_integrity`] and [`Self::reload_decoys`] before use.
    ///
    /// # Errors
    /// [`Error::PlayIntegrityKeys`] when the Play Console keys cannot be used.
    pub fn new(
        store: Arc<dyn AttestStore>,
        redis: Option<Arc<Redis>>,
        decoy_key: &[u8],
        settings: Settings,
        metrics: Arc<Metrics>,
        stats: Arc<DailyStats>,
    ) -> Result<Self, Error> {
        Ok(Self {
            platforms: Platforms::new(
                settings.play_integrity,
                settings.app_check,
                settings.app_attest,
            )?,
            integrity: IntegrityService::new(settings.issuer, settings.integrity_ttl),
            challenges: Challenges::new(redis),
            decoys: DecoySizes::new(decoy_key),
            store,
            metrics,
            stats,
        })
    }

    /// The integrity tokens (verified on every request of a route requiring one).
    pub fn integrity(&self) -> &IntegrityService {
        &self.integrity
    }

    /// Issues a challenge to `device` (the caller's device id; `None` for a caller without
    /// one) for `(app_id, version)`.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for bad labels, then [`Error::DeviceRequired`] without a
    /// device; [`Error::Unavailable`] when the challenge cannot be kept, the store's error
    /// when it cannot answer.
    pub async fn challenge(
        &self,
        device: Option<&str>,
        app_id: &str,
        version: &str,
        now: i64,
    ) -> Result<IssuedChallenge, Error> {
        if !label_ok(app_id) || !label_ok(version) {
            return Err(Error::InvalidRequest(
                "app_id and version must be 1-128 visible characters",
            ));
        }
        let device = device.ok_or(Error::DeviceRequired)?;
        let release = self.store.release(app_id, version).await?;
        let known = release.as_ref().is_some_and(|r| r.status == "active");
        // Unknown apps get a challenge of the same shape over a made-up size drawn from the
        // registered ones (see `challenge::DecoySizes`); they will fail.
        let size = match &release {
            Some(r) if known => u64::try_from(r.size).unwrap_or(0),
            _ => self.decoys.size_for(app_id, version),
        };
        let c = Challenge {
            device: device.to_owned(),
            app_id: app_id.to_owned(),
            version: version.to_owned(),
            nonce: moat_core::random::array::<32>()?,
            ranges: challenge::ranges(size)?,
            known,
            expires_at: now + challenge::TTL,
        };
        let issued = IssuedChallenge {
            id: format!("ch_{}", moat_core::random::token(16)?),
            nonce: c.nonce,
            ranges: c.ranges.clone(),
            expires_in: challenge::TTL,
        };
        if !self.challenges.put(issued.id.clone(), c, now).await {
            return Err(Error::Unavailable);
        }
        Ok(issued)
    }

    /// The expected measurement of a challenge, or of a decoy of the same size (same work).
    async fn expected_measurement(&self, c: &Challenge) -> Result<[u8; 32], Error> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&c.nonce);
        if c.known {
            for part in self
                .store
                .release_ranges(&c.app_id, &c.version, &c.ranges)
                .await?
            {
                ctx.update(&part);
            }
        } else {
            let total: u64 = c.ranges.iter().map(|(_, l)| *l).sum();
            let filler = vec![0u8; usize::try_from(total.min(1 << 20)).unwrap_or(0)];
            ctx.update(&filler);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Ok(out)
    }

    /// Checks `device`'s answer to its challenge and issues the integrity token: signed with
    /// the shared secret only when the attestation is genuine, else one that looks the same.
    /// The outcome is logged, counted in the metrics and in the daily stats; it is not
    /// returned.
    ///
    /// # Errors
    /// [`Error::DeviceRequired`] without a device, [`Error::InvalidRequest`] for a malformed
    /// answer (checked before the challenge is taken), [`Error::Unavailable`] when the
    /// challenges or the secrets are unavailable.
    pub async fn answer(
        &self,
        device: Option<&str>,
        answer: Answer<'_>,
        now: i64,
    ) -> Result<IssuedToken, Error> {
        let device = device.ok_or(Error::DeviceRequired)?;
        let pay = match answer.bind {
            Some(b) if moat_core::b64::url_decode(b).map(|d| d.len()) == Ok(32) => {
                Some(b.to_owned())
            }
            Some(_) => {
                return Err(Error::InvalidRequest("bind must be base64url of a SHA-256"));
            }
            None => None,
        };
        // The answer's shape is checked before the challenge is taken: a malformed request
        // must not burn the client's challenge, and must get the same refusal whether or not
        // the challenge exists (else the answer tells which challenge ids are live).
        if answer.measurement.is_some() == answer.platform.is_some() {
            return Err(Error::InvalidRequest("send either measurement or platform"));
        }
        let challenge = self
            .challenges
            .take(answer.challenge_id, now)
            .await
            .map_err(|_| Error::Unavailable)?
            .filter(|c| c.device == device);
        let genuine = match (&challenge, answer.measurement, answer.platform) {
            (Some(c), Some(measurement), None) => {
                let expected = self.expected_measurement(c).await?;
                let presented = moat_core::b64::url_decode(measurement).unwrap_or_default();
                c.known && moat_core::secret::ct_eq(&expected, &presented)
            }
            (Some(c), None, Some(platform)) => {
                self.platforms
                    .verify(&*self.store, c, device, platform, answer.fields, now)
                    .await
            }
            (None, _, _) => {
                // Unknown, expired, reused or another device's challenge: same work, failing
                // token.
                let decoy = Challenge {
                    device: device.to_owned(),
                    app_id: String::new(),
                    version: String::new(),
                    nonce: [0; 32],
                    ranges: vec![(0, challenge::RANGE_LEN); challenge::RANGES],
                    known: false,
                    expires_at: now,
                };
                let _ = self.expected_measurement(&decoy).await?;
                false
            }
            // Exactly one of the two is present (checked above).
            (Some(_), _, _) => false,
        };
        tracing::info!(device = %device, genuine, "attestation");
        self.record(answer.platform, genuine, now);
        let token = self.integrity.issue(device, pay, genuine, now)?;
        Ok(IssuedToken {
            token,
            expires_in: self.integrity.ttl(),
        })
    }

    /// Counts an attestation in the metrics (by platform) and the dashboard's daily stats.
    fn record(&self, platform: Option<&str>, genuine: bool, now: i64) {
        let platform = match platform {
            None => "package",
            Some("play_integrity") => "play_integrity",
            Some("firebase_app_check") => "firebase_app_check",
            Some("app_attest") => "app_attest",
            Some(_) => "other",
        };
        self.metrics.attestation(platform, genuine);
        self.stats.add(
            now,
            moat_observe::stats::metric::ATTEST,
            if genuine { "pass" } else { "fail" },
            1,
        );
    }

    /// Reloads the registered packages' sizes unknown apps' challenges are drawn from.
    ///
    /// # Errors
    /// The store's, when it cannot answer; the sizes loaded before are kept.
    pub async fn reload_decoys(&self) -> Result<(), moat_store::StoreError> {
        self.decoys.reload(&*self.store).await
    }

    /// Loads the integrity secrets (sealed with `data`), storing `initial` as the first one
    /// if there is none.
    ///
    /// # Errors
    /// Store unavailable, or a secret that `data` does not open.
    pub async fn reload_integrity(
        &self,
        data: &DataKey,
        initial: &[u8],
        now: i64,
    ) -> Result<(), Error> {
        self.integrity
            .reload(&*self.store, data, initial, now)
            .await
    }

    /// A new current integrity secret; the previous one verifies until its tokens expire.
    /// Returns its key id.
    ///
    /// # Errors
    /// Store unavailable.
    pub async fn rotate_integrity(&self, data: &DataKey, now: i64) -> Result<String, Error> {
        self.integrity.rotate(&*self.store, data, now).await
    }

    /// Drops this instance's expired challenges; returns how many.
    pub fn purge(&self, now: i64) -> usize {
        self.challenges.purge(now)
    }
}
