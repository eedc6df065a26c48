//! The recipe file as TOML: what serde reads, with the position of every value so that
//! [`super::validate`] can point at the line of a mistake. Every table refuses keys it
//! does not know. `docs/recipes.md` documents each key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::values::ParseKind;

/// A whole recipe file. Its tables are not `Spanned`: toml cannot give a span for a
/// table that only dotted headers such as `[[phases.cart]]` create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    pub recipe: RecipeTable,
    pub account: AccountTable,
    /// Error detectors: `[[detect]]`.
    #[serde(default)]
    pub detect: Vec<Spanned<DetectTable>>,
    pub phases: PhasesTable,
    /// `[return_reasons]`: the store's value (or visible text) for a return reason code
    /// of the contract, for the codes the store words differently.
    pub return_reasons: Option<BTreeMap<String, Spanned<String>>>,
}

/// `[recipe]`: what the recipe is and which stores it serves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeTable {
    pub name: Spanned<String>,
    /// Product-URL hosts (`shop.example`, or `host:port` for one port only).
    pub hosts: Spanned<Vec<Spanned<String>>>,
    /// The recipe's own revision, raised with each change; recorded with the orders it
    /// places.
    pub version: Spanned<i64>,
    /// ISO 4217 code of the prices the store shows.
    pub currency: Spanned<String>,
}

/// `[account]`: how the recipe buys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountTable {
    pub mode: Spanned<AccountMode>,
}

/// Whether the store is used signed in to a retailer account or as a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountMode {
    /// Signs in with the order's retailer account (e-mail, password, one-time code).
    SignIn,
    /// Checks out without an account, with the guest e-mail from the configuration.
    Guest,
}

/// `[[detect]]`: something on a page that means the order cannot go on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectTable {
    pub error_type: Spanned<String>,
    pub css: Option<Spanned<String>>,
    pub text: Option<Spanned<String>>,
    pub phases: Option<Spanned<Vec<Spanned<String>>>>,
    pub available: Option<Spanned<String>>,
}

/// `[phases]`: the steps of each phase.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhasesTable {
    pub sign_in: Option<Spanned<Steps>>,
    pub product: Option<Spanned<Steps>>,
    pub cart: Option<Spanned<Steps>>,
    pub checkout: Option<Spanned<Steps>>,
    pub review: Option<Spanned<Steps>>,
    pub place: Option<Spanned<Steps>>,
    pub confirm: Option<Spanned<Steps>>,
    pub lookup: Option<Spanned<Steps>>,
    pub tracking: Option<Spanned<Steps>>,
    #[serde(rename = "return")]
    pub return_phase: Option<Spanned<Steps>>,
    pub return_lookup: Option<Spanned<Steps>>,
    pub return_status: Option<Spanned<Steps>>,
}

pub type Steps = Vec<Spanned<StepTable>>;

/// One step: exactly one action key, the arguments that action takes, and modifiers.
/// Which arguments go with which action is checked in [`super::validate`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTable {
    // Actions.
    pub goto: Option<Spanned<String>>,
    pub click: Option<Spanned<TargetTable>>,
    pub fill: Option<Spanned<TargetTable>>,
    pub select: Option<Spanned<TargetTable>>,
    pub check: Option<Spanned<TargetTable>>,
    pub uncheck: Option<Spanned<TargetTable>>,
    pub wait_for: Option<Spanned<WaitTable>>,
    pub read: Option<Spanned<TargetTable>>,
    pub assert: Option<Spanned<TargetTable>>,
    pub screenshot: Option<Spanned<String>>,
    pub for_each_item: Option<Spanned<Steps>>,
    pub for_each_variant: Option<Spanned<Steps>>,
    pub for_each_return_line: Option<Spanned<Steps>>,
    #[serde(rename = "do")]
    pub do_steps: Option<Spanned<Steps>>,

    // Arguments.
    /// `fill`, `select`: the text to type or the option to choose.
    pub value: Option<Spanned<String>>,
    /// `read`: the name the value is stored under.
    pub into: Option<Spanned<String>>,
    /// `read`: how the text is parsed (default `text`).
    pub parse: Option<Spanned<ParseKind>>,
    /// `read`: read this attribute instead of the element's text.
    pub attribute: Option<Spanned<String>>,
    /// `read`: read every matching element into a list.
    pub all: Option<Spanned<bool>>,
    /// `assert`: the element's text must be exactly this.
    pub equals: Option<Spanned<String>>,
    /// `assert`: the element's text must contain this.
    pub contains: Option<Spanned<String>>,

    // Modifiers.
    pub optional: Option<Spanned<bool>>,
    pub retries: Option<Spanned<i64>>,
    pub timeout_ms: Option<Spanned<i64>>,
    pub if_present: Option<Spanned<TargetTable>>,
    pub if_set: Option<Spanned<String>>,
    pub error_type: Option<Spanned<String>>,
}

/// An element on the page: by CSS selector, by visible text, or by form label.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTable {
    pub css: Option<Spanned<String>>,
    pub text: Option<Spanned<String>>,
    pub label: Option<Spanned<String>>,
}

/// What `wait_for` waits for: an element (as a target) or the page's URL.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitTable {
    pub css: Option<Spanned<String>>,
    pub text: Option<Spanned<String>>,
    pub label: Option<Spanned<String>>,
    pub url_contains: Option<Spanned<String>>,
}
