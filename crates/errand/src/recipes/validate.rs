//! Turns the file as read ([`format`]) into a checked [`Recipe`], collecting every
//! problem with its place in the file rather than stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;

use super::Problem;
use super::format::{self, AccountMode, RecipeFile, StepTable, TargetTable, WaitTable};
use super::model::*;
use super::template::{AccountField, OrderField, ReturnField, Template, Var, is_value_name};
use super::values::{Currency, ParseKind};
use crate::orders::model::ErrorType;
use crate::returns::ReturnReason;

/// Longest a step may wait: ten minutes.
const MAX_TIMEOUT_MS: i64 = 600_000;
const MAX_RETRIES: i64 = 10;

/// Checks a parsed file; every problem found, or the recipe.
pub(super) fn validate(file: &str, text: &str, raw: RecipeFile) -> Result<Recipe, Vec<Problem>> {
    let mut v = Validator {
        text,
        problems: Vec::new(),
        mode: *raw.account.mode.get_ref(),
    };
    let recipe = v.recipe(file, raw);
    if v.problems.is_empty() {
        Ok(recipe)
    } else {
        v.problems.sort_by_key(|p| p.location);
        Err(v.problems)
    }
}

struct Validator<'a> {
    text: &'a str,
    problems: Vec<Problem>,
    mode: AccountMode,
}

/// Where a step stands: which phase, and what is in hand.
#[derive(Clone, Copy)]
struct Scope {
    phase: Phase,
    /// `item.*` is available (the product phase, or inside `for_each_item`).
    item: bool,
    /// `variant.*` is available (inside `for_each_variant`).
    variant: bool,
    /// `line.*` is available (inside `for_each_return_line`).
    line: bool,
    /// The step may not run (an enclosing step is optional or conditional, or a
    /// `for_each_variant` that may run no times).
    conditional: bool,
}

/// What the steps so far have read.
#[derive(Default)]
struct Reads {
    /// Names available as `values.<name>`.
    known: BTreeSet<String>,
    /// Names read as lists (`all = true`), which templates cannot use.
    lists: BTreeSet<String>,
    /// Per name read in the current phase: whether some read of it always runs, and
    /// where the first read is.
    this_phase: BTreeMap<String, (bool, Location)>,
}

