//! Protected calls: headers, body (JSON, JWE or form) and credential or signature, built and
//! sent.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use moat_core::httpsig::SigningKey;
use moat_core::jwe;
use moat_core::jwk::PublicJwk;
use serde_json::Value;

use crate::call::{Auth, CallOptions, Payload, Response};
use crate::client::Client;
use crate::credential::Credential;
use crate::error::{Error, Result};
use crate::sign::sign_request;

impl Client {
    /// Builds the headers and body of a protected call without sending it.
    ///
    /// # Errors
    /// [`Error::Credential`] when the requested authentication is not possible.
    pub fn prepare(
        &self,
        method: &Method,
        path_and_query: &str,
        body: Option<&Value>,
        options: &CallOptions,
    ) -> Result<(reqwest::Url, HeaderMap, Option<Vec<u8>>)> {
        self.prepare_payload(
            method,
            path_and_query,
            body.map_or(Payload::None, Payload::Json),
            options,
        )
    }

    /// As [`Self::prepare`], for any payload.
    ///
    /// # Errors
    /// [`Error::Credential`] when the requested authentication is not possible.
    pub fn prepare_payload(
        &self,
        method: &Method,
        path_and_query: &str,
        payload: Payload<'_>,
        options: &CallOptions,
    ) -> Result<(reqwest::Url, HeaderMap, Option<Vec<u8>>)> {
        let url = self.url(path_and_query)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            headers.append(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|e| Error::Invalid(e.to_string()))?,
                HeaderValue::from_str(value).map_err(|e| Error::Invalid(e.to_string()))?,
            );
        }
        let body = match payload {
            Payload::None => None,
            Payload::Form(pairs) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                Some(
                    serde_urlencoded::to_string(pairs)
                        .map_err(|e| Error::Invalid(e.to_string()))?
                        .into_bytes(),
                )
            }
            Payload::Json(v) if options.encrypt => {
                let Some(Credential::ClientCredential { encryption_key, .. }) = &self.credential
                else {
                    return Err(Error::Credential(
                        "encryption needs an otp-mode client credential",
                    ));
                };
                let jwk = PublicJwk::from_json(&strip_jwk_metadata(encryption_key))?;
                let kid = encryption_key.get("kid").and_then(Value::as_str);
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jose"),
                );
                Some(jwe::encrypt(v.to_string().as_bytes(), &jwk, kid)?.into_bytes())
            }
            Payload::Json(v) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Some(v.to_string().into_bytes())
            }
        };
        let auth = match options.auth {
            Auth::Auto => match &self.credential {
                Some(Credential::ClientCredential { .. }) => Auth::HmacSignature,
                Some(Credential::ApiKey { .. }) => Auth::ApiKey,
                None => Auth::None,
            },
            other => other,
        };
        let now = self.now();
        let signed = match auth {
            Auth::ApiKey => {
                let Some(Credential::ApiKey { key, .. }) = &self.credential else {
                    return Err(Error::Credential("no API key"));
                };
                headers.insert(
                    "moat-device-key",
                    HeaderValue::from_str(key).map_err(|e| Error::Invalid(e.to_string()))?,
                );
                None
            }
            Auth::HmacSignature => {
                let (Some(Credential::ClientCredential { client_id, .. }), Some(key)) =
                    (&self.credential, &self.hmac)
                else {
                    return Err(Error::Credential("no client credential"));
                };
                Some(sign_request(
                    method,
                    &url,
                    &headers,
                    body.as_deref(),
                    client_id,
                    SigningKey::Hmac(key),
                    now,
                )?)
            }
            Auth::InstallationSignature => Some(sign_request(
                method,
                &url,
                &headers,
                body.as_deref(),
                &self.thumbprint(),
                SigningKey::Installation(&self.key),
                now,
            )?),
            _ => None,
        };
        if let Some(signed) = signed {
            for (name, value) in signed.headers {
                headers.insert(
                    name,
                    HeaderValue::from_str(&value).map_err(|e| Error::Invalid(e.to_string()))?,
                );
            }
        }
        Ok((url, headers, body))
    }

    /// Calls a protected endpoint with any payload (JSON, form or none) and returns the
    /// response whatever its status.
    ///
    /// # Errors
    /// As [`Self::call`].
    pub async fn call_payload(
        &self,
        method: Method,
        path_and_query: &str,
        payload: Payload<'_>,
        options: CallOptions,
    ) -> Result<Response> {
        let (url, headers, body) =
            self.prepare_payload(&method, path_and_query, payload, &options)?;
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        Self::read(request.send().await?).await
    }

    /// Posts a form (e.g. to the RFC 6749 token endpoint) with the device credential.
    ///
    /// # Errors
    /// As [`Self::call`].
    pub async fn call_form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        options: CallOptions,
    ) -> Result<Response> {
        let (url, headers, body) =
            self.prepare_payload(&Method::POST, path, Payload::Form(pairs), &options)?;
        let mut request = self.http.post(url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        Self::read(request.send().await?).await
    }

    /// Calls a protected endpoint and returns the response whatever its status.
    ///
    /// # Errors
    /// [`Error::Http`] on transport failure, [`Error::Credential`] as for [`Self::prepare`].
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        options: CallOptions,
    ) -> Result<Response> {
        let (url, headers, body) = self.prepare(&method, path_and_query, body, &options)?;
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        Self::read(request.send().await?).await
    }
}

/// The encryption key as delivered carries `kid`, `alg` and `use` beside the key members.
fn strip_jwk_metadata(jwk: &Value) -> Value {
    let mut v = jwk.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("kid");
        obj.remove("alg");
        obj.remove("use");
    }
    v
}
