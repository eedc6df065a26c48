//! Runs a recipe's phases on one page: finds elements as the recipe names them, acts,
//! waits for the pages it causes, reads values, takes screenshots, and turns what went
//! wrong into an `error_type` (the recipe's detectors, or the failing step's own).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::page::ScreenshotParams;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value as Json, json};

use crate::orders::address::Address;
use crate::orders::model::{ErrorType, Variant};
use crate::recipes::Recipe;
use crate::recipes::model::{Action, Expectation, Phase, Step, Target, WaitFor};
use crate::recipes::template::{
    AccountValues, Context, Escape, ItemValues, LineValues, OrderValues, ReturnValues, Template,
};
use crate::recipes::values::{self, Value};
use crate::retailers::ReturnLine;
use crate::storage::Timestamp;

/// The helpers every page script starts with.
const PAGE_JS: &str = include_str!("page.js");
/// How often a step looks again for its element.
const POLL: Duration = Duration::from_millis(25);
/// How long after a click a navigation may take to begin before the click is taken
/// to have stayed on the page.
const NAVIGATION_GRACE: Duration = Duration::from_millis(1000);

/// What the order gives the recipe's templates.
#[derive(Clone)]
pub struct OrderInputs {
    pub shipping: Address,
    pub reference: String,
    pub is_gift: bool,
    pub gift_message: Option<String>,
    pub po_number: Option<String>,
    pub handling_days_max: Option<i64>,
    pub merchant_order_id: Option<String>,
    pub email: String,
    pub password: Option<String>,
    /// The account's authenticator secret (base32), for `account.totp`.
    pub totp_secret: Option<String>,
    pub items: Vec<ItemInput>,
}

#[derive(Clone)]
pub struct ItemInput {
    pub url: String,
    pub quantity: i32,
    /// The seller's offer to choose, when not the page's own.
    pub offer_id: Option<String>,
    pub variant: Vec<Variant>,
}

/// What a return gives the return phases' templates (`return.*`, `line.*`).
#[derive(Clone, Default)]
pub struct ReturnInputs {
    /// Our id of the return, given to the store as its reference.
    pub reference: String,
    /// The reason as the store words it (see `Recipe::return_reason`).
    pub reason: String,
    pub notes: Option<String>,
    /// The store's id of the return, for `return_status`.
    pub merchant_return_id: Option<String>,
    pub lines: Vec<ReturnLine>,
}

/// What a page's `fetch` of a URL got.
#[derive(Debug, Clone)]
pub struct Download {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Why a phase could not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The store said why (a detector fired) or the failing step names its
    /// `error_type`: the order fails with it.
    #[error("{message}")]
    Detected {
        error_type: ErrorType,
        message: String,
        /// The order item whose steps failed (in the `product` phase, or inside
        /// `for_each_item`).
        item: Option<usize>,
        /// How many units the store would sell, when a detector's `available` says.
        available: Option<i32>,
    },
    /// A step failed and nothing says why: the page is not what the recipe expects.
    #[error("{0}")]
    Step(String),
}

impl Failure {
    pub fn error_type(&self) -> Option<ErrorType> {
        match self {
            Failure::Detected { error_type, .. } => Some(*error_type),
            Failure::Step(_) => None,
        }
    }
}

/// What one step did, for `errand recipes try` and the order's diagnosis.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub phase: Phase,
    pub line: usize,
    pub action: &'static str,
    pub elapsed: Duration,
    /// The text a `read` found, or why the step was skipped.
    pub note: Option<String>,
}

/// A value a `read` step took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    One(Value),
    List(Vec<Value>),
}

