//! The admin dashboard: a static page on the admin listener (`/admin/`) that signs in with
//! the admin token and draws everything from the admin API (`/admin/v1/stats`, `/devices`,
//! `/audit`). The page, script and style are compiled in; no build step, no third-party code.
//!
//! The page itself is public on the admin listener (it holds no data); every figure needs the
//! token. Served with a CSP that allows only its own script and style, no framing.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");
const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect x=\"1\" y=\"6\" width=\"14\" height=\"9\" fill=\"#2f6fde\"/>\
<rect x=\"1\" y=\"2\" width=\"3\" height=\"4\" fill=\"#2f6fde\"/>\
<rect x=\"6.5\" y=\"2\" width=\"3\" height=\"4\" fill=\"#2f6fde\"/>\
<rect x=\"12\" y=\"2\" width=\"3\" height=\"4\" fill=\"#2f6fde\"/></svg>";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /admin/`
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /admin`: to `/admin/`, so relative paths resolve alike.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/admin/")
}

/// `GET /admin/dashboard.js`
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /admin/dashboard.css`
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /admin/favicon.svg`
pub async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}
