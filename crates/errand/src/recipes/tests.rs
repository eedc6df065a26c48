//! Loading whole recipes: the demo retailer's, the examples of other stores, and
//! mistakes, each reported at its line and column.

use std::path::PathBuf;

use super::template::Var;
use super::values::{Value, parse};
use super::*;
use crate::orders::model::ErrorType;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    crate_dir().join("tests/fixtures/recipes")
}

fn load(path: PathBuf) -> Recipe {
    Recipe::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The problems `errand recipes check` prints for a recipe's text.
fn problems(text: &str) -> Vec<String> {
    match Recipe::parse("t.toml", text) {
        Ok(_) => vec![],
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

const HEAD: &str = r##"[recipe]
name = "t"
hosts = ["shop.example"]
version = 1
currency = "USD"

[account]
mode = "guest"
"##;

/// The phases a guest recipe needs, one step each; `extra` is added at the end (from
/// line 17 on).
fn guest_recipe(extra: &str) -> String {
    format!(
        r##"{HEAD}
[phases]
product = [ {{ read = {{ css = "#price" }}, into = "price", parse = "money" }} ]
cart = [ {{ click = {{ text = "Add" }} }} ]
checkout = [ {{ click = {{ text = "Next" }} }} ]
review = [ {{ read = {{ css = "#total" }}, into = "total", parse = "money" }} ]
place = [ {{ click = {{ text = "Buy" }} }} ]
confirm = [ {{ read = {{ css = "#id" }}, into = "merchant_order_id" }} ]
{extra}"##
    )
}

fn step_kinds(steps: &[Step]) -> Vec<&'static str> {
    steps.iter().map(|s| s.action.key()).collect()
}

#[test]
fn the_demo_recipe_loads() {
    let recipe = load(crate_dir().join("recipes/demo.toml"));
    assert_eq!(recipe.name, "demo");
    assert_eq!(recipe.account, AccountMode::SignIn);
    assert_eq!(recipe.currency.code(), "USD");
    let phases: Vec<Phase> = recipe.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, Phase::ALL);
    assert!(recipe.serves("127.0.0.1", Some(8090)));
    assert!(recipe.serves("LOCALHOST", None));
    assert!(!recipe.serves("shop.example", None));

    let sign_in = recipe.phase(Phase::SignIn).unwrap();
    assert!(matches!(&sign_in[0].action, Action::Goto(t) if t.source() == "/signin"));
    let totp = sign_in
        .iter()
        .find(|s| s.if_set.is_some())
        .expect("the code is given only when the account has one");
    assert_eq!(totp.if_set.as_ref().unwrap().to_string(), "account.totp");

    let cart = recipe.phase(Phase::Cart).unwrap();
    let Action::ForEachItem(per_item) = &cart[2].action else {
        panic!("the cart adds each item: {:?}", step_kinds(cart));
    };
    assert_eq!(
        step_kinds(per_item),
        [
            "goto",
            "click",
            "for_each_variant",
            "fill",
            "click",
            "wait_for"
        ]
    );

    let Action::Do(emptying) = &cart[1].action else {
        panic!("the cart is emptied first: {:?}", step_kinds(cart));
    };
    assert_eq!(step_kinds(emptying), ["click", "wait_for"]);
    assert!(cart[1].if_present.is_some());

    let lookup = recipe.phase(Phase::Lookup).unwrap();
    let found = lookup.last().unwrap();
    assert!(
        matches!(&found.action, Action::Read(read) if read.into == "merchant_order_id")
            && found.if_present.is_some()
    );

    assert_eq!(
        recipe
            .detectors_for(Phase::Place)
            .map(|d| d.error_type.as_str())
            .collect::<Vec<_>>(),
        [
            "login_failed",
            "product_unavailable",
            "out_of_stock",
            "insufficient_variants",
            "invalid_variant",
            "purchase_limit_exceeded",
            "shipping_address_refused",
            "gift_option_unavailable",
            "checkout_refused",
            "payment_declined",
            "checkout_blocked",
            "price_changed",
            "temporarily_unavailable",
            "retailer_error"
        ]
    );
    // Steps keep their line, for errors at run time.
    assert_eq!(sign_in[0].location.line, 92);

    // Returns: the tracking phase reads which product and SKU each line is, and the
    // return form gets a quantity per line of the return.
    assert!(recipe.takes_returns());
    let tracking = recipe.phase(Phase::Tracking).unwrap();
    let line_reads: Vec<(&str, Option<&str>)> = tracking
        .iter()
        .filter_map(|s| match &s.action {
            Action::Read(read) if read.into.starts_with("line_") => {
                Some((read.into.as_str(), read.attribute.as_deref()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        line_reads,
        [
            ("line_product_ids", Some("data-product-id")),
            ("line_skus", Some("data-sku"))
        ]
    );
    let asking = recipe.phase(Phase::Return).unwrap();
    let per_line = asking
        .iter()
        .find_map(|s| match &s.action {
            Action::ForEachReturnLine(steps) => Some(steps),
            _ => None,
        })
        .expect("a quantity per line");
    assert!(
        matches!(&per_line[0].action, Action::Fill { value, .. } if value.source() == "{{line.quantity}}")
    );
    assert!(matches!(
        &asking.last().unwrap().action,
        Action::Read(read) if read.into == "merchant_return_id"
    ));
    // The store's reasons are the contract's codes.
    assert!(recipe.return_reasons.is_empty());
    assert_eq!(recipe.return_reason("wrong_size"), "wrong_size");
}

#[test]
fn every_example_recipe_loads() {
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            loaded.push(load(path).name);
        }
    }
    loaded.sort();
    assert_eq!(loaded, ["harbor-outfitters", "kaufhaus", "linkwear"]);
}

#[test]
fn a_guest_checkout_with_an_e_mail_step_and_steps_a_store_skips() {
    let recipe = load(fixtures().join("guest-checkout.toml"));
    assert_eq!(recipe.account, AccountMode::Guest);
    assert!(recipe.phase(Phase::SignIn).is_none());
    let checkout = recipe.phase(Phase::Checkout).unwrap();
    let email = checkout
        .iter()
        .find(|s| {
            matches!(&s.action, Action::Fill { value, .. } if value.source() == "{{account.email}}")
        })
        .expect("an e-mail step");
    assert!(!email.is_conditional());
    let skipped: Vec<&str> = checkout
        .iter()
        .filter(|s| s.if_present.is_some())
        .map(|s| s.action.key())
        .collect();
    assert_eq!(skipped, ["click", "do", "uncheck"]);
    let gift = checkout
        .iter()
        .find(|s| s.if_set.is_some())
        .expect("a gift step");
    assert_eq!(gift.if_set, Some(Var::parse("order.gift_message").unwrap()));
}

#[test]
fn variants_chosen_by_following_links() {
    let recipe = load(fixtures().join("variant-links.toml"));
    let product = recipe.phase(Phase::Product).unwrap();
    let Action::ForEachVariant(steps) = &product[1].action else {
        panic!("{:?}", step_kinds(product));
    };
    assert_eq!(step_kinds(steps), ["click", "wait_for"]);
    assert_eq!(steps[0].error_type, Some(ErrorType::InvalidVariant));
    let price = product
        .iter()
        .find_map(|s| match &s.action {
            Action::Read(read) if read.into == "price" => Some(read),
            _ => None,
        })
        .unwrap();
    assert_eq!(price.attribute.as_deref(), Some("content"));
}

#[test]
fn quantities_set_in_the_basket_and_euro_prices() {
    let recipe = load(fixtures().join("basket-quantity.toml"));
    assert_eq!(recipe.currency.code(), "EUR");
    assert_eq!(
        parse(values::ParseKind::Money, "€1.234,56", recipe.currency),
        Ok(Value::Money(123_456))
    );
    let cart = recipe.phase(Phase::Cart).unwrap();
    let Action::ForEachItem(steps) = &cart[0].action else {
        panic!("{:?}", step_kinds(cart));
    };
    let quantity = steps
        .iter()
        .find_map(|s| match &s.action {
            Action::Fill {
                target: Target::Css(css),
                value,
            } if value.source() == "{{item.quantity}}" => Some(css.source()),
            _ => None,
        })
        .expect("the quantity is typed into the basket line");
    assert!(quantity.contains("{{values.article}}"), "{quantity}");
}

fn fixture_problems(name: &str) -> String {
    let text = std::fs::read_to_string(fixtures().join("invalid").join(name)).unwrap();
    Recipe::parse(name, &text).unwrap_err().to_string()
}

#[test]
fn mistakes_are_reported_at_their_line() {
    assert_eq!(
        fixture_problems("mistakes.toml"),
        r##"mistakes.toml:17:13: `item.url` is only available in the product phase and inside for_each_item
mistakes.toml:19:5: step has two actions (click, fill); a step takes exactly one
mistakes.toml:23:40: unknown variable `shipping.zip_code` (known: shipping.first_name, shipping.last_name, shipping.address_line1, shipping.address_line2, shipping.city, shipping.state, shipping.postal_code, shipping.country, shipping.phone_number)
mistakes.toml:24:41: `account.totp` is not available: the recipe checks out as a guest
mistakes.toml:25:40: `value` does not go with `click` (it is for fill and select)
mistakes.toml:26:13: give one of css, text or label, not css and text
mistakes.toml:27:41: `values.note` is not read before this step: read it with into = "note" earlier in this phase or an earlier one from cart on
mistakes.toml:30:56: `total` in the review phase must be read with parse = "money" (what the order costs, checked against the price cap)
mistakes.toml:35:11: the confirm phase never reads `merchant_order_id` (the store's order number): add a read step with into = "merchant_order_id", parse = "text""##
    );
    assert_eq!(
        fixture_problems("tables.toml"),
        r##"tables.toml:11:1: missing phase sign_in: the account mode is sign_in
tables.toml:19:1: step has two actions (goto, click); a step takes exactly one
tables.toml:27:1: `total` is read only by an optional or conditional step; the engine needs it every time"##
    );
}

#[test]
fn unknown_keys_and_parse_kinds_are_reported_at_their_line() {
    assert!(fixture_problems("unknown-key.toml").starts_with(
        "unknown-key.toml:13:5: unknown field `clik`, expected one of `goto`, `click`,"
    ),);
    assert_eq!(
        fixture_problems("parse-kind.toml"),
        "parse-kind.toml:12:56: unknown variant `float`, expected one of `text`, `money`, `integer`, `date`"
    );
}

#[test]
fn the_minimal_guest_recipe_is_valid() {
    assert_eq!(problems(&guest_recipe("")), Vec::<String>::new());
}

#[test]
fn placing_needs_every_placing_phase() {
    let text = format!("{HEAD}\n[phases]\nproduct = [ {{ goto = \"{{{{item.url}}}}\" }} ]\n");
    assert_eq!(
        problems(&text),
        [
            "t.toml:10:1: missing phases cart, checkout, review, place, confirm: placing an order needs product, cart, checkout, review, place and confirm",
            "t.toml:11:11: the product phase never reads `price` (the item's unit price, checked against the price cap): add a read step with into = \"price\", parse = \"money\"",
        ]
    );
    assert_eq!(problems(HEAD), ["t.toml:1:1: missing field `phases`"]);
}

#[test]
fn sign_in_goes_with_the_account_mode() {
    let text = guest_recipe("sign_in = [ { goto = \"/login\" } ]");
    assert_eq!(
        problems(&text),
        [
            "t.toml:17:11: a guest recipe has no sign_in phase (set [account] mode = \"sign_in\" to sign in)"
        ]
    );
    let text = guest_recipe("").replace("mode = \"guest\"", "mode = \"sign_in\"");
    assert_eq!(
        problems(&text),
        ["t.toml:10:1: missing phase sign_in: the account mode is sign_in"]
    );
    let text = guest_recipe("").replace("mode = \"guest\"", "mode = \"member\"");
    assert_eq!(
        problems(&text),
        ["t.toml:8:8: unknown variant `member`, expected `sign_in` or `guest`"]
    );
}

#[test]
fn steps_need_exactly_one_action_with_its_arguments() {
    let text = guest_recipe(
        r##"lookup = [
  { optional = true },
  { click = { css = "a" }, goto = "/x", fill = { css = "b" } },
  { fill = { css = "#q" } },
  { read = { css = "#q" } },
  { assert = { css = "#q" }, equals = "a", contains = "b" },
  { goto = "/x", parse = "money", all = true },
  { click = { } },
  { wait_for = { css = "a", url_contains = "/b" } },
  { read = { css = "#id" }, into = "merchant_order_id" },
]"##,
    );
    assert_eq!(
        problems(&text),
        [
            "t.toml:18:3: step has no action; a step takes exactly one of goto, click, fill, select, check, uncheck, wait_for, read, assert, screenshot, for_each_item, for_each_variant, for_each_return_line, do",
            "t.toml:19:3: step has three actions (goto, click, fill); a step takes exactly one",
            "t.toml:20:3: `fill` needs `value`: what to type",
            "t.toml:21:3: `read` needs `into`: the name to store the value under",
            "t.toml:22:55: an assert takes `equals` or `contains`, not both",
            "t.toml:23:26: `parse` does not go with `goto` (it is for read)",
            "t.toml:23:41: `all` does not go with `goto` (it is for read)",
            "t.toml:24:13: give one of css, text or label",
            "t.toml:25:16: give one of css, text, label or url_contains, not css and url_contains",
        ]
    );
}

#[test]
fn modifiers_are_checked() {
    let text = guest_recipe(
        r##"lookup = [
  { click = { css = "a" }, retries = 11 },
  { click = { css = "a" }, timeout_ms = 0 },
  { click = { css = "a" }, if_set = "{{order.gift_message}}" },
  { click = { css = "a" }, if_set = "order.gift" },
  { click = { css = "a" }, optional = true, error_type = "out_of_stock" },
  { click = { css = "a" }, error_type = "sold_out" },
  { screenshot = "Review Page" },
  { read = { css = "#id" }, into = "merchant_order_id", if_present = { css = "#id" }, retries = 2, timeout_ms = 5000, error_type = "retailer_error" },
]"##,
    );
    let found = problems(&text);
    assert_eq!(
        found[..5],
        [
            "t.toml:18:38: retries must be from 0 to 10",
            "t.toml:19:41: timeout_ms must be from 1 to 600000 (ten minutes)",
            "t.toml:20:37: write the variable's name without braces, e.g. if_set = \"order.gift_message\"",
            "t.toml:21:37: unknown variable `order.gift` (known: order.reference, order.is_gift, order.gift_message, order.po_number, order.handling_days_max, order.merchant_order_id)",
            "t.toml:22:58: an optional step never fails, so it cannot have an error_type",
        ]
    );
    assert_eq!(
        found[5],
        "t.toml:23:41: unknown error_type \"sold_out\" (known: login_failed, product_not_found, \
         product_unavailable, out_of_stock, invalid_variant, insufficient_variants, \
         purchase_limit_exceeded, gift_option_unavailable, shipping_address_refused, \
         checkout_refused, payment_declined, \
         checkout_blocked, price_changed, retailer_error, temporarily_unavailable)"
    );
    assert_eq!(
        found[6..],
        ["t.toml:24:18: a screenshot's name must be lower-case letters, digits, `-` or `_`"]
    );

    let recipe = Recipe::parse("t.toml", &guest_recipe(
        r##"lookup = [ { read = { css = "#id" }, into = "merchant_order_id", if_present = { css = "#id" }, retries = 2, timeout_ms = 5000, error_type = "retailer_error" } ]"##,
    ))
    .unwrap();
    let step = &recipe.phase(Phase::Lookup).unwrap()[0];
    assert_eq!(
        (
            step.retries,
            step.timeout_ms,
            step.error_type,
            step.optional
        ),
        (2, Some(5000), Some(ErrorType::RetailerError), false)
    );
    assert!(matches!(&step.if_present, Some(Target::Css(t)) if t.source() == "#id"));
}

#[test]
fn loops_give_item_and_variant_only_inside_them() {
    let text = guest_recipe(
        r##"lookup = [
  { goto = "{{item.url}}" },
  { for_each_variant = [ { click = { text = "{{variant.value}}" } } ] },
  { for_each_item = [
    { fill = { label = "Qty" }, value = "{{item.quantity}}" },
    { click = { text = "{{variant.value}}" } },
    { for_each_item = [ { goto = "/" } ] },
    { for_each_variant = [ { click = { text = "{{variant.name}}: {{variant.value}} {{item.variant.Size}}" } } ] },
  ] },
  { for_each_item = [] },
  { read = { css = "#id" }, into = "merchant_order_id" },
]"##,
    );
    assert_eq!(
        problems(&text),
        [
            "t.toml:18:13: `item.url` is only available in the product phase and inside for_each_item",
            "t.toml:19:3: for_each_variant needs an item: use it in the product phase or inside for_each_item",
            "t.toml:22:25: `variant.value` is only available inside for_each_variant",
            "t.toml:23:5: for_each_item cannot be used here: it is already inside for_each_item",
            "t.toml:26:21: `for_each_item` has no steps",
        ]
    );
    let text = guest_recipe("").replace(
        "product = [",
        "product = [ { for_each_item = [ { goto = \"/\" } ] },",
    );
    assert_eq!(
        problems(&text),
        [
            "t.toml:11:13: for_each_item cannot be used here: the product phase already runs once per item"
        ]
    );
}

#[test]
fn values_must_be_read_before_they_are_used() {
    // Read in cart, used in checkout and review: values carry over within a checkout.
    let text = guest_recipe(
        r##"lookup = [
  { fill = { label = "Ref" }, value = "{{values.sku}}" },
  { read = { css = ".sku" }, into = "sku" },
  { fill = { label = "Ref" }, value = "{{values.sku}}" },
  { read = { css = ".ids" }, into = "ids", all = true },
  { fill = { label = "Ref" }, value = "{{values.ids}}" },
  { read = { css = "#id" }, into = "merchant_order_id" },
  { read = { css = "#id" }, into = "Bad Name" },
]"##,
    )
    .replace(
        r##"cart = [ { click = { text = "Add" } } ]"##,
        r##"cart = [ { read = { css = ".n" }, into = "count", parse = "integer" } ]"##,
    )
    .replace(
        r##"checkout = [ { click = { text = "Next" } } ]"##,
        r##"checkout = [ { fill = { label = "N" }, value = "{{values.count}}" } ]"##,
    );
    assert_eq!(
        problems(&text),
        [
            "t.toml:18:40: `values.sku` is not read before this step: read it with into = \"sku\" earlier in this phase",
            "t.toml:22:40: `values.ids` is a list (read with all = true) and cannot be used in a template",
            "t.toml:24:36: \"Bad Name\" cannot name a value: use lower-case letters, digits and `_`, starting with a letter",
        ]
    );
}

