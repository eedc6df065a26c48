//! Behavioural tests: each starts the real server on 127.0.0.1:0 over a real database,
//! and most run twice, on SQLite (a temp file) and on PostgreSQL (a fresh database on
//! the local server, `ERRAND_TEST_POSTGRES_URL`).

mod support;

mod accounts;
mod auth;
mod browser;
mod chaos;
mod cli;
mod connections;
mod crash;
mod docs;
mod engine;
mod idempotency;
mod lifecycle;
mod listing;
mod migrations;
mod openapi;
mod order_options;
mod orders;
mod queue;
mod retailers;
mod returns;
mod screenshots;
mod sdk;
mod validation;
mod webhook_delivery;
mod webhooks;
