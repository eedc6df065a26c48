//! The catalogue: products, their variants (each with its own price and initial stock)
//! and offers (the store itself and third-party sellers), loaded from the fixture
//! `fixtures/catalogue.json` built into the binary, so every store has the same one.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Category {
    pub slug: String,
    pub name: String,
}

/// One variant axis, e.g. `Color` with its values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dimension {
    pub label: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub sku: String,
    /// Value per dimension label; empty for a product without variants.
    pub options: HashMap<String, String>,
    pub price_cents: i64,
    /// Stock when the store is first created.
    pub stock: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    pub offer_id: String,
    pub seller_id: String,
    pub seller_name: String,
    pub first_party: bool,
    /// `new`, `used` or `refurbished`.
    pub condition: String,
    /// Added to the variant's price (negative for cheaper offers).
    pub price_delta_cents: i64,
    pub rating_count: i64,
    pub positive_pct: i64,
    pub fast_shipping: bool,
    pub handling_days: i64,
    pub ships_from_abroad: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub brand: String,
    pub category: String,
    pub description: String,
    pub dimensions: Vec<Dimension>,
    pub variants: Vec<Variant>,
    pub offers: Vec<Offer>,
    /// The offer bought when none is chosen.
    pub buy_box_offer_id: String,
    /// Most units one order may hold.
    pub purchase_limit: i64,
    /// Ships outside the US.
    pub international: bool,
    /// Cannot be returned.
    pub final_sale: bool,
    /// Can be sent as a gift (a gift receipt: no prices on the packing slip).
    #[serde(default = "yes")]
    pub gift_options: bool,
    /// For test products: the fixed outcome buying it has.
    #[serde(default)]
    pub test_behavior: Option<TestBehavior>,
}

/// What happens when a test product is bought (listed at `/api/test-products`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestBehavior {
    /// Never in stock.
    OutOfStock,
    /// The checkout price is `PRICE_RISE_CENTS` above the listed price.
    PriceRise,
    /// Placing the order takes `SLOW_CHECKOUT` seconds.
    SlowCheckout,
    /// The first attempt to place each order fails with 503; the next succeeds.
    #[serde(rename = "intermittent_5xx")]
    Intermittent5xx,
    /// The card is declined.
    PaymentDeclined,
    /// A bot check blocks the checkout.
    CheckoutBlocked,
    /// Every shipping address is refused.
    AddressRefused,
    /// Placed, then cancelled by the store when it would ship.
    RetailerCancelled,
    /// Placed, and never ships.
    NeverShips,
    /// Placing needs an account with two-factor sign-in (`totp_required` otherwise).
    NeedsTwoFactor,
}

fn yes() -> bool {
    true
}

pub const PRICE_RISE_CENTS: i64 = 2000;
pub const SLOW_CHECKOUT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Deserialize)]
pub struct Catalogue {
    pub categories: Vec<Category>,
    pub products: Vec<Product>,
}

/// Why a variant choice does not name exactly one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantError {
    /// The product has variants and the choice leaves some dimension open.
    Insufficient(Vec<String>),
    /// A label or value the product does not have.
    Invalid(String),
}

impl Catalogue {
    pub fn get() -> &'static Catalogue {
        static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
        CATALOGUE.get_or_init(|| {
            serde_json::from_str(include_str!("../fixtures/catalogue.json"))
                .expect("the built-in catalogue is valid JSON")
        })
    }

    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id.eq_ignore_ascii_case(id))
    }

    /// Products whose title, brand or category contains every word of `query` (test
    /// products are listed only at `/api/test-products`).
    pub fn search<'a>(&'a self, query: &str) -> Vec<&'a Product> {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        self.products
            .iter()
            .filter(|p| p.test_behavior.is_none())
            .filter(|p| {
                let text = format!("{} {} {}", p.title, p.brand, p.category).to_lowercase();
                words.iter().all(|w| text.contains(w))
            })
            .collect()
    }
}

