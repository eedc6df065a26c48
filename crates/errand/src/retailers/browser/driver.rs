//! The `browser` driver: buys by running a recipe in headless Chromium.
//!
//! A session is a browser context: `sign_in` opens one (and runs the recipe's sign-in),
//! `quote` runs the phases up to the review page in it, `place` clicks the final
//! button on that page after checking the total it read, and `find_by_reference` and
//! `order` run `lookup` and `tracking`. A recipe with the return phases takes returns:
//! `request_return` runs `return` then `return_status`, `find_return` runs
//! `return_lookup`, `get_return` runs `return_status`, and `return_label` fetches the
//! label from the page, in the signed-in session. `release` closes the context and
//! hands back its screenshots (and, after a failure, the page's HTML) for the engine to
//! keep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::chromium::{Checkout, Chromium};
use super::runner::{Failure, ItemInput, OrderInputs, Read, ReturnInputs, Runner};
use crate::orders::address::Address;
use crate::orders::model::{ErrorType, PriceComponents};
use crate::recipes::AccountMode;
use crate::recipes::Recipe;
use crate::recipes::model::Phase;
use crate::recipes::values::Value;
use crate::retailers::{
    Artifact, CheckoutRequest, Credentials, Driver, DriverError, ProductInfo, Quote, RetailerLine,
    RetailerOrder, RetailerOrderStatus, RetailerReturn, RetailerReturnStatus, RetailerVariant,
    ReturnRequest, Session, Shipment,
};
use crate::storage::Timestamp;

pub struct BrowserDriver {
    retailer: String,
    recipe: Arc<Recipe>,
    base_url: url::Url,
    chromium: Chromium,
    step_timeout: Duration,
    /// The e-mail a guest checkout gives the store.
    guest_email: Option<String>,
    sessions: Mutex<HashMap<String, Arc<Mutex<Live>>>>,
}

/// A session's browser context and what has run in it.
struct Live {
    checkout: Checkout,
    credentials: Option<Credentials>,
    /// The runner of the last quote, standing on the review page for `place`.
    quoted: Option<Runner>,
    artifacts: Vec<Artifact>,
}

