// Drives a running Errand through Zinc's official Node SDK (npm `zinc`, pinned by
// package.json and package-lock.json) and checks every result against the type the SDK
// declares for it (types.mjs reads those declarations from the installed package).
//
//   ERRAND_BASE_URL=http://127.0.0.1:8080 ERRAND_API_KEY=er_live_... \
//   ERRAND_PRODUCT_URL=http://127.0.0.1:8090/dp/B0DEMO0005 node sdk.mjs
//
// Run it against the API alone (no workers: `ERRAND_WORKER_CONCURRENCY=0`): orders then
// stay `pending`, so cancelling one and filtering by status are deterministic. The
// product URL must be one a configured `demo` retailer sells.
//
// One line per method: `ok <method>`, `FAIL <method>: <problems>`, `known mismatch
// <method>: <problems>` or `skipped <method>: <why>`; the last line is
// `N passed, M failed, K skipped`. The exit status is 1 when any method failed.

import { ZincClient, ZincError } from "zinc";
import { check, declaredReturnType } from "./types.mjs";
import { selfTest } from "./types.test.mjs";

// Methods of the SDK that Errand does not serve yet: listed as skipped, not called.
// Delete a method from here to test it.
const NOT_SERVED_YET = {};

// Methods that fail only because Errand's shapes still differ from the SDK's, each with
// why and the exact problems it has (a string is one problem word for word, a RegExp
// matches one). Their problems are printed but not counted as failures. The run fails
// when a listed method passes (remove it), has a problem not listed here (a new
// regression), or no longer has a listed problem (shrink its entry): this list can
// only shrink, and nothing else hides behind it.
const NO_SHORT_ID = "createRetailerCredentials returned no short_id (used its id instead)";
const KNOWN_MISMATCHES = {};

