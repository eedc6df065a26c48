//! Checkout arithmetic, in integer cents: subtotal, shipping by method, promo discount,
//! sales tax by state, and a total that is always exactly
//! `subtotal + shipping + tax − discount`.

use serde::{Deserialize, Serialize};

pub const CURRENCY: &str = "USD";
/// Standard shipping is free from this subtotal on.
pub const FREE_SHIPPING_FROM: i64 = 3500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShippingMethod {
    Standard,
    Expedited,
    NextDay,
}

impl ShippingMethod {
    pub const ALL: [ShippingMethod; 3] = [
        ShippingMethod::Standard,
        ShippingMethod::Expedited,
        ShippingMethod::NextDay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShippingMethod::Standard => "standard",
            ShippingMethod::Expedited => "expedited",
            ShippingMethod::NextDay => "next_day",
        }
    }

    pub fn price(self, subtotal: i64) -> i64 {
        match self {
            ShippingMethod::Standard if subtotal >= FREE_SHIPPING_FROM => 0,
            ShippingMethod::Standard => 599,
            ShippingMethod::Expedited => 999,
            ShippingMethod::NextDay => 1999,
        }
    }

    /// Days in transit after the order is handed to the carrier.
    pub fn transit_days(self) -> i64 {
        match self {
            ShippingMethod::Standard => 5,
            ShippingMethod::Expedited => 2,
            ShippingMethod::NextDay => 1,
        }
    }
}

/// One priced cart line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub product_id: String,
    pub sku: String,
    pub offer_id: String,
    pub title: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
    pub handling_days: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub subtotal: i64,
    pub shipping: i64,
    pub tax: i64,
    pub discount: i64,
    pub total: i64,
    pub currency: &'static str,
    /// Sales tax rate applied, in basis points (725 = 7.25 %).
    pub tax_rate_bp: i64,
    /// Days from placing the order to delivery.
    pub delivery_days: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("unknown promo code {0:?}")]
    InvalidPromo(String),
    #[error("promo code {0:?} needs a subtotal of at least $25.00")]
    PromoNotApplicable(String),
    #[error("the cart is empty")]
    EmptyCart,
}

/// Sales tax in basis points by USPS state code; states without sales tax are 0.
pub fn tax_rate_bp(state: &str) -> i64 {
    match state {
        "AL" | "GA" | "HI" | "NY" | "WY" => 400,
        "AZ" => 560,
        "AR" | "KS" | "WA" => 650,
        "CA" => 725,
        "CO" => 290,
        "CT" => 635,
        "DC" | "FL" | "ID" | "IA" | "KY" | "MD" | "MI" | "PA" | "SC" | "VT" | "WV" => 600,
        "IL" | "MA" | "TX" => 625,
        "IN" | "MS" | "RI" | "TN" => 700,
        "LA" => 445,
        "ME" | "NE" => 550,
        "MN" => 688,
        "MO" => 423,
        "NV" => 685,
        "NJ" => 663,
        "NM" => 488,
        "NC" => 475,
        "ND" | "WI" => 500,
        "OH" => 575,
        "OK" => 450,
        "SD" => 420,
        "UT" => 610,
        "VA" => 530,
        // AK, DE, MT, NH, OR, the territories and military addresses.
        _ => 0,
    }
}

/// Prices a cart for delivery to `state` by `method`, with an optional promo code.
pub fn price(
    lines: &[Line],
    state: &str,
    method: ShippingMethod,
    promo: Option<&str>,
) -> Result<Totals, PricingError> {
    if lines.is_empty() {
        return Err(PricingError::EmptyCart);
    }
    let subtotal: i64 = lines.iter().map(|l| l.line_total).sum();
    let shipping = method.price(subtotal);
    let discount = match promo.map(|p| p.trim().to_ascii_uppercase()) {
        None => 0,
        Some(code) if code.is_empty() => 0,
        Some(code) => match code.as_str() {
            "SAVE10" => subtotal / 10,
            "FIVEOFF" if subtotal >= 2500 => 500,
            "FIVEOFF" => return Err(PricingError::PromoNotApplicable(code)),
            "FREESHIP" => shipping,
            _ => return Err(PricingError::InvalidPromo(code)),
        },
    };
    let rate = tax_rate_bp(state);
    // Tax on the goods after item discounts, rounded half up; shipping is not taxed.
    let taxable = (subtotal - discount.min(subtotal)).max(0);
    let tax = (taxable * rate + 5000) / 10000;
    let handling = lines.iter().map(|l| l.handling_days).max().unwrap_or(0);
    Ok(Totals {
        subtotal,
        shipping,
        tax,
        discount,
        total: subtotal + shipping + tax - discount,
        currency: CURRENCY,
        tax_rate_bp: rate,
        delivery_days: handling + method.transit_days(),
    })
}

