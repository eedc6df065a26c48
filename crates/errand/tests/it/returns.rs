//! Returns end to end against the demo store over HTTP: a delivered order's items are
//! returned through `POST /returns`, asked of the store exactly once (also when real
//! `errand` processes are SIGKILLed between asking and hearing the answer), approved
//! with a label, then credited on the store's clock; a final-sale item is denied; every
//! step is an order event and a signed webhook; the rules are enforced with precise
//! errors; other accounts see nothing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::cluster::{Cluster, Options, kill_and_reap};
use crate::support::receiver::{Receiver, assert_signed};
use crate::support::{Backend, TestApp, json_of, order_body, store_ground_truth};

/// Places an order of `(product, quantity)` lines and waits until every item is
/// delivered (the demo store's clock runs a day per second in tests).
pub(crate) async fn delivered_order(app: &TestApp, lines: &[(&str, i64)]) -> Value {
    let products = lines
        .iter()
        .map(|(product, quantity)| json!({"url": app.product_url(product), "quantity": quantity}))
        .collect();
    delivered_order_of(app, products).await
}

/// [`delivered_order`] of the order API's `products` (with variants, say).
pub(crate) async fn delivered_order_of(app: &TestApp, products: Value) -> Value {
    let mut body = order_body();
    body["products"] = products;
    body["max_price"] = json!(1_000_000);
    let order = app.created(&body).await;
    let id = order["id"].as_str().unwrap().to_string();
    app.wait_for_order(&id, |o| {
        o["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "delivered")
    })
    .await
}

pub(crate) fn item_id(order: &Value, index: usize) -> String {
    order["items"][index]["id"].as_str().unwrap().to_string()
}

pub(crate) async fn request_return(app: &TestApp, key: &str, body: &Value) -> (StatusCode, Value) {
    post_return(&app.client, &app.base, key, body).await
}

/// `POST /returns` to the Errand at `api`.
async fn post_return(
    client: &reqwest::Client,
    api: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    json_of(
        client
            .post(format!("{api}/returns"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Polls the return until `done` holds for it (at most a minute).
pub(crate) async fn wait_for_return(
    app: &TestApp,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, ret) = json_of(app.get(&format!("/returns/{id}")).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{ret}");
        if done(&ret) {
            return ret;
        }
        if Instant::now() >= deadline {
            let jobs = errand::queue::list(app.db(), None, 20).await.unwrap();
            panic!("return {id} did not get there: {ret:#}\njobs: {jobs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The store's returns carrying `reference` (its ground truth).
pub(crate) async fn store_returns_for(app: &TestApp, reference: &str) -> Vec<Value> {
    let store = app.store.as_ref().expect("a store");
    store_ground_truth(&app.client, store, "returns")
        .await
        .into_iter()
        .filter(|r| r["reference"] == reference)
        .collect()
}

crate::on_both_databases! {
    async fn a_delivered_item_is_returned_approved_with_a_label_then_credited(app: Engine) {
        let receiver = Receiver::start(0, StatusCode::OK).await;
        let secret = {
            let (status, endpoint) = json_of(app.client.put(app.url("/webhooks/endpoint")).bearer_auth(&app.key)
                .json(&json!({"url": receiver.url})).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{endpoint}");
            endpoint["webhook_secret"].as_str().unwrap().to_string()
        };
        let order = delivered_order(&app, &[("B0DEMO0005", 2), ("B0DEMO0008", 1)]).await;
        let order_id = order["id"].as_str().unwrap().to_string();

        let (status, created) = request_return(&app, &app.key, &json!({
            "order_id": order_id, "reason": "damaged", "notes": "The glass arrived cracked",
            "items": [{"order_item_id": item_id(&order, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["status"], "open");
        assert_eq!(created["order_id"], order_id.as_str());
        let id = created["id"].as_str().unwrap().to_string();

        let credited = wait_for_return(&app, &id, |r| r["status"] == "credited").await;
        assert!(credited["merchant_return_id"].as_str().is_some_and(|m| m.starts_with("RT-")), "{credited}");
        assert_eq!(credited["items"], json!([{"order_item_id": item_id(&order, 0), "quantity": 1}]));
        let labels = credited["label_urls"].as_array().unwrap();
        assert_eq!(labels.len(), 1, "{credited}");
        let label = app.client.get(labels[0].as_str().unwrap()).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(label.status(), StatusCode::OK);
        assert_eq!(label.headers()["content-type"], "application/pdf");
        assert!(label.bytes().await.unwrap().starts_with(b"%PDF-"));
        // Served to its owner only.
        let stranger = app.new_account_key("stranger").await;
        let other = app.client.get(labels[0].as_str().unwrap()).bearer_auth(&stranger).send().await.unwrap();
        assert_eq!(other.status(), StatusCode::NOT_FOUND);

        // Exactly one return at the store, with our reference, for the one unit.
        let at_store = store_returns_for(&app, &id).await;
        assert_eq!(at_store.len(), 1, "{at_store:?}");
        assert_eq!(at_store[0]["status"], "credited");

        // The order lists it; the timeline and the webhooks show every step.
        let (_, with_return) = app.get_order(&order_id).await;
        assert_eq!(with_return["returns"][0]["id"], id.as_str());
        assert_eq!(with_return["returns"][0]["status"], "credited");
        assert_eq!(with_return["returns"][0]["label_urls"], credited["label_urls"]);
        let steps = app.timeline(&order_id).await;
        for step in ["return_requested", "return_approved", "return_credited"] {
            assert!(steps.contains(&step.to_string()), "{step}: {steps:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let events = loop {
            let events: Vec<String> = receiver.accepted().iter()
                .filter(|b| b["event"].as_str().is_some_and(|e| e.starts_with("return.")))
                .map(|b| b["event"].as_str().unwrap().to_string()).collect();
            if events.len() >= 3 || Instant::now() > deadline {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(events, ["return.requested", "return.approved", "return.credited"]);
        for request in receiver.all().iter().filter(|r| r.json()["event"].as_str().unwrap_or("").starts_with("return.")) {
            assert_signed(request, &secret);
            assert_eq!(request.json()["data"]["returns"][0]["id"], id.as_str());
        }
    }

    async fn a_final_sale_item_is_denied_in_the_stores_words(app: Engine) {
        let order = delivered_order(&app, &[("B0DEMO0023", 1)]).await;
        let (status, created) = request_return(&app, &app.key, &json!({
            "order_id": order["id"], "reason": "no_longer_needed",
            "items": [{"order_item_id": item_id(&order, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap();
        let denied = wait_for_return(&app, id, |r| r["status"] == "denied").await;
        assert!(denied["resolution_notes"].as_str().is_some_and(|n| n.contains("inal")), "{denied}");
        assert_eq!(denied["label_urls"], json!([]));
        assert_eq!(store_returns_for(&app, id).await.len(), 1);
        // A denied return does not count: the item can be asked for again.
        let (status, again) = request_return(&app, &app.key, &json!({
            "order_id": order["id"], "reason": "defective",
            "items": [{"order_item_id": item_id(&order, 0), "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::CREATED, "{again}");
    }

    async fn the_rules_are_enforced_with_precise_errors(app: Engine) {
        let order = delivered_order(&app, &[("B0DEMO0005", 2)]).await;
        let item = item_id(&order, 0);
        let body = |quantity: i64| json!({"order_id": order["id"], "reason": "wrong_item",
                                          "items": [{"order_item_id": item, "quantity": quantity}]});
        // More than was bought.
        let (status, error) = request_return(&app, &app.key, &body(3)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["detail"][0]["loc"], json!(["body", "items", 0, "quantity"]));
        assert_eq!(error["detail"][0]["type"], "return_quantity_exceeded");
        // Two units, in two returns; a third is one too many.
        assert_eq!(request_return(&app, &app.key, &body(1)).await.0, StatusCode::CREATED);
        assert_eq!(request_return(&app, &app.key, &body(1)).await.0, StatusCode::CREATED);
        let (status, error) = request_return(&app, &app.key, &body(1)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["detail"][0]["type"], "return_quantity_exceeded");
        // An item of another order, an item not delivered yet.
        let (status, error) = request_return(&app, &app.key, &json!({"order_id": order["id"], "reason": "other",
            "items": [{"order_item_id": uuid::Uuid::now_v7(), "quantity": 1}]})).await;
        assert_eq!((status, error["detail"][0]["type"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("order_item_not_found")));
        let mut fresh = order_body();
        fresh["products"] = json!([{"url": app.product_url("B0DEMO0006"), "quantity": 1}]);
        fresh["max_price"] = json!(1_000_000);
        let fresh = app.created(&fresh).await;
        let (status, error) = request_return(&app, &app.key, &json!({"order_id": fresh["id"], "reason": "other",
            "items": [{"order_item_id": fresh["items"][0]["id"], "quantity": 1}]})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["detail"][0]["loc"], json!(["body", "items", 0, "order_item_id"]));
        assert_eq!(error["detail"][0]["type"], "item_not_delivered");

        // Another account sees nothing: its requests are 404s, its list is empty.
        let stranger = app.new_account_key("stranger").await;
        let (status, _) = request_return(&app, &stranger, &body(1)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, mine) = json_of(app.get("/returns?limit=10").send().await.unwrap()).await;
        assert_eq!(mine["total"], 2);
        let id = mine["return_requests"][0]["id"].as_str().unwrap();
        let theirs = app.client.get(app.url(&format!("/returns/{id}"))).bearer_auth(&stranger).send().await.unwrap();
        assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
        let (_, their_list) = json_of(app.client.get(app.url("/returns")).bearer_auth(&stranger).send().await.unwrap()).await;
        assert_eq!(their_list, json!({"return_requests": [], "total": 0}));
        // Filters.
        let (_, by_order) = json_of(app.get(&format!("/returns?search={}", &order["id"].as_str().unwrap()[..13])).send().await.unwrap()).await;
        assert_eq!(by_order["total"], 2);
        let (status, error) = json_of(app.get("/returns?status=lost").send().await.unwrap()).await;
        assert_eq!((status, error["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["query", "status"])));
    }

}

/// The API refuses returns from a retailer whose driver takes none, and documents the
/// routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_return_operations() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        ("/returns", "post"),
        ("/returns", "get"),
        ("/returns/{return_id}", "get"),
        ("/returns/{return_id}/labels/{name}", "get"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["tags"],
            json!(["returns"]),
            "{method} {path}"
        );
    }
    let statuses = &doc["components"]["schemas"]["ReturnRequestStatus"]["enum"];
    assert_eq!(*statuses, json!(["open", "approved", "denied", "credited"]));
}

/// Kills in the returns' crash test, one per batch of returns asked for.
const KILLS: usize = 4;
/// Returns asked for before each kill, each of its own delivered order.
const RETURNS_PER_KILL: usize = 3;
/// How long the store holds its answer to each new return: the window a kill aims at,
/// shorter than the retailer timeout so that an answer Errand lives to hear is on time.
const HELD_ANSWER_MS: u64 = 500;
/// The line Errand logs before asking the store for a return.
const ASKING: &str = "asking the retailer for the return";
/// The line Errand logs when it finds a return from an earlier request at the store.
const ADOPTING: &str = "the retailer has the return from an earlier request; adopting it";

/// Returns through crashes: real `errand` processes are SIGKILLed while they ask the
/// demo store for returns, each kill as soon as the store has recorded one of a batch
/// while it still holds the answer. Afterwards each return exists exactly once at the
/// store, under its reference, and is credited; a return the store had while Errand
/// had it only as asked was found again by its reference, not asked for again.
async fn returns_through_sigkill(backend: Backend) {
    // A store day lasts two seconds: orders arrive in about ten, returns are credited
    // ten after approval, and the return window (30 store days) outlasts the test.
    let options = Options {
        time_scale: 43_200.0,
        ..Options::default()
    };
    let cluster = Cluster::with(backend, options).await;
    let key = cluster.create_key().await;
    let mut serve = cluster.serve().await;
    cluster.add_accounts(&key, 4).await;
    let products = ["B0DEMO0014", "B0DEMO0018", "B0DEMO0021", "B0DEMO0022"];
    let products: Vec<&str> = products
        .iter()
        .cycle()
        .take(KILLS * RETURNS_PER_KILL)
        .copied()
        .collect();
    let ids = cluster.submit(&key, &products).await;
    let delivered = cluster
        .wait_for_orders(&key, ids.len(), "delivered", |o| {
            o["items"]
                .as_array()
                .is_some_and(|items| items.iter().all(|i| i["status"] == "delivered"))
        })
        .await;
    cluster
        .store_admin(
            reqwest::Method::PUT,
            "/api/admin/faults",
            json!({"return_answer_delay_ms": HELD_ANSWER_MS}),
        )
        .await;

    let mut returns: Vec<String> = vec![];
    // Returns the store held while Errand had them as asked and unanswered, with how
    // many times Errand had asked for each when it was killed.
    let mut caught: HashMap<String, usize> = HashMap::new();
    // Returns Errand had as asked that the store did not have (yet) at a kill.
    let mut unheard: HashSet<String> = HashSet::new();
    for batch in ids.chunks(RETURNS_PER_KILL) {
        let mut asked = vec![];
        for id in batch {
            asked.push(ask_for_return(&cluster, &key, &delivered[id]).await);
        }
        returns.extend(asked.iter().cloned());
        wait_until_the_store_holds_one_of(&cluster, &asked).await;
        kill_and_reap(&mut serve).await;

        let at_store: HashSet<String> =
            store_ground_truth(&cluster.client, &cluster.store, "returns")
                .await
                .iter()
                .filter_map(|r| r["reference"].as_str().map(str::to_string))
                .collect();
        let log = cluster.complete_log().await;
        let db = cluster.database().await;
        for id in &returns {
            let record =
                errand::returns::store::load_record(&db, uuid::Uuid::parse_str(id).unwrap())
                    .await
                    .unwrap()
                    .expect("a return of ours");
            if record.request_state == errand::returns::store::RequestState::Submitting {
                if at_store.contains(id) {
                    caught.insert(id.clone(), lines_about(&log, ASKING, id));
                } else {
                    unheard.insert(id.clone());
                }
            }
        }
        db.close().await;
        serve = cluster.serve().await;
    }

    let finished = wait_until_credited(&cluster, &key, &returns).await;
    kill_and_reap(&mut serve).await;
    let log = cluster.complete_log().await;

    // The ground truth: one return per return of ours, under its reference, none other.
    let at_store = store_ground_truth(&cluster.client, &cluster.store, "returns").await;
    for id in &returns {
        let held: Vec<&Value> = at_store
            .iter()
            .filter(|r| r["reference"] == id.as_str())
            .collect();
        assert_eq!(
            held.len(),
            1,
            "return {id} is at the store {} times: {held:#?}\nits log:\n{}",
            held.len(),
            cluster.log_about(id)
        );
        assert_eq!(held[0]["status"], "credited", "{:#}", held[0]);
        assert_eq!(
            finished[id]["merchant_return_id"], held[0]["id"],
            "{:#}",
            finished[id]
        );
    }
    assert_eq!(
        at_store.len(),
        returns.len(),
        "returns for no return of ours: {at_store:#?}"
    );

    assert!(
        !caught.is_empty(),
        "no kill landed between the store recording a return and Errand hearing its answer"
    );
    for (id, asks) in &caught {
        assert!(
            lines_about(&log, ADOPTING, id) > 0,
            "return {id} was found by its reference:\n{}",
            cluster.log_about(id)
        );
        assert_eq!(
            lines_about(&log, ASKING, id),
            *asks,
            "return {id} was not asked for again:\n{}",
            cluster.log_about(id)
        );
    }
    println!(
        "{} returns through {KILLS} SIGKILLs: {} held by the store while Errand waited for its answer, \
         {} recorded as asked while the store did not have them",
        returns.len(),
        caught.len(),
        unheard.len()
    );
}

/// Asks Errand to return the order's one item; the return's id.
async fn ask_for_return(cluster: &Cluster, key: &str, order: &Value) -> String {
    let body = json!({"order_id": order["id"], "reason": "defective",
                      "items": [{"order_item_id": order["items"][0]["id"], "quantity": 1}]});
    let (status, created) = post_return(&cluster.client, &cluster.api, key, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("id").to_string()
}

/// Waits until the store has recorded one of `returns` (at most a minute).
async fn wait_until_the_store_holds_one_of(cluster: &Cluster, returns: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let at_store = store_ground_truth(&cluster.client, &cluster.store, "returns").await;
        if at_store
            .iter()
            .any(|r| returns.iter().any(|id| r["reference"] == id.as_str()))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the store never heard of {returns:?}; the last lines logged:\n{}",
            cluster.log_tail(80)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until each of `returns` is credited (at most three minutes); they, by id.
async fn wait_until_credited(
    cluster: &Cluster,
    key: &str,
    returns: &[String],
) -> HashMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let response = cluster
            .client
            .get(format!("{}/returns?limit=500", cluster.api))
            .bearer_auth(key)
            .send()
            .await
            .expect("list returns");
        let (status, listed) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let all: HashMap<String, Value> = listed["return_requests"]
            .as_array()
            .expect("returns")
            .iter()
            .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
            .collect();
        assert_eq!(all.len(), returns.len(), "{all:#?}");
        let open: Vec<&Value> = all.values().filter(|r| r["status"] != "credited").collect();
        if open.is_empty() {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{} returns were never credited: {open:#?}\nthe last lines logged:\n{}",
            open.len(),
            cluster.log_tail(80)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many lines of `log` say `what` about `id`.
fn lines_about(log: &[String], what: &str, id: &str) -> usize {
    log.iter()
        .filter(|l| l.contains(what) && l.contains(id))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_exactly_once_through_sigkill_on_sqlite() {
    returns_through_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_exactly_once_through_sigkill_on_postgres() {
    returns_through_sigkill(Backend::Postgres).await;
}
