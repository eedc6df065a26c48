//! Buying through a store's web pages: a recipe (see `crate::recipes`) run in headless
//! Chromium.

pub mod chromium;
pub mod driver;
pub mod runner;
pub mod trial;

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// Debian's `chromium` package.
pub const DEFAULT_CHROMIUM_PATH: &str = "/usr/bin/chromium";
/// How long a recipe step waits for its element, URL or page, unless it says.
pub const DEFAULT_STEP_TIMEOUT_SECONDS: f64 = 15.0;
/// The step timeouts allowed, in seconds.
pub const STEP_TIMEOUT_SECONDS: RangeInclusive<f64> = 0.1..=600.0;

/// How the browser driver runs Chromium (flattened into the configuration's keys).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BrowserSettings {
    /// The Chromium the `browser` driver runs (Debian's `chromium` package).
    pub chromium_path: PathBuf,
    /// Browser checkouts open at once in each process (each an isolated context in one
    /// Chromium).
    pub browser_concurrency: usize,
    /// How long a recipe step waits for its element, URL or page.
    pub browser_step_timeout_seconds: f64,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        BrowserSettings {
            chromium_path: PathBuf::from(DEFAULT_CHROMIUM_PATH),
            browser_concurrency: 4,
            browser_step_timeout_seconds: DEFAULT_STEP_TIMEOUT_SECONDS,
        }
    }
}

impl BrowserSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=64).contains(&self.browser_concurrency) {
            anyhow::bail!("invalid configuration: browser_concurrency must be between 1 and 64");
        }
        if !STEP_TIMEOUT_SECONDS.contains(&self.browser_step_timeout_seconds) {
            anyhow::bail!(
                "invalid configuration: browser_step_timeout_seconds must be between {} and {}",
                STEP_TIMEOUT_SECONDS.start(),
                STEP_TIMEOUT_SECONDS.end()
            );
        }
        Ok(())
    }

    pub fn step_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.browser_step_timeout_seconds)
    }
}
