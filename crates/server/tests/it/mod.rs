mod accounts;
mod admin;
mod attacks;
mod enroll;
mod gateway;
mod interop;
pub mod support;
