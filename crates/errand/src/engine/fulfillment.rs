//! Buying what can be bought. An order is bought whole or not at all, unless its
//! `fulfillment` allows a compromise: then a line the retailer cannot sell is skipped,
//! a smaller quantity bought, or the gift option dropped, and each compromise is kept
//! as a [`Concession`]. The price cap holds for whatever is bought.

use uuid::Uuid;

use crate::orders::lifecycle::ItemChange;
use crate::orders::model::{ErrorType, OrderItemStatus, OrderRecord};
use crate::orders::options::{Concern, Concession, FulfillmentModes};
use crate::retailers::{CheckoutRequest, DriverError, Gift, LineRequest};

/// The checkout to ask of the retailer, and what was given up to get it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub request: CheckoutRequest,
    /// The order item each line of `request` buys.
    items: Vec<Uuid>,
    pub concessions: Vec<Concession>,
    modes: FulfillmentModes,
}

impl Plan {
    /// The whole order, as asked.
    pub fn new(order: &OrderRecord) -> Plan {
        let options = &order.options;
        Plan {
            request: CheckoutRequest {
                lines: order
                    .items
                    .iter()
                    .map(|i| LineRequest {
                        url: i.url.clone(),
                        quantity: i.quantity,
                        variant: i.variant.clone(),
                    })
                    .collect(),
                shipping_address: order.shipping_address.clone(),
                reference: order.id.to_string(),
                gift: options.is_gift.then(|| Gift {
                    message: options.gift_message.clone(),
                }),
                po_number: order.po_number.clone(),
                handling_days_max: options.handling_days_max,
            },
            items: order.items.iter().map(|i| i.id).collect(),
            concessions: vec![],
            modes: options.fulfillment,
        }
    }

    /// Gives up what `error` says cannot be had, if the order allows it; otherwise (and
    /// when nothing would be left to buy) the error is handed back, a refused line as
    /// the `Permanent` refusal it is for a strict order. Every relaxation makes the
    /// checkout smaller, so retrying after each one ends.
    pub fn relax(&mut self, error: DriverError) -> Result<(), DriverError> {
        match error {
            DriverError::LineRefused {
                line,
                error_type,
                message,
                available,
            } if line < self.items.len() => {
                let asked = self.request.lines[line].quantity;
                let concession = |concern, fulfilled| Concession {
                    concern,
                    code: error_type,
                    message: Some(message.clone()),
                    item_id: Some(self.items[line]),
                    url: Some(self.request.lines[line].url.clone()),
                    requested_quantity: Some(asked),
                    fulfilled_quantity: Some(fulfilled),
                };
                match available.filter(|n| (1..asked).contains(n)) {
                    Some(fewer) if self.modes.quantity.is_some() => {
                        self.concessions.push(concession(Concern::Quantity, fewer));
                        self.request.lines[line].quantity = fewer;
                        Ok(())
                    }
                    _ if self.modes.items.is_some() && self.items.len() > 1 => {
                        self.concessions.push(concession(Concern::Items, 0));
                        self.request.lines.remove(line);
                        self.items.remove(line);
                        Ok(())
                    }
                    _ => Err(DriverError::Permanent {
                        error_type,
                        message,
                    }),
                }
            }
            DriverError::LineRefused {
                error_type,
                message,
                ..
            } => Err(DriverError::Permanent {
                error_type,
                message,
            }),
            DriverError::Permanent {
                error_type: ErrorType::GiftOptionUnavailable,
                message,
            } if self.modes.gift.is_some() && self.request.gift.is_some() => {
                self.request.gift = None;
                self.concessions.push(Concession {
                    concern: Concern::Gift,
                    code: ErrorType::GiftOptionUnavailable,
                    message: Some(message),
                    item_id: None,
                    url: None,
                    requested_quantity: None,
                    fulfilled_quantity: None,
                });
                Ok(())
            }
            other => Err(other),
        }
    }
}