#[test]
fn engine_values_are_read_the_way_the_engine_needs() {
    let text = guest_recipe(
        r##"tracking = [
  { read = { css = ".tracking" }, into = "tracking_numbers" },
  { read = { css = "#status" }, into = "status", all = true },
]"##,
    )
    .replace(
        r##"review = [ { read = { css = "#total" }, into = "total", parse = "money" } ]"##,
        r##"review = [ { read = { css = "#total" }, into = "total", parse = "money", if_present = { css = "#total" } } ]"##,
    );
    assert_eq!(
        problems(&text),
        [
            "t.toml:14:12: `total` is read only by an optional or conditional step; the engine needs it every time",
            "t.toml:18:42: `tracking_numbers` is a list (one per shipment): read it with all = true",
            "t.toml:19:40: `status` is one value: read it without all = true",
        ]
    );
    // A lookup that finds nothing reads nothing: its read may be conditional.
    let text = guest_recipe(
        r##"lookup = [ { read = { css = "#id" }, into = "merchant_order_id", if_present = { css = "#id" } } ]"##,
    );
    assert_eq!(problems(&text), Vec::<String>::new());
    let text = guest_recipe(r##"lookup = [ { goto = "/orders" } ]"##);
    assert_eq!(
        problems(&text),
        [
            "t.toml:17:10: the lookup phase never reads `merchant_order_id` (the order found (no value: none was found)): add a read step with into = \"merchant_order_id\", parse = \"text\""
        ]
    );
}