/// A recipe at work on one page, keeping what it read from phase to phase.
pub struct Runner {
    page: Page,
    recipe: Arc<Recipe>,
    base_url: url::Url,
    pub inputs: OrderInputs,
    /// The return the return phases are about.
    pub returning: Option<ReturnInputs>,
    step_timeout: Duration,
    /// The phase running: its detectors are watched while a step waits.
    phase: Phase,
    /// The text of every read, by name (templates use them as `values.<name>`).
    texts: BTreeMap<String, String>,
    /// Every read's parsed value, by name.
    pub values: BTreeMap<String, Read>,
    pub screenshots: Vec<(String, Vec<u8>)>,
    pub report: Vec<StepReport>,
    /// Told of each step as it starts and ends (`errand recipes try` shows them live).
    progress: Option<tokio::sync::mpsc::UnboundedSender<Progress>>,
    /// No step of the place phase starts after this (see [`crate::retailers::too_late`]).
    pub send_by: Option<Timestamp>,
}

/// A step starting or ending, for a live view of a run.
#[derive(Debug, Clone)]
pub enum Progress {
    Started {
        phase: Phase,
        line: usize,
        action: &'static str,
    },
    Finished(StepReport),
}

/// Where in the order's loops a step runs.
#[derive(Clone, Copy, Default)]
struct Scope {
    item: Option<usize>,
    variant: Option<usize>,
    /// The return's line, inside `for_each_return_line`.
    line: Option<usize>,
}

/// Why an action did not happen (yet).
enum ActError {
    /// The element, URL or text it waits for did not come in time.
    Timeout(String),
    /// The page answered, but not as the step needs.
    Wrong(String),
    /// A step inside a loop or group failed, already explained.
    Nested(Failure),
}

impl ActError {
    fn message(self) -> String {
        match self {
            ActError::Timeout(m) | ActError::Wrong(m) => m,
            ActError::Nested(failure) => failure.to_string(),
        }
    }
}

impl Runner {
    pub fn new(
        page: Page,
        recipe: Arc<Recipe>,
        base_url: url::Url,
        inputs: OrderInputs,
        step_timeout: Duration,
    ) -> Runner {
        Runner {
            page,
            recipe,
            base_url,
            inputs,
            returning: None,
            step_timeout,
            phase: Phase::Product,
            texts: BTreeMap::new(),
            values: BTreeMap::new(),
            screenshots: vec![],
            report: vec![],
            progress: None,
            send_by: None,
        }
    }

    /// Sends every step's start and end to `progress`.
    pub fn with_progress(
        mut self,
        progress: tokio::sync::mpsc::UnboundedSender<Progress>,
    ) -> Runner {
        self.progress = Some(progress);
        self
    }

    /// Gives the return phases their return.
    pub fn with_return(mut self, returning: ReturnInputs) -> Runner {
        self.returning = Some(returning);
        self
    }

    /// Runs a phase; `item` is the item the `product` phase is about.
    pub async fn run_phase(&mut self, phase: Phase, item: Option<usize>) -> Result<(), Failure> {
        let recipe = self.recipe.clone();
        let Some(steps) = recipe.phase(phase) else {
            return Ok(());
        };
        self.phase = phase;
        let scope = Scope {
            item,
            ..Scope::default()
        };
        self.run_steps(phase, steps, scope).await?;
        // A store that says no on the page a phase ends on has still said no.
        match self.detect(phase, scope).await {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    /// A money value read by a phase, in minor units.
    pub fn money(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some(Read::One(Value::Money(cents))) => Some(*cents),
            _ => None,
        }
    }

    /// A text value read by a phase.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.texts
            .get(name)
            .map(String::as_str)
            .filter(|t| !t.is_empty())
    }

    /// The screenshots taken so far, handed over (each once).
    pub fn take_artifacts(&mut self) -> Vec<crate::retailers::Artifact> {
        self.screenshots
            .drain(..)
            .map(|(name, png)| crate::retailers::Artifact::png(&name, png))
            .collect()
    }

    /// A screenshot of the whole page as it is now.
    pub async fn screenshot(&self) -> Option<Vec<u8>> {
        self.page
            .screenshot(
                ScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .full_page(true)
                    .build(),
            )
            .await
            .ok()
    }

    /// The page as it is now, for the order's diagnosis.
    pub async fn page_html(&self) -> Option<String> {
        self.page.content().await.ok()
    }

    /// The address of the page as it is now.
    pub async fn page_url(&self) -> Option<url::Url> {
        let url = self.page.url().await.ok().flatten()?;
        url::Url::parse(&url).ok()
    }

