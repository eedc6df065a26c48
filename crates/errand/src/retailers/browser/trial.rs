//! `errand recipes try`: runs a recipe on one real product up to its review page, in
//! headless Chromium, without placing anything. Each step is printed as it finishes,
//! with its time and what it read, and the screenshots are saved, so that a recipe for
//! a new store can be written and fixed in minutes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::chromium::Chromium;
use super::runner::{Failure, ItemInput, OrderInputs, Progress, Read, Runner, StepReport};
use crate::orders::address::Address;
use crate::orders::model::Variant;
use crate::recipes::model::Phase;
use crate::recipes::values::Value;
use crate::recipes::{AccountMode, Recipe};

/// The phases a try runs, in order: everything before the final click.
const PHASES: [Phase; 5] = [
    Phase::SignIn,
    Phase::Product,
    Phase::Cart,
    Phase::Checkout,
    Phase::Review,
];

pub struct Trial {
    pub recipe: Recipe,
    pub url: url::Url,
    pub variant: Vec<Variant>,
    pub quantity: i32,
    /// The account to sign in with, or the e-mail a guest checkout gives.
    pub email: Option<String>,
    pub password: Option<String>,
    pub totp_secret: Option<String>,
    pub chromium_path: PathBuf,
    pub step_timeout: Duration,
    /// Where the screenshots (and, after a failure, the page's HTML) go.
    pub output_dir: PathBuf,
}

/// How a try ended.
pub struct TrialOutcome {
    /// The phase that failed and why; `None` when the review page was reached.
    pub failure: Option<(Phase, Failure)>,
    pub files: Vec<PathBuf>,
}

/// The address a try ships to: a plausible US address (nothing is bought).
pub fn sample_address() -> Address {
    Address {
        first_name: "Grace".into(),
        last_name: "Hopper".into(),
        address_line1: "1701 Navy Way".into(),
        address_line2: None,
        city: "Arlington".into(),
        state: Some("VA".into()),
        postal_code: "22202".into(),
        phone_number: "(703) 555-0142".into(),
        country: "US".into(),
    }
}

impl Trial {
    /// Runs the try, printing steps to stdout and (on a terminal) a progress line to
    /// stderr.
    pub async fn run(self) -> anyhow::Result<TrialOutcome> {
        let host = self.url.host_str().unwrap_or_default();
        if !self.recipe.serves(host, self.url.port()) {
            bail!(
                "{} is on {host}, and recipe {:?} serves {}",
                self.url,
                self.recipe.name,
                self.recipe.hosts.join(", ")
            );
        }
        let signs_in = self.recipe.account == AccountMode::SignIn;
        if signs_in && (self.email.is_none() || self.password.is_none()) {
            bail!(
                "recipe {:?} signs in: give the account with --email and --password (or ERRAND_RECIPE_PASSWORD)",
                self.recipe.name
            );
        }
        let mut base = self.url.clone();
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);
        std::fs::create_dir_all(&self.output_dir)
            .with_context(|| format!("cannot create {}", self.output_dir.display()))?;

        let reference = format!("try-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let inputs = OrderInputs {
            shipping: sample_address(),
            reference: reference.clone(),
            is_gift: false,
            gift_message: None,
            po_number: None,
            handling_days_max: None,
            merchant_order_id: None,
            email: self.email.clone().unwrap_or_default(),
            password: self.password.clone(),
            totp_secret: self.totp_secret.clone(),
            items: vec![ItemInput {
                url: self.url.to_string(),
                quantity: self.quantity,
                offer_id: None,
                variant: self.variant.clone(),
            }],
        };
        let variant = if self.variant.is_empty() {
            "no variant".to_string()
        } else {
            let chosen: Vec<String> = self
                .variant
                .iter()
                .map(|v| format!("{}={}", v.label, v.value))
                .collect();
            format!("variant {}", chosen.join(", "))
        };
        println!(
            "Trying recipe {:?} ({}) on {}\n  quantity {}, {variant}, our reference {reference}, shipping to {}",
            self.recipe.name,
            self.recipe.file,
            self.url,
            self.quantity,
            describe_address(&inputs.shipping),
        );
        println!("  (nothing is bought: the place phase never runs)\n");

