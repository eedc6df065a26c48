//! A recipe after validation: what the browser executor runs. Every template is parsed,
//! every step has exactly one action with the arguments it needs, and each step keeps
//! its place in the file so a failure at run time can name the line.

use std::collections::BTreeMap;
use std::fmt;

use super::format::AccountMode;
use super::template::Template;
use super::values::{Currency, ParseKind};
use crate::orders::model::ErrorType;

/// A validated recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The file it was loaded from, as given (for messages).
    pub file: String,
    pub name: String,
    pub hosts: Vec<String>,
    pub version: u32,
    pub currency: Currency,
    pub account: AccountMode,
    pub detectors: Vec<Detector>,
    /// The phases the recipe has, in [`Phase::ALL`] order.
    pub phases: Vec<(Phase, Vec<Step>)>,
    /// The store's words for the contract's return reasons (`[return_reasons]`), by
    /// reason code; a code not listed is given to the store as it is.
    pub return_reasons: BTreeMap<String, String>,
}

impl Recipe {
    /// The steps of a phase, if the recipe has it.
    pub fn phase(&self, phase: Phase) -> Option<&[Step]> {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, steps)| steps.as_slice())
    }

    /// The detectors that watch a phase.
    pub fn detectors_for(&self, phase: Phase) -> impl Iterator<Item = &Detector> {
        self.detectors
            .iter()
            .filter(move |d| d.phases.is_empty() || d.phases.contains(&phase))
    }

    /// Whether the recipe takes returns: it has the return phases (the validator
    /// accepts them only all together).
    pub fn takes_returns(&self) -> bool {
        self.phase(Phase::Return).is_some()
    }

    /// What `return.reason` gives the store for a reason code of the contract.
    pub fn return_reason<'a>(&'a self, code: &'a str) -> &'a str {
        self.return_reasons.get(code).map_or(code, String::as_str)
    }

    /// Whether a product URL's host (and port, if it has one) is served by this recipe.
    /// A host listed without a port matches any port.
    pub fn serves(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        let with_port = port.map(|p| format!("{host}:{p}"));
        self.hosts
            .iter()
            .any(|h| *h == host || Some(h) == with_port.as_ref())
    }
}

/// The parts of buying, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Sign in to the retailer account (with a one-time code when asked).
    SignIn,
    /// Open one item's page and read its title, price and availability. Runs once per
    /// item, with `item.*` available.
    Product,
    /// Put every item in the cart (usually with `for_each_item`).
    Cart,
    /// Fill in the shipping address, shipping method, gift message and our reference.
    Checkout,
    /// Read the price components before placing.
    Review,
    /// Place the order: the one step that spends money.
    Place,
    /// Read the store's order number.
    Confirm,
    /// Find an order by our reference in the order history.
    Lookup,
    /// Read shipments (carriers, tracking numbers) of a placed order, and its lines.
    Tracking,
    /// Ask for a return of a delivered order's items (`for_each_return_line`), with
    /// our reference for it; read the store's id of the return.
    Return,
    /// Find a return by our reference (after an interruption).
    ReturnLookup,
    /// Read a return's status, the store's decision and where its label is.
    ReturnStatus,
}

impl Phase {
    pub const ALL: [Phase; 12] = [
        Phase::SignIn,
        Phase::Product,
        Phase::Cart,
        Phase::Checkout,
        Phase::Review,
        Phase::Place,
        Phase::Confirm,
        Phase::Lookup,
        Phase::Tracking,
        Phase::Return,
        Phase::ReturnLookup,
        Phase::ReturnStatus,
    ];

    /// The phases every recipe needs to place an order.
    pub const PLACING: [Phase; 6] = [
        Phase::Product,
        Phase::Cart,
        Phase::Checkout,
        Phase::Review,
        Phase::Place,
        Phase::Confirm,
    ];

