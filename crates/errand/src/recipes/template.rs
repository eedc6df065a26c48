//! Templates in recipe strings: `Ship to {{shipping.first_name}}`. A template is parsed
//! once, when the recipe loads, so an unknown variable is a load error with a line
//! number; rendering fills in the variables from a [`Context`] and fails, naming the
//! variable, when the order has no value for it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use crate::orders::address::Address;
use crate::orders::model::Variant;

/// A parsed template: literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A variable, and the byte offset of its `{{` in the template.
    Var(Var, usize),
}

/// A variable a template can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `shipping.<field>`: the order's shipping address.
    Shipping(ShippingField),
    /// `order.reference`, `order.is_gift`, `order.gift_message`, `order.po_number`,
    /// `order.merchant_order_id`.
    Order(OrderField),
    /// `account.email`, `account.password`, `account.totp`.
    Account(AccountField),
    /// `item.url`: the product URL of the item in hand.
    ItemUrl,
    /// `item.quantity`.
    ItemQuantity,
    /// `item.offer_id`: the seller's offer to buy, when the driver chose one other than
    /// the page's own (to ship within `handling_days_max`); unset otherwise.
    ItemOfferId,
    /// `item.variant.<Name>`: the item's choice for the option called `<Name>`.
    ItemVariant(String),
    /// `variant.name` inside `for_each_variant`.
    VariantName,
    /// `variant.value` inside `for_each_variant`.
    VariantValue,
    /// `return.reference`, `return.reason`, `return.notes`, `return.merchant_return_id`.
    Return(ReturnField),
    /// `line.sku` inside `for_each_return_line`: the store's SKU of the line.
    LineSku,
    /// `line.quantity` inside `for_each_return_line`: how many to return.
    LineQuantity,
    /// `values.<name>`: text an earlier `read` step stored under `<name>`.
    Value(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    /// Errand's reference for the order, given to the store as the buyer reference.
    Reference,
    /// `true` for a gift (choose the store's gift option); unset otherwise, so that
    /// `if_set = "order.is_gift"` runs a step only for gifts.
    IsGift,
    GiftMessage,
    /// The buyer's purchase-order number.
    PoNumber,
    /// The longest a seller may take to ship, in days; unset for no limit.
    HandlingDaysMax,
    /// The store's order number; known once the order is placed (`tracking`).
    MerchantOrderId,
}

/// What the return phases know of the return in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnField {
    /// Errand's id of the return, given to the store as its reference so that the
    /// return can be found again after an interruption.
    Reference,
    /// The contract's reason code (`damaged`, `wrong_size`, …), or the store's words for
    /// it from the recipe's `[return_reasons]`.
    Reason,
    Notes,
    /// The store's id of the return (`return_status`).
    MerchantReturnId,
}

