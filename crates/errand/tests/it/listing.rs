//! `GET /orders`: pagination and filters.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::lifecycle::force_status;
use crate::support::*;

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, body) = json_of(app.get(&format!("/orders{query}")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

/// Creates `n` orders one after the other; returns them oldest first.
async fn create_many(app: &TestApp, n: usize) -> Vec<Value> {
    let mut orders = Vec::new();
    for i in 0..n {
        let mut body = order_body();
        body["po_number"] = json!(format!("ACME-PO-{i:03}"));
        orders.push(app.created(&body).await);
    }
    orders
}

crate::on_both_databases! {
    async fn pages_are_newest_first_with_a_total(app: TestApp) {
        let orders = create_many(&app, 5).await;
        let newest_first: Vec<String> = orders.iter().rev().map(|o| o["id"].as_str().unwrap().to_string()).collect();

        let page = list(&app, "").await;
        assert_eq!((page["total"].as_i64(), page["limit"].as_i64(), page["offset"].as_i64()), (Some(5), Some(20), Some(0)));
        assert_eq!(ids(&page), newest_first);
        crate::support::schema::assert_valid("OrderResponse", &page["orders"][0]);

        let mut walked = Vec::new();
        for offset in [0, 2, 4] {
            let page = list(&app, &format!("?limit=2&offset={offset}")).await;
            assert_eq!(page["total"], 5);
            assert_eq!(page["limit"], 2);
            assert_eq!(page["offset"], offset);
            walked.extend(ids(&page));
        }
        assert_eq!(walked, newest_first, "pages cover every order once");
        let page = list(&app, "?offset=10").await;
        assert_eq!((ids(&page).len(), page["total"].as_i64()), (0, Some(5)));
        let page = list(&app, &format!("?offset={}", i64::MAX)).await;
        assert_eq!((ids(&page).len(), page["total"].as_i64()), (0, Some(5)));
        assert_eq!(list(&app, "?limit=100").await["orders"].as_array().unwrap().len(), 5);
    }

    async fn filters_by_status_time_and_search(app: TestApp) {
        let orders = create_many(&app, 4).await;
        let id = |i: usize| orders[i]["id"].as_str().unwrap().to_string();
        force_status(&app, &id(1), "in_progress").await;
        force_status(&app, &id(3), "in_progress").await;

        let page = list(&app, "?status_filter=in_progress").await;
        assert_eq!(ids(&page), vec![id(3), id(1)]);
        assert_eq!(page["total"], 2);
        assert_eq!(list(&app, "?status_filter=order_placed").await["total"], 0);

        // created_after is inclusive, created_before exclusive.
        let at = orders[2]["created_at"].as_str().unwrap();
        let encoded = at.replace(':', "%3A");
        assert_eq!(ids(&list(&app, &format!("?created_after={encoded}")).await), vec![id(3), id(2)]);
        assert_eq!(ids(&list(&app, &format!("?created_before={encoded}")).await), vec![id(1), id(0)]);
        assert_eq!(list(&app, "?created_after=2000-01-01&created_before=2000-01-02").await["total"], 0);
        assert_eq!(list(&app, "?created_after=2000-01-01T00:00:00%2B02:00").await["total"], 4);
        let combined = list(&app, &format!("?created_after={encoded}&status_filter=in_progress")).await;
        assert_eq!(ids(&combined), vec![id(3)]);

        // search: part of an order id, or of a PO number (case-insensitive).
        let tail = &id(2)[id(2).len() - 12..];
        assert_eq!(ids(&list(&app, &format!("?search={tail}")).await), vec![id(2)]);
        assert_eq!(ids(&list(&app, &format!("?search={}", tail.to_uppercase())).await), vec![id(2)]);
        assert_eq!(ids(&list(&app, "?search=acme-po-001").await), vec![id(1)]);
        assert_eq!(list(&app, "?search=ACME").await["total"], 4);
        assert_eq!(list(&app, "?search=%25").await["total"], 0, "wildcards are literal");
        assert_eq!(list(&app, "?search=_").await["total"], 0, "wildcards are literal");
        assert_eq!(list(&app, "?search=nothing-like-this").await["total"], 0);
    }

    async fn bad_list_parameters_are_422_naming_the_parameter(app: TestApp) {
        let cases = [
            ("?limit=0", "limit", "greater_than_equal"),
            ("?limit=101", "limit", "less_than_equal"),
            ("?limit=ten", "limit", "int_parsing"),
            ("?offset=-1", "offset", "greater_than_equal"),
            ("?status_filter=bogus", "status_filter", "enum"),
            ("?created_after=yesterday", "created_after", "datetime_parsing"),
            ("?created_before=2026-13-45", "created_before", "datetime_parsing"),
        ];
        for (query, param, kind) in cases {
            let (status, body) = json_of(app.get(&format!("/orders{query}")).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
            assert_eq!(error_list(&body), vec![(json!(["query", param]), kind.to_string())], "{query}");
        }
        assert_eq!(list(&app, "?search=&unknown=1").await["total"], 0, "empty search and unknown parameters are ignored");
        let long = "x".repeat(101);
        let (status, body) = json_of(app.get(&format!("/orders?search={long}&limit=0")).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_list(&body).len(), 2, "every bad parameter is listed: {body}");
    }
}