impl Validator<'_> {
    fn at(&self, span: &Range<usize>) -> Location {
        Location::of(self.text, span.start)
    }

    fn problem(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let location = Some(self.at(span));
        self.problems.push(Problem {
            location,
            message: message.into(),
        });
    }

    fn recipe(&mut self, file: &str, raw: RecipeFile) -> Recipe {
        let table = raw.recipe;
        let name = table.name.get_ref().trim().to_string();
        if !is_slug(&name) {
            self.problem(
                &table.name.span(),
                "name must be lower-case letters, digits, `-` or `_`, e.g. \"my-store\"",
            );
        }
        let hosts = self.hosts(&table.hosts);
        let version = *table.version.get_ref();
        let version = u32::try_from(version)
            .ok()
            .filter(|v| *v >= 1)
            .unwrap_or_else(|| {
                self.problem(
                    &table.version.span(),
                    "version must be a whole number from 1",
                );
                1
            });
        let currency = Currency::new(table.currency.get_ref()).unwrap_or_else(|message| {
            self.problem(&table.currency.span(), message);
            Currency::new("USD").expect("USD is a currency")
        });
        let detectors = raw.detect.iter().filter_map(|d| self.detector(d)).collect();
        let phases = self.phases(&raw.phases);
        let takes_returns = phases.iter().any(|(p, _)| Phase::RETURNS.contains(p));
        let return_reasons = self.return_reasons(raw.return_reasons.as_ref(), takes_returns);
        Recipe {
            file: file.to_string(),
            name,
            hosts,
            version,
            currency,
            account: self.mode,
            detectors,
            phases,
            return_reasons,
        }
    }

    /// `[return_reasons]`: the store's words for some of the contract's reason codes.
    fn return_reasons(
        &mut self,
        table: Option<&BTreeMap<String, Spanned<String>>>,
        takes_returns: bool,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(table) = table else { return out };
        if !takes_returns && let Some(first) = table.values().min_by_key(|v| v.span().start) {
            self.problem(
                &first.span(),
                "[return_reasons] is for the return phases, which this recipe does not have",
            );
        }
        for (code, words) in table {
            if ReturnReason::parse(code).is_none() {
                let known: Vec<&str> = ReturnReason::ALL.iter().map(|r| r.as_str()).collect();
                self.problem(
                    &words.span(),
                    format!(
                        "{code:?} is not a return reason (known: {})",
                        known.join(", ")
                    ),
                );
            } else if words.get_ref().trim().is_empty() {
                self.problem(
                    &words.span(),
                    format!("the store's words for {code:?} are empty"),
                );
            } else {
                out.insert(code.clone(), words.get_ref().trim().to_string());
            }
        }
        out
    }

    fn hosts(&mut self, hosts: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        if hosts.get_ref().is_empty() {
            self.problem(&hosts.span(), "hosts must name at least one host");
        }
        let mut out = Vec::new();
        for host in hosts.get_ref() {
            let text = host.get_ref().trim();
            let parsed = url::Url::parse(&format!("http://{text}/")).ok();
            let canonical = parsed.as_ref().and_then(|u| {
                let host = u.host_str()?;
                Some(match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                })
            });
            if text.is_empty() || canonical.as_deref() != Some(text) {
                self.problem(
                    &host.span(),
                    format!(
                        "{text:?} is not a host: write it like \"shop.example\" or \"127.0.0.1:8090\", in lower case, without scheme or path"
                    ),
                );
            } else {
                out.push(text.to_string());
            }
        }
        out
    }

    fn detector(&mut self, raw: &Spanned<format::DetectTable>) -> Option<Detector> {
        let d = raw.get_ref();
        let error_type = self.error_type(&d.error_type);
        let css = self.non_empty(d.css.as_ref(), "css");
        let text = self.non_empty(d.text.as_ref(), "text");
        let available = self.non_empty(d.available.as_ref(), "available");
        if let Some(raw) = &d.available
            && d.css.is_none()
        {
            self.problem(
                &raw.span(),
                "`available` is an attribute of the element `css` finds: give `css` too",
            );
        }
        if d.css.is_none() && d.text.is_none() {
            self.problem(
                &raw.span(),
                "a detector needs `css`, `text` or both: what on the page means this error",
            );
        }
        let mut phases = Vec::new();
        if let Some(list) = &d.phases {
            if list.get_ref().is_empty() {
                self.problem(
                    &list.span(),
                    "phases is empty: leave it out to watch every phase",
                );
            }
            for name in list.get_ref() {
                match Phase::parse(name.get_ref()) {
                    Some(phase) => phases.push(phase),
                    None => self.problem(&name.span(), unknown_phase(name.get_ref())),
                }
            }
        }
        Some(Detector {
            error_type: error_type?,
            css,
            text,
            phases,
            available,
            location: self.at(&raw.span()),
        })
    }

    fn error_type(&mut self, raw: &Spanned<String>) -> Option<ErrorType> {
        let found = ERROR_TYPES
            .into_iter()
            .find(|t| t.as_str() == raw.get_ref().as_str());
        if found.is_none() {
            self.problem(
                &raw.span(),
                format!(
                    "unknown error_type {:?} (known: {})",
                    raw.get_ref(),
                    ERROR_TYPES.map(ErrorType::as_str).join(", ")
                ),
            );
        }
        found
    }

    fn non_empty(&mut self, value: Option<&Spanned<String>>, key: &str) -> Option<String> {
        let value = value?;
        if value.get_ref().trim().is_empty() {
            self.problem(&value.span(), format!("`{key}` is empty"));
        }
        Some(value.get_ref().clone())
    }

    /// Where the phases start (for problems with the phases as a whole): the first
    /// `[phases…` or `[[phases.…` header, else the end of the file.
    fn phases_span(&self) -> Range<usize> {
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let header = line.trim_start();
            if header.starts_with("[phases") || header.starts_with("[[phases") {
                let at = offset + line.len() - header.len();
                return at..at;
            }
            offset += line.len();
        }
        self.text.len()..self.text.len()
    }

    fn phases(&mut self, table: &format::PhasesTable) -> Vec<(Phase, Vec<Step>)> {
        let span = self.phases_span();
        let all = [
            (Phase::SignIn, &table.sign_in),
            (Phase::Product, &table.product),
            (Phase::Cart, &table.cart),
            (Phase::Checkout, &table.checkout),
            (Phase::Review, &table.review),
            (Phase::Place, &table.place),
            (Phase::Confirm, &table.confirm),
            (Phase::Lookup, &table.lookup),
            (Phase::Tracking, &table.tracking),
            (Phase::Return, &table.return_phase),
            (Phase::ReturnLookup, &table.return_lookup),
            (Phase::ReturnStatus, &table.return_status),
        ];
        let missing: Vec<&str> = Phase::PLACING
            .iter()
            .filter(|p| all.iter().any(|(q, steps)| q == *p && steps.is_none()))
            .map(|p| p.as_str())
            .collect();
        if !missing.is_empty() {
            self.problem(
                &span,
                format!(
                    "missing {} {}: placing an order needs product, cart, checkout, review, place and confirm",
                    if missing.len() == 1 { "phase" } else { "phases" },
                    missing.join(", ")
                ),
            );
        }
        let has = |phase: Phase| all.iter().any(|(p, steps)| *p == phase && steps.is_some());
        let returns: Vec<Phase> = Phase::RETURNS.into_iter().filter(|p| has(*p)).collect();
        if !returns.is_empty() && returns.len() < Phase::RETURNS.len() {
            let missing: Vec<&str> = Phase::RETURNS
                .iter()
                .filter(|p| !returns.contains(p))
                .map(|p| p.as_str())
                .collect();
            self.problem(
                &span,
                format!(
                    "missing {} {}: taking returns needs return, return_lookup and return_status",
                    if missing.len() == 1 {
                        "phase"
                    } else {
                        "phases"
                    },
                    missing.join(", ")
                ),
            );
        }
        if !returns.is_empty() && !has(Phase::Tracking) {
            self.problem(
                &span,
                "missing phase tracking: the return phases need it to read the order's lines (`line_product_ids`)",
            );
        }
        match (self.mode, &table.sign_in) {
            (AccountMode::SignIn, None) => {
                self.problem(&span, "missing phase sign_in: the account mode is sign_in")
            }
            (AccountMode::Guest, Some(steps)) => self.problem(
                &steps.span(),
                "a guest recipe has no sign_in phase (set [account] mode = \"sign_in\" to sign in)",
            ),
            _ => {}
        }
        let mut reads = Reads::default();
        let mut out = Vec::new();
        for (phase, steps) in all {
            let Some(steps) = steps else { continue };
            // Values carry over between the phases of one checkout, cart to confirm;
            // the others start afresh (they run on their own).
            if !matches!(
                phase,
                Phase::Checkout | Phase::Review | Phase::Place | Phase::Confirm
            ) {
                reads = Reads::default();
            }
            reads.this_phase.clear();
            if steps.get_ref().is_empty() {
                self.problem(&steps.span(), format!("the {phase} phase has no steps"));
            }
            let scope = Scope {
                phase,
                item: phase == Phase::Product,
                variant: false,
                line: false,
                conditional: false,
            };
            let converted = self.steps(steps.get_ref(), scope, &mut reads);
            self.engine_reads(phase, &steps.span(), &reads);
            if phase == Phase::Tracking
                && !returns.is_empty()
                && !reads.this_phase.contains_key("line_product_ids")
            {
                self.problem(
                    &steps.span(),
                    "the tracking phase never reads `line_product_ids`, which the return phases need (to tell which of the store's lines, and SKUs, are the order's items, and when they are delivered): add a read step with into = \"line_product_ids\", all = true",
                );
            }
            out.push((phase, converted));
        }
        out
    }

    /// Checks that a phase reads what the engine needs from it.
    fn engine_reads(&mut self, phase: Phase, span: &Range<usize>, reads: &Reads) {
        for value in ENGINE_VALUES.iter().filter(|v| v.phase == phase) {
            let example = format!(
                "into = \"{}\", parse = \"{}\"{}",
                value.name,
                value.parse.as_str(),
                if value.all { ", all = true" } else { "" }
            );
            match (value.need, reads.this_phase.get(value.name)) {
                (Need::Always | Need::IfFound, None) => self.problem(
                    span,
                    format!(
                        "the {phase} phase never reads `{}` ({}): add a read step with {example}",
                        value.name, value.purpose
                    ),
                ),
                (Need::Always, Some((false, location))) => {
                    let location = Some(*location);
                    self.problems.push(Problem {
                        location,
                        message: format!(
                            "`{}` is read only by an optional or conditional step; the engine needs it every time",
                            value.name
                        ),
                    });
                }
                _ => {}
            }
        }
    }

    fn steps(&mut self, steps: &format::Steps, scope: Scope, reads: &mut Reads) -> Vec<Step> {
        steps
            .iter()
            .filter_map(|s| self.step(s, scope, reads))
            .collect()
    }

    fn step(&mut self, raw: &Spanned<StepTable>, scope: Scope, reads: &mut Reads) -> Option<Step> {
        let span = raw.span();
        let s = raw.get_ref();
        let actions: Vec<&str> = [
            ("goto", s.goto.is_some()),
            ("click", s.click.is_some()),
            ("fill", s.fill.is_some()),
            ("select", s.select.is_some()),
            ("check", s.check.is_some()),
            ("uncheck", s.uncheck.is_some()),
            ("wait_for", s.wait_for.is_some()),
            ("read", s.read.is_some()),
            ("assert", s.assert.is_some()),
            ("screenshot", s.screenshot.is_some()),
            ("for_each_item", s.for_each_item.is_some()),
            ("for_each_variant", s.for_each_variant.is_some()),
            ("for_each_return_line", s.for_each_return_line.is_some()),
            ("do", s.do_steps.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        let action = match actions[..] {
            [] => {
                self.problem(
                    &span,
                    "step has no action; a step takes exactly one of goto, click, fill, select, check, uncheck, wait_for, read, assert, screenshot, for_each_item, for_each_variant, for_each_return_line, do",
                );
                return None;
            }
            [action] => action,
            _ => {
                let count = match actions.len() {
                    2 => "two".to_string(),
                    3 => "three".to_string(),
                    n => n.to_string(),
                };
                self.problem(
                    &span,
                    format!(
                        "step has {count} actions ({}); a step takes exactly one",
                        actions.join(", ")
                    ),
                );
                return None;
            }
        };
        self.arguments_fit(action, s);

        // Modifiers come first: they decide whether what the step reads counts as read
        // every time.
        let optional = s.optional.as_ref().is_some_and(|o| *o.get_ref());
        let retries = s.retries.as_ref().map_or(0, |r| {
            u32::try_from(*r.get_ref())
                .ok()
                .filter(|n| i64::from(*n) <= MAX_RETRIES)
                .unwrap_or_else(|| {
                    self.problem(
                        &r.span(),
                        format!("retries must be from 0 to {MAX_RETRIES}"),
                    );
                    0
                })
        });
        let timeout_ms = s.timeout_ms.as_ref().map(|t| {
            u64::try_from(*t.get_ref())
                .ok()
                .filter(|ms| (1..=MAX_TIMEOUT_MS as u64).contains(ms))
                .unwrap_or_else(|| {
                    self.problem(
                        &t.span(),
                        format!("timeout_ms must be from 1 to {MAX_TIMEOUT_MS} (ten minutes)"),
                    );
                    1
                })
        });
        let if_present = s
            .if_present
            .as_ref()
            .and_then(|t| self.target(t, scope, reads));
        let if_set = s.if_set.as_ref().and_then(|name| {
            let text = name.get_ref();
            if text.contains("{{") {
                self.problem(
                    &name.span(),
                    "write the variable's name without braces, e.g. if_set = \"order.gift_message\"",
                );
                return None;
            }
            match Var::parse(text) {
                Ok(var) => {
                    self.var_in_scope(&var, &name.span(), scope, reads);
                    Some(var)
                }
                Err(message) => {
                    self.problem(&name.span(), message);
                    None
                }
            }
        });
        let error_type = s.error_type.as_ref().and_then(|t| {
            if optional {
                self.problem(
                    &t.span(),
                    "an optional step never fails, so it cannot have an error_type",
                );
            }
            self.error_type(t)
        });
        let conditional =
            scope.conditional || optional || s.if_present.is_some() || s.if_set.is_some();
        let inner = Scope {
            conditional,
            ..scope
        };

        let action = match action {
            "goto" => Action::Goto(self.template(s.goto.as_ref()?, inner, reads)?),
            "click" => Action::Click(self.target(s.click.as_ref()?, inner, reads)?),
            "fill" | "select" => {
                let raw_target = if action == "fill" { &s.fill } else { &s.select };
                let target = self.target(raw_target.as_ref()?, inner, reads);
                let Some(value) = &s.value else {
                    self.problem(
                        &span,
                        format!(
                            "`{action}` needs `value`: what to {}",
                            if action == "fill" { "type" } else { "choose" }
                        ),
                    );
                    return None;
                };
                let value = self.template(value, inner, reads)?;
                let target = target?;
                if action == "fill" {
                    Action::Fill { target, value }
                } else {
                    Action::Select { target, value }
                }
            }
            "check" => Action::Check(self.target(s.check.as_ref()?, inner, reads)?),
            "uncheck" => Action::Uncheck(self.target(s.uncheck.as_ref()?, inner, reads)?),
            "wait_for" => Action::WaitFor(self.wait_for(s.wait_for.as_ref()?, inner, reads)?),
            "read" => Action::Read(self.read(s, &span, inner, reads)?),
            "assert" => {
                let target = self.target(s.assert.as_ref()?, inner, reads);
                let expect = match (&s.equals, &s.contains) {
                    (Some(_), Some(c)) => {
                        self.problem(
                            &c.span(),
                            "an assert takes `equals` or `contains`, not both",
                        );
                        return None;
                    }
                    (Some(e), None) => Expectation::Equals(self.template(e, inner, reads)?),
                    (None, Some(c)) => Expectation::Contains(self.template(c, inner, reads)?),
                    (None, None) => Expectation::Present,
                };
                Action::Assert {
                    target: target?,
                    expect,
                }
            }
            "screenshot" => {
                let name = s.screenshot.as_ref()?;
                if !is_slug(name.get_ref()) {
                    self.problem(
                        &name.span(),
                        "a screenshot's name must be lower-case letters, digits, `-` or `_`",
                    );
                }
                Action::Screenshot(name.get_ref().clone())
            }
            "for_each_item" => {
                let steps = s.for_each_item.as_ref()?;
                if scope.item {
                    let why = if scope.phase == Phase::Product {
                        "the product phase already runs once per item"
                    } else {
                        "it is already inside for_each_item"
                    };
                    self.problem(&span, format!("for_each_item cannot be used here: {why}"));
                    return None;
                }
                let inner = Scope {
                    item: true,
                    ..inner
                };
                Action::ForEachItem(self.block(steps, "for_each_item", inner, reads))
            }
            "for_each_variant" => {
                let steps = s.for_each_variant.as_ref()?;
                if !scope.item || scope.variant {
                    self.problem(
                        &span,
                        if scope.variant {
                            "for_each_variant cannot be nested"
                        } else {
                            "for_each_variant needs an item: use it in the product phase or inside for_each_item"
                        },
                    );
                    return None;
                }
                let inner = Scope {
                    variant: true,
                    conditional: true,
                    ..inner
                };
                Action::ForEachVariant(self.block(steps, "for_each_variant", inner, reads))
            }
            "for_each_return_line" => {
                let steps = s.for_each_return_line.as_ref()?;
                if scope.phase != Phase::Return || scope.line {
                    self.problem(
                        &span,
                        if scope.line {
                            "for_each_return_line cannot be nested"
                        } else {
                            "for_each_return_line is only for the return phase"
                        },
                    );
                    return None;
                }
                // A return has at least one line: its steps run.
                let inner = Scope {
                    line: true,
                    ..inner
                };
                Action::ForEachReturnLine(self.block(steps, "for_each_return_line", inner, reads))
            }
            "do" => Action::Do(self.block(s.do_steps.as_ref()?, "do", inner, reads)),
            other => unreachable!("every action key is handled: {other}"),
        };
        Some(Step {
            action,
            optional,
            retries,
            timeout_ms,
            if_present,
            if_set,
            error_type,
            location: self.at(&span),
        })
    }

    fn block(
        &mut self,
        steps: &Spanned<format::Steps>,
        key: &str,
        scope: Scope,
        reads: &mut Reads,
    ) -> Vec<Step> {
        if steps.get_ref().is_empty() {
            self.problem(&steps.span(), format!("`{key}` has no steps"));
        }
        self.steps(steps.get_ref(), scope, reads)
    }

    /// Reports arguments that do not go with the step's action.
    fn arguments_fit(&mut self, action: &str, s: &StepTable) {
        let span = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        let arguments = [
            ("value", span(&s.value), &["fill", "select"][..]),
            ("into", span(&s.into), &["read"][..]),
            ("parse", s.parse.as_ref().map(Spanned::span), &["read"][..]),
            ("attribute", span(&s.attribute), &["read"][..]),
            ("all", s.all.as_ref().map(Spanned::span), &["read"][..]),
            ("equals", span(&s.equals), &["assert"][..]),
            ("contains", span(&s.contains), &["assert"][..]),
        ];
        for (key, span, actions) in arguments {
            if let Some(span) = span
                && !actions.contains(&action)
            {
                self.problem(
                    &span,
                    format!(
                        "`{key}` does not go with `{action}` (it is for {})",
                        actions.join(" and ")
                    ),
                );
            }
        }
    }

    fn read(
        &mut self,
        s: &StepTable,
        span: &Range<usize>,
        scope: Scope,
        reads: &mut Reads,
    ) -> Option<Read> {
        let target = self.target(s.read.as_ref()?, scope, reads);
        let Some(into) = &s.into else {
            self.problem(
                span,
                "`read` needs `into`: the name to store the value under",
            );
            return None;
        };
        let name = into.get_ref().clone();
        if !is_value_name(&name) {
            self.problem(
                &into.span(),
                format!("{name:?} cannot name a value: use lower-case letters, digits and `_`, starting with a letter"),
            );
        }
        let parse = s.parse.as_ref().map_or(ParseKind::Text, |p| *p.get_ref());
        let all = s.all.as_ref().is_some_and(|a| *a.get_ref());
        let attribute = s.attribute.as_ref().map(|a| {
            let text = a.get_ref().trim();
            let ok = !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':');
            if !ok {
                self.problem(&a.span(), format!("{text:?} is not an attribute name"));
            }
            text.to_string()
        });
        if let Some(value) = ENGINE_VALUES
            .iter()
            .find(|v| v.phase == scope.phase && v.name == name)
        {
            if parse != value.parse {
                let at = s.parse.as_ref().map_or(into.span(), Spanned::span);
                self.problem(
                    &at,
                    format!(
                        "`{name}` in the {} phase must be read with parse = \"{}\" ({})",
                        scope.phase,
                        value.parse.as_str(),
                        value.purpose
                    ),
                );
            }
            if all != value.all {
                self.problem(
                    &into.span(),
                    if value.all {
                        format!(
                            "`{name}` is a list ({}): read it with all = true",
                            value.purpose
                        )
                    } else {
                        format!("`{name}` is one value: read it without all = true")
                    },
                );
            }
        }
        let location = self.at(span);
        let always = !scope.conditional;
        reads
            .this_phase
            .entry(name.clone())
            .and_modify(|(a, _)| *a |= always)
            .or_insert((always, location));
        if all {
            reads.lists.insert(name.clone());
            reads.known.remove(&name);
        } else {
            reads.known.insert(name.clone());
            reads.lists.remove(&name);
        }
        Some(Read {
            target: target?,
            into: name,
            parse,
            attribute,
            all,
        })
    }

    fn target(
        &mut self,
        raw: &Spanned<TargetTable>,
        scope: Scope,
        reads: &Reads,
    ) -> Option<Target> {
        let t = raw.get_ref();
        let keys = [("css", &t.css), ("text", &t.text), ("label", &t.label)];
        let (key, value) = self.exactly_one(raw.span(), &keys, "css, text or label")?;
        let template = self.template(value, scope, reads)?;
        Some(match key {
            "css" => Target::Css(template),
            "text" => Target::Text(template),
            _ => Target::Label(template),
        })
    }

    fn wait_for(
        &mut self,
        raw: &Spanned<WaitTable>,
        scope: Scope,
        reads: &Reads,
    ) -> Option<WaitFor> {
        let w = raw.get_ref();
        let keys = [
            ("css", &w.css),
            ("text", &w.text),
            ("label", &w.label),
            ("url_contains", &w.url_contains),
        ];
        let (key, value) =
            self.exactly_one(raw.span(), &keys, "css, text, label or url_contains")?;
        let template = self.template(value, scope, reads)?;
        Some(match key {
            "css" => WaitFor::Element(Target::Css(template)),
            "text" => WaitFor::Element(Target::Text(template)),
            "label" => WaitFor::Element(Target::Label(template)),
            _ => WaitFor::UrlContains(template),
        })
    }

    /// The one key of a target-like table that is set.
    fn exactly_one<'t>(
        &mut self,
        span: Range<usize>,
        keys: &[(&'static str, &'t Option<Spanned<String>>)],
        expected: &str,
    ) -> Option<(&'static str, &'t Spanned<String>)> {
        let set: Vec<(&'static str, &Spanned<String>)> = keys
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
            .collect();
        match set[..] {
            [one] => Some(one),
            [] => {
                self.problem(&span, format!("give one of {expected}"));
                None
            }
            _ => {
                let names: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
                self.problem(
                    &span,
                    format!("give one of {expected}, not {}", names.join(" and ")),
                );
                None
            }
        }
    }

    /// Parses a template and checks that its variables are available where it is used.
    fn template(&mut self, raw: &Spanned<String>, scope: Scope, reads: &Reads) -> Option<Template> {
        let span = raw.span();
        if raw.get_ref().trim().is_empty() {
            self.problem(&span, "the text is empty");
            return None;
        }
        match Template::parse(raw.get_ref()) {
            Ok(template) => {
                let before = self.problems.len();
                for (offset, var) in template.vars() {
                    let at = self.inside_string(&span, raw.get_ref(), offset);
                    self.var_in_scope(var, &at, scope, reads);
                }
                (self.problems.len() == before).then_some(template)
            }
            Err(e) => {
                let at = self.inside_string(&span, raw.get_ref(), e.offset);
                self.problem(&at, e.message);
                None
            }
        }
    }

    /// The span of a byte offset inside a TOML string value: exact when the string is
    /// written on one line without escapes, else the start of the string.
    fn inside_string(&self, span: &Range<usize>, value: &str, offset: usize) -> Range<usize> {
        let written = self.text.get(span.clone()).unwrap_or("");
        let plain = written.len() == value.len() + 2
            && (written.starts_with('"') || written.starts_with('\''))
            && &written[1..written.len() - 1] == value;
        if plain {
            let at = span.start + 1 + offset;
            at..at
        } else {
            span.clone()
        }
    }

    fn var_in_scope(&mut self, var: &Var, span: &Range<usize>, scope: Scope, reads: &Reads) {
        let problem = match var {
            Var::ItemUrl | Var::ItemQuantity | Var::ItemVariant(_) if !scope.item => Some(format!(
                "`{var}` is only available in the product phase and inside for_each_item"
            )),
            Var::VariantName | Var::VariantValue if !scope.variant => {
                Some(format!("`{var}` is only available inside for_each_variant"))
            }
            Var::Order(OrderField::MerchantOrderId)
                if !matches!(scope.phase, Phase::Tracking | Phase::Return) =>
            {
                Some(
                    "`order.merchant_order_id` is only known in the tracking and return phases"
                        .to_string(),
                )
            }
            Var::Return(field) if !return_phases(*field).contains(&scope.phase) => {
                let phases: Vec<&str> = return_phases(*field).iter().map(|p| p.as_str()).collect();
                Some(format!(
                    "`{var}` is only available in the {} phase{}",
                    phases.join(" and "),
                    if phases.len() == 1 { "" } else { "s" }
                ))
            }
            Var::LineSku | Var::LineQuantity if !scope.line => Some(format!(
                "`{var}` is only available inside for_each_return_line"
            )),
            Var::Account(AccountField::Password | AccountField::Totp)
                if self.mode == AccountMode::Guest =>
            {
                Some(format!(
                    "`{var}` is not available: the recipe checks out as a guest"
                ))
            }
            Var::Value(name) if reads.lists.contains(name) => Some(format!(
                "`{var}` is a list (read with all = true) and cannot be used in a template"
            )),
            Var::Value(name) if !reads.known.contains(name) => Some(format!(
                "`{var}` is not read before this step: read it with into = \"{name}\" earlier{}",
                match scope.phase {
                    Phase::Checkout | Phase::Review | Phase::Place | Phase::Confirm =>
                        " in this phase or an earlier one from cart on",
                    _ => " in this phase",
                }
            )),
            _ => None,
        };
        if let Some(message) = problem {
            self.problem(span, message);
        }
    }
}

/// The phases that know a return variable.
fn return_phases(field: ReturnField) -> &'static [Phase] {
    match field {
        ReturnField::Reference => &[Phase::Return, Phase::ReturnLookup],
        ReturnField::Reason | ReturnField::Notes => &[Phase::Return],
        ReturnField::MerchantReturnId => &[Phase::ReturnStatus],
    }
}

/// Lower-case letters, digits, `-` and `_`: names that go into file names and logs.
fn is_slug(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn unknown_phase(name: &str) -> String {
    let known: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
    format!("unknown phase {name:?} (known: {})", known.join(", "))
}
