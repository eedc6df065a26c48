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

/// How the browser driver runs Chromium (from the configuration).
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    pub chromium_path: PathBuf,
    /// Checkouts open at once in the one browser.
    pub concurrency: usize,
    /// How long a step waits for its element, URL or page.
    pub step_timeout: Duration,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions::from_settings(&crate::config::Settings::default())
    }
}

impl BrowserOptions {
    pub fn from_settings(settings: &crate::config::Settings) -> BrowserOptions {
        BrowserOptions {
            chromium_path: settings.chromium_path.clone(),
            concurrency: settings.browser_concurrency,
            step_timeout: Duration::from_secs_f64(settings.browser_step_timeout_seconds),
        }
    }
}
