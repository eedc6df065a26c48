//! Settings: built-in defaults, then `errand.toml` (or the file given by `--config` /
//! `ERRAND_CONFIG`), then `ERRAND_*` environment variables; validated before anything
//! starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::accounts::vault::VaultSettings;
use crate::http::server::HttpSettings;
use crate::notifications::MailSettings;
use crate::queue::QueueSettings;
use crate::retailers::RetailerSettings;
use crate::retailers::browser::BrowserSettings;
use crate::storage::{DbOptions, SqliteDurability};
use crate::webhooks::WebhookSettings;

/// Every setting, under one flat set of keys; each subsystem owns its section (its
/// struct, defaults and checks), read by [`Settings::load`] from the same keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Runs of an order's placement before it fails with `retailer_unavailable`.
    pub placement_max_attempts: i32,
    // The sections are read on their own (see `load`): flattened in, a wrong value's
    // error would no longer name its key.
    #[serde(skip)]
    pub vault: VaultSettings,
    #[serde(skip)]
    pub queue: QueueSettings,
    #[serde(skip)]
    pub browser: BrowserSettings,
    #[serde(skip)]
    pub webhooks: WebhookSettings,
    #[serde(skip)]
    pub mail: MailSettings,
    #[serde(skip)]
    pub http: HttpSettings,
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
            placement_max_attempts: 12,
            vault: VaultSettings::default(),
            queue: QueueSettings::default(),
            browser: BrowserSettings::default(),
            webhooks: WebhookSettings::default(),
            mail: MailSettings::default(),
            http: HttpSettings::default(),
        }
    }
}

impl Settings {
    /// Loads and validates settings. An explicitly named file must exist; the default
    /// `errand.toml` is read only if present.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Settings> {
        let invalid = |e: figment::Error| anyhow::anyhow!("invalid configuration: {e}");
        let defaults = Settings::default();
        let mut figment = Figment::from(Serialized::defaults(defaults.clone()))
            .merge(Serialized::defaults(defaults.vault))
            .merge(Serialized::defaults(defaults.queue))
            .merge(Serialized::defaults(defaults.browser))
            .merge(Serialized::defaults(defaults.webhooks))
            .merge(Serialized::defaults(defaults.mail))
            .merge(Serialized::defaults(defaults.http));
        let known: Vec<String> = figment
            .extract::<figment::value::Dict>()
            .map_err(invalid)?
            .into_keys()
            .collect();
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
        let env_known = known.clone();
        let env = Env::prefixed("ERRAND_").filter(move |key| {
            env_known
                .iter()
                .any(|k| key.as_str().eq_ignore_ascii_case(k))
        });
        let figment = figment.merge(env);
        let given: figment::value::Dict = figment.extract().map_err(invalid)?;
        if let Some(unknown) = given.keys().find(|key| !known.contains(key)) {
            bail!("invalid configuration: unknown setting `{unknown}`");
        }
        let mut settings: Settings = figment.extract().map_err(invalid)?;
        settings.vault = figment.extract().map_err(invalid)?;
        settings.queue = figment.extract().map_err(invalid)?;
        settings.browser = figment.extract().map_err(invalid)?;
        settings.webhooks = figment.extract().map_err(invalid)?;
        settings.mail = figment.extract().map_err(invalid)?;
        settings.http = figment.extract().map_err(invalid)?;
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
        self.vault.validate()?;
        self.queue.validate()?;
        self.browser.validate()?;
        self.webhooks.validate()?;
        self.mail.validate()?;
        self.http.validate()?;
        if !(1..=100).contains(&self.placement_max_attempts) {
            bail!("invalid configuration: placement_max_attempts must be between 1 and 100");
        }
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

    fn load_file(text: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("errand.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load(Some(&path))
    }

    #[test]
    fn every_section_reads_its_keys_from_the_file() {
        let s = load_file(
            "listen = \"127.0.0.1:9000\"\nworker_concurrency = 3\njob_lease_seconds = 2\n\
             browser_concurrency = 5\nwebhook_retry_schedule_seconds = [1, 2.5]\n\
             http_header_timeout_seconds = 2.5\nhttp_max_connections = 100\n",
        )
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.queue.worker_concurrency, 3);
        assert_eq!(s.queue.job_lease_seconds, 2.0);
        assert_eq!(s.browser.browser_concurrency, 5);
        assert_eq!(s.webhooks.webhook_retry_schedule_seconds, [1.0, 2.5]);
        assert_eq!(s.http.http_header_timeout_seconds, 2.5);
        assert_eq!(s.http.http_max_connections, Some(100));
        assert_eq!(s.http.http_keep_alive_idle_seconds, 60.0);
        assert_eq!(
            s.webhooks.webhook_concurrency, 8,
            "unset keys keep their defaults"
        );
    }

    #[test]
    fn a_wrong_or_unknown_key_is_named() {
        for (text, key) in [
            ("worker_concurrency = \"many\"\n", "worker_concurrency"),
            (
                "webhook_timeout_seconds = \"soon\"\n",
                "webhook_timeout_seconds",
            ),
            ("listen = 8080\n", "listen"),
            ("lissten = \"127.0.0.1:1\"\n", "lissten"),
        ] {
            let error = load_file(text).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
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
            vault: VaultSettings {
                master_key: Some("not-a-key".into()),
            },
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
