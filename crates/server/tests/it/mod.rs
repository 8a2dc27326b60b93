mod accounts;
mod admin;
mod attacks;
mod enroll;
mod interop;
pub mod support;