#[test]
fn recipe_table_and_detectors_are_checked() {
    let text = guest_recipe(
        r##"
[[detect]]
error_type = "out_of_stock"

[[detect]]
error_type = "payment_declined"
text = ""
phases = ["cart", "pay"]

[[detect]]
error_type = "checkout_blocked"
css = "#captcha"
phases = []
"##,
    )
    .replace("name = \"t\"", "name = \"My Store\"")
    .replace(
        "hosts = [\"shop.example\"]",
        "hosts = [\"shop.example/path\", \"Shop.example\"]",
    )
    .replace("currency = \"USD\"", "currency = \"KWD\"");
    assert_eq!(
        problems(&text),
        [
            "t.toml:2:8: name must be lower-case letters, digits, `-` or `_`, e.g. \"my-store\"",
            "t.toml:3:10: \"shop.example/path\" is not a host: write it like \"shop.example\" or \"127.0.0.1:8090\", in lower case, without scheme or path",
            "t.toml:3:31: \"Shop.example\" is not a host: write it like \"shop.example\" or \"127.0.0.1:8090\", in lower case, without scheme or path",
            "t.toml:5:12: currency KWD has three decimals, which recipes cannot read unambiguously",
            "t.toml:18:1: a detector needs `css`, `text` or both: what on the page means this error",
            "t.toml:23:8: `text` is empty",
            "t.toml:24:19: unknown phase \"pay\" (known: sign_in, product, cart, checkout, review, place, confirm, lookup, tracking, return, return_lookup, return_status)",
            "t.toml:29:10: phases is empty: leave it out to watch every phase",
        ]
    );
}

