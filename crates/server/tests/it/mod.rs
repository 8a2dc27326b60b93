mod accounts;
mod admin;
mod attest;
mod attacks;
mod enroll;
mod gateway;
mod interop;
pub mod support;