    /// Fetches `url` from the page, as the store's own scripts would: with the
    /// session's cookies, whatever the answer. The page first goes to the URL's site if
    /// it is elsewhere, so that the answer may be read.
    pub async fn download(&self, url: &url::Url) -> Result<Download, String> {
        let timeout = self.step_timeout;
        let here = self.page_url().await.map(|u| u.origin());
        if here.as_ref() != Some(&url.origin()) {
            let root = url.join("/").map_err(|e| e.to_string())?;
            tokio::time::timeout(timeout, self.page.goto(root.as_str()))
                .await
                .map_err(|_| format!("{root} did not load in time"))?
                .map_err(|e| format!("cannot open {root}: {e}"))?;
        }
        // The body comes back as base64, in slices small enough to spread as arguments.
        let script = format!(
            "return fetch({}, {{credentials: 'include'}}).then(async (answer) => {{
               const bytes = new Uint8Array(await answer.arrayBuffer());
               let binary = '';
               for (let i = 0; i < bytes.length; i += 0x8000) {{
                 binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
               }}
               return {{status: answer.status, type: answer.headers.get('content-type') || '', body: btoa(binary)}};
             }}).catch((error) => ({{error: String(error)}}));",
            json!(url.as_str())
        );
        let answer = tokio::time::timeout(timeout, self.eval(&script))
            .await
            .map_err(|_| format!("{url} did not answer in time"))?
            .ok_or_else(|| "the page could not fetch it".to_string())?;
        if let Some(error) = answer["error"].as_str() {
            return Err(error.to_string());
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(answer["body"].as_str().unwrap_or_default())
            .map_err(|e| format!("the page's copy of the answer is garbled: {e}"))?;
        Ok(Download {
            status: answer["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0),
            content_type: answer["type"].as_str().unwrap_or_default().to_string(),
            body,
        })
    }

    fn run_steps<'s>(
        &'s mut self,
        phase: Phase,
        steps: &'s [Step],
        scope: Scope,
    ) -> BoxFuture<'s, Result<(), Failure>> {
        async move {
            for step in steps {
                self.run_step(phase, step, scope).await?;
            }
            Ok(())
        }
        .boxed()
    }

    async fn run_step(&mut self, phase: Phase, step: &Step, scope: Scope) -> Result<(), Failure> {
        if phase == Phase::Place
            && let Some(send_by) = self.send_by
            && let Some(message) = crate::retailers::too_late(send_by)
        {
            // An earlier step may have been the final click: the engine asks the store.
            return Err(Failure::Step(message));
        }
        let started = Instant::now();
        if let Some(progress) = &self.progress {
            let _ = progress.send(Progress::Started {
                phase,
                line: step.location.line,
                action: step.action.key(),
            });
        }
        let skip = |why: &str| Some(format!("skipped: {why}"));
        let note = if let Some(var) = &step.if_set
            && self.context(scope).get(var).is_none()
        {
            skip(&format!("{var} has no value"))
        } else if let Some(target) = &step.if_present
            && !self.present(target, scope).await?
        {
            skip("the element is not on the page")
        } else {
            let mut attempt = 0;
            loop {
                match self.act(phase, step, scope).await {
                    Ok(note) => break note,
                    Err(_) if attempt < step.retries => attempt += 1,
                    Err(error) if step.optional => break skip(&error.message()),
                    // The inner step said why; the loop or group adds nothing.
                    Err(ActError::Nested(failure)) => {
                        self.note(phase, step, started, Some(failure.to_string()));
                        return Err(failure);
                    }
                    Err(error) => {
                        let failure = self.explain(phase, step, scope, error.message()).await;
                        self.note(phase, step, started, Some(failure.to_string()));
                        return Err(failure);
                    }
                }
            }
        };
        self.note(phase, step, started, note);
        Ok(())
    }

    fn note(&mut self, phase: Phase, step: &Step, started: Instant, note: Option<String>) {
        let report = StepReport {
            phase,
            line: step.location.line,
            action: step.action.key(),
            elapsed: started.elapsed(),
            note,
        };
        if let Some(progress) = &self.progress {
            let _ = progress.send(Progress::Finished(report.clone()));
        }
        self.report.push(report);
    }

    /// Does what the step says; returns a note for the report (what a read found).
    async fn act(
        &mut self,
        phase: Phase,
        step: &Step,
        scope: Scope,
    ) -> Result<Option<String>, ActError> {
        let timeout = step
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.step_timeout);
        match &step.action {
            Action::Goto(template) => {
                let target = self.render(template, scope, Escape::None)?;
                let url = self
                    .base_url
                    .join(&target)
                    .map_err(|e| ActError::Wrong(format!("{target:?} is not a URL: {e}")))?;
                tokio::time::timeout(timeout, self.page.goto(url.as_str()))
                    .await
                    .map_err(|_| ActError::Timeout(format!("{url} did not load in time")))?
                    .map_err(|e| ActError::Wrong(format!("cannot open {url}: {e}")))?;
                Ok(None)
            }
            Action::Click(target) => {
                let token = rand::random::<u64>().to_string();
                let script = format!(
                    "markDocument(); window.__errandToken = {token:?};
                     el.scrollIntoView({{block: 'center'}}); el.click();
                     return {{may_navigate: !!el.closest('a[href]') || (!!el.form && (el.type === 'submit' || el.type === 'image'))}};"
                );
                let result = self.on_element(target, scope, &script, timeout).await?;
                if result["may_navigate"].as_bool() == Some(true) {
                    self.settle(&token, timeout).await?;
                }
                Ok(None)
            }
            Action::Fill { target, value } => {
                let value = self.render(value, scope, Escape::None)?;
                let script = format!("el.focus(); setValue(el, {}); return true;", json!(value));
                self.on_element(target, scope, &script, timeout).await?;
                Ok(None)
            }
            Action::Select { target, value } => {
                let value = self.render(value, scope, Escape::None)?;
                let script = format!(
                    "const want = norm({});
                     const option = [...el.options].find(o => norm(o.value) === want || norm(o.text) === want);
                     if (!option) return {{missing: [...el.options].map(o => o.text)}};
                     setValue(el, option.value); return {{}};",
                    json!(value)
                );
                let result = self.on_element(target, scope, &script, timeout).await?;
                if let Some(options) = result.get("missing") {
                    return Err(ActError::Wrong(format!(
                        "no option {value:?} (there are {options})"
                    )));
                }
                Ok(None)
            }
            Action::Check(target) | Action::Uncheck(target) => {
                let want = matches!(step.action, Action::Check(_));
                let script = format!("if (el.checked !== {want}) el.click(); return true;");
                self.on_element(target, scope, &script, timeout).await?;
                Ok(None)
            }
            Action::WaitFor(WaitFor::Element(target)) => {
                self.on_element(target, scope, "return true;", timeout)
                    .await?;
                Ok(None)
            }
            Action::WaitFor(WaitFor::UrlContains(template)) => {
                let want = self.render(template, scope, Escape::None)?;
                let deadline = Instant::now() + timeout;
                loop {
                    let url = self.page.url().await.ok().flatten().unwrap_or_default();
                    if url.contains(&want) && self.loaded().await {
                        return Ok(None);
                    }
                    if let Some(error) = no_answer(&url) {
                        return Err(error);
                    }
                    if let Some(failure) = self.detect(phase, scope).await {
                        return Err(ActError::Nested(failure));
                    }
                    if Instant::now() > deadline {
                        return Err(ActError::Timeout(format!(
                            "the page's URL did not come to contain {want:?} (it is {url})"
                        )));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            Action::Read(read) => {
                let attribute = json!(read.attribute);
                let texts: Vec<String> = if read.all {
                    let target = self.target_json(&read.target, scope)?;
                    let script =
                        format!("return findAll({target}).map(el => textOf(el, {attribute}));");
                    serde_json::from_value(self.eval(&script).await.unwrap_or_default())
                        .unwrap_or_default()
                } else {
                    let script = format!("return [textOf(el, {attribute})];");
                    let found = self
                        .on_element(&read.target, scope, &script, timeout)
                        .await?;
                    serde_json::from_value(found).unwrap_or_default()
                };
                let mut parsed = Vec::with_capacity(texts.len());
                for text in &texts {
                    parsed.push(
                        values::parse(read.parse, text, self.recipe.currency)
                            .map_err(|e| ActError::Wrong(e.to_string()))?,
                    );
                }
                let joined = texts
                    .iter()
                    .map(|t| values::normalise_text(t))
                    .collect::<Vec<_>>()
                    .join("\n");
                self.texts.insert(read.into.clone(), joined.clone());
                let value = if read.all {
                    Read::List(parsed)
                } else {
                    Read::One(parsed.remove(0))
                };
                self.values.insert(read.into.clone(), value);
                Ok(Some(format!("{} = {joined:?}", read.into)))
            }
            Action::Assert { target, expect } => {
                let (kind, want) = match expect {
                    Expectation::Present => ("present", String::new()),
                    Expectation::Equals(t) => ("equals", self.render(t, scope, Escape::None)?),
                    Expectation::Contains(t) => ("contains", self.render(t, scope, Escape::None)?),
                };
                let script = format!(
                    "const text = norm(textOf(el)); const want = norm({});
                     return {{ok: {kind:?} === 'present' || ({kind:?} === 'equals' ? text === want : text.includes(want)), text}};",
                    json!(want)
                );
                let deadline = Instant::now() + timeout;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let result = self.on_element(target, scope, &script, left).await?;
                    if result["ok"].as_bool() == Some(true) {
                        return Ok(None);
                    }
                    if Instant::now() > deadline {
                        return Err(ActError::Wrong(format!(
                            "the element's text is {} where {kind} {want:?} was expected",
                            result["text"]
                        )));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            Action::Screenshot(name) => {
                let png = self
                    .screenshot()
                    .await
                    .ok_or_else(|| ActError::Wrong("cannot take a screenshot".into()))?;
                let name = match scope.item {
                    Some(i) if i > 0 => format!("{name}-{}", i + 1),
                    _ => name.clone(),
                };
                self.screenshots.retain(|(n, _)| *n != name);
                self.screenshots.push((name, png));
                Ok(None)
            }
            Action::ForEachItem(steps) => {
                for item in 0..self.inputs.items.len() {
                    let scope = Scope {
                        item: Some(item),
                        ..Scope::default()
                    };
                    self.run_steps(phase, steps, scope)
                        .await
                        .map_err(ActError::Nested)?;
                }
                Ok(None)
            }
            Action::ForEachVariant(steps) => {
                let item = scope.item.map(|i| &self.inputs.items[i]);
                for variant in 0..item.map_or(0, |i| i.variant.len()) {
                    let scope = Scope {
                        variant: Some(variant),
                        ..scope
                    };
                    self.run_steps(phase, steps, scope)
                        .await
                        .map_err(ActError::Nested)?;
                }
                Ok(None)
            }
            Action::ForEachReturnLine(steps) => {
                let lines = self.returning.as_ref().map_or(0, |r| r.lines.len());
                for line in 0..lines {
                    let scope = Scope {
                        line: Some(line),
                        ..scope
                    };
                    self.run_steps(phase, steps, scope)
                        .await
                        .map_err(ActError::Nested)?;
                }
                Ok(None)
            }
            Action::Do(steps) => {
                self.run_steps(phase, steps, scope)
                    .await
                    .map_err(ActError::Nested)?;
                Ok(None)
            }
        }
    }

    /// Runs `body` (a script that sees the element as `el`) once the target is on the
    /// page, waiting for it up to `timeout`.
    async fn on_element(
        &self,
        target: &Target,
        scope: Scope,
        body: &str,
        timeout: Duration,
    ) -> Result<Json, ActError> {
        let target_json = self.target_json(target, scope)?;
        let script = format!("const el = find({target_json}); if (!el) return null; {body}");
        let deadline = Instant::now() + timeout;
        let mut looks = 0u32;
        loop {
            // A page being replaced cannot run scripts: that is "not yet".
            if let Some(result) = self.eval(&script).await
                && !result.is_null()
            {
                return Ok(result);
            }
            // A store that has said no will not show the element: stop waiting.
            looks += 1;
            if looks.is_multiple_of(4) {
                if let Some(failure) = self.detect(self.phase, scope).await {
                    return Err(ActError::Nested(failure));
                }
                let url = self.page.url().await.ok().flatten().unwrap_or_default();
                if let Some(error) = no_answer(&url) {
                    return Err(error);
                }
            }
            if Instant::now() > deadline {
                return Err(ActError::Timeout(format!(
                    "no {} within {} ms",
                    describe(target),
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the target is on the page right now.
    async fn present(&self, target: &Target, scope: Scope) -> Result<bool, Failure> {
        let target = self
            .target_json(target, scope)
            .map_err(|e| Failure::Step(e.message()))?;
        Ok(self.eval(&format!("return find({target}) !== null;")).await == Some(json!(true)))
    }

    /// After a click that may leave the page: waits for the next page to load, or
    /// for the grace period to pass without a navigation beginning.
    async fn settle(&self, token: &str, timeout: Duration) -> Result<(), ActError> {
        let started = Instant::now();
        let script = format!(
            "return {{same: window.__errandToken === {token:?}, leaving: !!window.__errandNavigating, ready: document.readyState}};"
        );
        let mut navigating = false;
        loop {
            match self.eval(&script).await {
                Some(state) if state["same"] == json!(true) => {
                    navigating |= state["leaving"] == json!(true);
                    if !navigating && started.elapsed() > NAVIGATION_GRACE {
                        return Ok(());
                    }
                }
                Some(state) if state["ready"] == json!("complete") => return Ok(()),
                _ => navigating = true,
            }
            if started.elapsed() > timeout {
                return Err(ActError::Timeout(format!(
                    "the next page did not load within {} ms",
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the page has finished loading.
    async fn loaded(&self) -> bool {
        self.eval("return document.readyState;").await == Some(json!("complete"))
    }

    /// The first detector of the phase that matches the page, as a failure of the
    /// scope's item.
    async fn detect(&self, phase: Phase, scope: Scope) -> Option<Failure> {
        let detectors: Vec<Json> = self
            .recipe
            .detectors_for(phase)
            .map(|d| json!({"css": d.css, "text": d.text}))
            .collect();
        if detectors.is_empty() {
            return None;
        }
        let script = format!(
            "const detectors = {};
             return detectors.findIndex(d => {{
               if (d.css === null) return norm(document.body.innerText).includes(norm(d.text));
               return [...document.querySelectorAll(d.css)].some(el =>
                 d.text === null || norm(el.innerText).includes(norm(d.text)));
             }});",
            Json::Array(detectors)
        );
        let index = self.eval(&script).await?.as_i64()?;
        let detector = self
            .recipe
            .detectors_for(phase)
            .nth(usize::try_from(index).ok()?)?;
        let element = match &detector.css {
            Some(css) => format!("document.querySelector({})", json!(css)),
            None => "null".into(),
        };
        let said = self
            .eval(&format!(
                "const el = {element}; return el ? el.innerText.trim().slice(0, 300) : '';"
            ))
            .await
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty());
        let available = match &detector.available {
            Some(attribute) => self
                .eval(&format!(
                    "const el = {element}; return el ? el.getAttribute({}) : null;",
                    json!(attribute)
                ))
                .await
                .and_then(|v| v.as_str().and_then(|s| s.trim().parse::<i32>().ok())),
            None => None,
        };
        Some(Failure::Detected {
            item: scope.item,
            available,
            error_type: detector.error_type,
            message: match said {
                Some(said) => format!("the store says: {said}"),
                None => format!(
                    "the store's page matches the {} detector ({}:{})",
                    detector.error_type, self.recipe.file, detector.location
                ),
            },
        })
    }

    /// Why a step failed: what the store says (a detector), else the step's own
    /// `error_type`, else the step itself.
    async fn explain(&self, phase: Phase, step: &Step, scope: Scope, error: String) -> Failure {
        let at = format!(
            "{} step `{}` at {}:{}",
            phase,
            step.action.key(),
            self.recipe.file,
            step.location
        );
        if let Some(Failure::Detected {
            error_type,
            message,
            item,
            available,
        }) = self.detect(phase, scope).await
        {
            return Failure::Detected {
                error_type,
                message: format!("{message} ({at})"),
                item,
                available,
            };
        }
        match step.error_type {
            Some(error_type) => Failure::Detected {
                error_type,
                message: format!("{error} ({at})"),
                item: scope.item,
                available: None,
            },
            None => Failure::Step(format!("{error} ({at})")),
        }
    }

    /// Runs a script (with the page helpers) and returns what it returns; `None` when
    /// the page could not run it (it is being replaced).
    async fn eval(&self, body: &str) -> Option<Json> {
        // (The leading comment keeps the CDP crate from taking it for a function.)
        let script = format!("/* errand */ (() => {{ {PAGE_JS}\n{body} }})()");
        let result = self.page.evaluate(script).await.ok()?;
        Some(result.value().cloned().unwrap_or(Json::Null))
    }

    fn target_json(&self, target: &Target, scope: Scope) -> Result<Json, ActError> {
        Ok(match target {
            Target::Css(t) => json!({"css": self.render(t, scope, Escape::CssString)?}),
            Target::Text(t) => json!({"text": self.render(t, scope, Escape::None)?}),
            Target::Label(t) => json!({"label": self.render(t, scope, Escape::None)?}),
        })
    }

    fn render(
        &self,
        template: &Template,
        scope: Scope,
        escape: Escape,
    ) -> Result<String, ActError> {
        template
            .render(&self.context(scope), escape)
            .map_err(|e| ActError::Wrong(e.to_string()))
    }

    fn context(&self, scope: Scope) -> Context<'_> {
        let inputs = &self.inputs;
        let item = scope.item.and_then(|i| inputs.items.get(i));
        Context {
            shipping: &inputs.shipping,
            order: OrderValues {
                reference: &inputs.reference,
                is_gift: inputs.is_gift,
                gift_message: inputs.gift_message.as_deref(),
                po_number: inputs.po_number.as_deref(),
                handling_days_max: inputs.handling_days_max,
                merchant_order_id: inputs.merchant_order_id.as_deref(),
            },
            account: AccountValues {
                email: &inputs.email,
                password: inputs.password.as_deref(),
                totp: inputs.totp_secret.as_deref().and_then(current_totp),
            },
            item: item.map(|i| ItemValues {
                url: &i.url,
                quantity: i.quantity,
                offer_id: i.offer_id.as_deref(),
                variant: &i.variant,
            }),
            variant: item.zip(scope.variant).and_then(|(i, v)| i.variant.get(v)),
            returning: self.returning.as_ref().map(|r| ReturnValues {
                reference: &r.reference,
                reason: &r.reason,
                notes: r.notes.as_deref(),
                merchant_return_id: r.merchant_return_id.as_deref(),
            }),
            line: self
                .returning
                .as_ref()
                .zip(scope.line)
                .and_then(|(r, l)| r.lines.get(l))
                .map(|l| LineValues {
                    sku: &l.sku,
                    quantity: l.quantity,
                }),
            values: &self.texts,
        }
    }
}

/// The one-time code of an authenticator secret right now.
fn current_totp(secret: &str) -> Option<String> {
    let key = crate::retailers::totp::decode_base32(secret)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(crate::retailers::totp::code(&key, now))
}

/// Chromium goes to its own error page when a page cannot be loaded at all (refused,
/// reset, empty answer): waiting longer for an element there is pointless.
fn no_answer(url: &str) -> Option<ActError> {
    url.starts_with("chrome-error://").then(|| {
        ActError::Wrong(
            "the store did not answer (the browser shows its network error page)".into(),
        )
    })
}

fn describe(target: &Target) -> String {
    match target {
        Target::Css(t) => format!("element matching {:?}", t.source()),
        Target::Text(t) => format!("element with the text {:?}", t.source()),
        Target::Label(t) => format!("field labelled {:?}", t.source()),
    }
}
