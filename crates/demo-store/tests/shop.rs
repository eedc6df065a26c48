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

async fn open_store(time_scale: f64) -> (tempfile::TempDir, errand_demo_store::RunningStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = start(StoreOptions {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().into(),
        admin_token: Some("admin".into()),
        time_scale,
    })
    .await
    .unwrap();
    (dir, store)
}

/// A new account (created through the admin API), signed in through the pages.
async fn shopper(store: &errand_demo_store::RunningStore, email: &str) -> Browser {
    let created = reqwest::Client::new()
        .post(format!("{}/api/admin/customers", store.base_url()))
        .bearer_auth("admin")
        .json(&serde_json::json!({"email": email, "password": "pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    signed_in(store, email, "pw", None).await
}

async fn signed_in(
    store: &errand_demo_store::RunningStore,
    email: &str,
    password: &str,
    totp: Option<&str>,
) -> Browser {
    let mut browser = Browser {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: store.base_url(),
        cookie: None,
    };
    let (status, html, _) = browser
        .post(
            "/signin",
            &[
                ("email", email),
                ("password", password),
                ("totp", totp.unwrap_or("")),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{email} signs in: {html}");
    browser
}

/// The `data-error` of the page's `#error`, if it has one.
fn error_code(html: &str) -> Option<&str> {
    html.contains(r#"id="error""#)
        .then(|| between(html, r#"class="error" data-error=""#, "\""))
}

/// Adds one unit to the cart from the product page's form; the page it ends on.
async fn add(browser: &mut Browser, product: &str, options: &[(&str, &str)]) -> String {
    let mut form = vec![("product_id", product), ("quantity", "1")];
    form.extend_from_slice(options);
    let (_, _, location) = browser.post("/cart/add", &form).await;
    browser.get(&location.unwrap()).await.1
}

const ADDRESS: &[(&str, &str)] = &[
    ("first_name", "Ada"),
    ("last_name", "Lovelace"),
    ("address_line1", "1 Main St"),
    ("city", "Austin"),
    ("state", "TX"),
    ("postal_code", "78701"),
    ("country", "US"),
    ("phone_number", "5125550134"),
];

/// Where a checkout through the pages ended.
#[derive(Debug)]
enum Outcome {
    /// Refused on a page, with that status and `#error`'s code.
    Refused(&'static str, StatusCode, String),
    /// Placed: the order id and the total the review showed.
    Placed(String, i64),
}

/// Address, delivery, review and place, as a shopper does (for the cart as it is).
async fn check_out(browser: &mut Browser, reference: &str) -> Outcome {
    let (status, html, _) = browser.post("/checkout/address", ADDRESS).await;
    if status != StatusCode::SEE_OTHER {
        return Outcome::Refused("address", status, error_code(&html).unwrap().into());
    }
    let (status, html, _) = browser
        .post(
            "/checkout/delivery",
            &[
                ("shipping_method", "standard"),
                ("buyer_reference", reference),
            ],
        )
        .await;
    if status != StatusCode::SEE_OTHER {
        return Outcome::Refused("delivery", status, error_code(&html).unwrap().into());
    }
    let (_, review, _) = browser.get("/checkout/review").await;
    let total: i64 = between(&review, r#"name="expected_total" value=""#, "\"")
        .parse()
        .unwrap();
    let (status, html, location) = browser
        .post("/checkout/place", &[("expected_total", &total.to_string())])
        .await;
    if status != StatusCode::SEE_OTHER {
        return Outcome::Refused("place", status, error_code(&html).unwrap().into());
    }
    let (_, confirmation, _) = browser.get(&location.unwrap()).await;
    let id = between(&confirmation, r#"<strong id="merchant-order-id">"#, "<").to_string();
    Outcome::Placed(id, total)
}

#[tokio::test]
async fn the_product_page_shows_the_chosen_variant_and_seller() {
    let (_dir, store) = open_store(1.0).await;
    let browser = shopper(&store, "variants@example.com").await;

    // Nothing chosen: the cheapest price, and what to choose.
    let (_, html, _) = browser.get("/dp/B0DEMO0010").await;
    assert_eq!(between(&html, r#"data-price-cents=""#, "\""), "1999");
    assert!(
        html.contains(r#"<p id="availability" data-missing="Color,Size">"#),
        "{html}"
    );
    assert!(!html.contains("data-sku="), "no variant is chosen yet");
    // Each swatch links to the page with its choice; the XL costs more.
    let xl = between(
        &html,
        r#"data-dimension="Size" data-value="XL" href=""#,
        "\"",
    )
    .replace("&amp;", "&");
    assert_eq!(xl, "/dp/B0DEMO0010?opt_Size=XL");
    let (_, html, _) = browser.get(&format!("{xl}&opt_Color=sand")).await;
    assert!(html.contains(r#"data-sku="B0DEMO0010-SAND-XL""#), "{html}");
    assert!(html.contains(r#"id="price" class="price" data-price-cents="2499""#));
    assert!(html.contains(">$24.99</p>"));
    assert!(html.contains(r#"data-available="true" data-stock="50">In stock</p>"#));
    assert!(
        html.contains(r#"name="opt_Color" id="opt-Color" value="Sand""#),
        "the form carries the choice (in the catalogue's spelling)"
    );
    // Another seller: its price, here $1.50 less.
    let (_, html, _) = browser
        .get("/dp/B0DEMO0010?opt_Color=Sand&opt_Size=XL&offer=B0DEMO0010-BRIG")
        .await;
    assert!(html.contains(r#"data-price-cents="2349""#) && html.contains(">$23.49</p>"));
    assert!(html.contains(r#"<option value="B0DEMO0010-BRIG" data-href="/dp/B0DEMO0010?opt_Color=Sand&amp;opt_Size=XL&amp;offer=B0DEMO0010-BRIG" selected>"#));
    // A sold-out size.
    let (_, html, _) = browser
        .get("/dp/B0DEMO0010?opt_Color=Forest+Green&opt_Size=L")
        .await;
    assert!(html.contains(r#"data-available="false" data-stock="0">Out of stock</p>"#));

    // A refused add comes back to the page with the choice kept and the error's code.
    let mut browser = browser;
    let html = add(
        &mut browser,
        "B0DEMO0010",
        &[("opt_Color", "Forest Green"), ("opt_Size", "L")],
    )
    .await;
    assert_eq!(error_code(&html), Some("out_of_stock"));
    assert!(html.contains("Only 0 left in stock"));
    assert!(html.contains(r#"data-code="out_of_stock" data-available="0">"#));
    assert!(html.contains(r#"data-sku="B0DEMO0010-FORE-L""#));
    let html = add(&mut browser, "B0DEMO0010", &[("opt_Color", "Sand")]).await;
    assert_eq!(error_code(&html), Some("insufficient_variants"));
    store.stop().await.unwrap();
}

#[tokio::test]
async fn the_cart_page_changes_quantities_removes_lines_and_empties() {
    let (_dir, store) = open_store(1.0).await;
    let mut browser = shopper(&store, "cart@example.com").await;
    let tee = [("opt_Color", "Sand"), ("opt_Size", "M")];
    add(&mut browser, "B0DEMO0010", &tee).await;
    add(&mut browser, "B0TEST0003", &[]).await;
    let (_, cart, _) = browser.get("/cart").await;
    assert!(cart.contains(r#"<section id="cart" data-line-count="2" data-item-count="2">"#));
    assert!(
        cart.contains(r#"id="empty-cart""#) && cart.matches(r#"class="remove-line""#).count() == 2
    );

    let line = [("sku", "B0DEMO0010-SAND-M"), ("offer_id", "B0DEMO0010-1P")];
    let (_, _, location) = browser
        .post("/cart/update", &[line[0], line[1], ("quantity", "3")])
        .await;
    assert_eq!(location.as_deref(), Some("/cart"));
    let (_, cart, _) = browser.get("/cart").await;
    assert!(cart.contains(
        r#"data-sku="B0DEMO0010-SAND-M" data-offer-id="B0DEMO0010-1P" data-quantity="3""#
    ));
    assert!(cart.contains(r#"data-item-count="4""#));

    // The same limits as adding: the tee's purchase limit is 10.
    let (_, _, location) = browser
        .post("/cart/update", &[line[0], line[1], ("quantity", "11")])
        .await;
    let (_, cart, _) = browser.get(&location.unwrap()).await;
    assert_eq!(error_code(&cart), Some("purchase_limit_exceeded"));
    assert!(
        cart.contains(r#"data-code="purchase_limit_exceeded" data-available="10">"#),
        "the line could hold up to 10: {cart}"
    );
    assert!(cart.contains(r#"data-quantity="3""#), "nothing changed");
    // Adding 8 more from the product page: 7 more would fit.
    let (_, _, location) = browser
        .post(
            "/cart/add",
            &[
                ("product_id", "B0DEMO0010"),
                ("opt_Color", "Sand"),
                ("opt_Size", "M"),
                ("quantity", "8"),
            ],
        )
        .await;
    let (_, html, _) = browser.get(&location.unwrap()).await;
    assert!(html.contains(r#"data-page="product""#));
    assert_eq!(error_code(&html), Some("purchase_limit_exceeded"));
    assert!(html.contains(r#"data-code="purchase_limit_exceeded" data-available="7">"#));

    let (_, _, location) = browser.post("/cart/remove", &line).await;
    assert_eq!(location.as_deref(), Some("/cart"));
    let (_, cart, _) = browser.get("/cart").await;
    assert!(cart.contains(r#"data-line-count="1""#) && !cart.contains("B0DEMO0010-SAND-M"));
    let (_, _, location) = browser.post("/cart/remove", &line).await;
    let (_, cart, _) = browser.get(&location.unwrap()).await;
    assert_eq!(error_code(&cart), Some("line_not_found"));

    let (_, _, location) = browser.post("/cart/empty", &[]).await;
    assert_eq!(location.as_deref(), Some("/cart"));
    let (_, cart, _) = browser.get("/cart").await;
    assert!(cart.contains(r#"<h1 id="cart-empty">"#) && cart.contains(r#"data-line-count="0""#));
    store.stop().await.unwrap();
}

#[tokio::test]
async fn test_products_end_through_the_pages_as_through_the_api() {
    let (_dir, store) = open_store(864_000.0).await;

    let mut browser = shopper(&store, "t1@example.com").await;
    let (_, html, _) = browser.get("/dp/B0TEST0001").await;
    assert!(html.contains(r#"data-available="false" data-stock="0">Out of stock</p>"#));
    let html = add(&mut browser, "B0TEST0001", &[]).await;
    assert_eq!(error_code(&html), Some("out_of_stock"));

    // The price rise: the review's total is $20.00 above the listed price.
    let mut browser = shopper(&store, "t2@example.com").await;
    let (_, html, _) = browser.get("/dp/B0TEST0002").await;
    let listed: i64 = between(&html, r#"data-price-cents=""#, "\"")
        .parse()
        .unwrap();
    add(&mut browser, "B0TEST0002", &[]).await;
    browser.post("/checkout/address", ADDRESS).await;
    browser
        .post("/checkout/delivery", &[("shipping_method", "next_day")])
        .await;
    let (_, review, _) = browser.get("/checkout/review").await;
    let subtotal: i64 = between(&review, r#"id="subtotal" data-cents=""#, "\"")
        .parse()
        .unwrap();
    assert_eq!(subtotal, listed + 2000);

    for (product, page, status, code) in [
        (
            "B0TEST0005",
            "place",
            StatusCode::PAYMENT_REQUIRED,
            "payment_declined",
        ),
        (
            "B0TEST0006",
            "place",
            StatusCode::FORBIDDEN,
            "checkout_blocked",
        ),
        (
            "B0TEST0007",
            "address",
            StatusCode::UNPROCESSABLE_ENTITY,
            "shipping_address_refused",
        ),
        (
            "B0TEST0010",
            "place",
            StatusCode::UNAUTHORIZED,
            "totp_required",
        ),
    ] {
        let mut browser = shopper(&store, &format!("{product}@example.com")).await;
        add(&mut browser, product, &[]).await;
        match check_out(&mut browser, product).await {
            Outcome::Refused(at, got, error) => {
                assert_eq!((at, got, error.as_str()), (page, status, code), "{product}");
            }
            placed => panic!("{product}: {placed:?}"),
        }
    }

    // The two-factor account buys what needs two-factor sign-in; without its code, the
    // sign-in page asks for it.
    let mut browser = Browser {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: store.base_url(),
        cookie: None,
    };
    let (status, html, _) = browser
        .post(
            "/signin",
            &[
                ("email", errand_demo_store::DEMO_2FA_EMAIL),
                ("password", DEMO_PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&html), Some("totp_required"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let code = errand_demo_store::totp::current_code(errand_demo_store::DEMO_2FA_TOTP_SECRET, now)
        .unwrap();
    let mut browser = signed_in(
        &store,
        errand_demo_store::DEMO_2FA_EMAIL,
        DEMO_PASSWORD,
        Some(&code),
    )
    .await;
    add(&mut browser, "B0TEST0010", &[]).await;
    assert!(matches!(
        check_out(&mut browser, "2fa").await,
        Outcome::Placed(..)
    ));

    // The first place fails with 503 and says to try again; placing again buys.
    let mut browser = shopper(&store, "flaky@example.com").await;
    add(&mut browser, "B0TEST0004", &[]).await;
    let Outcome::Refused("place", StatusCode::SERVICE_UNAVAILABLE, code) =
        check_out(&mut browser, "flaky").await
    else {
        panic!("the first attempt fails");
    };
    assert_eq!(code, "service_unavailable");
    assert!(matches!(
        check_out(&mut browser, "flaky").await,
        Outcome::Placed(..)
    ));

    let mut browser = shopper(&store, "slow@example.com").await;
    add(&mut browser, "B0TEST0003", &[]).await;
    let started = std::time::Instant::now();
    assert!(matches!(
        check_out(&mut browser, "slow").await,
        Outcome::Placed(..)
    ));
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));

    // Cancelled by the store when it would ship; and never shipped, while another order
    // arrives. Found by the reference given at checkout.
    let mut browser = shopper(&store, "later@example.com").await;
    add(&mut browser, "B0TEST0008", &[]).await;
    let Outcome::Placed(cancelled, _) = check_out(&mut browser, "ref-cancel").await else {
        panic!("placed");
    };
    add(&mut browser, "B0TEST0009", &[]).await;
    let Outcome::Placed(never, _) = check_out(&mut browser, "ref-never").await else {
        panic!("placed");
    };
    add(
        &mut browser,
        "B0DEMO0010",
        &[("opt_Color", "Sand"), ("opt_Size", "S")],
    )
    .await;
    let Outcome::Placed(normal, total) = check_out(&mut browser, "ref-normal").await else {
        panic!("placed");
    };
    let (_, found, _) = browser.get("/orders?reference=ref-never").await;
    assert!(found.contains(&format!(
        r#"<tr class="order-row" data-order-id="{never}" data-reference="ref-never" data-status="placed">"#
    )));
    assert!(found.contains(r#"<table id="orders" data-count="1">"#));

    let mut order = String::new();
    for _ in 0..200 {
        order = browser.get(&format!("/orders/{normal}")).await.1;
        if order.contains(r#"data-status="delivered">delivered</strong>"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        order.contains(r#"id="order-status" data-status="delivered""#),
        "{order}"
    );
    assert!(order.contains(r#"<span id="order-reference">ref-normal</span>"#));
    assert!(order.contains(&format!(
        r#"<span id="order-total-charged" data-cents="{total}">"#
    )));
    // Each line names its product and its SKU, the variant's (which returns name).
    assert!(
        order.contains(r#"<tr class="order-line" data-product-id="B0DEMO0010" data-sku="B0DEMO0010-SAND-S" data-quantity="1">"#),
        "{order}"
    );
    let number = between(&order, r#"data-tracking-number=""#, "\"");
    assert!(order.contains(&format!(r#"<span class="tracking-number">{number}</span>"#)));

    let (_, order, _) = browser.get(&format!("/orders/{cancelled}")).await;
    assert!(order.contains(r#"data-status="cancelled""#), "{order}");
    assert!(order.contains(r#"<p id="cancel-reason" data-reason="retailer_cancelled">"#));
    let (_, order, _) = browser.get(&format!("/orders/{never}")).await;
    assert!(order.contains(r#"data-status="placed""#) && order.contains(r#"id="no-shipments""#));
    store.stop().await.unwrap();
}

#[tokio::test]
async fn a_gift_with_a_po_number_through_the_pages() {
    let (_dir, store) = open_store(1.0).await;
    let mut browser = shopper(&store, "gift@example.com").await;
    add(&mut browser, "B0DEMO0005", &[]).await;
    // The board game has no gift options.
    let (_, game, _) = browser.get("/dp/B0DEMO0022").await;
    assert!(game.contains("Gift options are not available for this item."));
    add(&mut browser, "B0DEMO0022", &[]).await;
    let (_, _, location) = browser.post("/checkout/address", ADDRESS).await;
    assert_eq!(location.as_deref(), Some("/checkout/delivery"));
    let (_, delivery, _) = browser.get("/checkout/delivery").await;
    assert!(delivery.contains(r#"<input type="checkbox" id="gift" name="gift" value="true">"#));
    assert!(delivery.contains(r#"<label for="gift">This is a gift</label>"#));
    assert!(delivery.contains(
        r#"<label for="po_number">PO number</label><input id="po_number" name="po_number""#
    ));

    let gift = [
        ("shipping_method", "standard"),
        ("gift", "true"),
        ("gift_message", "Happy birthday"),
        ("buyer_reference", "gift-ref"),
        ("po_number", " PO-2026-001 "),
    ];
    let (status, html, _) = browser.post("/checkout/delivery", &gift).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"data-page="checkout-delivery""#));
    assert_eq!(error_code(&html), Some("gift_option_unavailable"));
    assert!(html.contains("Gift options are not available for Strategy Board Game: Harbor Lights"));
    assert!(
        html.contains(r#"id="gift" name="gift" value="true" checked>"#),
        "what was entered is kept"
    );
    let long_po = "P".repeat(51);
    let (status, html, _) = browser
        .post(
            "/checkout/delivery",
            &[("shipping_method", "standard"), ("po_number", &long_po)],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&html), Some("po_number_too_long"));

    // Without the game it goes through.
    let game_line = [("sku", "B0DEMO0022"), ("offer_id", "B0DEMO0022-1P")];
    browser.post("/cart/remove", &game_line).await;
    let (_, _, location) = browser.post("/checkout/delivery", &gift).await;
    assert_eq!(location.as_deref(), Some("/checkout/review"));
    let (_, review, _) = browser.get("/checkout/review").await;
    assert!(review.contains(r#"<span id="review-gift" data-gift="true">"#));
    assert!(review.contains(r#"<span id="review-po-number">PO-2026-001</span>"#));
    assert!(review.contains(r#"<span id="review-reference">gift-ref</span>"#));

    // The game is added again before placing: back to the delivery page, nothing placed.
    add(&mut browser, "B0DEMO0022", &[]).await;
    let (status, _, location) = browser.get("/checkout/review").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(location.starts_with("/checkout/delivery?"), "{location}");
    let (_, html, _) = browser.get(&location).await;
    assert_eq!(error_code(&html), Some("gift_option_unavailable"));
    let (status, _, _) = browser
        .post("/checkout/place", &[("expected_total", "0")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let admin = |path: &'static str| {
        let base = store.base_url();
        async move {
            reqwest::Client::new()
                .get(format!("{base}{path}"))
                .bearer_auth("admin")
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        admin("/api/admin/orders").await["orders"],
        serde_json::json!([])
    );

    browser.post("/cart/remove", &game_line).await;
    let (_, review, _) = browser.get("/checkout/review").await;
    let total = between(&review, r#"name="expected_total" value=""#, "\"").to_string();
    let (_, _, location) = browser
        .post("/checkout/place", &[("expected_total", &total)])
        .await;
    let (_, confirmation, _) = browser.get(&location.unwrap()).await;
    let order_id = between(&confirmation, r#"<strong id="merchant-order-id">"#, "<").to_string();
    let (_, order, _) = browser.get(&format!("/orders/{order_id}")).await;
    assert!(order.contains(r#"<span id="order-gift" data-gift="true">"#));
    assert!(order.contains(r#"<span id="order-po-number">PO-2026-001</span>"#));
    let truth = admin("/api/admin/orders").await;
    let placed = &truth["orders"][0];
    assert_eq!(placed["id"], order_id.as_str());
    assert_eq!(
        (
            &placed["gift"],
            &placed["po_number"],
            &placed["gift_message"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!("PO-2026-001"),
            &serde_json::json!("Happy birthday")
        )
    );

    // The next checkout starts without them.
    add(&mut browser, "B0DEMO0022", &[]).await;
    let Outcome::Placed(plain, _) = check_out(&mut browser, "no-gift").await else {
        panic!("placed");
    };
    let (_, order, _) = browser.get(&format!("/orders/{plain}")).await;
    assert!(order.contains(r#"<span id="order-gift" data-gift="false">No</span>"#));
    assert!(order.contains(r#"<span id="order-po-number"></span>"#));
    store.stop().await.unwrap();
}

/// Polls a page until it contains `needle`.
async fn wait_for(browser: &Browser, path: &str, needle: &str) -> String {
    let mut html = String::new();
    for _ in 0..200 {
        html = browser.get(path).await.1;
        if html.contains(needle) {
            return html;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{path} never showed {needle}: {html}");
}

#[tokio::test]
async fn a_shopper_returns_one_of_two_items_through_the_pages() {
    // A store day lasts 0.3 s: standard delivery takes about 1.6 s, the return window
    // 9 s, and a return is received 0.9 s after approval and credited 0.6 s later.
    let (_dir, store) = open_store(288_000.0).await;
    let mut browser = shopper(&store, "returns@example.com").await;
    add(&mut browser, "B0DEMO0005", &[]).await;
    add(&mut browser, "B0DEMO0006", &[]).await;
    let Outcome::Placed(order, _) = check_out(&mut browser, "ret-order").await else {
        panic!("placed");
    };
    let form_path = format!("/orders/{order}/return");

    // Not delivered yet: the form says so.
    let (status, html, _) = browser.get(&form_path).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&html), Some("not_delivered"));
    assert!(html.contains(r#"data-code="not_delivered""#));

    let page = wait_for(
        &browser,
        &format!("/orders/{order}"),
        r#"data-status="delivered""#,
    )
    .await;
    assert!(page.contains(&format!(
        r#"<a id="return-items" href="/orders/{order}/return">Return items</a>"#
    )));
    assert!(page.contains(r#"<ul id="order-returns" data-count="0">"#));

    let (status, form, _) = browser.get(&form_path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains(r#"data-page="return-request""#));
    assert!(form.contains(&format!(r#"action="/orders/{order}/return""#)));
    assert!(form.contains(r#"<select id="reason" name="reason">"#));
    assert!(form.contains(r#"<option value="defective">"#));
    for sku in ["B0DEMO0005", "B0DEMO0006"] {
        assert!(form.contains(&format!(
            r#"<input id="qty_{sku}" class="return-quantity" name="qty_{sku}" type="number" min="0" max="1" value="0""#
        )));
    }
    assert!(form.contains(r#"name="reference""#) && form.contains(r#"name="notes""#));

    // Refusals come back on the form, with what was entered.
    let (status, html, _) = browser
        .post(
            &form_path,
            &[("reason", "defective"), ("qty_B0DEMO0005", "0")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&html), Some("no_items_chosen"));
    let (status, html, _) = browser
        .post(
            &form_path,
            &[("reason", "defective"), ("qty_B0DEMO0005", "2")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&html), Some("quantity_exceeded"));
    assert!(html.contains(r#"<option value="defective" selected>"#));
    assert!(html.contains(r#"name="qty_B0DEMO0005" type="number" min="0" max="1" value="2""#));
    let (_, html, _) = browser
        .post(&form_path, &[("reason", ""), ("qty_B0DEMO0005", "1")])
        .await;
    assert_eq!(error_code(&html), Some("invalid_reason"));

    // One of the two items.
    let request = [
        ("reason", "defective"),
        ("qty_B0DEMO0005", "1"),
        ("qty_B0DEMO0006", "0"),
        ("reference", "web-ret-1"),
        ("notes", "The lid is cracked"),
    ];
    let (status, _, location) = browser.post(&form_path, &request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    let return_id = location.strip_prefix("/returns/").unwrap().to_string();
    assert!(return_id.starts_with("RT-"));
    let (status, page, _) = browser.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-page="return""#));
    assert!(page.contains(&format!(r#"<span id="return-id">{return_id}</span>"#)));
    assert!(
        page.contains(r#"id="return-status" data-status="approved""#),
        "{page}"
    );
    assert!(page.contains(r#"<p id="return-decision">Approved"#));
    assert!(page.contains(r#"<span id="return-reference">web-ret-1</span>"#));
    assert!(page.contains(
        r#"<tr class="return-line" data-sku="B0DEMO0005" data-product-id="B0DEMO0005" data-quantity="1" data-unit-price="2999">"#
    ));
    assert!(!page.contains(r#"data-sku="B0DEMO0006""#));
    assert!(page.contains(r#"id="refund-pending""#));
    let pdf_link = format!(r#"<a id="return-label-pdf" href="/returns/{return_id}/label.pdf""#);
    assert!(page.contains(&pdf_link));
    let response = browser
        .client
        .get(format!("{}/returns/{return_id}/label.pdf", browser.base))
        .header("cookie", browser.cookie.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert!(response.bytes().await.unwrap().starts_with(b"%PDF-"));

    // The same request again (a retry) finds the same return.
    let (status, _, again) = browser.post(&form_path, &request).await;
    assert_eq!(
        (status, again.as_deref()),
        (StatusCode::SEE_OTHER, Some(location.as_str()))
    );

    // Found by the reference, and on the order's page; nothing else is left to return of
    // that item.
    let (_, found, _) = browser.get("/returns?reference=web-ret-1").await;
    assert!(found.contains(r#"data-page="returns""#));
    assert!(found.contains(r#"<table id="returns" data-count="1">"#));
    assert!(found.contains(&format!(
        r#"<tr class="return-row" data-return-id="{return_id}" data-order-id="{order}" data-reference="web-ret-1" data-status="approved">"#
    )));
    let (_, none, _) = browser.get("/returns?reference=nope").await;
    assert!(none.contains(r#"id="no-returns""#));
    let (_, page, _) = browser.get(&format!("/orders/{order}")).await;
    assert!(page.contains(&format!(
        r#"<li class="order-return" data-return-id="{return_id}" data-status="approved">"#
    )));
    let (_, form, _) = browser.get(&form_path).await;
    assert!(form.contains(
        r#"data-sku="B0DEMO0005" data-product-id="B0DEMO0005" data-bought="1" data-remaining="0""#
    ));
    assert!(form.contains(
        r#"data-sku="B0DEMO0006" data-product-id="B0DEMO0006" data-bought="1" data-remaining="1""#
    ));

    // Another shopper cannot see it.
    let stranger = shopper(&store, "stranger@example.com").await;
    assert_eq!(stranger.get(&location).await.0, StatusCode::NOT_FOUND);
    assert_eq!(stranger.get(&form_path).await.0, StatusCode::NOT_FOUND);

    // Received, then credited: the page shows the refund.
    let page = wait_for(&browser, &location, r#"data-status="credited""#).await;
    assert!(page.contains(r#"id="return-received-at""#));
    assert!(page.contains(r#"id="return-credited-at""#));
    let refund: i64 = between(&page, r#"<span id="return-refund" data-cents=""#, "\"")
        .parse()
        .unwrap();
    assert!(refund > 2999, "the press and its tax: {refund}");

    let truth: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/admin/returns", store.base_url()))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let returns = truth["returns"].as_array().unwrap();
    assert_eq!(
        returns.len(),
        1,
        "one return, however often it was asked for"
    );
    assert_eq!(returns[0]["reference"], "web-ret-1");
    assert_eq!(returns[0]["notes"], "The lid is cracked");
    assert_eq!(returns[0]["refund"], refund);
    store.stop().await.unwrap();
}
