// A run-time checker for the types Zinc's Node SDK declares.
//
// The declarations are read, when this module loads, from the installed package
// (node_modules/zinc/dist/cjs/api/types/*.d.ts), never copied: a new SDK version brings
// its own types. The parser understands the subset of TypeScript those files are
// written in: interfaces (required and `?:` optional fields, index signatures), enums
// spelt as a `declare const` object of string literals with the matching
// `(typeof X)[keyof typeof X]` type, type aliases, and namespaces holding enums and
// aliases. Field types are primitives, literals, `Zinc.X` and namespace-qualified
// references, arrays, `Record<K, V>` and unions (parenthesised or not). Anything else
// throws, naming the file and line: a declaration this checker cannot read must never
// be silently accepted.
//
//   import { check } from "./types.mjs";
//   check("Zinc.OrderResponse", body)  // -> ["$.items[0].status: ...", ...], [] when valid
//
// A value may carry fields its type does not declare (Errand may return more); a
// required field (no `?`) must be present, even when its type allows null.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

// ---------------------------------------------------------------------------
// Tokens

const PUNCTUATION = new Set("{}()[]<>,;:?|&.=*");

function tokenize(text, file) {
  const tokens = [];
  let i = 0;
  let line = 1;
  const fail = (why) => {
    throw new Error(`${file}:${line}: ${why}`);
  };
  while (i < text.length) {
    const c = text[i];
    if (c === "\n") {
      line++;
      i++;
    } else if (/\s/.test(c)) {
      i++;
    } else if (text.startsWith("//", i)) {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (text.startsWith("/*", i)) {
      const end = text.indexOf("*/", i + 2);
      if (end < 0) fail("unterminated comment");
      for (const ch of text.slice(i, end)) if (ch === "\n") line++;
      i = end + 2;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let value = "";
      while (j < text.length && text[j] !== c) {
        if (text[j] === "\n") fail("unterminated string");
        if (text[j] === "\\") {
          j++;
          if (!/["'\\]/.test(text[j] ?? "")) fail(`unsupported escape \\${text[j]} in a string`);
        }
        value += text[j];
        j++;
      }
      if (j >= text.length) fail("unterminated string");
      tokens.push({ kind: "string", value, line });
      i = j + 1;
    } else if (/[0-9]/.test(c) || (c === "-" && /[0-9]/.test(text[i + 1] ?? ""))) {
      const m = /^-?[0-9]+(\.[0-9]+)?/.exec(text.slice(i));
      tokens.push({ kind: "number", value: Number(m[0]), line });
      i += m[0].length;
    } else if (/[A-Za-z_$]/.test(c)) {
      const m = /^[A-Za-z_$][A-Za-z0-9_$]*/.exec(text.slice(i));
      tokens.push({ kind: "ident", value: m[0], line });
      i += m[0].length;
    } else if (PUNCTUATION.has(c)) {
      tokens.push({ kind: "punct", value: c, line });
      i++;
    } else {
      fail(`unexpected character ${JSON.stringify(c)}`);
    }
  }
  tokens.push({ kind: "eof", value: "<end of file>", line });
  return tokens;
}

// ---------------------------------------------------------------------------
// Declarations

const PRIMITIVES = ["string", "number", "boolean", "null", "undefined", "unknown", "any", "void"];
const UNSUPPORTED_WORDS = ["typeof", "keyof", "infer", "readonly", "never", "object", "symbol"];

/** A namespace: the global one (what `Zinc.` names) or one declared in a file. */
class Scope {
  constructor(name, parent) {
    this.name = name;
    this.parent = parent;
    this.types = new Map(); // name -> { node, scope, where }
    this.consts = new Map(); // name -> { values, where }
    this.namespaces = new Map(); // name -> Scope
  }
  qualified(name) {
    return this.parent ? `${this.parent.qualified(this.name)}.${name}` : `Zinc.${name}`;
  }
  namespace(name) {
    if (!this.namespaces.has(name)) this.namespaces.set(name, new Scope(name, this));
    return this.namespaces.get(name);
  }
}

class Parser {
  constructor(text, file) {
    this.tokens = tokenize(text, file);
    this.pos = 0;
    this.file = file;
  }
  peek(offset = 0) {
    return this.tokens[this.pos + offset];
  }
  next() {
    return this.tokens[this.pos++];
  }
  fail(why, token = this.peek()) {
    throw new Error(`${this.file}:${token.line}: ${why} (at ${JSON.stringify(token.value)})`);
  }
  is(value, offset = 0) {
    const t = this.peek(offset);
    return (t.kind === "punct" || t.kind === "ident") && t.value === value;
  }
  eat(value) {
    if (this.is(value)) {
      this.pos++;
      return true;
    }
    return false;
  }
  expect(value) {
    if (!this.eat(value)) this.fail(`expected ${JSON.stringify(value)}`);
  }
  ident() {
    const t = this.next();
    if (t.kind !== "ident") this.fail("expected a name", t);
    return t.value;
  }
  where() {
    return `${this.file}:${this.peek().line}`;
  }

  /** Statements up to `}` (in a namespace) or the end of the file. */
  statements(scope) {
    while (this.peek().kind !== "eof" && !this.is("}")) this.statement(scope);
  }

  statement(scope) {
    if (this.is("import")) {
      // Only the SDK's own `import type * as Zinc from "../index.js";`.
      const start = this.peek();
      this.next();
      for (const word of ["type", "*", "as", "Zinc", "from"]) {
        if (!this.eat(word)) this.fail("unsupported import", start);
      }
      if (this.next().kind !== "string") this.fail("unsupported import", start);
      this.expect(";");
      return;
    }
    const exported = this.eat("export");
    if (exported && this.eat("*")) {
      // `export * from "./X.js";` (index.d.ts): every file is read anyway.
      this.expect("from");
      if (this.next().kind !== "string") this.fail("unsupported export");
      this.expect(";");
      return;
    }
    this.eat("declare");
    const where = this.where();
    if (this.eat("interface")) {
      const name = this.ident();
      if (this.is("<") || this.is("extends")) {
        this.fail(`interface ${name}: generics and extends are not supported`);
      }
      this.define(scope, name, this.objectType(scope), where);
    } else if (this.eat("const")) {
      const name = this.ident();
      this.expect(":");
      const values = this.enumObject(name);
      this.expect(";");
      if (scope.consts.has(name)) this.fail(`${scope.qualified(name)} is declared twice`);
      scope.consts.set(name, { values, where });
    } else if (this.eat("type")) {
      const name = this.ident();
      if (this.is("<")) this.fail(`type ${name}: generic aliases are not supported`);
      this.expect("=");
      const node = this.type(scope);
      this.expect(";");
      this.define(scope, name, node, where);
    } else if (this.eat("namespace")) {
      const name = this.ident();
      const inner = scope.namespace(name);
      this.expect("{");
      this.statements(inner);
      this.expect("}");
    } else {
      this.fail("unsupported declaration");
    }
  }

  define(scope, name, node, where) {
    if (scope.types.has(name)) this.fail(`${scope.qualified(name)} is declared twice`);
    scope.types.set(name, { node, scope, where });
  }

  /** `{ readonly A: "a"; readonly B: "b"; }`: an enum's values. */
  enumObject(name) {
    this.expect("{");
    const values = [];
    while (!this.eat("}")) {
      this.eat("readonly");
      this.ident();
      this.expect(":");
      const t = this.next();
      if (t.kind !== "string" && t.kind !== "number") {
        this.fail(`const ${name}: only string or number literal members are supported`, t);
      }
      values.push(t.value);
      if (!this.eat(";")) this.eat(",");
    }
    if (values.length === 0) this.fail(`const ${name} has no members`);
    return values;
  }

  /** `{ a: T; b?: T; [key: string]: T; }` */
  objectType(scope) {
    this.expect("{");
    const fields = [];
    let index = null;
    while (!this.eat("}")) {
      this.eat("readonly");
      if (this.eat("[")) {
        this.ident();
        this.expect(":");
        if (!this.eat("string")) this.fail("only `[key: string]` index signatures are supported");
        this.expect("]");
        this.expect(":");
        if (index) this.fail("two index signatures");
        index = this.type(scope);
      } else {
        const t = this.next();
        if (t.kind !== "ident" && t.kind !== "string") this.fail("expected a field name", t);
        if (this.is("(") || this.is("<")) this.fail(`field ${t.value}: methods are not supported`);
        const optional = this.eat("?");
        this.expect(":");
        const type = this.type(scope);
        if (fields.some((f) => f.name === t.value)) this.fail(`field ${t.value} is declared twice`);
        fields.push({ name: t.value, optional, type });
      }
      if (!this.eat(";")) this.eat(",");
    }
    return { kind: "object", fields, index };
  }

  /** A type expression: a union of postfix types. */
  type(scope) {
    this.eat("|");
    const options = [this.postfix(scope)];
    while (this.eat("|")) options.push(this.postfix(scope));
    if (this.is("&")) this.fail("intersection types are not supported");
    if (this.is("=") && this.is(">", 1)) this.fail("function types are not supported");
    return options.length === 1 ? options[0] : { kind: "union", options };
  }

  postfix(scope) {
    let node = this.primary(scope);
    while (this.is("[") && this.is("]", 1)) {
      this.pos += 2;
      node = { kind: "array", of: node };
    }
    if (this.is("[")) this.fail("indexed access types are not supported");
    return node;
  }

  primary(scope) {
    const t = this.peek();
    if (t.kind === "string" || t.kind === "number") {
      this.next();
      return { kind: "literal", value: t.value };
    }
    if (this.is("(")) {
      // `(typeof X)[keyof typeof X]`: the values of the enum const X.
      if (this.is("typeof", 1)) {
        this.next();
        this.next();
        const name = this.ident();
        this.expect(")");
        this.expect("[");
        if (!(this.eat("keyof") && this.eat("typeof") && this.eat(name))) {
          this.fail("only `(typeof X)[keyof typeof X]` is supported");
        }
        this.expect("]");
        return { kind: "enum", name, scope, where: `${this.file}:${t.line}` };
      }
      this.next();
      const inner = this.type(scope);
      this.expect(")");
      return inner;
    }
    if (this.is("{")) this.fail("inline object types are not supported");
    if (t.kind !== "ident") this.fail("expected a type");
    this.next();
    if (PRIMITIVES.includes(t.value)) return { kind: "primitive", name: t.value };
    if (t.value === "true" || t.value === "false") {
      return { kind: "literal", value: t.value === "true" };
    }
    if (UNSUPPORTED_WORDS.includes(t.value)) {
      this.fail(`\`${t.value}\` is not supported here`, t);
    }
    if (t.value === "Record") {
      this.expect("<");
      const key = this.type(scope);
      if (!(key.kind === "primitive" && key.name === "string")) {
        this.fail("only Record<string, T> is supported");
      }
      this.expect(",");
      const value = this.type(scope);
      this.expect(">");
      return { kind: "record", value };
    }
    if (t.value === "Array") {
      this.expect("<");
      const of = this.type(scope);
      this.expect(">");
      return { kind: "array", of };
    }
    const names = [t.value];
    while (this.eat(".")) names.push(this.ident());
    if (this.is("<")) this.fail(`generic type ${names.join(".")}<...> is not supported`);
    return { kind: "ref", names, scope, where: `${this.file}:${t.line}` };
  }
}

// ---------------------------------------------------------------------------
// Names

function lookupType(scope, names, where) {
  let start;
  let rest = names;
  if (names[0] === "Zinc") {
    start = rootOf(scope);
    rest = names.slice(1);
  } else if (names.length === 1) {
    for (let s = scope; s; s = s.parent) {
      if (s.types.has(names[0])) return s.types.get(names[0]);
    }
    throw new Error(`${where}: unknown type ${names.join(".")}`);
  } else {
    for (start = scope; start && !start.namespaces.has(names[0]); start = start.parent);
    if (!start) throw new Error(`${where}: unknown namespace ${names[0]} in ${names.join(".")}`);
  }
  let s = start;
  for (const n of rest.slice(0, -1)) {
    s = s.namespaces.get(n);
    if (!s) throw new Error(`${where}: unknown namespace ${n} in ${names.join(".")}`);
  }
  const found = s.types.get(rest[rest.length - 1]);
  if (!found) throw new Error(`${where}: unknown type ${names.join(".")}`);
  return found;
}

function rootOf(scope) {
  while (scope.parent) scope = scope.parent;
  return scope;
}

function lookupConst(scope, name, where) {
  if (!scope.consts.has(name)) {
    throw new Error(`${where}: (typeof ${name}) names no const ${name} in the same namespace`);
  }
  return scope.consts.get(name).values;
}

/** Resolves every reference under `node` now, so that a bad one throws at load time. */
function resolveAll(node, seen = new Set()) {
  if (seen.has(node)) return;
  seen.add(node);
  switch (node.kind) {
    case "ref": {
      const target = lookupType(node.scope, node.names, node.where);
      node.target = target.node;
      node.display = qualifiedName(node.names, target);
      resolveAll(target.node, seen);
      break;
    }
    case "enum":
      node.values = lookupConst(node.scope, node.name, node.where);
      break;
    case "array":
      resolveAll(node.of, seen);
      break;
    case "record":
      resolveAll(node.value, seen);
      break;
    case "union":
      node.options.forEach((o) => resolveAll(o, seen));
      break;
    case "object":
      node.fields.forEach((f) => resolveAll(f.type, seen));
      if (node.index) resolveAll(node.index, seen);
      break;
    case "primitive":
    case "literal":
      break;
    default:
      throw new Error(`internal: unknown type node ${node.kind}`);
  }
}

function qualifiedName(names, target) {
  const last = names[names.length - 1];
  return target.scope.qualified(last);
}

// ---------------------------------------------------------------------------
// Loading

/**
 * Parses `.d.ts` sources (`[{ file, text }]`) into one set of types; throws on anything
 * it cannot read or resolve.
 */
export function loadTypesFrom(sources) {
  const global = new Scope("Zinc", null);
  for (const { file, text } of sources) {
    const parser = new Parser(text, file);
    parser.statements(global);
    if (parser.peek().kind !== "eof") parser.fail("unexpected `}`");
  }
  const each = (scope, f) => {
    for (const entry of scope.types.values()) f(entry);
    for (const inner of scope.namespaces.values()) each(inner, f);
  };
  each(global, (entry) => resolveAll(entry.node));
  return new Types(global);
}

/** Where the installed SDK's CommonJS build and its `api/types` are. */
export function sdkLocation() {
  const require = createRequire(import.meta.url);
  let main;
  try {
    main = require.resolve("zinc"); // .../node_modules/zinc/dist/cjs/index.js
  } catch {
    throw new Error(
      "Zinc's SDK is not installed: run `npm ci` in crates/errand/tests/sdk (or scripts/test)",
    );
  }
  const cjsDir = path.dirname(main);
  return { cjsDir, typesDir: path.join(cjsDir, "api/types") };
}

/** Every type the installed SDK declares. */
export function loadInstalledTypes() {
  const { typesDir } = sdkLocation();
  const files = fs
    .readdirSync(typesDir)
    .filter((f) => f.endsWith(".d.ts"))
    .sort();
  if (files.length < 2) throw new Error(`no declarations found in ${typesDir}`);
  const types = loadTypesFrom(
    files.map((f) => {
      const file = path.join(typesDir, f);
      return { file, text: fs.readFileSync(file, "utf8") };
    }),
  );
  types.files = files;
  return types;
}

/**
 * The declared return type of `client.<resource>.<method>` in the installed SDK, as
 * written in its Client.d.ts (`core.HttpResponsePromise<T>`): "Zinc.OrderResponse",
 * "void", "Record<string, unknown>", ...
 */
export function declaredReturnType(resource, method) {
  const { cjsDir } = sdkLocation();
  const file = path.join(cjsDir, "api/resources", resource, "client/Client.d.ts");
  if (!fs.existsSync(file)) throw new Error(`the SDK has no resource ${resource} (${file})`);
  const text = fs.readFileSync(file, "utf8");
  const re = new RegExp(`^\\s+${method}\\(.*\\): core\\.HttpResponsePromise<(.+)>;\\s*$`, "m");
  const m = re.exec(text);
  if (!m) throw new Error(`${file}: no method ${method}(...): core.HttpResponsePromise<T>`);
  return m[1];
}

// ---------------------------------------------------------------------------
// Checking

class Types {
  constructor(global) {
    this.global = global;
    this.parsed = new Map();
  }

  /** Every declared type's qualified name (`Zinc.OrderResponse`, `Zinc.MarginSpec.Type`, ...). */
  names() {
    const out = [];
    const walk = (scope) => {
      for (const name of scope.types.keys()) out.push(scope.qualified(name));
      for (const inner of scope.namespaces.values()) walk(inner);
    };
    walk(this.global);
    return out.sort();
  }

  has(name) {
    return this.global.types.has(name);
  }

  /** A type expression in the SDK's terms ("Zinc.X", "Zinc.X[]", "void", ...), resolved. */
  typeOf(expression) {
    if (!this.parsed.has(expression)) {
      const parser = new Parser(`type __Checked = ${expression};`, `<${expression}>`);
      const scratch = new Scope("__check", this.global);
      parser.statement(scratch);
      if (parser.peek().kind !== "eof") parser.fail("trailing tokens");
      const node = scratch.types.get("__Checked").node;
      resolveAll(node);
      this.parsed.set(expression, node);
    }
    return this.parsed.get(expression);
  }

  /** The problems of `value` as a `typeName` (a type expression), each with its JSON path. */
  check(typeName, value) {
    const problems = [];
    checkValue(this.typeOf(typeName), value, "$", problems);
    return problems;
  }
}

function describe(node, depth = 0) {
  switch (node.kind) {
    case "primitive":
      return node.name;
    case "literal":
      return JSON.stringify(node.value);
    case "ref":
      return node.display;
    case "enum":
      return node.values.map((v) => JSON.stringify(v)).join(" | ");
    case "array": {
      const inner = describe(node.of, depth + 1);
      return node.of.kind === "union" ? `(${inner})[]` : `${inner}[]`;
    }
    case "record":
      return `Record<string, ${describe(node.value, depth + 1)}>`;
    case "union":
      return node.options.map((o) => describe(o, depth + 1)).join(" | ");
    case "object":
      return "object";
    default:
      return node.kind;
  }
}

function shown(value) {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value);
  return `${typeof value} ${text.length > 60 ? `${text.slice(0, 57)}...` : text}`;
}

function fieldPath(base, name) {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name)
    ? `${base}.${name}`
    : `${base}[${JSON.stringify(name)}]`;
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Follows references to the node that says what a value must look like. */
function target(node) {
  while (node.kind === "ref") node = node.target;
  return node;
}

/** Whether `node` is meant for values of `value`'s JavaScript kind (for union errors). */
function sameKind(node, value) {
  node = target(node);
  switch (node.kind) {
    case "object":
    case "record":
      return isPlainObject(value);
    case "array":
      return Array.isArray(value);
    case "union":
      return node.options.some((o) => sameKind(o, value));
    case "enum":
      return node.values.some((v) => typeof v === typeof value);
    default:
      return false;
  }
}

function checkValue(node, value, at, problems) {
  const wrong = (expected) => problems.push(`${at}: expected ${expected}, got ${shown(value)}`);
  switch (node.kind) {
    case "primitive":
      switch (node.name) {
        case "unknown":
        case "any":
          return;
        case "void":
        case "undefined":
          if (value !== undefined) wrong(node.name === "void" ? "no body" : "undefined");
          return;
        case "null":
          if (value !== null) wrong("null");
          return;
        case "number":
          if (typeof value !== "number" || !Number.isFinite(value)) wrong("number");
          return;
        default:
          if (typeof value !== node.name) wrong(node.name);
          return;
      }
    case "literal":
      if (value !== node.value) wrong(JSON.stringify(node.value));
      return;
    case "enum":
      if (!node.values.includes(value)) {
        const allowed = node.values.map((v) => JSON.stringify(v)).join(", ");
        problems.push(`${at}: ${shown(value)} is not one of ${allowed}`);
      }
      return;
    case "ref": {
      const inner = [];
      checkValue(node.target, value, at, inner);
      // A problem with the value itself (not one of its fields) names the type.
      for (const p of inner) {
        const named = p.startsWith(`${at}: `) && !p.includes(" (as Zinc.");
        problems.push(named ? `${p} (as ${node.display})` : p);
      }
      return;
    }
    case "array":
      if (!Array.isArray(value)) {
        wrong(describe(node));
        return;
      }
      value.forEach((item, i) => checkValue(node.of, item, `${at}[${i}]`, problems));
      return;
    case "record":
      if (!isPlainObject(value)) {
        wrong(describe(node));
        return;
      }
      for (const [k, v] of Object.entries(value)) {
        checkValue(node.value, v, fieldPath(at, k), problems);
      }
      return;
    case "union": {
      const attempts = node.options.map((o) => {
        const p = [];
        checkValue(o, value, at, p);
        return { option: o, problems: p };
      });
      if (attempts.some((a) => a.problems.length === 0)) return;
      // The value has the kind of exactly one option (say an object for
      // `Zinc.X | null`): what is wrong with it as that option is the useful answer.
      const close = attempts.filter((a) => sameKind(a.option, value));
      if (close.length === 1) {
        problems.push(...close[0].problems);
      } else {
        wrong(describe(node));
      }
      return;
    }
    case "object": {
      if (!isPlainObject(value)) {
        wrong("an object");
        return;
      }
      const declared = new Set();
      for (const field of node.fields) {
        declared.add(field.name);
        const here = fieldPath(at, field.name);
        if (!Object.hasOwn(value, field.name)) {
          if (!field.optional) {
            problems.push(`${here}: missing required field (${describe(field.type)})`);
          }
          continue;
        }
        checkValue(field.type, value[field.name], here, problems);
      }
      if (node.index) {
        for (const [k, v] of Object.entries(value)) {
          if (!declared.has(k)) checkValue(node.index, v, fieldPath(at, k), problems);
        }
      }
      return;
    }
    default:
      throw new Error(`internal: unknown type node ${node.kind}`);
  }
}

// ---------------------------------------------------------------------------
// The installed SDK's types, loaded once.

let installed;

/** The installed SDK's types (loaded on first use). */
export function types() {
  installed ??= loadInstalledTypes();
  return installed;
}

/** `check(typeName, value) -> string[]`: the problems of `value` as the SDK's `typeName`. */
export function check(typeName, value) {
  return types().check(typeName, value);
}