#[test]
fn a_detector_can_say_how_many_units_the_store_would_sell() {
    let text = guest_recipe(
        r##"
[[detect]]
error_type = "out_of_stock"
css = "#error"
available = "data-available"

[[detect]]
error_type = "purchase_limit_exceeded"
text = "at most"
available = "data-left"
"##,
    );
    assert_eq!(
        problems(&text),
        ["t.toml:26:13: `available` is an attribute of the element `css` finds: give `css` too"]
    );
    let fixed = text.replace("text = \"at most\"", "css = \"#limit\"");
    let recipe = Recipe::parse("t.toml", &fixed).unwrap();
    let available: Vec<Option<&str>> = recipe
        .detectors_for(Phase::Cart)
        .map(|d| d.available.as_deref())
        .collect();
    assert_eq!(available, [Some("data-available"), Some("data-left")]);
}

#[test]
fn template_errors_point_into_the_string_when_they_can() {
    // Plain strings: the column of the `{{`; strings with escapes: the string's start.
    let text = guest_recipe(
        r##"lookup = [
  { goto = "/orders?q={{order.ref}}" },
  { goto = "/orders\t{{order.ref}}" },
  { goto = "/x/{{item.url" },
  { read = { css = "#id" }, into = "merchant_order_id" },
]"##,
    );
    let found = problems(&text);
    assert!(
        found[0].starts_with("t.toml:18:23: unknown variable `order.ref`"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("t.toml:19:12: unknown variable `order.ref`"),
        "{found:?}"
    );
    assert_eq!(found[2], "t.toml:20:16: `{{` is never closed with `}}`");
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = "a = \"€\"\nbé = 1\n";
    assert_eq!(Location::of(text, 0), Location { line: 1, column: 1 });
    assert_eq!(Location::of(text, 10), Location { line: 2, column: 1 });
    let after_e_acute = text.find(" = 1").unwrap();
    assert_eq!(
        Location::of(text, after_e_acute),
        Location { line: 2, column: 3 }
    );
    assert_eq!(Location::of(text, 1_000), Location { line: 3, column: 1 });
}

