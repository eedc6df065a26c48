//! Returns of delivered items: `POST /returns` records one (with its items and a
//! `return.requested` event on the order), the engine asks the retailer for it exactly
//! once (see [`crate::engine`]) and follows it until the retailer credits or denies it.
//! Each change is an order event, so it shows on the timeline and goes out as a webhook.

pub mod http;
pub mod request;
pub mod store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::storage::Timestamp;

/// Where a return stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ReturnRequestStatus)]
pub enum ReturnStatus {
    /// Recorded; the retailer has not decided yet.
    Open,
    /// The retailer accepted it: send the items back with the label.
    Approved,
    /// The retailer refused it (`resolution_notes` says why).
    Denied,
    /// The retailer got the items back and refunded them.
    Credited,
}

impl ReturnStatus {
    pub const ALL: [ReturnStatus; 4] = [
        ReturnStatus::Open,
        ReturnStatus::Approved,
        ReturnStatus::Denied,
        ReturnStatus::Credited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReturnStatus::Open => "open",
            ReturnStatus::Approved => "approved",
            ReturnStatus::Denied => "denied",
            ReturnStatus::Credited => "credited",
        }
    }

    pub fn parse(text: &str) -> Option<ReturnStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Universal return reason codes (Shopify + Amazon prepaid alignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ReturnRequestReason)]
pub enum ReturnReason {
    Damaged,
    NotDelivered,
    EmptyBox,
    WrongItem,
    Defective,
    NotAsDescribed,
    WrongSize,
    NoLongerNeeded,
    ForcedCancellation,
    Other,
}

impl ReturnReason {
    pub const ALL: [ReturnReason; 10] = [
        ReturnReason::Damaged,
        ReturnReason::NotDelivered,
        ReturnReason::EmptyBox,
        ReturnReason::WrongItem,
        ReturnReason::Defective,
        ReturnReason::NotAsDescribed,
        ReturnReason::WrongSize,
        ReturnReason::NoLongerNeeded,
        ReturnReason::ForcedCancellation,
        ReturnReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReturnReason::Damaged => "damaged",
            ReturnReason::NotDelivered => "not_delivered",
            ReturnReason::EmptyBox => "empty_box",
            ReturnReason::WrongItem => "wrong_item",
            ReturnReason::Defective => "defective",
            ReturnReason::NotAsDescribed => "not_as_described",
            ReturnReason::WrongSize => "wrong_size",
            ReturnReason::NoLongerNeeded => "no_longer_needed",
            ReturnReason::ForcedCancellation => "forced_cancellation",
            ReturnReason::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<ReturnReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// A single product line on a return — which order item, how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ReturnRequestItem)]
pub struct ReturnItem {
    pub order_item_id: Uuid,
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i32,
}

/// A return as an order lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReturnRequestSummary)]
pub struct ReturnSummary {
    pub id: Uuid,
    pub status: ReturnStatus,
    pub reason: ReturnReason,
    #[schema(required = false)]
    pub notes: Option<String>,
    #[schema(required = false)]
    pub resolution_notes: Option<String>,
    #[schema(required = false, default = json!([]))]
    pub items: Vec<ReturnItem>,
    #[schema(required = false, default = json!([]))]
    pub label_urls: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// The labels' names, linked into `label_urls` with the order's screenshots.
    #[serde(skip)]
    pub label_names: Vec<String>,
}

/// Where a return's label is served under `base`.
pub fn label_url(base: &str, return_id: Uuid, name: &str) -> String {
    format!("{base}/returns/{return_id}/labels/{name}")
}

/// A return request (the contract's `ReturnRequestResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReturnRequestResponse)]
pub struct Return {
    pub id: Uuid,
    pub order_id: Uuid,
    pub status: ReturnStatus,
    pub reason: ReturnReason,
    pub notes: Option<String>,
    /// The retailer's decision, in its words, once it has decided.
    pub resolution_notes: Option<String>,
    pub items: Vec<ReturnItem>,
    /// The retailer's return labels, kept with the return and served to its owner.
    pub label_urls: Vec<String>,
    /// The retailer's id of the return, once it has one.
    pub merchant_return_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// The labels' names, from which `label_urls` is built once the server's public
    /// address is known.
    #[serde(skip)]
    pub label_names: Vec<String>,
}

impl Return {
    /// Fills `label_urls` under `base` (the server's public address, without a
    /// trailing slash).
    pub fn link_labels(&mut self, base: &str) {
        self.label_urls = self
            .label_names
            .iter()
            .map(|name| label_url(base, self.id, name))
            .collect();
    }

    pub fn summary(&self) -> ReturnSummary {
        ReturnSummary {
            id: self.id,
            status: self.status,
            reason: self.reason,
            notes: self.notes.clone(),
            resolution_notes: self.resolution_notes.clone(),
            items: self.items.clone(),
            label_urls: self.label_urls.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            label_names: self.label_names.clone(),
        }
    }
}

/// A page of returns (the contract's `ReturnRequestListResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ReturnRequestListResponse)]
pub struct ReturnList {
    pub return_requests: Vec<Return>,
    /// How many match, on every page.
    pub total: i64,
}

/// Names of the order events a return's life adds (webhooks send them).
pub mod events {
    pub const REQUESTED: &str = "return.requested";
    pub const APPROVED: &str = "return.approved";
    pub const DENIED: &str = "return.denied";
    pub const CREDITED: &str = "return.credited";
}
