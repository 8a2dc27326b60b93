//! The Moat HTTP server.
//!
//! The composition of Moat's services (enrollment, accounts, attestation, gateway) behind
//! one HTTP surface.
//!
//! # Layout
//! - [`routes`]: the route table; [`endpoints`] binds it to the handlers; [`router`] builds
//!   the routers and their layers from it; [`openapi`] the document.
//! - Handlers, thin: [`enroll`], [`accounts`], [`attest`], [`device`], [`health`], [`admin`].
//! - [`middleware::protect`]: route policies on protected endpoints and gateway routes.
//! - [`error`]: the single mapping of every crate's failures to `application/problem+json`.
//! - [`config`]: two-phase configuration (raw TOML + environment → validated [`Config`]),
//!   one module per section.
//! - [`start`]: secrets, store and [`AppState`] at start-up; [`serve`]: the listeners.
//! - [`cleanup`]: the periodic cleanup job.
//!
//! [`app`] and [`admin_app`] build the routers from state, so tests drive them without a
//! socket; [`run`] serves both on listeners the caller bound (port 0 in tests). `ARCHITECTURE.md`
//! at the repository root maps the crates this one composes.

pub mod accounts;
pub mod admin;
pub mod attest;
pub mod cleanup;
pub mod config;
pub mod dashboard;
pub mod device;
pub mod endpoints;
pub mod enroll;
pub mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod router;
pub mod routes;
pub mod schemas;
pub mod secret_ref;
pub mod secrets;
pub mod serve;
pub mod start;
pub mod state;

pub use config::Config;
pub use router::{REQUEST_ID, admin_app, app};
pub use serve::run;
pub use start::{
    Purpose, ServerError, build_state, build_state_for, configured_data_key, sms_sender,
};
pub use state::AppState;