#[test]
fn a_file_that_cannot_be_read_is_reported() {
    let error = Recipe::load(&fixtures().join("no-such-recipe.toml")).unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert_eq!(error.problems[0].location, None);
    assert!(
        error.to_string().ends_with(
            "no-such-recipe.toml: cannot read the recipe: No such file or directory (os error 2)"
        ),
        "{error}"
    );
}

#[test]
fn toml_syntax_errors_are_located() {
    let text = guest_recipe("lookup = [ { goto = \"/x\" ]");
    assert_eq!(
        problems(&text),
        ["t.toml:17:26: invalid inline table: expected `}`"]
    );
}

/// The phases a recipe needs to take returns (`tracking` reading the order's lines, and
/// the three return phases), one line a step, at lines 17 to 40, then `extra`.
fn returns_recipe(extra: &str) -> String {
    guest_recipe(&format!(
        r##"tracking = [
  {{ read = {{ css = ".tracking" }}, into = "tracking_numbers", all = true }},
  {{ read = {{ css = ".line" }}, attribute = "data-product-id", into = "line_product_ids", all = true }},
]
return = [
  {{ goto = "/orders/{{{{order.merchant_order_id}}}}/return" }},
  {{ select = {{ label = "Reason" }}, value = "{{{{return.reason}}}}" }},
  {{ for_each_return_line = [
    {{ fill = {{ css = "[name='qty_{{{{line.sku}}}}']" }}, value = "{{{{line.quantity}}}}" }},
  ] }},
  {{ fill = {{ label = "Reference" }}, value = "{{{{return.reference}}}}" }},
  {{ fill = {{ label = "Notes" }}, value = "{{{{return.notes}}}}" }},
  {{ click = {{ text = "Request" }} }},
  {{ read = {{ css = "#return-id" }}, into = "merchant_return_id" }},
]
return_lookup = [
  {{ goto = "/returns?q={{{{return.reference}}}}" }},
  {{ read = {{ css = ".return" }}, attribute = "data-id", into = "merchant_return_id", if_present = {{ css = ".return" }} }},
]
return_status = [
  {{ goto = "/returns/{{{{return.merchant_return_id}}}}" }},
  {{ read = {{ css = "#status" }}, into = "status" }},
  {{ read = {{ css = "#label" }}, attribute = "href", into = "label_url", optional = true }},
]
{extra}"##
    ))
}

