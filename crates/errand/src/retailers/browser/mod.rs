//! Buying through a store's web pages: a recipe (see `crate::recipes`) run in headless
//! Chromium.

pub mod chromium;
pub mod driver;
pub mod runner;
pub mod trial;

use std::path::PathBuf;
use std::time::Duration;

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
        BrowserOptions {
            chromium_path: PathBuf::from("/usr/bin/chromium"),
            concurrency: 4,
            step_timeout: Duration::from_secs(15),
        }
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
