//! Settings: built-in defaults, then `errand.toml` (or the file given by `--config` /
//! `ERRAND_CONFIG`), then `ERRAND_*` environment variables; validated before anything
//! starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::retailers::RetailerSettings;
use crate::storage::{DbOptions, SqliteDurability};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the API listens on (`ERRAND_LISTEN`).
    pub listen: String,
    /// The address clients reach the API at, e.g. `https://errand.example.com` (a path
    /// prefix is kept), for the absolute URLs Errand hands out (screenshots). Unset, a
    /// response takes it from the request (`Host`, and `X-Forwarded-Proto` for the
    /// scheme), and webhook payloads, which have no request, list no screenshots.
    pub public_url: Option<String>,
    /// Where the embedded SQLite database (and later files) live (`ERRAND_DATA_DIR`).
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; unset means SQLite in `data_dir`
    /// (`ERRAND_DATABASE_URL`).
    pub database_url: Option<String>,
    /// PostgreSQL connections (default 16), or SQLite reader connections (default 4:
    /// each is a thread, and reads are short).
    pub database_pool_size: Option<u32>,
    /// `full` (default: commits survive power loss) or `normal`.
    pub sqlite_durability: SqliteDurability,
    /// `text` or `json` log lines; the level comes from `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace_seconds: u64,
    /// How long idempotency keys are remembered (at least 24 hours).
    pub idempotency_retention_hours: u64,
    /// Run the demo retailer inside `errand serve` (`ERRAND_DEMO_STORE=false` to opt out).
    pub demo_store: bool,
    /// Where the embedded demo retailer listens.
    pub demo_store_listen: String,
    /// The embedded store's clock speed; the default 1440 makes a store day last a
    /// minute, so a first order ships and arrives while you watch.
    pub demo_store_time_scale: f64,
    /// Retailers orders can buy from (`[[retailers]]` tables); `errand serve` adds the
    /// embedded demo store as `demo` unless one is configured under that name.
    pub retailers: Vec<RetailerSettings>,
    /// Jobs (placements, tracking) run at once by each process; 0 runs none
    /// (an API-only node).
    pub worker_concurrency: usize,
    /// Webhook deliveries run at once by each process that runs workers (a pool of
    /// their own, so that they never wait behind checkouts).
    pub webhook_concurrency: usize,
    /// The Chromium the `browser` driver runs (Debian's `chromium` package).
    pub chromium_path: PathBuf,
    /// Browser checkouts open at once in each process (each an isolated context in one
    /// Chromium).
    pub browser_concurrency: usize,
    /// How long a recipe step waits for its element, URL or page.
    pub browser_step_timeout_seconds: f64,
    /// How long a job's claim lasts without a heartbeat: a crashed process's jobs run
    /// again after this.
    pub job_lease_seconds: f64,
    /// First retry delay of a failed job; each retry doubles it (±20 % jitter).
    pub job_retry_base_seconds: f64,
    /// The longest retry delay.
    pub job_retry_max_seconds: f64,
    /// Runs of an order's placement before it fails with `retailer_unavailable`.
    pub placement_max_attempts: i32,
    /// The key that encrypts retailer account secrets: base64 of 32 random bytes
    /// (`ERRAND_MASTER_KEY`). Unset means `<data_dir>/master.key`, created on first use;
    /// processes sharing one PostgreSQL database must all be given the same key.
    pub master_key: Option<SecretText>,
    /// Let webhook endpoints be on private, loopback or link-local addresses (off by
    /// default: a webhook URL must not reach into the network Errand runs in). Turn it
    /// on for local demos and tests.
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

/// A setting's value kept out of `Debug` output and so out of logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretText {
    fn from(text: &str) -> Self {
        SecretText(text.to_string())
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"****\"")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

pub const DEFAULT_CONFIG_FILE: &str = "errand.toml";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            data_dir: PathBuf::from("errand-data"),
            database_url: None,
            database_pool_size: None,
            sqlite_durability: SqliteDurability::Full,
            log_format: LogFormat::Text,
            shutdown_grace_seconds: 30,
            idempotency_retention_hours: 72,
            demo_store: true,
            demo_store_listen: "127.0.0.1:8090".into(),
            demo_store_time_scale: 1440.0,
            retailers: vec![],
            worker_concurrency: 16,
            webhook_concurrency: 8,
            chromium_path: PathBuf::from(crate::retailers::browser::DEFAULT_CHROMIUM_PATH),
            browser_concurrency: 4,
            browser_step_timeout_seconds: crate::retailers::browser::DEFAULT_STEP_TIMEOUT_SECONDS,
            job_lease_seconds: 30.0,
            job_retry_base_seconds: 1.0,
            job_retry_max_seconds: 600.0,
            placement_max_attempts: 12,
            master_key: None,
            webhooks_allow_private_addresses: false,
            webhook_retry_schedule_seconds: vec![
                5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0,
            ],
            webhook_timeout_seconds: 15.0,
            webhook_disable_after_failing_seconds: 5.0 * 86400.0,
        }
    }
}