#[test]
fn a_recipe_with_the_return_phases_takes_returns() {
    let recipe = Recipe::parse("t.toml", &returns_recipe("")).unwrap_or_else(|e| panic!("{e}"));
    assert!(recipe.takes_returns());
    let phases: Vec<Phase> = recipe.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        phases[phases.len() - 3..],
        [Phase::Return, Phase::ReturnLookup, Phase::ReturnStatus]
    );
    let asking = recipe.phase(Phase::Return).unwrap();
    assert_eq!(
        step_kinds(asking),
        [
            "goto",
            "select",
            "for_each_return_line",
            "fill",
            "fill",
            "click",
            "read"
        ]
    );
    let Action::ForEachReturnLine(per_line) = &asking[2].action else {
        unreachable!()
    };
    assert_eq!(per_line[0].location.line, 25);
    assert!(!load(crate_dir().join("tests/fixtures/recipes/guest-checkout.toml")).takes_returns());
    assert!(
        !Recipe::parse("t.toml", &guest_recipe(""))
            .unwrap()
            .takes_returns()
    );
}

#[test]
fn the_return_phases_come_together_and_need_the_lines_of_tracking() {
    let asking_only = guest_recipe(
        r##"return = [ { read = { css = "#return-id" }, into = "merchant_return_id" } ]"##,
    );
    assert_eq!(
        problems(&asking_only),
        [
            "t.toml:10:1: missing phases return_lookup, return_status: taking returns needs return, return_lookup and return_status",
            "t.toml:10:1: missing phase tracking: the return phases need it to read the order's lines (`line_product_ids`)",
        ]
    );
    let without_lines = returns_recipe("").replace(
        r##"  { read = { css = ".line" }, attribute = "data-product-id", into = "line_product_ids", all = true },
"##,
        "",
    );
    assert_eq!(
        problems(&without_lines),
        [
            "t.toml:17:12: the tracking phase never reads `line_product_ids`, which the return phases need (to tell which of the store's lines, and SKUs, are the order's items, and when they are delivered): add a read step with into = \"line_product_ids\", all = true"
        ]
    );
    // The return phases read what the engine needs.
    let text = returns_recipe("")
        .replace(
            r##"  { read = { css = "#return-id" }, into = "merchant_return_id" },"##,
            r##"  { read = { css = "#return-id" }, into = "merchant_return_id", optional = true },"##,
        )
        .replace(
            r##"  { read = { css = "#status" }, into = "status" },"##,
            r##"  { read = { css = "#status" }, into = "status", all = true },"##,
        )
        .replace(
            r##"into = "line_product_ids", all = true"##,
            r##"into = "line_product_ids""##,
        );
    assert_eq!(
        problems(&text),
        [
            "t.toml:19:69: `line_product_ids` is a list (one per line of the order, the product as its URL's last path segment names it, to tell which of the order's items each line is): read it with all = true",
            "t.toml:30:3: `merchant_return_id` is read only by an optional or conditional step; the engine needs it every time",
            "t.toml:38:40: `status` is one value: read it without all = true",
        ]
    );
    let text = returns_recipe("").replace(
        r##"  { read = { css = "#status" }, into = "status" },
"##,
        "",
    );
    assert_eq!(
        problems(&text),
        [
            "t.toml:36:17: the return_status phase never reads `status` (the return's status: approved, denied, received or credited, in the store's words): add a read step with into = \"status\", parse = \"text\""
        ]
    );
}