impl ReturnField {
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnField::Reference => "reference",
            ReturnField::Reason => "reason",
            ReturnField::Notes => "notes",
            ReturnField::MerchantReturnId => "merchant_return_id",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountField {
    Email,
    Password,
    /// The current one-time code of the account's authenticator secret.
    Totp,
}

/// The fields of [`Address`], by the names the order API gives them.
pub const SHIPPING_FIELDS: [&str; 9] = [
    "first_name",
    "last_name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "phone_number",
];

/// One of [`SHIPPING_FIELDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippingField(&'static str);

impl Var {
    /// Parses a variable name, e.g. `shipping.city` or `item.variant.Size`.
    pub fn parse(name: &str) -> Result<Var, String> {
        let name = name.trim();
        let (head, rest) = name.split_once('.').unwrap_or((name, ""));
        let var = match (head, rest) {
            ("shipping", field) => SHIPPING_FIELDS
                .iter()
                .find(|f| **f == field)
                .map(|f| Var::Shipping(ShippingField(f))),
            ("order", "reference") => Some(Var::Order(OrderField::Reference)),
            ("order", "is_gift") => Some(Var::Order(OrderField::IsGift)),
            ("order", "gift_message") => Some(Var::Order(OrderField::GiftMessage)),
            ("order", "po_number") => Some(Var::Order(OrderField::PoNumber)),
            ("order", "handling_days_max") => Some(Var::Order(OrderField::HandlingDaysMax)),
            ("order", "merchant_order_id") => Some(Var::Order(OrderField::MerchantOrderId)),
            ("account", "email") => Some(Var::Account(AccountField::Email)),
            ("account", "password") => Some(Var::Account(AccountField::Password)),
            ("account", "totp") => Some(Var::Account(AccountField::Totp)),
            ("item", "url") => Some(Var::ItemUrl),
            ("item", "quantity") => Some(Var::ItemQuantity),
            ("item", "offer_id") => Some(Var::ItemOfferId),
            ("item", rest) => rest
                .strip_prefix("variant.")
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| Var::ItemVariant(n.to_string())),
            ("variant", "name") => Some(Var::VariantName),
            ("variant", "value") => Some(Var::VariantValue),
            ("return", "reference") => Some(Var::Return(ReturnField::Reference)),
            ("return", "reason") => Some(Var::Return(ReturnField::Reason)),
            ("return", "notes") => Some(Var::Return(ReturnField::Notes)),
            ("return", "merchant_return_id") => Some(Var::Return(ReturnField::MerchantReturnId)),
            ("line", "sku") => Some(Var::LineSku),
            ("line", "quantity") => Some(Var::LineQuantity),
            ("values", rest) => is_value_name(rest).then(|| Var::Value(rest.to_string())),
            _ => None,
        };
        var.ok_or_else(|| {
            let known = match head {
                "shipping" => format!("shipping.{}", SHIPPING_FIELDS.join(", shipping.")),
                "order" => "order.reference, order.is_gift, order.gift_message, order.po_number, order.handling_days_max, order.merchant_order_id".into(),
                "account" => "account.email, account.password, account.totp".into(),
                "item" => "item.url, item.quantity, item.offer_id, item.variant.<Name>".into(),
                "variant" => "variant.name, variant.value".into(),
                "return" => {
                    "return.reference, return.reason, return.notes, return.merchant_return_id"
                        .into()
                }
                "line" => "line.sku, line.quantity".into(),
                "values" => "values.<name>, where <name> is a read step's `into`".into(),
                _ => {
                    "shipping.*, order.*, account.*, item.*, variant.*, return.*, line.*, values.*"
                        .into()
                }
            };
            format!("unknown variable `{name}` (known: {known})")
        })
    }
}

/// Whether `name` can name a value (`into` of a read step): lower-case letters, digits
/// and `_`, starting with a letter.
pub fn is_value_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Shipping(ShippingField(field)) => write!(f, "shipping.{field}"),
            Var::Order(OrderField::Reference) => f.write_str("order.reference"),
            Var::Order(OrderField::IsGift) => f.write_str("order.is_gift"),
            Var::Order(OrderField::GiftMessage) => f.write_str("order.gift_message"),
            Var::Order(OrderField::PoNumber) => f.write_str("order.po_number"),
            Var::Order(OrderField::HandlingDaysMax) => f.write_str("order.handling_days_max"),
            Var::Order(OrderField::MerchantOrderId) => f.write_str("order.merchant_order_id"),
            Var::Account(AccountField::Email) => f.write_str("account.email"),
            Var::Account(AccountField::Password) => f.write_str("account.password"),
            Var::Account(AccountField::Totp) => f.write_str("account.totp"),
            Var::ItemUrl => f.write_str("item.url"),
            Var::ItemQuantity => f.write_str("item.quantity"),
            Var::ItemOfferId => f.write_str("item.offer_id"),
            Var::ItemVariant(name) => write!(f, "item.variant.{name}"),
            Var::VariantName => f.write_str("variant.name"),
            Var::VariantValue => f.write_str("variant.value"),
            Var::Return(field) => write!(f, "return.{}", field.as_str()),
            Var::LineSku => f.write_str("line.sku"),
            Var::LineQuantity => f.write_str("line.quantity"),
            Var::Value(name) => write!(f, "values.{name}"),
        }
    }
}

/// What a template is rendered from: the order, the account, the item and variant a
/// loop is at, the return and its line, and the values read so far.
pub struct Context<'a> {
    pub shipping: &'a Address,
    pub order: OrderValues<'a>,
    pub account: AccountValues<'a>,
    /// The item in hand: in the `product` phase and inside `for_each_item`.
    pub item: Option<ItemValues<'a>>,
    /// The variant choice in hand, inside `for_each_variant`.
    pub variant: Option<&'a Variant>,
    /// The return in hand, in the return phases.
    pub returning: Option<ReturnValues<'a>>,
    /// The return's line in hand, inside `for_each_return_line`.
    pub line: Option<LineValues<'a>>,
    /// Text read by earlier `read` steps, by their `into` name.
    pub values: &'a BTreeMap<String, String>,
}