impl Product {
    /// The variant named by `(label, value)` pairs, matched case-insensitively.
    pub fn variant(&self, choice: &[(String, String)]) -> Result<&Variant, VariantError> {
        for (label, value) in choice {
            let dimension = self
                .dimensions
                .iter()
                .find(|d| d.label.eq_ignore_ascii_case(label))
                .ok_or_else(|| {
                    VariantError::Invalid(format!("this product has no option {label:?}"))
                })?;
            if !dimension
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(value))
            {
                return Err(VariantError::Invalid(format!(
                    "{value:?} is not a {} of this product (choose one of {})",
                    dimension.label,
                    dimension.values.join(", ")
                )));
            }
        }
        let missing: Vec<String> = self
            .dimensions
            .iter()
            .filter(|d| !choice.iter().any(|(l, _)| l.eq_ignore_ascii_case(&d.label)))
            .map(|d| d.label.clone())
            .collect();
        if !missing.is_empty() {
            return Err(VariantError::Insufficient(missing));
        }
        self.variants
            .iter()
            .find(|v| {
                v.options.iter().all(|(label, value)| {
                    choice.iter().any(|(l, c)| {
                        l.eq_ignore_ascii_case(label) && c.eq_ignore_ascii_case(value)
                    })
                })
            })
            .ok_or_else(|| {
                VariantError::Invalid("no variant has that combination of options".into())
            })
    }

    pub fn offer(&self, offer_id: Option<&str>) -> Option<&Offer> {
        let wanted = offer_id.unwrap_or(&self.buy_box_offer_id);
        self.offers
            .iter()
            .find(|o| o.offer_id.eq_ignore_ascii_case(wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(l: &str, v: &str) -> (String, String) {
        (l.to_string(), v.to_string())
    }

    #[test]
    fn catalogue_is_complete_and_consistent() {
        let c = Catalogue::get();
        assert!(
            c.products
                .iter()
                .filter(|p| p.test_behavior.is_none())
                .count()
                >= 24
        );
        for p in &c.products {
            assert!(p.offer(None).is_some(), "{}: buy box offer exists", p.id);
            // The store sells everything itself, except the products the README names
            // as sold by third-party sellers only.
            assert_eq!(
                p.offers.iter().any(|o| o.first_party),
                !["B0DEMO0025", "B0DEMO0026"].contains(&p.id.as_str()),
                "{}: whether the store sells it itself",
                p.id
            );
            let combinations: usize = p.dimensions.iter().map(|d| d.values.len()).product();
            assert_eq!(
                p.variants.len(),
                combinations,
                "{}: one variant per combination",
                p.id
            );
            for o in &p.offers {
                for v in &p.variants {
                    assert!(
                        v.price_cents + o.price_delta_cents > 0,
                        "{}: prices stay positive",
                        p.id
                    );
                }
            }
        }
        assert!(
            c.products.iter().any(|p| p.dimensions.len() == 2),
            "some products have Color × Size"
        );
        let no_gift: Vec<&str> = c
            .products
            .iter()
            .filter(|p| !p.gift_options)
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(
            no_gift,
            ["B0DEMO0019", "B0DEMO0022"],
            "the README names the products without gift options"
        );
    }

    #[test]
    fn variants_must_be_fully_and_correctly_chosen() {
        let c = Catalogue::get();
        let p = c.products.iter().find(|p| p.dimensions.len() == 2).unwrap();
        let color = &p.dimensions[0].values[0];
        let size = &p.dimensions[1].values[0];
        assert_eq!(
            p.variant(&[pair("color", color)]),
            Err(VariantError::Insufficient(vec!["Size".into()]))
        );
        assert!(matches!(
            p.variant(&[pair("Color", "Plaid"), pair("Size", size)]),
            Err(VariantError::Invalid(_))
        ));
        assert!(matches!(
            p.variant(&[pair("Flavor", "x")]),
            Err(VariantError::Invalid(_))
        ));
        let v = p
            .variant(&[pair("SIZE", &size.to_lowercase()), pair("Color", color)])
            .unwrap();
        assert_eq!(v.options["Color"], *color);
        let plain = c.products.iter().find(|p| p.dimensions.is_empty()).unwrap();
        assert_eq!(plain.variant(&[]).unwrap().sku, plain.id);
    }

    #[test]
    fn search_matches_every_word() {
        let c = Catalogue::get();
        let hits = c.search("cast iron");
        assert!(hits.len() >= 2);
        assert!(
            hits.iter()
                .all(|p| p.title.to_lowercase().contains("cast iron"))
        );
        assert!(c.search("no such thing").is_empty());
    }
}
