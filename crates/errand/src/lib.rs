//! Errand: a self-hosted ordering API. One HTTP request with product URLs, a shipping
//! address and a price cap; Errand buys the products from the retailer's website and
//! reports the order's progress.

pub mod accounts;
pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod engine;
pub mod http;
pub mod notifications;
pub mod orders;
pub mod queue;
pub mod recipes;
pub mod retailers;
pub mod returns;
pub mod storage;
pub mod validation;
pub mod webhooks;
