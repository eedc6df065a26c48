// Helpers every step's script starts with: finding elements the way recipes describe
// them, and acting on them as a shopper's browser would (events included).
const norm = (t) => (t || "").replace(/\s+/g, " ").trim().toLowerCase();
const visible = (el) => {
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  return box.width > 0 && box.height > 0 && style.visibility !== "hidden" && style.display !== "none";
};
// Every visible element a target names, in page order.
const findAll = (target) => {
  if (target.css !== undefined) {
    return [...document.querySelectorAll(target.css)].filter(visible);
  }
  if (target.text !== undefined) {
    const want = norm(target.text);
    const holding = [...document.body.querySelectorAll("*")].filter(
      (el) => visible(el) && norm(el.innerText).includes(want),
    );
    // The innermost: no child of it holds the text too.
    return holding.filter((el) => !holding.some((other) => other !== el && el.contains(other)));
  }
  const want = norm(target.label);
  const fields = [];
  for (const label of document.querySelectorAll("label")) {
    if (norm(label.innerText).includes(want) && label.control && visible(label.control)) {
      fields.push(label.control);
    }
  }
  for (const el of document.querySelectorAll("[aria-label]")) {
    if (norm(el.getAttribute("aria-label")).includes(want) && visible(el)) fields.push(el);
  }
  return fields;
};
const find = (target) => findAll(target)[0] || null;
// Sets a field's value through the native setter, so that frameworks see the change.
const setValue = (el, value) => {
  const proto = el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype
    : el instanceof HTMLSelectElement ? HTMLSelectElement.prototype : HTMLInputElement.prototype;
  Object.getOwnPropertyDescriptor(proto, "value").set.call(el, value);
  el.dispatchEvent(new Event("input", { bubbles: true }));
  el.dispatchEvent(new Event("change", { bubbles: true }));
};
const textOf = (el, attribute) =>
  attribute ? el.getAttribute(attribute) || ""
    : el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement
      ? el.value : el.innerText;
// Marks the document, so that the next one (after a navigation) can be told apart.
const markDocument = () => {
  window.__errandNavigating = false;
  if (!window.__errandMarked) {
    window.__errandMarked = true;
    window.addEventListener("beforeunload", () => { window.__errandNavigating = true; });
  }
};
