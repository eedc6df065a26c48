//! Webhooks: one endpoint per account and mode, signed with Standard Webhooks and with
//! the reference API's scheme.

pub mod endpoint;
pub mod http;
pub mod signing;
