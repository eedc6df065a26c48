//! Webhooks: one endpoint per account and mode, signed with Standard Webhooks and with
//! the reference API's scheme. Order events become deliveries through the
//! [`outbox`], in the transaction that records them.

pub mod address;
pub mod delivery;
pub mod endpoint;
pub mod http;
pub mod log;
pub mod outbox;
pub mod signing;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The webhook sender's settings (flattened into the configuration's keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Webhook deliveries run at once by each process that runs workers (a pool of
    /// their own, so that they never wait behind checkouts).
    pub webhook_concurrency: usize,
    /// Let webhook endpoints be on addresses that are not public: private, loopback,
    /// link-local and the other special-use blocks of [`address`] (off by default: a
    /// webhook URL must not reach into the network Errand runs in). Turn it on for
    /// local demos and tests.
    pub webhooks_allow_private_addresses: bool,
    /// Waits before each retry of a webhook that was not accepted (±20 % jitter); it
    /// fails after the last.
    pub webhook_retry_schedule_seconds: Vec<f64>,
    /// How long a webhook receiver has to answer an attempt.
    pub webhook_timeout_seconds: f64,
    /// An endpoint whose every attempt has failed for this long (5 days by default) is
    /// disabled; setting its URL again re-enables it.
    pub webhook_disable_after_failing_seconds: f64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            webhook_concurrency: 8,
            webhooks_allow_private_addresses: false,
            webhook_retry_schedule_seconds: vec![
                5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0,
            ],
            webhook_timeout_seconds: 15.0,
            webhook_disable_after_failing_seconds: 5.0 * 86400.0,
        }
    }
}

impl WebhookSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=1000).contains(&self.webhook_concurrency) {
            anyhow::bail!("invalid configuration: webhook_concurrency must be between 1 and 1000");
        }
        if self.webhook_retry_schedule_seconds.len() > 50
            || self
                .webhook_retry_schedule_seconds
                .iter()
                .any(|s| !(0.0..=7.0 * 86400.0).contains(s))
        {
            anyhow::bail!(
                "invalid configuration: webhook_retry_schedule_seconds takes at most 50 waits of 0 to 604800 seconds"
            );
        }
        if !(0.1..=300.0).contains(&self.webhook_timeout_seconds) {
            anyhow::bail!(
                "invalid configuration: webhook_timeout_seconds must be between 0.1 and 300"
            );
        }
        if !(1.0..=365.0 * 86400.0).contains(&self.webhook_disable_after_failing_seconds) {
            anyhow::bail!(
                "invalid configuration: webhook_disable_after_failing_seconds must be between 1 and 31536000"
            );
        }
        Ok(())
    }

    pub fn retry_schedule(&self) -> Vec<Duration> {
        self.webhook_retry_schedule_seconds
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .collect()
    }
}