impl Settings {
    /// Loads and validates settings. An explicitly named file must exist; the default
    /// `errand.toml` is read only if present.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) => {
                if !path.exists() {
                    bail!("config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        // Only variables naming a setting: others (ERRAND_CONFIG, test harness variables)
        // are not configuration.
        let known: Vec<String> = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
            _ => vec![],
        };
        let env = Env::prefixed("ERRAND_")
            .filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)));
        let figment = figment.merge(env);
        let settings: Settings = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen.parse::<SocketAddr>().with_context(|| {
            format!(
                "invalid configuration: listen = {:?} is not an address like 127.0.0.1:8080",
                self.listen
            )
        })?;
        if let Some(url) = &self.public_url {
            parse_public_url(url)?;
        }
        if self
            .database_pool_size
            .is_some_and(|n| !(1..=1000).contains(&n))
        {
            bail!("invalid configuration: database_pool_size must be between 1 and 1000");
        }
        if self.idempotency_retention_hours < 24 {
            bail!("invalid configuration: idempotency_retention_hours must be at least 24");
        }
        if let Some(key) = &self.master_key {
            crate::accounts::vault::key_from_setting(key.expose())?;
        }
        if self.worker_concurrency > 1000 {
            bail!("invalid configuration: worker_concurrency must be at most 1000");
        }
        if !(1..=64).contains(&self.browser_concurrency) {
            bail!("invalid configuration: browser_concurrency must be between 1 and 64");
        }
        let step_timeouts = crate::retailers::browser::STEP_TIMEOUT_SECONDS;
        if !step_timeouts.contains(&self.browser_step_timeout_seconds) {
            bail!(
                "invalid configuration: browser_step_timeout_seconds must be between {} and {}",
                step_timeouts.start(),
                step_timeouts.end()
            );
        }
        if !(1..=1000).contains(&self.webhook_concurrency) {
            bail!("invalid configuration: webhook_concurrency must be between 1 and 1000");
        }
        if !(self.job_lease_seconds >= 0.5 && self.job_lease_seconds <= 3600.0) {
            bail!("invalid configuration: job_lease_seconds must be between 0.5 and 3600");
        }
        if !(self.job_retry_base_seconds > 0.0
            && self.job_retry_max_seconds >= self.job_retry_base_seconds)
        {
            bail!(
                "invalid configuration: job_retry_base_seconds must be positive and at most job_retry_max_seconds"
            );
        }
        if self.webhook_retry_schedule_seconds.len() > 50
            || self
                .webhook_retry_schedule_seconds
                .iter()
                .any(|s| !(0.0..=7.0 * 86400.0).contains(s))
        {
            bail!(
                "invalid configuration: webhook_retry_schedule_seconds takes at most 50 waits of 0 to 604800 seconds"
            );
        }
        if !(0.1..=300.0).contains(&self.webhook_timeout_seconds) {
            bail!("invalid configuration: webhook_timeout_seconds must be between 0.1 and 300");
        }
        if !(1.0..=365.0 * 86400.0).contains(&self.webhook_disable_after_failing_seconds) {
            bail!(
                "invalid configuration: webhook_disable_after_failing_seconds must be between 1 and 31536000"
            );
        }
        if !(1..=100).contains(&self.placement_max_attempts) {
            bail!("invalid configuration: placement_max_attempts must be between 1 and 100");
        }
        crate::retailers::Registry::with_browser(
            &self.retailers,
            &crate::retailers::browser::BrowserOptions::from_settings(self),
        )?;
        if let Some(url) = &self.database_url {
            let known = ["postgres://", "postgresql://", "sqlite:"];
            if !known.iter().any(|p| url.starts_with(p)) {
                bail!(
                    "invalid configuration: database_url must start with postgres:// or sqlite://"
                );
            }
        }
        Ok(())
    }

    /// `public_url` without its trailing slash, ready to have paths appended.
    pub fn public_base(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .and_then(|url| parse_public_url(url).ok())
    }

    pub fn webhook_retry_schedule(&self) -> Vec<std::time::Duration> {
        self.webhook_retry_schedule_seconds
            .iter()
            .map(|s| std::time::Duration::from_secs_f64(*s))
            .collect()
    }

    pub fn job_lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.job_lease_seconds)
    }

    pub fn db_options(&self) -> DbOptions {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("errand.db").display()),
        };
        let default_pool = if url.starts_with("sqlite:") { 4 } else { 16 };
        DbOptions {
            pool_size: self.database_pool_size.unwrap_or(default_pool),
            url,
            sqlite_durability: self.sqlite_durability,
        }
    }
}

/// An `http(s)` URL with a host and nothing after its path, as a base without the
/// trailing slash.
fn parse_public_url(text: &str) -> anyhow::Result<String> {
    let invalid = |why: &str| {
        anyhow::anyhow!(
            "invalid configuration: public_url = {text:?} {why}; expected e.g. https://errand.example.com"
        )
    };
    let url = url::Url::parse(text.trim()).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("must be an http or https URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("must not have a query, fragment or user name"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_use_sqlite() {
        let s = Settings::default();
        s.validate().unwrap();
        assert!(s.db_options().url.starts_with("sqlite://errand-data/"));
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let s = Settings {
            listen: "nowhere".into(),
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("listen"));
        let s = Settings {
            idempotency_retention_hours: 1,
            ..Settings::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("idempotency_retention_hours")
        );
        let s = Settings {
            master_key: Some("not-a-key".into()),
            ..Settings::default()
        };
        let error = s.validate().unwrap_err().to_string();
        assert!(error.contains("master_key"), "{error}");
        assert!(!format!("{s:?}").contains("not-a-key"));
        for bad in [
            "errand.example.com",
            "ftp://errand.example.com",
            "https://h/?a=1",
        ] {
            let s = Settings {
                public_url: Some(bad.into()),
                ..Settings::default()
            };
            let error = s.validate().unwrap_err().to_string();
            assert!(error.contains("public_url"), "{error}");
        }
        let s = Settings {
            public_url: Some("https://errand.example.com/api/".into()),
            ..Settings::default()
        };
        s.validate().unwrap();
        assert_eq!(
            s.public_base().as_deref(),
            Some("https://errand.example.com/api")
        );
        let s = Settings {
            database_url: Some("mysql://x".into()),
            ..Settings::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("database_url")
        );
    }
}
