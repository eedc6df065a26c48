//! One headless Chromium per process, started on first use, and an isolated browser
//! context (its own cookies, storage and cache) per checkout.
//!
//! Errand starts Chromium itself rather than through the CDP crate's launcher so that
//! the browser dies with Errand: the child is told (`PR_SET_PDEATHSIG`) to exit when
//! its parent does, so a killed Errand leaves no browser behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// How long Chromium may take to start and print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Window size of every page (desktop layout: stores show mobile layouts below ~1000 px).
const WINDOW: (u32, u32) = (1280, 1000);

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("cannot start Chromium at {path}: {reason}")]
    Launch { path: PathBuf, reason: String },
    #[error("the browser failed: {0}")]
    Cdp(#[from] chromiumoxide::error::CdpError),
}

/// A shared headless Chromium with at most `max_checkouts` contexts open at once.
#[derive(Clone)]
pub struct Chromium {
    inner: Arc<Inner>,
}

struct Inner {
    executable: PathBuf,
    slots: Arc<Semaphore>,
    running: Mutex<Option<Running>>,
}

/// A started browser process and its CDP connection.
struct Running {
    browser: Arc<Browser>,
    child: Child,
    handler: JoinHandle<()>,
    /// The profile directory: removed when the browser stops.
    _profile: tempfile::TempDir,
}

/// A checkout's own browser context and page; [`Checkout::close`] disposes of it (its
/// cookies and storage go with it).
pub struct Checkout {
    pub page: Page,
    context: chromiumoxide::cdp::browser_protocol::browser::BrowserContextId,
    browser: Arc<Browser>,
    _slot: OwnedSemaphorePermit,
}

impl Chromium {
    pub fn new(executable: &Path, max_checkouts: usize) -> Chromium {
        Chromium {
            inner: Arc::new(Inner {
                executable: executable.to_path_buf(),
                slots: Arc::new(Semaphore::new(max_checkouts.max(1))),
                running: Mutex::new(None),
            }),
        }
    }

    /// Opens a fresh context with one blank page, waiting for a free slot; starts the
    /// browser if it is not running (or has died).
    pub async fn checkout(&self) -> Result<Checkout, BrowserError> {
        let slot = self
            .inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let browser = self.browser().await?;
        let context = browser
            .create_browser_context(CreateBrowserContextParams::default())
            .await?;
        let page = browser
            .new_page(
                CreateTargetParams::builder()
                    .url("about:blank")
                    .browser_context_id(context.clone())
                    .build()
                    .expect("url is set"),
            )
            .await;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                let _ = browser.dispose_browser_context(context).await;
                return Err(e.into());
            }
        };
        Ok(Checkout {
            page,
            context,
            browser,
            _slot: slot,
        })
    }

    /// The running browser, started (again) when needed.
    async fn browser(&self) -> Result<Arc<Browser>, BrowserError> {
        let mut running = self.inner.running.lock().await;
        if let Some(r) = running.as_mut() {
            if r.child.try_wait().ok().flatten().is_none() && !r.handler.is_finished() {
                return Ok(r.browser.clone());
            }
            tracing::warn!("Chromium exited; starting it again");
            if let Some(old) = running.take() {
                old.stop().await;
            }
        }
        let started = Running::start(&self.inner.executable).await?;
        let browser = started.browser.clone();
        *running = Some(started);
        Ok(browser)
    }

    /// Closes the browser and waits for its process to exit.
    pub async fn shutdown(&self) {
        if let Some(running) = self.inner.running.lock().await.take() {
            running.stop().await;
        }
    }

    /// The browser's process id, while it runs.
    pub async fn pid(&self) -> Option<u32> {
        self.inner
            .running
            .lock()
            .await
            .as_ref()
            .and_then(|r| r.child.id())
    }
}

impl Checkout {
    /// Disposes of the context and its pages.
    pub async fn close(self) {
        if let Err(e) = self
            .browser
            .dispose_browser_context(self.context.clone())
            .await
        {
            tracing::debug!(error = %e, "disposing of a browser context failed");
        }
    }
}

impl Running {
    async fn start(executable: &Path) -> Result<Running, BrowserError> {
        let launch_error = |reason: String| BrowserError::Launch {
            path: executable.to_path_buf(),
            reason,
        };
        let profile = tempfile::Builder::new()
            .prefix("errand-chromium-")
            .tempdir()
            .map_err(|e| launch_error(format!("cannot create a profile directory: {e}")))?;
        let mut command = Command::new(executable);
        command
            .args(chromium_flags(profile.path()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| launch_error(e.to_string()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let address = tokio::time::timeout(LAUNCH_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix("DevTools listening on ") {
                    return Some(address.trim().to_string());
                }
            }
            None
        })
        .await;
        let address = match address {
            Ok(Some(address)) => address,
            Ok(None) => {
                let _ = child.kill().await;
                return Err(launch_error("it exited before it was ready".into()));
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(launch_error(format!(
                    "it was not ready within {} s",
                    LAUNCH_TIMEOUT.as_secs()
                )));
            }
        };
        // Keep reading its output so that the pipe never fills and blocks it.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::trace!(target: "chromium", "{line}");
            }
        });
        let config = HandlerConfig {
            // A store with a bad certificate is not a store to pay on.
            ignore_https_errors: false,
            viewport: None,
            ..HandlerConfig::default()
        };
        let (browser, mut handler) = match Browser::connect_with_config(address, config).await {
            Ok(connected) => connected,
            Err(e) => {
                let _ = child.kill().await;
                return Err(e.into());
            }
        };
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::debug!(error = %e, "browser connection event");
                }
            }
        });
        tracing::info!(pid = child.id(), "Chromium started");
        Ok(Running {
            browser: Arc::new(browser),
            child,
            handler,
            _profile: profile,
        })
    }

    async fn stop(mut self) {
        // `close` needs the browser alone: contexts still open hold clones.
        if let Some(browser) = Arc::get_mut(&mut self.browser) {
            let _ = tokio::time::timeout(Duration::from_secs(5), browser.close()).await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        self.handler.abort();
    }
}

/// Flags for a headless browser that talks to nothing but the stores it is sent to.
fn chromium_flags(profile: &Path) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--headless",
        "--remote-debugging-port=0",
        "--disable-gpu",
        "--disable-quic",
        "--disable-component-update",
        "--disable-background-networking",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--metrics-recording-only",
        "--mute-audio",
        "--no-first-run",
        "--no-default-browser-check",
        "--password-store=basic",
        "--use-mock-keychain",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    flags.push(format!("--window-size={},{}", WINDOW.0, WINDOW.1));
    flags.push(format!("--user-data-dir={}", profile.display()));
    // Chromium refuses to run as root with its sandbox (containers, CI).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        flags.push("--no-sandbox".into());
    }
    flags
}
