//! Which retailer an order buys from, decided at `POST /orders`: every product URL must
//! be served by the same configured retailer, test keys may only use sandbox
//! retailers, and a named retailer account must exist for that retailer.

use crate::auth::Tenant;
use crate::on_db;
use crate::retailers::Registry;
use crate::retailers::registry::Unserved;
use crate::storage::{Db, DbId};
use crate::validation::{Errors, Loc, ValidationErrors};

use super::request::NewOrder;

/// The name of the retailer that sells every product of `new`.
pub fn resolve(
    registry: &Registry,
    tenant: &Tenant,
    new: &NewOrder,
) -> Result<String, ValidationErrors> {
    let mut errors = Errors::default();
    let products = Loc::body().at("products");
    let mut chosen: Option<&str> = None;
    for (i, product) in new.products.iter().enumerate() {
        let loc = products.at(i).at("url");
        let retailer = match registry.for_url(&product.url) {
            Ok(retailer) => retailer,
            Err(Unserved::UnknownRetailer) => {
                errors.add(
                    &loc,
                    "unknown_retailer",
                    format!(
                        "No configured retailer sells from this URL's host; configured retailers: {}",
                        registry.describe()
                    ),
                );
                continue;
            }
            Err(Unserved::NotAProduct(name)) => {
                errors.add(
                    &loc,
                    "not_a_product_url",
                    format!("This is not a product page of the retailer {name:?}"),
                );
                continue;
            }
        };
        let name = retailer.settings.name.as_str();
        if !tenant.livemode && !retailer.settings.sandbox {
            errors.add(
                &loc,
                "sandbox_retailer_only",
                format!(
                    "Test keys may only order from sandbox retailers (such as the demo retailer), not from {name:?}; use a live key"
                ),
            );
        }
        match chosen {
            None => chosen = Some(name),
            Some(first) if first != name => errors.add(
                &loc,
                "mismatching_retailer",
                format!(
                    "All products of an order must come from one retailer: this one is from {name:?}, the first from {first:?}"
                ),
            ),
            Some(_) => {}
        }
    }
    errors.into_result()?;
    Ok(chosen.unwrap_or_default().to_string())
}

/// Checks that `retailer_credentials_id`, when given, names an active account of the
/// tenant for `retailer`.
pub async fn check_credentials(
    db: &Db,
    tenant: &Tenant,
    new: &NewOrder,
    retailer: &str,
) -> Result<Result<(), ValidationErrors>, sqlx::Error> {
    let Some(id) = &new.retailer_credentials_id else {
        return Ok(Ok(()));
    };
    let found: Option<String> = on_db!(db, reader, |pool| {
        sqlx::query_scalar(
            "SELECT retailer FROM retailer_accounts
             WHERE id = $1 AND account_id = $2 AND livemode = $3 AND active AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(DbId(tenant.account_id))
        .bind(tenant.livemode)
        .fetch_optional(pool)
        .await
    })?;
    let loc = Loc::body().at("retailer_credentials_id");
    Ok(match found {
        None => Err(ValidationErrors::single(
            &loc,
            "unknown_retailer_credentials",
            format!("No active retailer account {id} exists (see GET /managed-accounts)"),
        )),
        Some(other) if other != retailer => Err(ValidationErrors::single(
            &loc,
            "mismatching_retailer",
            format!(
                "The retailer account {id} is for {other:?}, but the products are from {retailer:?}"
            ),
        )),
        Some(_) => Ok(()),
    })
}
