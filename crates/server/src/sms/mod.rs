//! SMS: the senders, the SMS-pumping guard, and the worker that sends off the request path.
//!
//! A request that should send an SMS only writes the message into the store's queue (in the
//! same transaction as the code it carries). The [`worker`] sends it with retries and records
//! the outcome; a message that cannot be sent ends `failed` with its error, visible to the
//! operator, never silently dropped.

pub mod guard;
pub mod sender;
pub mod worker;
