//! Moving a deployment from one backend to another (`moat admin migrate`).