/// The refund for returned goods worth `goods` (unit price × quantity of the returned
/// lines) from an order of `subtotal` that charged `tax`: the goods plus their share of
/// the tax (`tax × goods / subtotal`, rounded half up). `earlier` is the worth of the
/// order's earlier returns (those not denied); the share is taken as the difference of
/// the cumulative shares, so returning everything, in any number of returns, refunds
/// exactly the tax charged. Shipping is not refunded, and promotions are not taken back.
pub fn refund(goods: i64, earlier: i64, subtotal: i64, tax: i64) -> i64 {
    let share = |worth: i64| {
        if subtotal <= 0 {
            0
        } else {
            (2 * tax * worth.min(subtotal) + subtotal) / (2 * subtotal)
        }
    };
    goods + share(earlier + goods) - share(earlier)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(unit: i64, quantity: i64) -> Line {
        Line {
            product_id: "B0".into(),
            sku: "B0".into(),
            offer_id: "B0-1P".into(),
            title: "t".into(),
            quantity,
            unit_price: unit,
            line_total: unit * quantity,
            handling_days: 1,
        }
    }

    #[test]
    fn totals_are_the_sum_of_their_parts() {
        for (unit, qty) in [(1, 1), (999, 3), (1999, 1), (3500, 1), (12345, 7)] {
            for state in ["CA", "OR", "TX", "NJ", "XX"] {
                for method in ShippingMethod::ALL {
                    for promo in [None, Some("SAVE10"), Some("FREESHIP")] {
                        let t = price(&[line(unit, qty)], state, method, promo).unwrap();
                        assert_eq!(t.total, t.subtotal + t.shipping + t.tax - t.discount);
                        assert!(t.total >= 0 && t.tax >= 0 && t.discount >= 0);
                    }
                }
            }
        }
    }

    #[test]
    fn worked_example() {
        // $19.99 × 2 = $39.98 to California: free standard shipping, 7.25 % tax = $2.90.
        let t = price(&[line(1999, 2)], "CA", ShippingMethod::Standard, None).unwrap();
        assert_eq!(
            (t.subtotal, t.shipping, t.tax, t.discount, t.total),
            (3998, 0, 290, 0, 4288)
        );
        // Under the threshold standard costs $5.99; Oregon has no sales tax.
        let t = price(&[line(1000, 1)], "OR", ShippingMethod::Standard, None).unwrap();
        assert_eq!((t.shipping, t.tax, t.total), (599, 0, 1599));
        // SAVE10 takes 10 % off before tax.
        let t = price(
            &[line(5000, 1)],
            "TX",
            ShippingMethod::NextDay,
            Some("save10"),
        )
        .unwrap();
        assert_eq!(
            (t.discount, t.tax, t.shipping, t.total),
            (500, 281, 1999, 5000 + 1999 + 281 - 500)
        );
        assert_eq!(t.delivery_days, 2);
    }

    #[test]
    fn refunds_add_the_goods_share_of_the_tax() {
        // $29.99 × 2 to Texas: $3.75 tax. One unit back: $29.99 + $1.88 (1.875 rounded up).
        let t = price(&[line(2999, 2)], "TX", ShippingMethod::NextDay, None).unwrap();
        assert_eq!((t.subtotal, t.tax), (5998, 375));
        assert_eq!(refund(2999, 0, t.subtotal, t.tax), 2999 + 188);
        // The second unit gets the rest of the tax: together exactly what was charged.
        assert_eq!(refund(2999, 2999, t.subtotal, t.tax), 2999 + 187);
        assert_eq!(refund(5998, 0, t.subtotal, t.tax), 5998 + 375);
        // No tax charged, no tax refunded.
        assert_eq!(refund(1000, 0, 3000, 0), 1000);
        assert_eq!(refund(0, 0, 0, 0), 0);
    }

    #[test]
    fn promo_errors() {
        assert_eq!(
            price(
                &[line(100, 1)],
                "CA",
                ShippingMethod::Standard,
                Some("FIVEOFF")
            ),
            Err(PricingError::PromoNotApplicable("FIVEOFF".into()))
        );
        assert_eq!(
            price(
                &[line(100, 1)],
                "CA",
                ShippingMethod::Standard,
                Some("bogus")
            ),
            Err(PricingError::InvalidPromo("BOGUS".into()))
        );
        assert_eq!(
            price(&[], "CA", ShippingMethod::Standard, None),
            Err(PricingError::EmptyCart)
        );
    }
}
