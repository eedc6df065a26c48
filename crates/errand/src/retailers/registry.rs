//! The configured retailers, and which one serves a product URL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Driver;
use super::browser::BrowserSettings;
use super::browser::chromium::Chromium;
use super::browser::driver::BrowserDriver;
use super::demo_http::DemoHttpDriver;
use crate::recipes::Recipe;

/// One `[[retailers]]` entry of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetailerSettings {
    /// The name orders and retailer accounts use, e.g. `demo`.
    pub name: String,
    /// Which driver talks to it: `demo-http` (the demo retailer's JSON API) or
    /// `browser` (its web pages, through `recipe`, in headless Chromium).
    pub driver: String,
    /// Where the driver reaches the store.
    pub base_url: String,
    /// Product-URL hosts (`host` or `host:port`) this retailer serves; the host of
    /// `base_url` is always included.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Whether test keys may order from it (only stores where nothing real is bought).
    #[serde(default)]
    pub sandbox: bool,
    /// First wait between tracking checks after placement; later checks back off.
    #[serde(default = "default_tracking_interval")]
    pub tracking_interval_seconds: f64,
    /// The longest wait between tracking checks.
    #[serde(default = "default_tracking_max_interval")]
    pub tracking_max_interval_seconds: f64,
    /// Per-request timeout for calls to the store.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// The `browser` driver's recipe: a file, or `builtin:demo` for the demo store's.
    #[serde(default)]
    pub recipe: Option<String>,
    /// The e-mail a guest-checkout recipe gives the store.
    #[serde(default)]
    pub guest_email: Option<String>,
}

fn default_tracking_interval() -> f64 {
    1800.0
}
fn default_tracking_max_interval() -> f64 {
    6.0 * 3600.0
}
fn default_timeout() -> f64 {
    30.0
}

impl RetailerSettings {
    /// The demo retailer at `base_url`, with tracking paced to its clock (`time_scale`
    /// store seconds per real second): first check after a store hour, at most a store
    /// day apart.
    pub fn demo(base_url: &str, time_scale: f64) -> RetailerSettings {
        RetailerSettings {
            name: "demo".into(),
            driver: "demo-http".into(),
            base_url: base_url.trim_end_matches('/').to_string(),
            hosts: vec![],
            sandbox: true,
            tracking_interval_seconds: (3600.0 / time_scale).max(0.05),
            tracking_max_interval_seconds: (86400.0 / time_scale).max(0.05),
            timeout_seconds: default_timeout(),
            recipe: None,
            guest_email: None,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds)
    }
}

/// A configured retailer with its driver.
pub struct Retailer {
    pub settings: RetailerSettings,
    pub driver: Arc<dyn Driver>,
}

#[derive(Clone, Default)]
pub struct Registry {
    by_name: BTreeMap<String, Arc<Retailer>>,
    by_host: BTreeMap<String, Arc<Retailer>>,
}

/// Why a product URL cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unserved {
    /// No configured retailer serves the URL's host.
    UnknownRetailer,
    /// The retailer serves the host, but the URL is not a product page.
    NotAProduct(String),
}

fn host_key(url: &url::Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

impl Registry {
    /// The retailers, checked; `browser` retailers share one Chromium, started on
    /// first use.
    pub fn new(
        retailers: &[RetailerSettings],
        browser: &BrowserSettings,
    ) -> anyhow::Result<Registry> {
        let chromium = Chromium::new(&browser.chromium_path, browser.browser_concurrency);
        let mut registry = Registry::default();
        for settings in retailers {
            let name = &settings.name;
            if name.trim().is_empty() || registry.by_name.contains_key(name) {
                bail!(
                    "invalid configuration: retailer names must be unique and not blank ({name:?})"
                );
            }
            let base = url::Url::parse(&settings.base_url).with_context(|| {
                format!("invalid configuration: retailer {name:?} has an invalid base_url")
            })?;
            if !(settings.timeout_seconds > 0.0 && settings.tracking_interval_seconds > 0.0) {
                bail!(
                    "invalid configuration: retailer {name:?} needs positive timeout_seconds and tracking_interval_seconds"
                );
            }
            let driver: Arc<dyn Driver> = match settings.driver.as_str() {
                "demo-http" => {
                    Arc::new(DemoHttpDriver::new(name, base.clone(), settings.timeout())?)
                }
                "browser" => {
                    let Some(source) = &settings.recipe else {
                        bail!(
                            "invalid configuration: retailer {name:?} uses the browser driver and needs a recipe (a file, or builtin:demo)"
                        );
                    };
                    let recipe = match source.as_str() {
                        "builtin:demo" => Recipe::parse(source, crate::recipes::DEMO_RECIPE),
                        path => Recipe::load(std::path::Path::new(path)),
                    }
                    .map_err(|e| {
                        anyhow::anyhow!("invalid configuration: retailer {name:?}: {e}")
                    })?;
                    Arc::new(BrowserDriver::new(
                        name,
                        recipe,
                        base.clone(),
                        chromium.clone(),
                        browser.step_timeout(),
                        settings.guest_email.clone(),
                    ))
                }
                other => bail!(
                    "invalid configuration: retailer {name:?} has unknown driver {other:?} (known: demo-http, browser)"
                ),
            };
            let retailer = Arc::new(Retailer {
                settings: settings.clone(),
                driver,
            });
            let hosts = host_key(&base)
                .into_iter()
                .chain(settings.hosts.iter().map(|h| h.trim().to_ascii_lowercase()));
            for host in hosts {
                if let Some(other) = registry.by_host.insert(host.clone(), retailer.clone())
                    && other.settings.name != *name
                {
                    bail!(
                        "invalid configuration: host {host:?} is served by both {:?} and {name:?}",
                        other.settings.name
                    );
                }
            }
            registry.by_name.insert(name.clone(), retailer);
        }
        Ok(registry)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Retailer>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The retailer serving a product URL.
    pub fn for_url(&self, url: &str) -> Result<&Arc<Retailer>, Unserved> {
        let parsed = url::Url::parse(url).map_err(|_| Unserved::UnknownRetailer)?;
        let host = host_key(&parsed).ok_or(Unserved::UnknownRetailer)?;
        let retailer = self.by_host.get(&host).ok_or(Unserved::UnknownRetailer)?;
        match retailer.driver.product_id(&parsed) {
            Some(_) => Ok(retailer),
            None => Err(Unserved::NotAProduct(retailer.settings.name.clone())),
        }
    }

    /// "a, b and c" or "none": for messages.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.by_name.keys().map(|n| format!("{n:?}")).collect();
        match names.len() {
            0 => "none".into(),
            1 => names[0].clone(),
            n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
        }
    }
}