#[test]
fn return_variables_are_available_only_where_the_return_is_known() {
    let text = returns_recipe("")
        .replace(
            r##"  { goto = "/returns?q={{return.reference}}" },"##,
            r##"  { goto = "/returns?q={{return.reference}}&r={{return.reason}}&o={{order.merchant_order_id}}" },"##,
        )
        .replace(
            r##"  { goto = "/returns/{{return.merchant_return_id}}" },"##,
            r##"  { goto = "/returns/{{return.merchant_return_id}}?sku={{line.sku}}" },
  { for_each_return_line = [ { goto = "/" } ] },"##,
        )
        .replace(
            r##"  { click = { text = "Request" } },"##,
            r##"  { click = { text = "{{return.merchant_return_id}} {{line.quantity}}" } },
  { for_each_return_line = [ { for_each_return_line = [ { goto = "/" } ] } ] },"##,
        );
    assert_eq!(
        problems(&text),
        [
            "t.toml:29:23: `return.merchant_return_id` is only available in the return_status phase",
            "t.toml:29:53: `line.quantity` is only available inside for_each_return_line",
            "t.toml:30:30: for_each_return_line cannot be nested",
            "t.toml:34:47: `return.reason` is only available in the return phase",
            "t.toml:34:67: `order.merchant_order_id` is only known in the tracking and return phases",
            "t.toml:38:56: `line.sku` is only available inside for_each_return_line",
            "t.toml:39:3: for_each_return_line is only for the return phase",
        ]
    );
    assert_eq!(
        problems(&guest_recipe(
            r##"lookup = [ { goto = "/r/{{return.reference}}" }, { read = { css = "#id" }, into = "merchant_order_id" } ]"##
        )),
        [
            "t.toml:17:25: `return.reference` is only available in the return and return_lookup phases"
        ]
    );
}

