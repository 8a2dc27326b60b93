//! Request middleware: route policies (`device`, `signature`) and admin authentication.

pub mod admin_auth;
pub mod protect;
