//! Retailers: one driver trait for everything Errand asks of a store, and the registry
//! that maps product-URL hosts to the configured retailers.
//!
//! Drivers only talk to the store; the engine owns every state change.

pub mod browser;
pub mod demo_http;
pub mod registry;
pub mod totp;

use std::time::Duration;

use crate::orders::address::Address;
use crate::orders::model::{ErrorType, PriceComponents, Variant};
use crate::storage::Timestamp;

pub use registry::{Registry, RetailerSettings};

/// What a driver needs to sign in to a retailer account.
#[derive(Clone)]
pub struct Credentials {
    pub email: String,
    pub password: String,
    pub totp_secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// A signed-in session at the retailer (opaque to the engine).
#[derive(Clone)]
pub struct Session(pub String);

/// One line to buy.
#[derive(Debug, Clone)]
pub struct LineRequest {
    pub url: String,
    pub quantity: i32,
    pub variant: Option<Vec<Variant>>,
}

/// Everything a checkout needs.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub lines: Vec<LineRequest>,
    pub shipping_address: Address,
    /// Our order reference, given to the retailer as the buyer reference so an order
    /// can be found again after a crash.
    pub reference: String,
    /// Choose the retailer's gift option (no prices on the packing slip). A retailer
    /// without one refuses with [`ErrorType::GiftOptionUnavailable`].
    pub gift: Option<Gift>,
    /// The buyer's purchase-order number, for a checkout field that takes one.
    pub po_number: Option<String>,
    /// Buy only offers that ship within this many handling days; a line with none is
    /// refused with [`ErrorType::HandlingTimeExceeded`].
    pub handling_days_max: Option<i64>,
}

impl CheckoutRequest {
    /// A checkout of these lines with none of an order's options.
    pub fn new(lines: Vec<LineRequest>, shipping_address: Address, reference: String) -> Self {
        CheckoutRequest {
            lines,
            shipping_address,
            reference,
            gift: None,
            po_number: None,
            handling_days_max: None,
        }
    }
}

/// The gift option of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gift {
    /// For the retailer's gift-message field, where it has one.
    pub message: Option<String>,
}

/// A product as the retailer shows it.
#[derive(Debug, Clone)]
pub struct ProductInfo {
    pub product_id: String,
    pub title: String,
    pub currency: String,
    pub variants: Vec<RetailerVariant>,
}

/// One buyable variant at the retailer: its choices (empty for a product without
/// variants), price and availability. (An order's choice of variant is
/// [`Variant`], `ProductVariant` in the API.)
#[derive(Debug, Clone)]
pub struct RetailerVariant {
    pub options: Vec<Variant>,
    pub price: i64,
    pub in_stock: bool,
}

/// The checkout's price before placing.
#[derive(Debug, Clone)]
pub struct Quote {
    pub price: PriceComponents,
    pub delivery_days: Option<i64>,
}

/// An order at the retailer, as the driver reads it back.
#[derive(Debug, Clone)]
pub struct RetailerOrder {
    pub merchant_order_id: String,
    pub status: RetailerOrderStatus,
    pub price: PriceComponents,
    pub placed_at: Timestamp,
    pub estimated_delivery: Option<Timestamp>,
    /// Which line (index into the checkout's lines) each retailer line is.
    pub lines: Vec<RetailerLine>,
    pub shipments: Vec<Shipment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetailerOrderStatus {
    Placed,
    Shipped,
    Delivered,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct RetailerLine {
    pub product_id: String,
    pub sku: String,
}

#[derive(Debug, Clone)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    pub skus: Vec<String>,
    pub delivered: bool,
}

/// One line of a return: which of the order's SKUs, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnLine {
    pub sku: String,
    pub quantity: i32,
}

/// A return to ask of the retailer.
#[derive(Debug, Clone)]
pub struct ReturnRequest {
    pub merchant_order_id: String,
    /// Our reference for the return (its id), kept by the retailer so that it can be
    /// found again after a crash.
    pub reference: String,
    /// The contract's reason code (`damaged`, `wrong_size`, …).
    pub reason: &'static str,
    pub notes: Option<String>,
    pub lines: Vec<ReturnLine>,
}

/// Where a return stands at the retailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetailerReturnStatus {
    /// Accepted: the items are to be sent back (with the label).
    Approved,
    Denied,
    /// The items came back; the refund is still to come.
    Received,
    /// Refunded.
    Credited,
}

/// A return as the retailer has it.
#[derive(Debug, Clone)]
pub struct RetailerReturn {
    pub merchant_return_id: String,
    pub status: RetailerReturnStatus,
    /// The retailer's words about its decision.
    pub decision: Option<String>,
    /// Where the retailer serves the return label, once approved.
    pub label_url: Option<String>,
}

/// A screenshot or page a driver kept from a session, for the order's record.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// `product`, `cart`, `review`, `confirmation`, `failure`, … (the recipe's names).
    pub name: String,
    /// `image/png` or `text/html; charset=utf-8`.
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Artifact {
    pub fn png(name: &str, bytes: Vec<u8>) -> Artifact {
        Artifact {
            name: name.to_string(),
            content_type: "image/png",
            bytes,
        }
    }

    pub fn html(name: &str, html: String) -> Artifact {
        Artifact {
            name: name.to_string(),
            content_type: "text/html; charset=utf-8",
            bytes: html.into_bytes(),
        }
    }
}