    /// The phases that take returns: a recipe has all of them or none.
    pub const RETURNS: [Phase; 3] = [Phase::Return, Phase::ReturnLookup, Phase::ReturnStatus];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::SignIn => "sign_in",
            Phase::Product => "product",
            Phase::Cart => "cart",
            Phase::Checkout => "checkout",
            Phase::Review => "review",
            Phase::Place => "place",
            Phase::Confirm => "confirm",
            Phase::Lookup => "lookup",
            Phase::Tracking => "tracking",
            Phase::Return => "return",
            Phase::ReturnLookup => "return_lookup",
            Phase::ReturnStatus => "return_status",
        }
    }

    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A place in the recipe file (1-based line and column, in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The line and column of a byte offset in `text`.
    pub fn of(text: &str, offset: usize) -> Location {
        let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One step, with its modifiers.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    /// Carry on when the step fails (after its retries).
    pub optional: bool,
    /// How many more times to try a failing step.
    pub retries: u32,
    /// How long the step may wait for its element or URL; the executor's default when
    /// `None`.
    pub timeout_ms: Option<u64>,
    /// Run the step only if this element is on the page right now (no waiting).
    pub if_present: Option<Target>,
    /// Run the step only if this variable has a non-empty value.
    pub if_set: Option<super::template::Var>,
    /// The order's `error_type` when the step fails; one of [`ERROR_TYPES`].
    pub error_type: Option<ErrorType>,
    pub location: Location,
}

impl Step {
    /// Whether the step may not run: it is optional or has a condition.
    pub fn is_conditional(&self) -> bool {
        self.optional || self.if_present.is_some() || self.if_set.is_some()
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Open a URL; a path is resolved against the retailer's `base_url`.
    Goto(Template),
    Click(Target),
    /// Type into a text field, replacing what it holds.
    Fill {
        target: Target,
        value: Template,
    },
    /// Choose the option of a `<select>` whose value or visible text is `value`.
    Select {
        target: Target,
        value: Template,
    },
    /// Tick a checkbox or choose a radio button.
    Check(Target),
    /// Untick a checkbox.
    Uncheck(Target),
    WaitFor(WaitFor),
    Read(Read),
    /// Fail the phase unless the element is there (and its text matches).
    Assert {
        target: Target,
        expect: Expectation,
    },
    /// Save a screenshot under this name (kept with the order's attempt).
    Screenshot(String),
    /// Run the steps once per order item, with `item.*` set.
    ForEachItem(Vec<Step>),
    /// Run the steps once per variant choice of the item, with `variant.*` set.
    ForEachVariant(Vec<Step>),
    /// Run the steps once per line of the return, with `line.*` set.
    ForEachReturnLine(Vec<Step>),
    /// Run the steps in order: groups steps under one modifier.
    Do(Vec<Step>),
}

impl Action {
    /// The key that names the action in the file.
    pub fn key(&self) -> &'static str {
        match self {
            Action::Goto(_) => "goto",
            Action::Click(_) => "click",
            Action::Fill { .. } => "fill",
            Action::Select { .. } => "select",
            Action::Check(_) => "check",
            Action::Uncheck(_) => "uncheck",
            Action::WaitFor(_) => "wait_for",
            Action::Read(_) => "read",
            Action::Assert { .. } => "assert",
            Action::Screenshot(_) => "screenshot",
            Action::ForEachItem(_) => "for_each_item",
            Action::ForEachVariant(_) => "for_each_variant",
            Action::ForEachReturnLine(_) => "for_each_return_line",
            Action::Do(_) => "do",
        }
    }

    /// The steps nested in a loop or group.
    pub fn nested(&self) -> &[Step] {
        match self {
            Action::ForEachItem(steps)
            | Action::ForEachVariant(steps)
            | Action::ForEachReturnLine(steps)
            | Action::Do(steps) => steps,
            _ => &[],
        }
    }
}

/// How a step finds its element. Text and label match case-insensitively, ignoring
/// extra white space, anywhere in the element's visible text or label; `text` means the
/// innermost element holding the text, and the first visible match in page order is
/// used.
#[derive(Debug, Clone)]
pub enum Target {
    Css(Template),
    Text(Template),
    /// A form field by the text of its `<label>` (or `aria-label`).
    Label(Template),
}

#[derive(Debug, Clone)]
pub enum WaitFor {
    /// Until the element is visible.
    Element(Target),
    /// Until the page's URL contains the text.
    UrlContains(Template),
}

#[derive(Debug, Clone)]
pub struct Read {
    pub target: Target,
    /// The value's name; later templates use it as `values.<into>`.
    pub into: String,
    pub parse: ParseKind,
    /// Read this attribute instead of the text.
    pub attribute: Option<String>,
    /// Read every matching element, into a list.
    pub all: bool,
}

#[derive(Debug, Clone)]
pub enum Expectation {
    Present,
    Equals(Template),
    Contains(Template),
}

/// An element or text that means the order cannot go on, and why.
#[derive(Debug, Clone)]
pub struct Detector {
    /// The order's `error_type` when it fires; one of [`ERROR_TYPES`].
    pub error_type: ErrorType,
    /// Elements matching this selector...
    pub css: Option<String>,
    /// ...or, with `css`, whose text contains this; alone, any visible text.
    pub text: Option<String>,
    /// The phases it watches; all when empty.
    pub phases: Vec<Phase>,
    /// The attribute of the matched element that holds how many units the store would
    /// sell (an `out_of_stock` or `purchase_limit_exceeded` refusal): an order that
    /// allows a smaller quantity buys that many.
    pub available: Option<String>,
    pub location: Location,
}

/// The `error_type`s a detector can give an order. `temporarily_unavailable` is not a
/// failure: the engine tries again later.
pub const ERROR_TYPES: [ErrorType; 15] = [
    ErrorType::LoginFailed,
    ErrorType::ProductNotFound,
    ErrorType::ProductUnavailable,
    ErrorType::OutOfStock,
    ErrorType::InvalidVariant,
    ErrorType::InsufficientVariants,
    ErrorType::PurchaseLimitExceeded,
    ErrorType::GiftOptionUnavailable,
    ErrorType::ShippingAddressRefused,
    ErrorType::CheckoutRefused,
    ErrorType::PaymentDeclined,
    ErrorType::CheckoutBlocked,
    ErrorType::PriceChanged,
    ErrorType::RetailerError,
    ErrorType::TemporarilyUnavailable,
];

/// A value the engine takes from a phase's reads, and how it must be read.
pub struct EngineValue {
    pub phase: Phase,
    pub name: &'static str,
    pub parse: ParseKind,
    /// Read as a list (`all = true`), one entry per element.
    pub all: bool,
    pub need: Need,
    /// What the engine does with it (for error messages and docs).
    pub purpose: &'static str,
}

const fn value(
    phase: Phase,
    name: &'static str,
    parse: ParseKind,
    all: bool,
    need: Need,
    purpose: &'static str,
) -> EngineValue {
    EngineValue {
        phase,
        name,
        parse,
        all,
        need,
        purpose,
    }
}

/// Whether a phase must read an engine value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Every run of the phase reads it: no optional or conditional step may be the
    /// only one that does.
    Always,
    /// The phase must have a step that reads it, but no value is an answer too (a
    /// lookup that finds no order).
    IfFound,
    Optional,
}