/// The item changes of placing an order with these concessions: skipped items
/// `skipped` (with why), the others `ordered` (with the quantity bought, when smaller).
pub fn placed_items(order: &OrderRecord, concessions: &[Concession]) -> Vec<ItemChange> {
    order
        .items
        .iter()
        .map(|item| {
            let about = |concern| {
                concessions
                    .iter()
                    .find(|c| c.concern == concern && c.item_id == Some(item.id))
            };
            if let Some(skipped) = about(Concern::Items) {
                ItemChange {
                    error_type: Some(skipped.code),
                    ..ItemChange::new(item.id, OrderItemStatus::Skipped)
                }
            } else {
                ItemChange {
                    quantity: about(Concern::Quantity).and_then(|c| c.fulfilled_quantity),
                    ..ItemChange::new(item.id, OrderItemStatus::Ordered)
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::model::{OrderItem, OrderStatus};
    use crate::orders::options::{FulfillmentMode, OrderOptions};
    use crate::storage::Timestamp;

    fn order(quantities: &[i32], options: OrderOptions) -> OrderRecord {
        let now = Timestamp::now();
        let address = serde_json::from_value(serde_json::json!({
            "first_name": "Ada", "last_name": "Lovelace", "address_line1": "1 Main St",
            "city": "Springfield", "state": "IL", "postal_code": "62701", "country": "US",
            "phone_number": "5555550100"
        }))
        .unwrap();
        OrderRecord {
            id: Uuid::now_v7(),
            account_id: Uuid::nil(),
            livemode: false,
            status: OrderStatus::InProgress,
            max_price: 100_000,
            retailer: Some("demo".into()),
            retailer_credentials_id: None,
            placed_with: None,
            shipping_address: address,
            expires_at: None,
            expiration: None,
            job_result: None,
            items: quantities
                .iter()
                .enumerate()
                .map(|(i, q)| OrderItem {
                    id: Uuid::now_v7(),
                    url: format!("http://127.0.0.1/dp/P{i}"),
                    quantity: *q,
                    variant: None,
                    status: OrderItemStatus::Processing,
                    cancellation_reason: None,
                    error_type: None,
                    created_at: now,
                    updated_at: now,
                })
                .collect(),
            po_number: Some("PO-7".into()),
            options,
        }
    }

    fn best_effort(gift: bool, items: bool, quantity: bool) -> OrderOptions {
        let mode = |on: bool| on.then_some(FulfillmentMode::BestEffort);
        OrderOptions {
            is_gift: true,
            gift_message: Some("Enjoy".into()),
            fulfillment: FulfillmentModes {
                gift: mode(gift),
                items: mode(items),
                quantity: mode(quantity),
            },
            ..OrderOptions::default()
        }
    }

    fn refused(line: usize, error_type: ErrorType, available: Option<i32>) -> DriverError {
        DriverError::LineRefused {
            line,
            error_type,
            message: "no".into(),
            available,
        }
    }

    #[test]
    fn a_strict_order_gives_nothing_up() {
        let order = order(&[3, 1], best_effort(false, false, false));
        let mut plan = Plan::new(&order);
        assert_eq!(plan.request.po_number.as_deref(), Some("PO-7"));
        assert_eq!(
            plan.request.gift,
            Some(Gift {
                message: Some("Enjoy".into())
            })
        );
        for error in [
            refused(0, ErrorType::OutOfStock, Some(1)),
            refused(1, ErrorType::OutOfStock, Some(0)),
            DriverError::permanent(ErrorType::GiftOptionUnavailable, "no gifts"),
        ] {
            let expected = error.to_string();
            let given_back = plan.relax(error).unwrap_err();
            assert!(matches!(given_back, DriverError::Permanent { .. }));
            assert_eq!(given_back.to_string(), expected);
        }
        assert!(plan.concessions.is_empty());
        assert_eq!(plan.request.lines.len(), 2);
    }

    #[test]
    fn each_rule_is_relaxed_only_when_allowed() {
        let order = order(&[5, 2, 1], best_effort(true, true, true));
        let mut plan = Plan::new(&order);
        plan.relax(refused(0, ErrorType::PurchaseLimitExceeded, Some(3)))
            .unwrap();
        plan.relax(refused(1, ErrorType::OutOfStock, Some(0)))
            .unwrap();
        plan.relax(DriverError::permanent(
            ErrorType::GiftOptionUnavailable,
            "no gifts",
        ))
        .unwrap();
        assert_eq!(plan.request.gift, None);
        let lines: Vec<i32> = plan.request.lines.iter().map(|l| l.quantity).collect();
        assert_eq!(lines, [3, 1]);
        let concerns: Vec<(Concern, ErrorType)> = plan
            .concessions
            .iter()
            .map(|c| (c.concern, c.code))
            .collect();
        assert_eq!(
            concerns,
            [
                (Concern::Quantity, ErrorType::PurchaseLimitExceeded),
                (Concern::Items, ErrorType::OutOfStock),
                (Concern::Gift, ErrorType::GiftOptionUnavailable),
            ]
        );
        // The last line left is never skipped: an empty checkout still fails.
        plan.relax(refused(1, ErrorType::HandlingTimeExceeded, None))
            .unwrap();
        assert!(plan.relax(refused(0, ErrorType::OutOfStock, None)).is_err());

        let changes = placed_items(&order, &plan.concessions);
        let summary: Vec<(OrderItemStatus, Option<i32>, Option<ErrorType>)> = changes
            .iter()
            .map(|c| (c.status, c.quantity, c.error_type))
            .collect();
        assert_eq!(
            summary,
            [
                (OrderItemStatus::Ordered, Some(3), None),
                (OrderItemStatus::Skipped, None, Some(ErrorType::OutOfStock)),
                (
                    OrderItemStatus::Skipped,
                    None,
                    Some(ErrorType::HandlingTimeExceeded)
                ),
            ]
        );
    }

    #[test]
    fn a_smaller_quantity_needs_the_quantity_rule_else_the_item_is_skipped() {
        let order = order(&[4, 1], best_effort(false, true, false));
        let mut plan = Plan::new(&order);
        plan.relax(refused(0, ErrorType::OutOfStock, Some(2)))
            .unwrap();
        assert_eq!(plan.concessions[0].concern, Concern::Items);
        assert_eq!(plan.request.lines.len(), 1);
    }
}
