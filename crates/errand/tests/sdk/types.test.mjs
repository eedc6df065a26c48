// Self-checks of the type checker in types.mjs, against the installed SDK's types and
// against small declarations it must refuse. sdk.mjs runs them before it talks to
// Errand, so a broken checker fails the test; `node types.test.mjs` runs them alone.

import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { declaredReturnType, loadTypesFrom, types } from "./types.mjs";

const AT = "2026-01-01T00:00:00Z";
const ORDER = {
  id: "0b6a4c8e-3f5e-4b5e-9d2a-2f1e6c3b7a10",
  status: "pending",
  max_price: 5000,
  attempts: 0,
  items: [
    {
      id: "item_1",
      url: "https://store.example/dp/B0DEMO0005",
      quantity: 1,
      variant: [{ label: "Color", value: "Red" }],
      status: "pending",
      created_at: AT,
      updated_at: AT,
    },
  ],
  shipping_address: { first_name: "Ada" },
  retailer_credentials_id: null,
  job_result: null,
  created_at: AT,
  updated_at: AT,
  something_errand_adds: [1, 2, 3],
};
const MILESTONE = {
  type: "order_created",
  label: "Order received",
  occurred_at: AT,
  source: "customer",
  detail: null,
};

/** Runs every self-check; throws on the first that fails. Returns how many ran. */
export function selfTest() {
  const t = types();
  let n = 0;
  /** `value` as `typeName` has exactly the `expected` problems. */
  const same = (why, typeName, value, expected) => {
    n++;
    assert.deepEqual(t.check(typeName, value), expected, why);
  };
  const valid = (why, typeName, value) => same(why, typeName, value, []);

  // Every declaration file was read, and declares the type it is named after.
  for (const file of t.files.filter((f) => f !== "index.d.ts")) {
    n++;
    const name = file.replace(/\.d\.ts$/, "");
    assert.ok(t.has(name), `${file} declares no ${name}`);
  }

  // Valid values, extra fields included.
  valid("a valid order", "Zinc.OrderResponse", ORDER);
  valid("a page", "Zinc.OrderListResponse", { orders: [ORDER], total: 1, limit: 20, offset: 0 });
  valid("a timeline", "Zinc.OrderTimelineResponse", {
    order_id: ORDER.id,
    current_status: "pending",
    milestones: [MILESTONE],
  });
  valid("nullable fields may be null", "Zinc.WebhookEndpointResponse", {
    webhook_url: null,
    webhook_secret: null,
  });
  valid("an enum declared in a namespace", "Zinc.MarginSpec", { type: "percent", value: 15 });
  valid("a namespaced alias of a union", "Zinc.ValidationError", {
    loc: ["body", "products", 0],
    msg: "m",
    type: "missing",
  });
  valid("an index signature accepts extra fields", "Zinc.ErrorDetails", {
    code: "c",
    message: "m",
    anything: { at: "all" },
  });
  valid("a record", "Record<string, unknown>", { test_products: [] });
  valid("no body", "void", undefined);

  // Invalid values: every problem, each at its JSON path.
  {
    const order = structuredClone(ORDER);
    delete order.created_at;
    order.status = "shipped";
    order.attempts = "0";
    order.items[0].variant[0] = { label: "Color" };
    order.items.push("not an item");
    order.job_result = { success: "yes", error_details: { message: "m" } };
    same("an order with wrong fields", "Zinc.OrderResponse", order, [
      '$.status: string "shipped" is not one of "pending", "in_progress", "order_placed", ' +
        '"order_failed", "cancelled", "cancelled_by_retailer" (as Zinc.OrderStatus)',
      '$.attempts: expected number, got string "0"',
      "$.items[0].variant[0].value: missing required field (string)",
      '$.items[1]: expected an object, got string "not an item" (as Zinc.OrderItemResponse)',
      '$.job_result.success: expected boolean | null | undefined, got string "yes"',
      "$.job_result.error_details.code: missing required field (string)",
      "$.created_at: missing required field (string)",
    ]);
  }
  {
    const order = structuredClone(ORDER);
    delete order.retailer_credentials_id;
    same("a required nullable field must be present", "Zinc.OrderResponse", order, [
      "$.retailer_credentials_id: missing required field (string | null)",
    ]);
  }
  {
    const { type, ...untyped } = MILESTONE;
    same(
      "a timeline without current_status, with a milestone without type",
      "Zinc.OrderTimelineResponse",
      { order_id: ORDER.id, milestones: [{ ...untyped, milestone: type }] },
      [
        "$.current_status: missing required field (Zinc.OrderStatus)",
        "$.milestones[0].type: missing required field (Zinc.OrderMilestone.Type)",
      ],
    );
  }
  same(
    "renamed fields",
    "Zinc.WebhookEndpointResponse",
    { url: null, secret: null },
    [
      "$.webhook_url: missing required field (string | null)",
      "$.webhook_secret: missing required field (string | null)",
    ],
  );
  same(
    "a wrong type in a nullable field",
    "Zinc.WebhookEndpointResponse",
    { webhook_url: 5, webhook_secret: null },
    ["$.webhook_url: expected string | null, got number 5"],
  );
  same("a value not in a namespaced enum", "Zinc.MarginSpec", { type: "bogus", value: 1 }, [
    '$.type: string "bogus" is not one of "flat", "percent" (as Zinc.MarginSpec.Type)',
  ]);
  same("a nested namespace", "Zinc.ValidationError", { loc: [true], msg: "m", type: "t" }, [
    "$.loc[0]: expected string | number, got boolean true (as Zinc.ValidationError.Loc.Item)",
  ]);
  same("an array where an object belongs", "Zinc.OrderListResponse", [], [
    "$: expected an object, got an array (as Zinc.OrderListResponse)",
  ]);
  same(
    "an object where an array belongs",
    "Zinc.RetailerCredentialsListResponse",
    { credentials: {}, total: 0 },
    ["$.credentials: expected Zinc.RetailerCredentialsResponse[], got an object"],
  );
  same("an array is not a record", "Record<string, unknown>", [], [
    "$: expected Record<string, unknown>, got an array",
  ]);
  same("a body where none is declared", "void", { id: 1 }, ["$: expected no body, got an object"]);

  // Declarations it cannot read, and references it cannot resolve, throw.
  const refused = [
    ["export interface X { a: Map<string, number>; }", /generic type Map/],
    ["export interface X { a: { b: string }; }", /inline object types/],
    ["export interface X extends Y { a: string; }", /generics and extends/],
    ["export interface X { a: string & number; }", /intersection/],
    ["export interface X { a: Zinc.Nope; }", /unknown type Zinc\.Nope/],
    ["export interface X { a: Nope; }", /unknown type Nope/],
    ["export interface X { a: X.Y.Z; }", /unknown namespace X/],
    ["export type X = keyof Y;", /not supported/],
    ["export type X = (typeof Y)[keyof typeof Y];", /names no const Y/],
    ["export declare const X: { readonly A: string; };", /only string or number literal/],
    ["export class X {}", /unsupported declaration/],
    ["export interface X { f(): void; }", /methods are not supported/],
    ["export type X = Y[number];", /indexed access/],
    ["export interface X { [key: number]: string; }", /index signatures/],
    ["export enum X { A }", /unsupported declaration/],
    ["export interface X { a: bigint; }", /unknown type bigint/],
  ];
  for (const [text, why] of refused) {
    n++;
    const load = () => loadTypesFrom([{ file: "sample.d.ts", text }]);
    assert.throws(load, why, `must refuse: ${text}`);
  }
  // ... and what it can read, it reads as declared.
  {
    n++;
    const text = `/** doc */
      import type * as Zinc from "../index.js";
      export interface A {
        "x-y"?: (Zinc.B | null) | undefined;
        list: Zinc.B[];
        tag: "a" | 'b';
        n?: number;
        [key: string]: any;
      }
      export declare const B: { readonly One: "one"; readonly Two: "two"; };
      export type B = (typeof B)[keyof typeof B];`;
    const sample = loadTypesFrom([{ file: "sample.d.ts", text }]);
    assert.deepEqual(sample.check("Zinc.A", { list: ["one"], tag: "b", extra: 1 }), []);
    assert.deepEqual(sample.check("Zinc.A", { "x-y": "three", list: [], tag: "c", n: null }), [
      '$["x-y"]: string "three" is not one of "one", "two" (as Zinc.B)',
      '$.tag: expected "a" | "b", got string "c"',
      "$.n: expected number, got null",
    ]);
  }

  // The return types sdk.mjs checks against come from the SDK's clients.
  n++;
  assert.equal(declaredReturnType("orders", "getOrderTimeline"), "Zinc.OrderTimelineResponse");
  assert.equal(declaredReturnType("orders", "listTestProducts"), "Record<string, unknown>");
  assert.equal(declaredReturnType("managedAccounts", "deleteRetailerCredentials"), "void");
  assert.throws(() => declaredReturnType("orders", "noSuchMethod"), /no method noSuchMethod/);
  return n;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = selfTest();
  console.log(`checker self-test: ${n} checks passed`);
}