impl BrowserDriver {
    pub fn new(
        retailer: &str,
        recipe: Recipe,
        base_url: url::Url,
        chromium: Chromium,
        step_timeout: Duration,
        guest_email: Option<String>,
    ) -> BrowserDriver {
        BrowserDriver {
            retailer: retailer.to_string(),
            recipe: Arc::new(recipe),
            base_url,
            chromium,
            step_timeout,
            guest_email,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    async fn live(&self, session: &Session) -> Result<Arc<Mutex<Live>>, DriverError> {
        self.sessions
            .lock()
            .await
            .get(&session.0)
            .cloned()
            .ok_or_else(|| DriverError::Transient {
                message: format!("{}: the browser session is gone", self.retailer),
                retry_after: None,
            })
    }

    /// The order's values for the recipe's templates.
    fn inputs(
        &self,
        live: &Live,
        checkout: Option<&CheckoutRequest>,
        reference: &str,
        merchant_order_id: Option<&str>,
    ) -> OrderInputs {
        let credentials = live.credentials.as_ref();
        OrderInputs {
            shipping: checkout
                .map(|c| c.shipping_address.clone())
                .unwrap_or_else(empty_address),
            reference: reference.to_string(),
            is_gift: checkout.is_some_and(|c| c.gift.is_some()),
            gift_message: checkout
                .and_then(|c| c.gift.as_ref())
                .and_then(|g| g.message.clone()),
            po_number: checkout.and_then(|c| c.po_number.clone()),
            handling_days_max: checkout.and_then(|c| c.handling_days_max),
            merchant_order_id: merchant_order_id.map(str::to_string),
            email: credentials
                .map(|c| c.email.clone())
                .or_else(|| self.guest_email.clone())
                .unwrap_or_default(),
            password: credentials.map(|c| c.password.clone()),
            totp_secret: credentials.and_then(|c| c.totp_secret.clone()),
            items: checkout
                .map(|c| {
                    c.lines
                        .iter()
                        .map(|l| ItemInput {
                            url: l.url.clone(),
                            quantity: l.quantity,
                            offer_id: None,
                            variant: l.variant.clone().unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Runs phases in the session's page. A failure keeps a screenshot and the page's
    /// HTML, and becomes the driver error the engine acts on.
    async fn run(
        &self,
        live: &mut Live,
        runner: &mut Runner,
        phases: &[(Phase, Option<usize>)],
    ) -> Result<(), DriverError> {
        for &(phase, item) in phases {
            if let Err(failure) = runner.run_phase(phase, item).await {
                tracing::info!(retailer = %self.retailer, %phase, error = %failure, "a recipe phase failed");
                live.artifacts.extend(runner.take_artifacts());
                if let Some(png) = runner.screenshot().await {
                    live.artifacts.push(Artifact::png("failure", png));
                }
                if let Some(html) = runner.page_html().await {
                    live.artifacts.push(Artifact::html("failure", html));
                }
                return Err(driver_error(&self.retailer, failure, phase));
            }
        }
        live.artifacts.extend(runner.take_artifacts());
        Ok(())
    }

    fn runner(&self, live: &Live, inputs: OrderInputs) -> Runner {
        Runner::new(
            live.checkout.page.clone(),
            self.recipe.clone(),
            self.base_url.clone(),
            inputs,
            self.step_timeout,
        )
    }

    /// The order the last run read, from the values its phases took.
    fn order_from(
        &self,
        runner: &Runner,
        merchant_order_id: String,
        price: PriceComponents,
    ) -> RetailerOrder {
        let status = status_of(runner.text("status"));
        let carriers = texts(runner, "carriers");
        let lines = self.lines_of(runner);
        let skus: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
        RetailerOrder {
            merchant_order_id,
            status,
            price,
            placed_at: Timestamp::now(),
            estimated_delivery: match runner.values.get("estimated_delivery") {
                Some(Read::One(Value::Date(date))) => {
                    Some(Timestamp::from_datetime(date.midnight().assume_utc()))
                }
                _ => None,
            },
            lines,
            shipments: texts(runner, "tracking_numbers")
                .into_iter()
                .enumerate()
                .map(|(i, tracking_number)| Shipment {
                    carrier: carriers.get(i).cloned().unwrap_or_default(),
                    tracking_number,
                    skus: skus.clone(),
                    delivered: status == RetailerOrderStatus::Delivered,
                })
                .collect(),
        }
    }

    /// The order's lines: as the tracking phase read them (`line_product_ids`, with
    /// `line_skus`, the product's id when it has none), else the items run with.
    fn lines_of(&self, runner: &Runner) -> Vec<RetailerLine> {
        let products = texts(runner, "line_product_ids");
        if products.is_empty() {
            return runner
                .inputs
                .items
                .iter()
                .filter_map(|i| url::Url::parse(&i.url).ok())
                .filter_map(|u| self.product_id(&u))
                .map(|id| RetailerLine {
                    product_id: id.clone(),
                    sku: id,
                })
                .collect();
        }
        let skus = texts(runner, "line_skus");
        products
            .into_iter()
            .enumerate()
            .map(|(i, product_id)| RetailerLine {
                sku: skus.get(i).cloned().unwrap_or_else(|| product_id.clone()),
                product_id,
            })
            .collect()
    }

    /// Runs `return_status` for a return in the session's page.
    async fn read_return(
        &self,
        live: &mut Live,
        merchant_return_id: &str,
    ) -> Result<RetailerReturn, DriverError> {
        let inputs = self.inputs(live, None, "", None);
        let mut runner = self.runner(live, inputs).with_return(ReturnInputs {
            merchant_return_id: Some(merchant_return_id.to_string()),
            ..ReturnInputs::default()
        });
        self.run(live, &mut runner, &[(Phase::ReturnStatus, None)])
            .await?;
        let said = runner.text("status").unwrap_or_default();
        let status = return_status_of(said).ok_or_else(|| DriverError::Transient {
            message: format!(
                "{}: the return's status {said:?} is none of approved, denied, received or credited",
                self.retailer
            ),
            retry_after: None,
        })?;
        // A link's href may be relative to the page it is on.
        let page = runner
            .page_url()
            .await
            .unwrap_or_else(|| self.base_url.clone());
        let label_url = match runner.text("label_url") {
            Some(href) => Some(
                page.join(href)
                    .map_err(|e| DriverError::Transient {
                        message: format!(
                            "{}: the return label's address {href:?} is not a URL: {e}",
                            self.retailer
                        ),
                        retry_after: None,
                    })?
                    .to_string(),
            ),
            None => None,
        };
        Ok(RetailerReturn {
            merchant_return_id: merchant_return_id.to_string(),
            status,
            decision: runner.text("decision").map(str::to_string),
            label_url,
        })
    }
}

#[async_trait::async_trait]
impl Driver for BrowserDriver {
    /// Any page of the store may be a product page; its last path segment names it.
    fn product_id(&self, url: &url::Url) -> Option<String> {
        url.path_segments()?
            .rfind(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Each step of the place phase may wait its whole time limit.
    fn placing_time(&self) -> Option<Duration> {
        let steps = self.recipe.phase(Phase::Place).unwrap_or_default();
        Some(
            steps
                .iter()
                .map(|step| {
                    step.timeout_ms
                        .map(Duration::from_millis)
                        .unwrap_or(self.step_timeout)
                        * (step.retries + 1)
                })
                .sum(),
        )
    }

    async fn product(&self, url: &url::Url) -> Result<ProductInfo, DriverError> {
        let session = self.sign_in_as(None).await?;
        let result = async {
            let live = self.live(&session).await?;
            let mut live = live.lock().await;
            let request = CheckoutRequest::new(
                vec![crate::retailers::LineRequest {
                    url: url.to_string(),
                    quantity: 1,
                    variant: None,
                }],
                empty_address(),
                String::new(),
            );
            let inputs = self.inputs(&live, Some(&request), "", None);
            let mut runner = self.runner(&live, inputs);
            self.run(&mut live, &mut runner, &[(Phase::Product, Some(0))])
                .await?;
            Ok(ProductInfo {
                product_id: self.product_id(url).unwrap_or_default(),
                title: runner.text("title").unwrap_or_default().to_string(),
                currency: self.recipe.currency.code().to_string(),
                variants: vec![RetailerVariant {
                    options: vec![],
                    price: runner.money("price").unwrap_or_default(),
                    in_stock: !runner
                        .text("availability")
                        .is_some_and(|a| a.to_ascii_lowercase().contains("out of stock")),
                }],
            })
        }
        .await;
        self.release(&session).await;
        result
    }

    async fn sign_in(&self, credentials: &Credentials) -> Result<Session, DriverError> {
        self.sign_in_as(Some(credentials)).await
    }

    async fn quote(
        &self,
        session: &Session,
        checkout: &CheckoutRequest,
    ) -> Result<Quote, DriverError> {
        let live = self.live(session).await?;
        let mut live = live.lock().await;
        let inputs = self.inputs(&live, Some(checkout), &checkout.reference, None);
        let mut runner = self.runner(&live, inputs);
        for line in 0..checkout.lines.len() {
            self.run(&mut live, &mut runner, &[(Phase::Product, Some(line))])
                .await?;
            if let Some(days) = checkout.handling_days_max {
                let offer = offer_within(&runner, days).map_err(|e| e.for_line(line, None))?;
                runner.inputs.items[line].offer_id = offer;
            }
        }
        let phases = [
            (Phase::Cart, None),
            (Phase::Checkout, None),
            (Phase::Review, None),
        ];
        self.run(&mut live, &mut runner, &phases).await?;
        let price = price_of(&runner, self.recipe.currency.code()).ok_or_else(|| {
            DriverError::Transient {
                message: format!("{}: the review page showed no total", self.retailer),
                retry_after: None,
            }
        })?;
        live.quoted = Some(runner);
        Ok(Quote {
            price,
            delivery_days: None,
        })
    }

    async fn place(
        &self,
        session: &Session,
        _checkout: &CheckoutRequest,
        expected_total: i64,
        send_by: Timestamp,
    ) -> Result<RetailerOrder, DriverError> {
        let live = self.live(session).await?;
        let mut live = live.lock().await;
        let Some(mut runner) = live.quoted.take() else {
            return Err(DriverError::Transient {
                message: format!("{}: nothing was quoted in this session", self.retailer),
                retry_after: None,
            });
        };
        let currency = self.recipe.currency.code();
        // The page shows the total the quote read; the final click buys at it.
        let price = price_of(&runner, currency).filter(|p| p.total == expected_total);
        let Some(price) = price else {
            return Err(DriverError::PriceChanged);
        };
        // Every step of the place phase checks it: the final click may be any of them.
        runner.send_by = Some(send_by);
        let clicked = self
            .run(
                &mut live,
                &mut runner,
                &[(Phase::Place, None), (Phase::Confirm, None)],
            )
            .await;
        if let Err(refused) = clicked {
            let reference = runner.inputs.reference.clone();
            return self
                .after_final_click(&mut live, refused, &reference, price)
                .await;
        }
        let merchant_order_id = runner
            .text("merchant_order_id")
            .map(str::to_string)
            .ok_or_else(|| DriverError::Ambiguous {
                message: format!(
                    "{}: the confirmation page showed no order number",
                    self.retailer
                ),
            })?;
        Ok(self.order_from(&runner, merchant_order_id, price))
    }

    async fn find_by_reference(
        &self,
        session: &Session,
        reference: &str,
    ) -> Result<Option<RetailerOrder>, DriverError> {
        if self.recipe.phase(Phase::Lookup).is_none() {
            return Err(self.unverifiable("the final click may have bought the order"));
        }
        let live = self.live(session).await?;
        let mut live = live.lock().await;
        let price = PriceComponents {
            subtotal: 0,
            shipping: 0,
            tax: 0,
            discount: 0,
            total: 0,
            currency: self.recipe.currency.code().to_string(),
        };
        self.lookup(&mut live, reference, price).await
    }

    async fn order(
        &self,
        session: &Session,
        merchant_order_id: &str,
    ) -> Result<RetailerOrder, DriverError> {
        if self.recipe.phase(Phase::Tracking).is_none() {
            return Err(DriverError::permanent(
                ErrorType::TrackingUnavailable,
                format!("the {} recipe has no tracking phase", self.retailer),
            ));
        }
        let live = self.live(session).await?;
        let mut live = live.lock().await;
        let inputs = self.inputs(&live, None, "", Some(merchant_order_id));
        let mut runner = self.runner(&live, inputs);
        self.run(&mut live, &mut runner, &[(Phase::Tracking, None)])
            .await?;
        let (products, skus) = (
            texts(&runner, "line_product_ids").len(),
            texts(&runner, "line_skus").len(),
        );
        if skus > 0 && skus != products {
            return Err(DriverError::Transient {
                message: format!(
                    "{}: the order's page showed {products} line products and {skus} SKUs; the tracking phase must read one of each per line",
                    self.retailer
                ),
                retry_after: None,
            });
        }
        let price = price_of(&runner, self.recipe.currency.code()).unwrap_or(PriceComponents {
            subtotal: 0,
            shipping: 0,
            tax: 0,
            discount: 0,
            total: 0,
            currency: self.recipe.currency.code().to_string(),
        });
        Ok(self.order_from(&runner, merchant_order_id.to_string(), price))
    }

    async fn cancel(
        &self,
        _session: &Session,
        _merchant_order_id: &str,
    ) -> Result<(), DriverError> {
        Err(DriverError::permanent(
            ErrorType::CancellationUnsupported,
            format!("the {} recipe cannot cancel orders", self.retailer),
        ))
    }

    fn takes_returns(&self) -> bool {
        self.recipe.takes_returns()
    }

    async fn request_return(
        &self,
        session: &Session,
        request: &ReturnRequest,
    ) -> Result<RetailerReturn, DriverError> {
        if !self.recipe.takes_returns() {
            return Err(no_return_phases(&self.retailer));
        }
        let live = self.live(session).await?;
        let mut live = live.lock().await;
        let inputs = self.inputs(&live, None, "", Some(&request.merchant_order_id));
        let mut runner = self.runner(&live, inputs).with_return(ReturnInputs {
            reference: request.reference.clone(),
            reason: self.recipe.return_reason(request.reason).to_string(),
            notes: request.notes.clone(),
            merchant_return_id: None,
            lines: request.lines.clone(),
        });
        self.run(&mut live, &mut runner, &[(Phase::Return, None)])
            .await?;
        let merchant_return_id = runner
            .text("merchant_return_id")
            .map(str::to_string)
            .ok_or_else(|| DriverError::Ambiguous {
                message: format!(
                    "{}: the page after asking for the return showed no return id",
                    self.retailer
                ),
            })?;
        self.read_return(&mut live, &merchant_return_id).await
    }

    async fn find_return(
        &self,
        session: &Session,
        reference: &str,
    ) -> Result<Option<RetailerReturn>, DriverError> {
        if !self.recipe.takes_returns() {
            return Err(no_return_phases(&self.retailer));
        }
        let live = self.live(session).await?;
        let mut live = live.lock().await;
        let inputs = self.inputs(&live, None, "", None);
        let mut runner = self.runner(&live, inputs).with_return(ReturnInputs {
            reference: reference.to_string(),
            ..ReturnInputs::default()
        });
        self.run(&mut live, &mut runner, &[(Phase::ReturnLookup, None)])
            .await?;
        match runner.text("merchant_return_id").map(str::to_string) {
            Some(id) => self.read_return(&mut live, &id).await.map(Some),
            None => Ok(None),
        }
    }

    async fn get_return(
        &self,
        session: &Session,
        merchant_return_id: &str,
    ) -> Result<RetailerReturn, DriverError> {
        if !self.recipe.takes_returns() {
            return Err(no_return_phases(&self.retailer));
        }
        let live = self.live(session).await?;
        let mut live = live.lock().await;
        self.read_return(&mut live, merchant_return_id).await
    }

    /// Fetched by the session's page, so with its cookies; only a PDF is a label (a
    /// store that signed the session out answers with its sign-in page).
    async fn return_label(&self, session: &Session, url: &str) -> Result<Vec<u8>, DriverError> {
        let transient = |message: String| DriverError::Transient {
            message: format!("{}: {message}", self.retailer),
            retry_after: None,
        };
        let url = self.base_url.join(url).map_err(|e| {
            DriverError::permanent(
                ErrorType::RetailerError,
                format!("the return label's address {url:?} is not a URL: {e}"),
            )
        })?;
        let live = self.live(session).await?;
        let live = live.lock().await;
        let inputs = self.inputs(&live, None, "", None);
        let runner = self.runner(&live, inputs);
        let label = runner
            .download(&url)
            .await
            .map_err(|e| transient(format!("cannot fetch the return label at {url}: {e}")))?;
        if !(200..300).contains(&label.status) {
            return Err(transient(format!(
                "the store answered {} for the return label at {url}",
                label.status
            )));
        }
        if !label.body.starts_with(b"%PDF-") {
            return Err(transient(format!(
                "the return label at {url} is not a PDF (the store answered with {:?})",
                label.content_type
            )));
        }
        Ok(label.body)
    }

    async fn take_artifacts(&self, session: &Session) -> Vec<Artifact> {
        match self.live(session).await {
            Ok(live) => std::mem::take(&mut live.lock().await.artifacts),
            Err(_) => vec![],
        }
    }

    async fn release(&self, session: &Session) -> Vec<Artifact> {
        let Some(live) = self.sessions.lock().await.remove(&session.0) else {
            return vec![];
        };
        let Ok(live) = Arc::try_unwrap(live) else {
            return vec![];
        };
        let live = live.into_inner();
        live.checkout.close().await;
        live.artifacts
    }
}

impl BrowserDriver {
    /// Runs `lookup` for `reference` in the session's page: the order, with `price`.
    async fn lookup(
        &self,
        live: &mut Live,
        reference: &str,
        price: PriceComponents,
    ) -> Result<Option<RetailerOrder>, DriverError> {
        let inputs = self.inputs(live, None, reference, None);
        let mut runner = self.runner(live, inputs);
        self.run(live, &mut runner, &[(Phase::Lookup, None)])
            .await?;
        Ok(runner
            .text("merchant_order_id")
            .map(str::to_string)
            .map(|id| self.order_from(&runner, id, price)))
    }

    /// What a failure after the final click means. It may hide a purchase: a browser
    /// sends a form again when its answer was lost, and the store refuses the copy (an
    /// empty cart) after buying the original. So the store's order history is asked
    /// first; a recipe without `lookup` is believed only when the store refused the
    /// payment or the price.
    async fn after_final_click(
        &self,
        live: &mut Live,
        refused: DriverError,
        reference: &str,
        price: PriceComponents,
    ) -> Result<RetailerOrder, DriverError> {
        if self.recipe.phase(Phase::Lookup).is_none() {
            return Err(match refused {
                DriverError::Permanent {
                    error_type: ErrorType::PaymentDeclined,
                    ..
                }
                | DriverError::PriceChanged => refused,
                other => self.unverifiable(&format!(
                    "the final click may have bought the order ({other})"
                )),
            });
        }
        match self.lookup(live, reference, price).await {
            Ok(Some(order)) => {
                tracing::warn!(retailer = %self.retailer, error = %refused, merchant_order_id = %order.merchant_order_id, "the store refused after the final click, yet its order history has the order");
                Ok(order)
            }
            Ok(None) => Err(refused),
            Err(e) => Err(DriverError::Ambiguous {
                message: format!(
                    "after the final click: {refused}; and the order history could not be read: {e}"
                ),
            }),
        }
    }

    /// A purchase this recipe cannot check: it has no `lookup` phase.
    fn unverifiable(&self, what: &str) -> DriverError {
        DriverError::Unverifiable {
            message: format!(
                "{what}, and the {} recipe has no lookup phase to ask the store: check the store's order history (the screenshots show the last page)",
                self.retailer
            ),
        }
    }

    /// Opens a context and, for recipes that sign in, signs in with `credentials`.
    async fn sign_in_as(&self, credentials: Option<&Credentials>) -> Result<Session, DriverError> {
        let checkout = self
            .chromium
            .checkout()
            .await
            .map_err(|e| DriverError::Transient {
                message: format!("{}: {e}", self.retailer),
                retry_after: None,
            })?;
        let session = Session(uuid::Uuid::now_v7().to_string());
        let live = Arc::new(Mutex::new(Live {
            checkout,
            credentials: credentials.cloned(),
            quoted: None,
            artifacts: vec![],
        }));
        self.sessions
            .lock()
            .await
            .insert(session.0.clone(), live.clone());
        if credentials.is_some() && self.recipe.account == AccountMode::SignIn {
            let mut live = live.lock().await;
            let inputs = self.inputs(&live, None, "", None);
            let mut runner = self.runner(&live, inputs);
            let signed_in = self
                .run(&mut live, &mut runner, &[(Phase::SignIn, None)])
                .await;
            drop(live);
            if let Err(e) = signed_in {
                self.release(&session).await;
                return Err(e);
            }
        }
        Ok(session)
    }
}

/// What a failed phase means to the engine.
fn driver_error(retailer: &str, failure: Failure, phase: Phase) -> DriverError {
    match failure {
        Failure::Detected {
            error_type: ErrorType::TemporarilyUnavailable,
            message,
            ..
        } => DriverError::Transient {
            message: format!("{retailer}: {message}"),
            retry_after: None,
        },
        Failure::Detected {
            error_type: ErrorType::PriceChanged,
            ..
        } => DriverError::PriceChanged,
        // A refusal while on one item's steps is about that item: an order may skip
        // it, or buy what the store says it would sell.
        Failure::Detected {
            error_type,
            message,
            item,
            available,
        } => {
            let error = DriverError::permanent(error_type, format!("{retailer}: {message}"));
            match item {
                Some(line) => error.for_line(line, available),
                None => error,
            }
        }
        // After the final click, an unexplained failure may hide a purchase; after the
        // return form is sent, a return.
        Failure::Step(message)
            if matches!(phase, Phase::Place | Phase::Confirm | Phase::Return) =>
        {
            DriverError::Ambiguous {
                message: format!("{retailer}: {message}"),
            }
        }
        Failure::Step(message) => DriverError::Transient {
            message: format!("{retailer}: the page is not what the recipe expects: {message}"),
            retry_after: None,
        },
    }
}

/// The offer to buy so that the item ships within `days` handling days, from what the
/// product phase read (`offers`, `offer_handling_days`, `offer_prices`, `offer`):
/// `None` when the page's own offer ships in time, else the cheapest one that does.
fn offer_within(runner: &Runner, days: i64) -> Result<Option<String>, DriverError> {
    let ids = texts(runner, "offers");
    let handling = integers(runner, "offer_handling_days");
    if ids.is_empty() || ids.len() != handling.len() {
        return Err(DriverError::permanent(
            ErrorType::RetailerError,
            "the recipe reads no sellers' handling days (`offers` and `offer_handling_days` in its product phase), so handling_days_max cannot be kept",
        ));
    }
    let prices = money_list(runner, "offer_prices");
    let in_time: Vec<(usize, &String)> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| handling[*i] <= days)
        .collect();
    if let Some(current) = runner.text("offer")
        && in_time.iter().any(|(_, id)| id.as_str() == current)
    {
        return Ok(None);
    }
    in_time
        .into_iter()
        .min_by_key(|(i, _)| prices.get(*i).copied().unwrap_or(0))
        .map(|(_, id)| Some(id.clone()))
        .ok_or_else(|| {
            DriverError::permanent(
                ErrorType::HandlingTimeExceeded,
                format!("No seller ships it within {days} handling days"),
            )
        })
}

fn integers(runner: &Runner, name: &str) -> Vec<i64> {
    match runner.values.get(name) {
        Some(Read::List(values)) => values
            .iter()
            .filter_map(|v| match v {
                Value::Integer(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

fn money_list(runner: &Runner, name: &str) -> Vec<i64> {
    match runner.values.get(name) {
        Some(Read::List(values)) => values
            .iter()
            .filter_map(|v| match v {
                Value::Money(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

fn price_of(runner: &Runner, currency: &str) -> Option<PriceComponents> {
    let total = runner.money("total")?;
    let part = |name: &str| runner.money(name).unwrap_or(0);
    Some(PriceComponents {
        subtotal: runner.money("subtotal").unwrap_or(total),
        shipping: part("shipping"),
        tax: part("tax"),
        discount: part("discount").abs(),
        total,
        currency: currency.to_string(),
    })
}

/// A list (or single) text value read by the last run.
fn texts(runner: &Runner, name: &str) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::Text(t) => Some(t.clone()),
        _ => None,
    };
    match runner.values.get(name) {
        Some(Read::List(values)) => values.iter().filter_map(text).collect(),
        Some(Read::One(value)) => text(value).into_iter().collect(),
        None => vec![],
    }
}

/// The order's status from the store's words for it.
fn status_of(text: Option<&str>) -> RetailerOrderStatus {
    let text = text.unwrap_or_default().to_ascii_lowercase();
    if text.contains("cancel") {
        RetailerOrderStatus::Cancelled
    } else if text.contains("delivered") {
        RetailerOrderStatus::Delivered
    } else if text.contains("ship") || text.contains("transit") || text.contains("out for") {
        RetailerOrderStatus::Shipped
    } else {
        RetailerOrderStatus::Placed
    }
}

/// A return's status from the store's words for it: the first of denied, credited,
/// received and approved (or a word for one of them) among its words.
fn return_status_of(text: &str) -> Option<RetailerReturnStatus> {
    let text = text.to_ascii_lowercase();
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let says = |any: &[&str]| words.iter().any(|w| any.contains(w));
    if says(&["denied", "rejected", "declined", "refused"]) {
        Some(RetailerReturnStatus::Denied)
    } else if says(&["credited", "refunded"]) {
        Some(RetailerReturnStatus::Credited)
    } else if says(&["received"]) {
        Some(RetailerReturnStatus::Received)
    } else if says(&["approved", "accepted"]) {
        Some(RetailerReturnStatus::Approved)
    } else {
        None
    }
}

/// Asked of a recipe without the return phases (the API refuses such returns first).
fn no_return_phases(retailer: &str) -> DriverError {
    DriverError::permanent(
        ErrorType::RetailerError,
        format!("the {retailer} recipe has no return phases: it takes no returns"),
    )
}

/// Phases that need no address (sign-in, lookup, tracking) render none.
fn empty_address() -> Address {
    Address {
        first_name: String::new(),
        last_name: String::new(),
        address_line1: String::new(),
        address_line2: None,
        city: String::new(),
        state: None,
        postal_code: String::new(),
        phone_number: String::new(),
        country: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returns_status_is_read_from_the_stores_words() {
        for (text, status) in [
            ("approved", Some(RetailerReturnStatus::Approved)),
            ("Return accepted", Some(RetailerReturnStatus::Approved)),
            ("RECEIVED", Some(RetailerReturnStatus::Received)),
            ("Refunded on Dec 2", Some(RetailerReturnStatus::Credited)),
            ("credited", Some(RetailerReturnStatus::Credited)),
            ("denied", Some(RetailerReturnStatus::Denied)),
            (
                "Rejected: final sale, not refunded",
                Some(RetailerReturnStatus::Denied),
            ),
            ("Received, refunded", Some(RetailerReturnStatus::Credited)),
            ("pending", None),
            ("unapproved", None),
            ("", None),
        ] {
            assert_eq!(return_status_of(text), status, "{text:?}");
        }
    }
}
