"""The hand-written anchor timed by `errand bench-checkout`: one demo-store checkout
through its HTML pages in plain Playwright, doing the same work as recipes/demo.toml
(sign in, product, cart, checkout, review, place, confirm) with full-page screenshots
of the product, cart, review and confirmation pages.

    python3 playwright_checkout.py --base-url http://127.0.0.1:PORT \
        --chromium /usr/bin/chromium [--screenshots DIR]

Launches one headless Chromium, prints `ready`, then reads one JSON job a line on stdin
({"email", "password", "url", "quantity", "variant": {"Color": "Red"}, "reference"}).
Each job runs in a fresh browser context and prints one JSON line:
{"ms", "merchant_order_id", "total"}, or {"error"} when the checkout failed.
"""

import argparse
import json
import os
import sys
import time

from playwright.sync_api import Error, expect, sync_playwright

VIEWPORT = {"width": 1280, "height": 1000}
TIMEOUT_MS = 15_000
PLACE_TIMEOUT_MS = 60_000  # Some orders take a few seconds to place.
# Fields by their label, or by CSS when it starts with "#".
ADDRESS = {
    "First name": "Grace", "Last name": "Hopper",
    "#address_line1": "1701 Navy Way", "#address_line2": "",
    "City": "Arlington", "State": "VA", "ZIP code": "22202", "Country": "US",
    "Phone": "(703) 555-0142",
}


class CheckoutError(Exception):
    """A checkout the store refused or the script could not finish."""


def text(page, selector):
    return page.locator(selector).inner_text().strip()


def choose_variant(page, variant):
    """Each option is a row of swatches: links that show the page again with that choice."""
    for name, value in variant.items():
        quoted = json.dumps(name), json.dumps(value)
        swatch = page.locator(".swatch[data-dimension=%s i][data-value=%s i]" % quoted)
        if swatch.count() == 0:
            raise CheckoutError(f"invalid_variant: no {name} {value!r} on {page.url}")
        with page.expect_navigation():
            swatch.click()


class Checkout:
    def __init__(self, page, base_url, screenshots, job):
        self.page = page
        self.base = base_url
        self.screenshots = screenshots
        self.job = job
        self.reference = job["reference"]
        self.variant = job.get("variant") or {}

    def screenshot(self, name):
        path = None
        if self.screenshots:
            path = os.path.join(self.screenshots, f"{self.reference}-{name}.png")
        self.page.screenshot(path=path, full_page=True)

    def sign_in(self):
        page = self.page
        page.goto(f"{self.base}/signin")
        page.fill("#email", self.job["email"])
        page.fill("#password", self.job["password"])
        with page.expect_navigation():
            page.click("#signin-submit")
        if page.url.endswith("/signin"):  # Refused: #error says why.
            raise CheckoutError("login_failed")
        # The banner covers the bottom of every page until it is accepted.
        accept = page.locator("#accept-cookies")
        if accept.is_visible():
            accept.click()

    def product(self):
        page = self.page
        page.goto(self.job["url"])
        title = text(page, "#product-title")
        choose_variant(page, self.variant)
        # The chosen variant's price and stock (the cheapest price until all are chosen).
        price, availability = text(page, "#price"), text(page, "#availability")
        if page.locator("#availability[data-available='false']").count():
            raise CheckoutError(f"out_of_stock: {title}: {availability}")
        self.screenshot("product")
        return title, price

    def cart(self):
        page = self.page
        page.goto(f"{self.base}/cart")
        # Lines left from an earlier attempt would be bought too.
        empty = page.locator("#empty-cart")
        if empty.count():
            empty.click()
            page.locator("#cart[data-line-count='0']").wait_for()
        page.goto(self.job["url"])
        choose_variant(page, self.variant)
        page.get_by_label("Quantity", exact=True).fill(str(self.job.get("quantity", 1)))
        page.click("#add-to-cart")
        page.wait_for_url(f"{self.base}/cart")
        subtotal = text(page, "#cart-subtotal")
        self.screenshot("cart")
        return subtotal

    def checkout(self):
        page = self.page
        page.click("#proceed-to-checkout")
        page.wait_for_url("**/checkout/address")
        for field, value in ADDRESS.items():
            if field.startswith("#"):
                page.fill(field, value)
            else:
                page.get_by_label(field, exact=True).fill(value)
        page.click("#continue-to-delivery")
        page.wait_for_url("**/checkout/delivery")
        page.check("#shipping-standard")
        page.fill("#gift_message", "")  # Clears what an earlier checkout left.
        page.fill("#buyer_reference", self.reference)
        page.click("#continue-to-review")
        page.wait_for_url("**/checkout/review")

    def review(self):
        page = self.page
        # The total is "Calculating…" for a moment after the page loads.
        expect(page.locator("#order-total")).to_be_visible()
        expect(page.locator("#review-reference")).to_have_text(self.reference)
        totals = {k: text(page, f"#{k}") for k in ("subtotal", "shipping", "tax", "discount")}
        totals["total"] = text(page, "#order-total")
        self.screenshot("review")
        return totals

    def place(self):
        with self.page.expect_navigation(timeout=PLACE_TIMEOUT_MS):
            self.page.click("#place-order")
        if not self.page.url.endswith("/confirmation"):  # Refused: the review and #error.
            raise CheckoutError("order not placed")

    def confirm(self):
        order_id = text(self.page, "#merchant-order-id")
        text(self.page, "#estimated-delivery")
        self.screenshot("confirmation")
        return order_id

    def run(self):
        self.sign_in()
        self.product()
        self.cart()
        self.checkout()
        totals = self.review()
        self.place()
        return {"merchant_order_id": self.confirm(), "total": totals["total"]}


def store_error(page):
    """The store shows a refusal in #error, its error code in data-error."""
    box = page.locator("#error")
    try:
        if box.count():
            return f"{box.get_attribute('data-error')}: {box.inner_text().strip()}"
    except Error:
        return None


def run_job(browser, args, job):
    started = time.perf_counter()
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            result = Checkout(page, args.base_url, args.screenshots, job).run()
        except (Error, CheckoutError) as e:
            reason = store_error(page)
            raise CheckoutError(f"{reason} (at {page.url})" if reason else str(e)) from e
    finally:
        context.close()
    return {"ms": (time.perf_counter() - started) * 1000.0, **result}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--screenshots")
    args = parser.parse_args()
    args.base_url = args.base_url.rstrip("/")
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
    flags = ["--disable-gpu", "--disable-quic", "--disable-component-update",
             "--disable-background-networking", "--disable-dev-shm-usage", "--no-first-run"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=flags)
        print("ready", flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                out = run_job(browser, args, json.loads(line))
            except Exception as e:  # One failed checkout never stops the next.
                out = {"error": (str(e).strip().splitlines() or [type(e).__name__])[0]}
            print(json.dumps(out), flush=True)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