/// Every value the engine reads from a recipe. A recipe may read other names too, for
/// its own templates.
pub const ENGINE_VALUES: [EngineValue; 25] = [
    value(
        Phase::Product,
        "price",
        ParseKind::Money,
        false,
        Need::Always,
        "the item's unit price, checked against the price cap",
    ),
    value(
        Phase::Product,
        "title",
        ParseKind::Text,
        false,
        Need::Optional,
        "the item's title",
    ),
    value(
        Phase::Product,
        "availability",
        ParseKind::Text,
        false,
        Need::Optional,
        "the stock text, shown with the item",
    ),
    value(
        Phase::Product,
        "offers",
        ParseKind::Text,
        true,
        Need::Optional,
        "the sellers' offers an order may choose from, one id each (for handling_days_max)",
    ),
    value(
        Phase::Product,
        "offer_handling_days",
        ParseKind::Integer,
        true,
        Need::Optional,
        "each offer's handling days, in the same order",
    ),
    value(
        Phase::Product,
        "offer_prices",
        ParseKind::Money,
        true,
        Need::Optional,
        "each offer's price, in the same order: the cheapest that ships in time is chosen",
    ),
    value(
        Phase::Product,
        "offer",
        ParseKind::Text,
        false,
        Need::Optional,
        "the offer the page has chosen: kept when it ships in time",
    ),
    value(
        Phase::Review,
        "total",
        ParseKind::Money,
        false,
        Need::Always,
        "what the order costs, checked against the price cap",
    ),
    value(
        Phase::Review,
        "subtotal",
        ParseKind::Money,
        false,
        Need::Optional,
        "the items' price",
    ),
    value(
        Phase::Review,
        "shipping",
        ParseKind::Money,
        false,
        Need::Optional,
        "the shipping price",
    ),
    value(
        Phase::Review,
        "tax",
        ParseKind::Money,
        false,
        Need::Optional,
        "the tax",
    ),
    value(
        Phase::Review,
        "discount",
        ParseKind::Money,
        false,
        Need::Optional,
        "the discount (its sign is ignored)",
    ),
    value(
        Phase::Confirm,
        "merchant_order_id",
        ParseKind::Text,
        false,
        Need::Always,
        "the store's order number",
    ),
    value(
        Phase::Confirm,
        "estimated_delivery",
        ParseKind::Date,
        false,
        Need::Optional,
        "the promised delivery date",
    ),
    value(
        Phase::Lookup,
        "merchant_order_id",
        ParseKind::Text,
        false,
        Need::IfFound,
        "the order found (no value: none was found)",
    ),
    value(
        Phase::Tracking,
        "tracking_numbers",
        ParseKind::Text,
        true,
        Need::Always,
        "one per shipment",
    ),
    value(
        Phase::Tracking,
        "carriers",
        ParseKind::Text,
        true,
        Need::Optional,
        "one per shipment, in the same order",
    ),
    value(
        Phase::Tracking,
        "status",
        ParseKind::Text,
        false,
        Need::Optional,
        "the order's status as the store words it",
    ),
    value(
        Phase::Tracking,
        "line_product_ids",
        ParseKind::Text,
        true,
        Need::Optional,
        "one per line of the order, the product as its URL's last path segment names it, to tell which of the order's items each line is",
    ),
    value(
        Phase::Tracking,
        "line_skus",
        ParseKind::Text,
        true,
        Need::Optional,
        "one per line, in the same order: the store's SKU of the line, which returns name",
    ),
    value(
        Phase::Return,
        "merchant_return_id",
        ParseKind::Text,
        false,
        Need::Always,
        "the store's id of the return",
    ),
    value(
        Phase::ReturnLookup,
        "merchant_return_id",
        ParseKind::Text,
        false,
        Need::IfFound,
        "the return found (no value: none was found)",
    ),
    value(
        Phase::ReturnStatus,
        "status",
        ParseKind::Text,
        false,
        Need::Always,
        "the return's status: approved, denied, received or credited, in the store's words",
    ),
    value(
        Phase::ReturnStatus,
        "decision",
        ParseKind::Text,
        false,
        Need::Optional,
        "the store's words about its decision",
    ),
    value(
        Phase::ReturnStatus,
        "label_url",
        ParseKind::Text,
        false,
        Need::Optional,
        "where the store serves the return label (a link's href)",
    ),
];