const ADDRESS = {
  first_name: "Ada",
  last_name: "Lovelace",
  address_line1: "1 Main St",
  city: "Austin",
  state: "TX",
  postal_code: "78701",
  phone_number: "512-555-0134",
  country: "US",
};
// A public address literal: no DNS lookup, and Errand accepts it as a webhook target.
const WEBHOOK_URL = "https://93.184.215.14/hooks/errand-sdk-test";

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set (see the top of sdk.mjs)`);
    process.exit(2);
  }
  return value;
}

/** What one method returned, and every problem found with it. */
class Outcome {
  constructor() {
    this.problems = [];
    this.value = undefined;
  }
  /** A problem unless `condition`. */
  expect(condition, problem) {
    if (!condition) this.problems.push(problem);
  }
  /** A problem unless `actual` is `expected`. */
  same(what, actual, expected) {
    if (actual !== expected) {
      this.problems.push(`${what} is ${JSON.stringify(actual)}, not ${JSON.stringify(expected)}`);
    }
  }
}

const results = { passed: 0, failed: 0, skipped: 0, known: 0 };

function print(kind, method, text) {
  console.log(text === undefined ? `${kind} ${method}` : `${kind} ${method}: ${text}`);
}

function report(method, problems) {
  const known = KNOWN_MISMATCHES[method];
  if (!known) {
    if (problems.length === 0) {
      print("ok", method);
      results.passed++;
    } else {
      print("FAIL", method, problems.join("; "));
      results.failed++;
    }
    return;
  }
  const matches = (pattern, problem) =>
    pattern instanceof RegExp ? pattern.test(problem) : pattern === problem;
  const unexpected = problems.filter((p) => !known.problems.some((k) => matches(k, p)));
  const gone = known.problems.filter((k) => !problems.some((p) => matches(k, p)));
  if (problems.length === 0) {
    print("FAIL", method, `passes now: remove ${method} from KNOWN_MISMATCHES`);
    results.failed++;
  } else if (unexpected.length > 0) {
    print("FAIL", method, `${unexpected.join("; ")} (besides its known mismatch: ${known.why})`);
    results.failed++;
  } else if (gone.length > 0) {
    const fixed = gone.map(String).join("; ");
    print(
      "FAIL",
      method,
      `no longer seen: ${fixed}: remove that from its entry in KNOWN_MISMATCHES ` +
        `(still: ${problems.join("; ")})`,
    );
    results.failed++;
  } else {
    print("known mismatch", method, problems.join("; "));
    results.known++;
  }
}

function describeError(error) {
  if (error instanceof ZincError && error.statusCode !== undefined) {
    const body = typeof error.body === "string" ? error.body : JSON.stringify(error.body);
    return `the SDK raised ZincError: status ${error.statusCode}, body ${body}`;
  }
  const messages = [];
  for (let e = error; e && messages.length < 5; e = e.cause) {
    const m = e.message ?? String(e);
    if (!messages.includes(m)) messages.push(m);
  }
  const name = error?.constructor?.name ?? "Error";
  return `${error instanceof ZincError ? "the SDK raised " : ""}${name}: ${messages.join(": ")}`;
}

/**
 * Calls the SDK's `<resource>.<name>` through `call(outcome)`, checks the result against
 * the method's declared return type, then runs `verify(value, outcome)` for what the
 * result must say. Returns the value, or undefined when the call failed (or, outside
 * KNOWN_MISMATCHES, had problems).
 */
async function method(qualified, call, verify = () => {}) {
  if (Object.hasOwn(NOT_SERVED_YET, qualified)) {
    print("skipped", qualified, NOT_SERVED_YET[qualified]);
    results.skipped++;
    return undefined;
  }
  const [resource, name] = qualified.split(".");
  const outcome = new Outcome();
  try {
    const declared = declaredReturnType(resource, name);
    outcome.value = await call(outcome);
    outcome.problems.push(...check(declared, outcome.value));
    await verify(outcome.value, outcome);
  } catch (error) {
    outcome.problems.push(describeError(error));
  }
  report(qualified, outcome.problems);
  const usable = outcome.problems.length === 0 || KNOWN_MISMATCHES[qualified];
  return usable ? outcome.value : undefined;
}

/** A method that needs an earlier one's result, which is missing: it fails unrun. */
function notRun(qualified, why) {
  if (Object.hasOwn(NOT_SERVED_YET, qualified)) {
    print("skipped", qualified, NOT_SERVED_YET[qualified]);
    results.skipped++;
    return;
  }
  print("FAIL", qualified, `not run: ${why}`);
  results.failed++;
}

async function main() {
  const checks = selfTest();
  console.log(`checker self-test: ${checks} checks passed`);

  const baseUrl = env("ERRAND_BASE_URL");
  const key = env("ERRAND_API_KEY");
  const productUrl = env("ERRAND_PRODUCT_URL");
  const run = Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  const zinc = new ZincClient({
    apiKey: `Bearer ${key}`,
    baseUrl,
    maxRetries: 0,
    timeoutInSeconds: 30,
  });

  // ---- orders
  const orderBody = (idempotencyKey) => ({
    products: [{ url: productUrl, quantity: 1 }],
    shipping_address: ADDRESS,
    max_price: 5000,
    idempotency_key: idempotencyKey,
    metadata: { run },
    // The SDK's newer options, all sent: each must come back as the SDK declares it.
    po_number: `PO-${run}`,
    is_gift: true,
    gift_message: "With love",
    handling_days_max: 5,
    fulfillment: { items: "best_effort", quantity: "best_effort", gift: "best_effort" },
    customer_notifications: { email: "customer@example.com" },
    payment: { mode: "wallet" },
  });
  const order = await method(
    "orders.createOrder",
    () => zinc.orders.createOrder({ body: orderBody(`sdk-${run}-1`) }),
    async (created, o) => {
      o.same("max_price", created.max_price, 5000);
      o.same("the item's url", created.items?.[0]?.url, productUrl);
      o.same("is_gift", created.is_gift, true);
      o.same("gift_message", created.gift_message, "With love");
      o.same("handling_days_max", created.handling_days_max, 5);
      o.same("fulfillment.items", created.fulfillment?.items, "best_effort");
      o.same("customer_notifications.email", created.customer_notifications?.email, "customer@example.com");
      const again = await zinc.orders.createOrder({ body: orderBody(`sdk-${run}-1`) });
      o.problems.push(...check("Zinc.OrderResponse", again).map((p) => `the repeat: ${p}`));
      o.same("the order the same idempotency_key gave again", again.id, created.id);
    },
  );

  if (order) {
    await method(
      "orders.listOrders",
      () => zinc.orders.listOrders({ limit: 5, offset: 0, status_filter: "pending" }),
      (page, o) => {
        o.same("limit", page.limit, 5);
        o.same("offset", page.offset, 0);
        const orders = Array.isArray(page.orders) ? page.orders : [];
        o.expect(orders.length <= 5, `${orders.length} orders on a page of 5`);
        const others = orders.filter((x) => x.status !== "pending");
        const shown = others.map((x) => `${x.id} (${x.status})`).join(", ");
        o.expect(others.length === 0, `status_filter=pending listed ${shown}`);
        o.expect(orders.some((x) => x.id === order.id), `the new order ${order.id} is not listed`);
      },
    );
    await method(
      "orders.getOrder",
      () => zinc.orders.getOrder({ order_id: order.id }),
      (got, o) => o.same("id", got.id, order.id),
    );
    await method(
      "orders.getOrderTimeline",
      () => zinc.orders.getOrderTimeline({ order_id: order.id }),
      (timeline, o) => {
        o.same("order_id", timeline.order_id, order.id);
        const first = timeline.milestones?.[0];
        o.expect(first !== undefined, "the timeline has no milestone");
        // (A missing `type` is already a problem of the type.)
        if (first && "type" in first) o.same("the first milestone", first.type, "order_created");
      },
    );
  } else {
    for (const m of ["listOrders", "getOrder", "getOrderTimeline"]) {
      notRun(`orders.${m}`, "orders.createOrder made no order");
    }
  }

  // A fresh order is pending (no worker takes it), so it can be cancelled.
  let toCancel;
  await method(
    "orders.cancelOrder",
    async () => {
      toCancel = await zinc.orders.createOrder({ body: orderBody(`sdk-${run}-2`) });
      return zinc.orders.cancelOrder({ order_id: toCancel.id });
    },
    async (_, o) => {
      const after = await zinc.orders.getOrder({ order_id: toCancel.id });
      o.same("the status after cancelling", after.status, "cancelled");
    },
  );
  await method("orders.listTestProducts", () => zinc.orders.listTestProducts());

  // ---- managedAccounts
  const email = `sdk-${run}@example.com`;
  const credentials = await method(
    "managedAccounts.createRetailerCredentials",
    () =>
      zinc.managedAccounts.createRetailerCredentials({
        retailer: "demo",
        email,
        password: "demo-password",
      }),
    (created, o) => {
      o.same("retailer", created.retailer, "demo");
      o.same("email", created.email, email);
    },
  );
  if (credentials) {
    // Zinc addresses a credential by its short_id; when it is missing, the id is used,
    // and that counts as a problem of the method.
    const shortId = (o) => {
      if (credentials.short_id !== undefined) return credentials.short_id;
      o.problems.push(NO_SHORT_ID);
      return credentials.id;
    };
    // (A list of the wrong shape is already a problem of its type.)
    const listed = (list) =>
      Array.isArray(list.credentials)
        ? list.credentials.some((c) => c.id === credentials.id)
        : null;
    await method(
      "managedAccounts.listRetailerCredentials",
      () => zinc.managedAccounts.listRetailerCredentials({ limit: 10, offset: 0 }),
      (list, o) => o.expect(listed(list) !== false, "the new credential is not listed"),
    );
    const newEmail = `sdk-${run}-2@example.com`;
    await method(
      "managedAccounts.updateRetailerCredentials",
      (o) =>
        zinc.managedAccounts.updateRetailerCredentials({ short_id: shortId(o), email: newEmail }),
      (updated, o) => o.same("email after the update", updated.email, newEmail),
    );
    await method(
      "managedAccounts.deleteRetailerCredentials",
      (o) => zinc.managedAccounts.deleteRetailerCredentials({ short_id: shortId(o) }),
      async (_, o) => {
        const list = await zinc.managedAccounts.listRetailerCredentials({ limit: 500 });
        o.expect(listed(list) !== true, "the deleted credential is still listed");
      },
    );
  } else {
    for (const m of ["list", "update", "delete"].map((v) => `${v}RetailerCredentials`)) {
      notRun(`managedAccounts.${m}`, "managedAccounts.createRetailerCredentials made nothing");
    }
  }

  // ---- webhooks
  await method("webhooks.getWebhookEndpoint", () => zinc.webhooks.getWebhookEndpoint());
  await method(
    "webhooks.setWebhookEndpoint",
    () => zinc.webhooks.setWebhookEndpoint({ url: WEBHOOK_URL }),
    (endpoint, o) => {
      // (Missing fields are already problems of the type.)
      if ("webhook_url" in endpoint) o.same("webhook_url", endpoint.webhook_url, WEBHOOK_URL);
      if ("webhook_secret" in endpoint) {
        const secret = endpoint.webhook_secret;
        o.expect(typeof secret === "string" && secret !== "", "webhook_secret is empty");
      }
    },
  );
  await method("webhooks.clearWebhookEndpoint", () => zinc.webhooks.clearWebhookEndpoint());

  // ---- returns (only delivered items can be returned: the caller gives a delivered
  // order's id and one of its items in ERRAND_DELIVERED_ORDER_ID and _ITEM_ID).
  await method("returns.listReturnRequests", () =>
    zinc.returns.listReturnRequests({ limit: 10, offset: 0 }),
  );
  const delivered = {
    order: process.env.ERRAND_DELIVERED_ORDER_ID,
    item: process.env.ERRAND_DELIVERED_ITEM_ID,
  };
  let returnRequest;
  if (delivered.order && delivered.item) {
    returnRequest = await method(
      "returns.createReturnRequest",
      () =>
        zinc.returns.createReturnRequest({
          order_id: delivered.order,
          items: [{ order_item_id: delivered.item, quantity: 1 }],
          reason: "damaged",
          notes: "sent by the SDK test",
        }),
      (created, o) => o.same("order_id", created.order_id, delivered.order),
    );
  } else {
    notRun("returns.createReturnRequest", "no delivered order was given (ERRAND_DELIVERED_ORDER_ID)");
  }
  if (returnRequest) {
    await method(
      "returns.getReturnRequest",
      () => zinc.returns.getReturnRequest({ return_request_id: returnRequest.id }),
      (got, o) => o.same("id", got.id, returnRequest.id),
    );
  } else {
    notRun("returns.getReturnRequest", "returns.createReturnRequest made no return");
  }

  console.log(`${results.known} known mismatches`);
  console.log(`${results.passed} passed, ${results.failed} failed, ${results.skipped} skipped`);
  return results.failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error?.stack ?? error);
    process.exit(1);
  },
);
