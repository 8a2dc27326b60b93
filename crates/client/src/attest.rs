//! Attestation by measurement of the app package.

use http::Method;
use moat_core::b64;

use crate::call::CallOptions;
use crate::client::Client;
use crate::error::{Error, Result};

impl Client {
    /// Attests the app by measurement: asks for a challenge for `(app_id, version)`, hashes the
    /// nonce and the challenged ranges of `package`, and returns the integrity token (whether
    /// it is genuine only the API server can tell). `bind` ties the token to an
    /// `Authorization` header value.
    ///
    /// # Errors
    /// [`Error::Problem`] when a call is refused.
    pub async fn attest_package(
        &self,
        app_id: &str,
        version: &str,
        package: &[u8],
        bind: Option<&str>,
    ) -> Result<String> {
        let body = serde_json::json!({"app_id": app_id, "version": version});
        let r = self
            .call(
                Method::POST,
                "/v1/attest/challenge",
                Some(&body),
                CallOptions::default(),
            )
            .await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        let c = r.json()?;
        let nonce = b64::url_decode(c["nonce"].as_str().unwrap_or_default())?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&nonce);
        for range in c["ranges"].as_array().cloned().unwrap_or_default() {
            let offset = usize::try_from(range[0].as_u64().unwrap_or(0)).unwrap_or(usize::MAX);
            let len = usize::try_from(range[1].as_u64().unwrap_or(0)).unwrap_or(0);
            let end = offset.saturating_add(len).min(package.len());
            ctx.update(package.get(offset.min(end)..end).unwrap_or_default());
        }
        let mut body = serde_json::json!({
            "challenge_id": c["challenge_id"],
            "measurement": b64::url_encode(ctx.finish().as_ref()),
        });
        if let Some(authorization) = bind {
            body["bind"] = b64::url_encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                authorization.as_bytes(),
            ))
            .into();
        }
        let r = self
            .call(
                Method::POST,
                "/v1/attest",
                Some(&body),
                CallOptions::default(),
            )
            .await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        r.json()?["integrity_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Invalid("no integrity_token".into()))
    }
}
