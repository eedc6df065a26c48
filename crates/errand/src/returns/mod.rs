//! Returns of delivered items. This module holds the contract's return types, which
//! orders already list (empty until returns can be requested).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::storage::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ReturnRequestStatus)]
pub enum ReturnStatus {
    Open,
    Approved,
    Denied,
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

/// A single product line on a return — which order item, how many.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = ReturnRequestItem)]
pub struct ReturnItem {
    pub order_item_id: Uuid,
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i32,
}

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
}
