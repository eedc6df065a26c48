//! The OpenAPI 3.1 document, generated from the handlers and types, and an offline docs
//! page (Swagger UI, its assets built into the binary).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::AppState;
use crate::accounts;
use crate::orders::{self, address::Address, model, request};
use crate::returns;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Errand",
        description = "Self-hosted ordering API: buy products from retailers' websites with one request, \
                       then follow each order by API and webhooks. Compatible with Zinc's `/orders`.",
    ),
    paths(
        orders::http::create_order,
        orders::http::list_orders,
        orders::http::get_order,
        orders::http::cancel_order,
        orders::http::get_timeline,
        orders::http::get_screenshot,
        orders::http::get_page,
        orders::http::list_test_products,
        accounts::http::list_managed_accounts,
        accounts::http::create_managed_account,
        accounts::http::get_managed_account,
        accounts::http::update_managed_account,
        accounts::http::delete_managed_account,
        returns::http::create_return,
        returns::http::list_returns,
        returns::http::get_return,
        returns::http::get_label,
        crate::webhooks::http::get_endpoint,
        crate::webhooks::http::put_endpoint,
        crate::webhooks::http::delete_endpoint,
        crate::webhooks::http::rotate_secret,
        crate::webhooks::log::list_deliveries,
        crate::webhooks::log::redeliver,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics_text,
    ),
    components(schemas(
        request::OrderCreateDoc,
        request::OrderProductDoc,
        model::Order,
        model::OrderItem,
        model::OrderStatus,
        model::OrderItemStatus,
        model::Variant,
        model::TrackingNumber,
        model::JobResult,
        model::ErrorType,
        model::MerchantOrder,
        model::PriceComponents,
        model::Expiration,
        request::ExpirationDoc,
        request::PaymentDoc,
        orders::options::CustomerNotificationsDoc,
        orders::options::FulfillmentModes,
        orders::options::FulfillmentMode,
        orders::options::OrderFulfillment,
        orders::options::Concession,
        orders::options::Concern,
        orders::options::NotificationStatus,
        orders::timeline::Timeline,
        orders::timeline::Milestone,
        orders::timeline::MilestoneType,
        orders::test_products::TestProductList,
        orders::test_products::TestProduct,
        Address,
        returns::ReturnSummary,
        returns::ReturnStatus,
        returns::ReturnReason,
        returns::ReturnItem,
        returns::Return,
        returns::ReturnList,
        returns::http::ReturnRequestCreateDoc,
        accounts::http::ManagedAccount,
        accounts::http::ManagedAccountList,
        accounts::request::ManagedAccountCreateDoc,
        accounts::request::ManagedAccountUpdateDoc,
        crate::webhooks::http::WebhookEndpoint,
        crate::webhooks::http::WebhookEndpointUpdateDoc,
        crate::webhooks::log::DeliveryList,
        crate::webhooks::log::Delivery,
        crate::webhooks::log::DeliveryAttempt,
        crate::validation::ValidationErrors,
        crate::validation::FieldError,
        super::error::ErrorEnvelope,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "orders", description = "Create, read, list and cancel orders"),
        (name = "managed-accounts", description = "The retailer accounts orders are placed with; \
                                                   their secrets are write-only"),
        (name = "returns", description = "Return delivered items: asked of the retailer exactly once, followed until credited"),
        (name = "webhooks", description = "Where order events are delivered, and how they are signed"),
        (name = "operations", description = "Probes for load balancers and orchestrators"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "BearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Errand API key: `Authorization: Bearer er_live_…`"))
                    .build(),
            ),
        );
    }
}

pub fn routes() -> Router<AppState> {
    // No validator badge: it would send the document's URL to an outside service and
    // break the page offline.
    let docs = SwaggerUi::new("/docs")
        .url("/openapi.json", ApiDoc::openapi())
        .config(Config::default().validator_url("none"));
    Router::new().merge(docs)
}
