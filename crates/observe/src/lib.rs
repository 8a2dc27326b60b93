//! What the operator sees of a running Moat: [`metrics`] (Prometheus), the [`audit`] log of
//! security-relevant events, the dashboard's daily counters ([`stats`]) and the batched
//! last-use times of credentials ([`usage`]).
//!
//! Nothing here knows HTTP: the server layer records into these types and serves them.

pub mod audit;
pub mod metrics;
pub mod stats;
pub mod usage;
