mod accounts;
mod admin;
mod attacks;
mod attest;
mod enroll;
mod firebase;
mod gateway;
mod interop;
pub mod support;