#[test]
fn return_reasons_give_the_stores_words_for_the_contracts_codes() {
    let mapped = returns_recipe(
        r##"
[return_reasons]
wrong_size = "Doesn't fit"
no_longer_needed = "Changed my mind"
"##,
    );
    let recipe = Recipe::parse("t.toml", &mapped).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recipe.return_reason("wrong_size"), "Doesn't fit");
    assert_eq!(recipe.return_reason("no_longer_needed"), "Changed my mind");
    assert_eq!(recipe.return_reason("damaged"), "damaged");

    let wrong = returns_recipe(
        r##"
[return_reasons]
too_big = "Too big"
damaged = " "
"##,
    );
    assert_eq!(
        problems(&wrong),
        [
            "t.toml:43:11: \"too_big\" is not a return reason (known: damaged, not_delivered, empty_box, wrong_item, defective, not_as_described, wrong_size, no_longer_needed, forced_cancellation, other)",
            "t.toml:44:11: the store's words for \"damaged\" are empty",
        ]
    );
    let without_returns = guest_recipe("\n[return_reasons]\ndamaged = \"Broken\"\n");
    assert_eq!(
        problems(&without_returns),
        [
            "t.toml:19:11: [return_reasons] is for the return phases, which this recipe does not have"
        ]
    );
}