pub struct OrderValues<'a> {
    pub reference: &'a str,
    pub is_gift: bool,
    pub gift_message: Option<&'a str>,
    pub po_number: Option<&'a str>,
    pub handling_days_max: Option<i64>,
    pub merchant_order_id: Option<&'a str>,
}

pub struct AccountValues<'a> {
    /// The account's e-mail; for guest checkout, the configured guest e-mail.
    pub email: &'a str,
    pub password: Option<&'a str>,
    /// The one-time code, computed by the caller just before rendering.
    pub totp: Option<String>,
}

pub struct ReturnValues<'a> {
    pub reference: &'a str,
    /// The reason as the store words it.
    pub reason: &'a str,
    pub notes: Option<&'a str>,
    pub merchant_return_id: Option<&'a str>,
}

pub struct LineValues<'a> {
    pub sku: &'a str,
    pub quantity: i32,
}

pub struct ItemValues<'a> {
    pub url: &'a str,
    pub quantity: i32,
    pub offer_id: Option<&'a str>,
    pub variant: &'a [Variant],
}

impl Context<'_> {
    /// The variable's value, if the order (or page) has one.
    pub fn get(&self, var: &Var) -> Option<Cow<'_, str>> {
        fn borrowed(value: Option<&str>) -> Option<Cow<'_, str>> {
            value.map(Cow::Borrowed)
        }
        match var {
            Var::Shipping(ShippingField(field)) => {
                let a = self.shipping;
                let value = match *field {
                    "first_name" => Some(a.first_name.as_str()),
                    "last_name" => Some(a.last_name.as_str()),
                    "address_line1" => Some(a.address_line1.as_str()),
                    "address_line2" => a.address_line2.as_deref(),
                    "city" => Some(a.city.as_str()),
                    "state" => a.state.as_deref(),
                    "postal_code" => Some(a.postal_code.as_str()),
                    "country" => Some(a.country.as_str()),
                    "phone_number" => Some(a.phone_number.as_str()),
                    _ => None,
                };
                borrowed(value)
            }
            Var::Order(OrderField::Reference) => borrowed(Some(self.order.reference)),
            Var::Order(OrderField::IsGift) => borrowed(self.order.is_gift.then_some("true")),
            Var::Order(OrderField::GiftMessage) => borrowed(self.order.gift_message),
            Var::Order(OrderField::PoNumber) => borrowed(self.order.po_number),
            Var::Order(OrderField::HandlingDaysMax) => self
                .order
                .handling_days_max
                .map(|d| Cow::Owned(d.to_string())),
            Var::Order(OrderField::MerchantOrderId) => borrowed(self.order.merchant_order_id),
            Var::Account(AccountField::Email) => borrowed(Some(self.account.email)),
            Var::Account(AccountField::Password) => borrowed(self.account.password),
            Var::Account(AccountField::Totp) => self.account.totp.as_deref().map(Cow::Borrowed),
            Var::ItemUrl => borrowed(self.item.as_ref().map(|i| i.url)),
            Var::ItemQuantity => self
                .item
                .as_ref()
                .map(|i| Cow::Owned(i.quantity.to_string())),
            Var::ItemOfferId => borrowed(self.item.as_ref().and_then(|i| i.offer_id)),
            Var::ItemVariant(name) => borrowed(self.item.as_ref().and_then(|i| {
                i.variant
                    .iter()
                    .find(|v| v.label.eq_ignore_ascii_case(name))
                    .map(|v| v.value.as_str())
            })),
            Var::VariantName => borrowed(self.variant.map(|v| v.label.as_str())),
            Var::VariantValue => borrowed(self.variant.map(|v| v.value.as_str())),
            Var::Return(field) => borrowed(self.returning.as_ref().and_then(|r| match field {
                ReturnField::Reference => Some(r.reference),
                ReturnField::Reason => Some(r.reason),
                ReturnField::Notes => r.notes,
                ReturnField::MerchantReturnId => r.merchant_return_id,
            })),
            Var::LineSku => borrowed(self.line.as_ref().map(|l| l.sku)),
            Var::LineQuantity => self
                .line
                .as_ref()
                .map(|l| Cow::Owned(l.quantity.to_string())),
            Var::Value(name) => self.values.get(name).map(|v| Cow::Borrowed(v.as_str())),
        }
        .filter(|v| !v.is_empty())
    }
}

