//! A shopper buys through the HTML pages: sign in, choose a variant, cart, address,
//! delivery, review, place, confirmation, history. Plain HTTP with the session cookie,
//! following the store's redirects by hand.

use errand_demo_store::{DEMO_EMAIL, DEMO_PASSWORD, StoreOptions, start};
use reqwest::StatusCode;

struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    async fn get(&self, path: &str) -> (StatusCode, String, Option<String>) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Self::read(request.send().await.unwrap()).await
    }

    async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        if let Some(set) = response.headers().get("set-cookie") {
            self.cookie = set.to_str().unwrap().split(';').next().map(str::to_string);
        }
        Self::read(response).await
    }

    /// Status, body and redirect target.
    async fn read(response: reqwest::Response) -> (StatusCode, String, Option<String>) {
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (status, response.text().await.unwrap(), location)
    }
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in page"))
        + start.len();
    &html[from..from + html[from..].find(end).unwrap()]
}

#[tokio::test]
async fn a_shopper_buys_through_the_html_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = start(StoreOptions {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().into(),
        admin_token: Some("admin".into()),
        time_scale: 1.0,
    })
    .await
    .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut browser = Browser {
        client,
        base: store.base_url(),
        cookie: None,
    };

    let (status, _, location) = browser.get("/cart").await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/signin?next=/cart"))
    );
    let (status, html, _) = browser
        .post(
            "/signin",
            &[
                ("email", DEMO_EMAIL),
                ("password", "wrong"),
                ("next", "/cart"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains(r#"id="error""#));
    let (status, _, location) = browser
        .post(
            "/signin",
            &[
                ("email", DEMO_EMAIL),
                ("password", DEMO_PASSWORD),
                ("next", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/")),
        "never redirects off-site"
    );
    assert!(browser.cookie.as_deref().unwrap().starts_with("sid="));

    // The product page: choosing no size is refused with a message on the page.
    let (_, product, _) = browser.get("/dp/B0DEMO0010").await;
    let color = between(&product, r#"data-dimension="Color" data-value=""#, "\"").to_string();
    let (status, _, location) = browser
        .post(
            "/cart/add",
            &[
                ("product_id", "B0DEMO0010"),
                ("opt_Color", &color),
                ("opt_Size", ""),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page, _) = browser.get(&location.unwrap()).await;
    assert!(
        page.contains(r#"id="error""#) && page.contains("Choose a Size"),
        "the page explains what is missing"
    );
    let (_, _, location) = browser
        .post(
            "/cart/add",
            &[
                ("product_id", "B0DEMO0010"),
                ("opt_Color", &color),
                ("opt_Size", "M"),
                ("quantity", "2"),
            ],
        )
        .await;
    assert_eq!(location.as_deref(), Some("/cart"));
    let (_, cart, _) = browser.get("/cart").await;
    assert!(
        cart.contains(r#"id="proceed-to-checkout""#) && cart.contains("-M\""),
        "{cart}"
    );

    let mut address = vec![
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("address_line1", "1 Main St"),
        ("city", "San Jose"),
        ("state", "CA"),
        ("postal_code", "951"),
        ("country", "US"),
        ("phone_number", "4085550100"),
    ];
    let (status, html, _) = browser.post("/checkout/address", &address).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("ZIP"), "a bad ZIP is explained on the page");
    address[5] = ("postal_code", "95113");
    let (_, _, location) = browser.post("/checkout/address", &address).await;
    assert_eq!(location.as_deref(), Some("/checkout/delivery"));
    let (_, _, location) = browser
        .post(
            "/checkout/delivery",
            &[
                ("shipping_method", "expedited"),
                ("buyer_reference", "html-ref-1"),
                ("gift_message", "Enjoy!"),
            ],
        )
        .await;
    assert_eq!(location.as_deref(), Some("/checkout/review"));

    let (_, review, _) = browser.get("/checkout/review").await;
    assert!(
        review.contains(r#"id="order-total" hidden"#),
        "the total appears after a client-side delay"
    );
    assert!(review.contains(r#"id="place-order""#));
    let expected = between(&review, r#"name="expected_total" value=""#, "\"").to_string();
    let (status, _, location) = browser
        .post("/checkout/place", &[("expected_total", &expected)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, confirmation, _) = browser.get(&location.unwrap()).await;
    let order_id = between(&confirmation, r#"<strong id="merchant-order-id">"#, "<").to_string();
    assert!(order_id.starts_with("112-"));

    let (_, history, _) = browser.get("/orders?reference=html-ref-1").await;
    assert!(history.contains(&order_id));
    let (_, history, _) = browser.get("/orders?reference=nothing").await;
    assert!(history.contains(r#"id="no-orders""#));

    // What was really bought.
    let truth: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/admin/orders", store.base_url()))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = &truth["orders"][0];
    assert_eq!(order["id"], order_id.as_str());
    assert_eq!(order["buyer_reference"], "html-ref-1");
    assert_eq!(order["shipping_method"], "expedited");
    assert_eq!(order["total"].as_i64().unwrap().to_string(), expected);
    assert_eq!(order["lines"][0]["quantity"], 2);
    store.stop().await.unwrap();
}