/// How a retailer call failed. The engine's retry rules depend on the kind.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    /// The store refused, and will refuse again: the order fails with this `error_type`.
    #[error("{error_type}: {message}")]
    Permanent {
        error_type: ErrorType,
        message: String,
    },
    /// The store answered with a temporary failure; nothing happened there.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer (timeout, dropped connection): the request may or may not have
    /// taken effect.
    #[error("{message}")]
    Ambiguous { message: String },
    /// The total changed between quote and placing (nothing was bought).
    #[error("the price changed while checking out")]
    PriceChanged,
    /// The purchase may have gone through, and the retailer cannot be asked whether it
    /// did: the order fails as `order_probably_placed`, its attempt left unresolved.
    #[error("{message}")]
    Unverifiable { message: String },
    /// The store refused one line of the checkout (an index into its `lines`): that
    /// product cannot be bought as asked. Nothing was bought. `available` is how many
    /// units the store would sell of it, when it says; an order that allows it buys
    /// fewer or skips the line, anything else fails as `Permanent` would.
    #[error("{error_type}: {message}")]
    LineRefused {
        line: usize,
        error_type: ErrorType,
        message: String,
        available: Option<i32>,
    },
}

/// Refusals about one product rather than the whole checkout.
const LINE_ERRORS: [ErrorType; 7] = [
    ErrorType::ProductNotFound,
    ErrorType::ProductUnavailable,
    ErrorType::OutOfStock,
    ErrorType::InvalidVariant,
    ErrorType::InsufficientVariants,
    ErrorType::PurchaseLimitExceeded,
    ErrorType::HandlingTimeExceeded,
];

impl DriverError {
    /// This error as the refusal of one line of the checkout, when it is about a
    /// product (out of stock, not found, …); other errors are kept as they are.
    pub fn for_line(self, line: usize, available: Option<i32>) -> DriverError {
        match self {
            DriverError::Permanent {
                error_type,
                message,
            } if LINE_ERRORS.contains(&error_type) => DriverError::LineRefused {
                line,
                error_type,
                message,
                available,
            },
            other => other,
        }
    }

    pub fn permanent(error_type: ErrorType, message: impl Into<String>) -> DriverError {
        DriverError::Permanent {
            error_type,
            message: message.into(),
        }
    }
}

/// Why nothing that can buy is sent once `send_by` has passed: the run was held up
/// (typically a process paused for longer than its leases), another run may own the
/// order by now, and that run trusts "not found at the retailer" once `send_by` plus the
/// placing time is over. `None` while there is still time.
pub fn too_late(send_by: Timestamp) -> Option<String> {
    let now = Timestamp::now();
    (now >= send_by).then(|| {
        format!(
            "the moment to send the purchase passed {:.1} s ago (was this process paused?); nothing more was sent",
            now.since(send_by).as_secs_f64()
        )
    })
}

fn no_returns() -> DriverError {
    DriverError::permanent(
        ErrorType::RetailerError,
        "this retailer takes no returns through Errand",
    )
}

/// Everything Errand asks of one retailer.
#[async_trait::async_trait]
pub trait Driver: Send + Sync {
    /// The product id a URL names, if this retailer serves it.
    fn product_id(&self, url: &url::Url) -> Option<String>;
    /// The product a URL names: title, variants, prices and availability.
    async fn product(&self, url: &url::Url) -> Result<ProductInfo, DriverError>;
    async fn sign_in(&self, credentials: &Credentials) -> Result<Session, DriverError>;
    /// Empties the cart, adds the lines and prices the checkout (no purchase).
    async fn quote(
        &self,
        session: &Session,
        checkout: &CheckoutRequest,
    ) -> Result<Quote, DriverError>;
    /// How long after `place` begins the retailer may still be acting on it (`None`:
    /// the retailer's configured timeout bounds it). Until then, not finding the order
    /// by its reference proves nothing.
    fn placing_time(&self) -> Option<std::time::Duration> {
        None
    }
    /// Places the checkout quoted last, if its total is still `expected_total`,
    /// sending nothing that can buy once `send_by` has passed (see [`too_late`]).
    async fn place(
        &self,
        session: &Session,
        checkout: &CheckoutRequest,
        expected_total: i64,
        send_by: Timestamp,
    ) -> Result<RetailerOrder, DriverError>;
    /// The order placed with this reference, if there is one.
    async fn find_by_reference(
        &self,
        session: &Session,
        reference: &str,
    ) -> Result<Option<RetailerOrder>, DriverError>;
    async fn order(
        &self,
        session: &Session,
        merchant_order_id: &str,
    ) -> Result<RetailerOrder, DriverError>;
    async fn cancel(&self, session: &Session, merchant_order_id: &str) -> Result<(), DriverError>;
    /// Whether the retailer takes returns through this driver (`POST /returns` is
    /// refused for one that does not).
    fn takes_returns(&self) -> bool {
        false
    }
    /// Asks for a return; the retailer decides at once (approved or denied).
    async fn request_return(
        &self,
        _session: &Session,
        _request: &ReturnRequest,
    ) -> Result<RetailerReturn, DriverError> {
        Err(no_returns())
    }
    /// The return asked for with this reference, if the retailer has one.
    async fn find_return(
        &self,
        _session: &Session,
        _reference: &str,
    ) -> Result<Option<RetailerReturn>, DriverError> {
        Err(no_returns())
    }
    /// A return's current state.
    async fn get_return(
        &self,
        _session: &Session,
        _merchant_return_id: &str,
    ) -> Result<RetailerReturn, DriverError> {
        Err(no_returns())
    }
    /// Downloads a return label (`RetailerReturn::label_url`).
    async fn return_label(&self, _session: &Session, _url: &str) -> Result<Vec<u8>, DriverError> {
        Err(no_returns())
    }
    /// What the session kept for the order's record since the last call (screenshots,
    /// a failed page's HTML).
    async fn take_artifacts(&self, _session: &Session) -> Vec<Artifact> {
        vec![]
    }
    /// Ends a session, returning what it kept and was not taken yet.
    async fn release(&self, _session: &Session) -> Vec<Artifact> {
        vec![]
    }
}
