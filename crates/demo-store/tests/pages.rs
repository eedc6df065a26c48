//! The HTML face: product pages are told apart from search and category pages.

use errand_demo_store::{StoreOptions, start};

async fn get(base: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn product_search_and_category_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = start(StoreOptions {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().into(),
        admin_token: None,
        time_scale: 1.0,
    })
    .await
    .unwrap();
    let base = store.base_url();

    let (status, html) = get(&base, "/dp/B0DEMO0010").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-page="product""#));
    assert!(
        html.contains(r#"id="product-title""#) && html.contains("Classic Organic Cotton T-Shirt")
    );
    assert!(html.contains(r#"id="variant-Size""#) && html.contains(r#"data-dimension="Color""#));
    assert!(
        html.contains(r#"id="offers""#) && html.contains("<svg"),
        "offers table and a generated image"
    );

    // Each offer says when it ships, in `data-handling-days` and in words.
    assert!(html.contains(
        r#"data-offer-id="B0DEMO0010-1P" data-price-cents="1999" data-handling-days="0" data-condition="new">"#
    ));
    assert!(html.contains(
        r#"data-offer-id="B0DEMO0010-HARB" data-price-cents="1699" data-handling-days="2" data-condition="new">"#
    ));
    assert!(html.contains("<td>Fast shipping, ships today</td>"));
    assert!(html.contains("<td>Fast shipping, ships in 2 days</td>"));
    let (_, press) = get(&base, "/dp/B0DEMO0005").await;
    assert!(press.contains(r#"data-offer-id="B0DEMO0005-OVER""#));
    assert!(press.contains("<td>Ships from abroad in 7 days</td>"));
    assert!(!press.contains("Gift options are not available"));
    let (_, game) = get(&base, "/dp/B0DEMO0022").await;
    assert!(game.contains("Gift options are not available for this item."));

    let (status, slugged) = get(&base, "/classic-organic-cotton-t-shirt/dp/B0DEMO0010").await;
    assert_eq!(status, 200);
    assert_eq!(slugged, html, "the slug form shows the same page");

    let (status, html) = get(&base, "/search?q=cast+iron").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-page="search""#) && html.contains("/dp/"));
    let (status, html) = get(&base, "/c/books").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-page="category""#));
    let (status, html) = get(&base, "/search?q=%3Cscript%3E").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("“&lt;script&gt;”") && !html.contains("“<script>”"),
        "queries are escaped"
    );

    assert_eq!(get(&base, "/dp/B0NOPE0000").await.0, 404);
    assert_eq!(get(&base, "/c/nope").await.0, 404);
    store.stop().await.unwrap();
}