        let chromium = Chromium::new(&self.chromium_path, 1);
        let started = Instant::now();
        let checkout = chromium
            .checkout()
            .await
            .context("cannot open a browser page")?;
        let (progress, events) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(print_progress(events, started));
        let recipe = std::sync::Arc::new(self.recipe);
        let mut runner = Runner::new(
            checkout.page.clone(),
            recipe.clone(),
            base,
            inputs,
            self.step_timeout,
        )
        .with_progress(progress);

        let mut failure = None;
        for phase in PHASES {
            if phase == Phase::SignIn && !signs_in {
                continue;
            }
            let item = (phase == Phase::Product).then_some(0);
            if let Err(e) = runner.run_phase(phase, item).await {
                failure = Some((phase, e));
                break;
            }
        }
        let mut files = vec![];
        for (name, png) in &runner.screenshots {
            files.push(save(&self.output_dir, &format!("{name}.png"), png)?);
        }
        if failure.is_some() {
            if let Some(png) = runner.screenshot().await {
                files.push(save(&self.output_dir, "failure.png", &png)?);
            }
            if let Some(html) = runner.page_html().await {
                files.push(save(&self.output_dir, "failure.html", html.as_bytes())?);
            }
        }
        let values = std::mem::take(&mut runner.values);
        let currency = recipe.currency.code();
        drop(runner);
        let _ = printer.await;
        checkout.close().await;
        chromium.shutdown().await;

        println!();
        if !values.is_empty() {
            println!("Values read:");
            for (name, value) in &values {
                println!("  {name:<20} {}", show(value, currency));
            }
        }
        if !files.is_empty() {
            println!("Saved:");
            for file in &files {
                println!("  {}", file.display());
            }
        }
        match &failure {
            None => println!(
                "Reached the review page in {:.1} s; the final click was not made.",
                started.elapsed().as_secs_f64()
            ),
            Some((phase, failure)) => println!(
                "The {phase} phase failed after {:.1} s{}: {failure}",
                started.elapsed().as_secs_f64(),
                failure
                    .error_type()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default()
            ),
        }
        Ok(TrialOutcome { failure, files })
    }
}

/// Prints each finished step; on a terminal, a line on stderr shows the step running.
async fn print_progress(
    mut events: tokio::sync::mpsc::UnboundedReceiver<Progress>,
    started: Instant,
) {
    let live = std::io::stderr().is_terminal();
    let mut running: Option<(Phase, usize, &'static str, Instant)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Progress::Started { phase, line, action }) => {
                    running = Some((phase, line, action, Instant::now()));
                }
                Some(Progress::Finished(report)) => {
                    if live {
                        eprint!("\r\x1b[K");
                    }
                    println!("{}", step_line(&report));
                    running = None;
                }
                None => break,
            },
            _ = tick.tick(), if live => {
                if let Some((phase, line, action, since)) = running {
                    eprint!(
                        "\r\x1b[K… {phase} line {line}: {action} ({:.1} s; {:.1} s in all)",
                        since.elapsed().as_secs_f64(),
                        started.elapsed().as_secs_f64()
                    );
                    let _ = std::io::stderr().flush();
                }
            }
        }
    }
    if live {
        eprint!("\r\x1b[K");
    }
}

fn step_line(report: &StepReport) -> String {
    let ms = report.elapsed.as_secs_f64() * 1000.0;
    let mut line = format!(
        "{:<9} line {:<4} {:<17} {ms:>7.0} ms",
        report.phase.as_str(),
        report.line,
        report.action
    );
    if let Some(note) = &report.note {
        line.push_str("  ");
        line.push_str(note);
    }
    line
}

fn show(value: &Read, currency: &str) -> String {
    let one = |v: &Value| match v {
        Value::Text(t) => format!("{t:?}"),
        Value::Money(cents) => format!(
            "{}{}.{:02} {currency}",
            if *cents < 0 { "-" } else { "" },
            cents.abs() / 100,
            cents.abs() % 100
        ),
        Value::Integer(n) => n.to_string(),
        Value::Date(d) => d.to_string(),
    };
    match value {
        Read::One(v) => one(v),
        Read::List(vs) => format!("[{}]", vs.iter().map(one).collect::<Vec<_>>().join(", ")),
    }
}

fn describe_address(a: &Address) -> String {
    format!(
        "{} {}, {}, {} {} {}",
        a.first_name,
        a.last_name,
        a.address_line1,
        a.city,
        a.state.as_deref().unwrap_or_default(),
        a.country
    )
}

fn save(dir: &std::path::Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
