// Walks the demo store like a shopper in headless Chromium: sign in, empty a cart that
// holds a line from an earlier attempt, pick a variant (its price shows), add to cart,
// check out over three pages, place the order, see the confirmation, follow the order
// until it arrives, return one of the two shirts through the return form and find the
// return by its reference; then try a test product whose card is declined.
// Saves screenshots of the product, review, confirmation, delivered, return and declined
// pages.
//   node smoke.mjs <store base URL> <screenshot dir> <email> <password>
import { chromium } from "playwright-core";

const [base, shots, email, password] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.setDefaultTimeout(15000);

  await page.goto(`${base}/signin?next=/dp/B0TEST0003`);
  await page.fill("#email", email);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL(/\/dp\/B0TEST0003/), page.click("#signin-submit")]);
  await page.click("#accept-cookies");

  // A line left from an earlier attempt; the cart page empties it.
  await Promise.all([page.waitForURL(/\/cart$/), page.click("#add-to-cart")]);
  const leftover = await page.getAttribute("#cart", "data-line-count");
  await page.click("#empty-cart");
  await page.waitForSelector("#cart[data-line-count='0']");
  const emptied = (await page.textContent("#cart-empty")).trim();

  // Variant swatches are links: each shows the page again with that choice, and its
  // price and stock.
  await page.goto(`${base}/dp/B0DEMO0010`);
  await Promise.all([page.waitForURL(/opt_Color=/), page.click("#variant-Color .swatch >> nth=0")]);
  await Promise.all([
    page.waitForURL(/opt_Size=XL/),
    page.click('#variant-Size .swatch[data-value="XL"]'),
  ]);
  const priceXL = (await page.textContent("#price")).trim();
  await Promise.all([
    page.waitForURL(/opt_Size=M/),
    page.click('#variant-Size .swatch[data-value="M"]'),
  ]);
  const priceM = (await page.textContent("#price")).trim();
  const availability = (await page.textContent("#availability")).trim();
  await page.fill("#quantity", "2");
  await page.screenshot({ path: `${shots}/product.png`, fullPage: true });
  await Promise.all([page.waitForURL(/\/cart$/), page.click("#add-to-cart")]);

  await Promise.all([page.waitForURL(/\/checkout\/address/), page.click("#proceed-to-checkout")]);
  for (const [field, value] of Object.entries({
    first_name: "Ada", last_name: "Lovelace", address_line1: "1 Main St", city: "Austin",
    state: "TX", postal_code: "78701", country: "US", phone_number: "5125550134",
  })) {
    await page.fill(`#${field}`, value);
  }
  await Promise.all([page.waitForURL(/\/checkout\/delivery/), page.click("#continue-to-delivery")]);
  await page.check("#shipping-next_day");
  await page.fill("#buyer_reference", "browser-smoke-1");
  await Promise.all([page.waitForURL(/\/checkout\/review/), page.click("#continue-to-review")]);

  // The total appears after a short client-side delay.
  await page.waitForSelector("#order-total", { state: "visible" });
  const total = await page.textContent("#order-total");
  await page.screenshot({ path: `${shots}/review.png`, fullPage: true });
  await Promise.all([page.waitForURL(/\/confirmation$/), page.click("#place-order")]);
  const orderId = (await page.textContent("#merchant-order-id")).trim();
  await page.screenshot({ path: `${shots}/confirmation.png`, fullPage: true });

  // Follow the order until it arrives (the store clock runs fast in the test).
  let status = "";
  for (let i = 0; i < 100 && status !== "delivered"; i++) {
    await page.goto(`${base}/orders/${orderId}`);
    status = (await page.textContent("#order-status")).trim();
    if (status !== "delivered") await page.waitForTimeout(100);
  }
  const tracking = await page.$$eval(".tracking-number", (els) => els.map((e) => e.textContent));
  await page.screenshot({ path: `${shots}/delivered.png`, fullPage: true });

  // Return one of the two shirts: the order's "Return items" form, then the return's page.
  await Promise.all([page.waitForURL(/\/return$/), page.click("#return-items")]);
  await page.selectOption("#reason", "wrong_size");
  await page.fill("input.return-quantity >> nth=0", "1");
  await page.fill("#reference", "browser-return-1");
  await Promise.all([page.waitForURL(/\/returns\/RT-/), page.click("#request-return")]);
  const returned = {
    id: (await page.textContent("#return-id")).trim(),
    status: await page.getAttribute("#return-status", "data-status"),
    quantity: await page.getAttribute(".return-line", "data-quantity"),
    label: await page.getAttribute("#return-label-pdf", "href"),
  };
  await page.screenshot({ path: `${shots}/return.png`, fullPage: true });
  await page.goto(`${base}/returns?reference=browser-return-1`);
  returned.found = await page.getAttribute(".return-row", "data-return-id");

  // A test product whose card is declined: the review page comes back with #error.
  await page.goto(`${base}/dp/B0TEST0005`);
  await Promise.all([page.waitForURL(/\/cart$/), page.click("#add-to-cart")]);
  await Promise.all([page.waitForURL(/\/checkout\/address/), page.click("#proceed-to-checkout")]);
  await Promise.all([page.waitForURL(/\/checkout\/delivery/), page.click("#continue-to-delivery")]);
  await Promise.all([page.waitForURL(/\/checkout\/review/), page.click("#continue-to-review")]);
  await page.waitForSelector("#order-total", { state: "visible" });
  await Promise.all([page.waitForURL(/\/checkout\/place/), page.click("#place-order")]);
  const error = await page.waitForSelector("#error[data-error]");
  const declined = {
    code: await error.getAttribute("data-error"),
    message: (await error.textContent()).trim(),
  };
  await page.screenshot({ path: `${shots}/declined.png`, fullPage: true });

  console.log(JSON.stringify({
    leftover, emptied, priceXL, priceM, availability, orderId, total, status, tracking, returned,
    declined,
  }));
} finally {
  await browser.close();
}