/// Whether a missing value renders as empty text rather than failing: the optional
/// parts of an order, which a store's form also leaves empty.
fn may_be_empty(var: &Var) -> bool {
    matches!(
        var,
        Var::Shipping(ShippingField("address_line2" | "state"))
            | Var::Order(OrderField::IsGift | OrderField::GiftMessage | OrderField::PoNumber)
            | Var::Return(ReturnField::Notes)
    )
}

/// How rendered values are escaped for where the template is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As they are: text typed into a field, URLs, text to look for.
    None,
    /// For a quoted string inside a CSS selector (`[data-value="{{variant.value}}"]`):
    /// backslashes and quotes are escaped, line breaks written as CSS escapes.
    CssString,
}

/// A template could not be rendered: the order has no value for a variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the template {template:?} needs `{var}`, which has no value here")]
pub struct RenderError {
    pub template: String,
    pub var: String,
}

/// A template could not be parsed; `offset` is the byte offset in the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    pub offset: usize,
}

impl Template {
    /// Parses `{{variable}}` placeholders (spaces inside the braces are allowed).
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            let offset = source.len() - rest.len() + open;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| TemplateError {
                message: "`{{` is never closed with `}}`".into(),
                offset,
            })?;
            let name = &after[..close];
            if name.contains("{{") {
                return Err(TemplateError {
                    message: "`{{` is never closed with `}}`".into(),
                    offset,
                });
            }
            let var = Var::parse(name).map_err(|message| TemplateError { message, offset })?;
            parts.push(Part::Var(var, offset));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables it uses, in order, with the byte offset of each in the template.
    pub fn vars(&self) -> impl Iterator<Item = (usize, &Var)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v, offset) => Some((*offset, v)),
            Part::Text(_) => None,
        })
    }

    /// Fills in the variables. Every variable needs a value, except the optional parts
    /// of an order (`shipping.address_line2`, `shipping.state`, `order.is_gift`,
    /// `order.gift_message`, `order.po_number`) and of a return (`return.notes`), which
    /// render as empty text.
    pub fn render(&self, context: &Context<'_>, escape: Escape) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(var, _) => match context.get(var) {
                    Some(value) => push_escaped(&mut out, &value, escape),
                    None if may_be_empty(var) => {}
                    None => {
                        return Err(RenderError {
                            template: self.source.clone(),
                            var: var.to_string(),
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    match escape {
        Escape::None => out.push_str(value),
        Escape::CssString => {
            for c in value.chars() {
                match c {
                    '"' | '\'' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\n' => out.push_str("\\a "),
                    '\r' => out.push_str("\\d "),
                    _ => out.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> Address {
        Address {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            address_line1: "1 Main St".into(),
            address_line2: None,
            city: "Austin".into(),
            state: Some("TX".into()),
            postal_code: "78701".into(),
            phone_number: "+15125550134".into(),
            country: "US".into(),
        }
    }

    fn with_context<T>(f: impl FnOnce(&Context<'_>) -> T) -> T {
        let address = address();
        let variants = vec![Variant {
            label: "Size".into(),
            value: "M \"medium\"".into(),
        }];
        let values = BTreeMap::from([("title".to_string(), "Mug".to_string())]);
        let context = Context {
            shipping: &address,
            order: OrderValues {
                reference: "ord-1",
                is_gift: false,
                gift_message: None,
                po_number: None,
                handling_days_max: None,
                merchant_order_id: None,
            },
            account: AccountValues {
                email: "ada@example.com",
                password: Some("secret"),
                totp: None,
            },
            item: Some(ItemValues {
                url: "https://shop.example/p/1",
                quantity: 2,
                offer_id: None,
                variant: &variants,
            }),
            variant: variants.first(),
            returning: Some(ReturnValues {
                reference: "ret-1",
                reason: "damaged",
                notes: None,
                merchant_return_id: Some("RT-1"),
            }),
            line: Some(LineValues {
                sku: "B0DEMO0003-NAVY",
                quantity: 3,
            }),
            values: &values,
        };
        f(&context)
    }

    fn render(source: &str) -> Result<String, String> {
        let template = Template::parse(source).map_err(|e| e.message)?;
        with_context(|c| template.render(c, Escape::None)).map_err(|e| e.to_string())
    }

    #[test]
    fn renders_every_kind_of_variable() {
        assert_eq!(
            render(
                "{{shipping.first_name}} {{ shipping.last_name }}, {{shipping.city}} {{shipping.state}} {{shipping.postal_code}}"
            ),
            Ok("Ada Lovelace, Austin TX 78701".into())
        );
        assert_eq!(
            render("{{item.url}}"),
            Ok("https://shop.example/p/1".into())
        );
        assert_eq!(render("x{{item.quantity}}"), Ok("x2".into()));
        assert_eq!(render("{{item.variant.Size}}"), Ok("M \"medium\"".into()));
        assert_eq!(render("{{item.variant.size}}"), Ok("M \"medium\"".into()));
        assert_eq!(
            render("{{variant.name}}={{variant.value}}"),
            Ok("Size=M \"medium\"".into())
        );
        assert_eq!(render("{{order.reference}}"), Ok("ord-1".into()));
        assert_eq!(
            render("{{account.email}}/{{account.password}}"),
            Ok("ada@example.com/secret".into())
        );
        assert_eq!(render("{{values.title}}"), Ok("Mug".into()));
        assert_eq!(
            render("{{return.reference}} {{return.reason}} {{return.merchant_return_id}}"),
            Ok("ret-1 damaged RT-1".into())
        );
        assert_eq!(
            render("qty_{{line.sku}}={{ line.quantity }}"),
            Ok("qty_B0DEMO0003-NAVY=3".into())
        );
        assert_eq!(render("no variables"), Ok("no variables".into()));
        assert_eq!(render(""), Ok("".into()));
    }

    #[test]
    fn optional_order_parts_render_empty() {
        assert_eq!(render("[{{shipping.address_line2}}]"), Ok("[]".into()));
        assert_eq!(render("[{{order.gift_message}}]"), Ok("[]".into()));
        assert_eq!(render("[{{return.notes}}]"), Ok("[]".into()));
    }

    #[test]
    fn a_missing_value_is_an_error_naming_it() {
        assert_eq!(
            render("{{item.variant.Color}}").unwrap_err(),
            "the template \"{{item.variant.Color}}\" needs `item.variant.Color`, which has no value here"
        );
        assert!(
            render("{{account.totp}}")
                .unwrap_err()
                .contains("`account.totp`")
        );
        assert!(
            render("{{order.merchant_order_id}}")
                .unwrap_err()
                .contains("`order.merchant_order_id`")
        );
        assert!(
            render("{{values.price}}")
                .unwrap_err()
                .contains("`values.price`")
        );
    }

    #[test]
    fn css_strings_are_escaped() {
        let template = Template::parse(r#"[data-value="{{item.variant.Size}}"]"#).unwrap();
        let css = with_context(|c| template.render(c, Escape::CssString)).unwrap();
        assert_eq!(css, r#"[data-value="M \"medium\""]"#);
    }

    #[test]
    fn unknown_variables_are_parse_errors() {
        for (source, message) in [
            (
                "{{shipping.zip}}",
                "unknown variable `shipping.zip` (known: shipping.first_name,",
            ),
            (
                "{{orders.reference}}",
                "unknown variable `orders.reference` (known: shipping.*",
            ),
            ("{{item.variant.}}", "unknown variable `item.variant.`"),
            (
                "{{return.id}}",
                "unknown variable `return.id` (known: return.reference, return.reason, return.notes, return.merchant_return_id)",
            ),
            (
                "{{line.qty}}",
                "unknown variable `line.qty` (known: line.sku, line.quantity)",
            ),
            ("{{values.Total}}", "unknown variable `values.Total`"),
            ("{{}}", "unknown variable ``"),
        ] {
            let error = Template::parse(source).unwrap_err();
            assert!(
                error.message.starts_with(message),
                "{source}: {}",
                error.message
            );
        }
        let error = Template::parse("ab {{item.url").unwrap_err();
        assert_eq!(
            (error.message.as_str(), error.offset),
            ("`{{` is never closed with `}}`", 3)
        );
        assert_eq!(Template::parse("a {{x}}").unwrap_err().offset, 2);
    }

    #[test]
    fn lists_its_variables() {
        let template = Template::parse("{{item.url}}?q={{values.sku}}").unwrap();
        let vars: Vec<(usize, String)> =
            template.vars().map(|(at, v)| (at, v.to_string())).collect();
        assert_eq!(vars, [(0, "item.url".into()), (15, "values.sku".into())]);
        assert_eq!(template.source(), "{{item.url}}?q={{values.sku}}");
    }
}
