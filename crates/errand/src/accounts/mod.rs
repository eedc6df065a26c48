//! Managed accounts: the retailer accounts (e-mail, password, TOTP secret) the engine
//! signs in with to place and track orders. Secrets are encrypted at rest with the
//! master key and never leave the server through the API.

pub mod http;
pub mod request;
pub mod store;
pub mod vault;

pub use store::{
    AccountError, NewRetailerAccount, RetailerAccount, RetailerAccountUpdate, create, secrets,
};
pub use vault::{Secrets, Vault};
