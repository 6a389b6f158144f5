// The app's one way to the server: every call carries the signed-in token and goes through the
// FHIR or twin API like any other client's. The token lives in this tab's sessionStorage only:
// never in a URL, a cookie or the server's logs.
const KEY = "fhir-twin.token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function keepToken(secret) {
  sessionStorage.setItem(KEY, secret);
  sessionStorage.removeItem("fhir-twin.me");
}

export function signOut() {
  sessionStorage.clear();
  location.assign("/app/");
}

/** An answer that was not 2xx, with what its OperationOutcome says. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function diagnostics(status, body) {
  const issues = (body && body.resourceType === "OperationOutcome" && body.issue) || [];
  const said = issues
    .map((issue) => {
      const text = issue.diagnostics || issue.details?.text || issue.code;
      // The element or parameter at fault (issue.expression), unless the text already names it.
      const where = (issue.expression || []).filter((name) => text && !text.includes(name)).join(", ");
      return where ? `${where}: ${text}` : text;
    })
    .filter(Boolean);
  return said.length ? said.join("; ") : `The server answered ${status}.`;
}

/** ``path`` on this server with the token; JSON, or the text or a Blob when ``as`` is "text" or "blob". */
export async function api(path, { method = "GET", body, as = "json", headers = {} } = {}) {
  const secret = token();
  if (!secret) {
    location.replace("/app/");
    throw new ApiError(401, "Not signed in.");
  }
  const init = { method, headers: { Authorization: `Bearer ${secret}`, Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = init.headers["Content-Type"] || "application/fhir+json";
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    sessionStorage.clear();
    location.replace("/app/?expired=1");
    throw new ApiError(401, "The token was refused: sign in again.");
  }
  if (!response.ok) {
    let found = null;
    try {
      found = await response.json();
    } catch {
      found = null;
    }
    throw new ApiError(response.status, diagnostics(response.status, found));
  }
  if (as === "text") return response.text();
  if (as === "blob") return response.blob();
  return response.json();
}

/** Where a token goes first: a patient token to its patient, an auditor to the audit views. */
export function landing(who) {
  if (who.patient && who.can.patients) return `/app/patients/${encodeURIComponent(who.patient)}`;
  if (who.can.patients) return "/app/patients";
  if (who.can.audit) return "/app/audit";
  return null;
}

/** The page's own query (search terms, sort, page: never the token) as a plain object. */
export function pageQuery() {
  return Object.fromEntries(new URLSearchParams(location.search));
}

/** Put ``state`` in the page's URL (empty values left out), so a reload, a link or the back button shows the same view. */
export function keepPageQuery(state) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(state)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const search = query.toString();
  const url = search ? `${location.pathname}?${search}` : location.pathname;
  if (url !== `${location.pathname}${location.search}`) history.pushState(null, "", url);
}

/** "21–40 of 57": the rows a page shows, for the pager. */
export function pageCounts(offset, shown, total) {
  if (!shown) return `0 of ${total}`;
  return `${offset + 1}–${offset + shown} of ${total}`;
}

/** Who the token is and what the app may show it (``GET /twin/me``), once per tab session. */
export async function me() {
  const kept = sessionStorage.getItem("fhir-twin.me");
  if (kept) return JSON.parse(kept);
  const found = await api("/twin/me");
  sessionStorage.setItem("fhir-twin.me", JSON.stringify(found));
  return found;
}

/** An element with attributes and children; text goes in as text, never as markup. */
export function el(tag, attributes = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") made.textContent = value;
    else if (name.startsWith("on")) made.addEventListener(name.slice(2), value);
    else made.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    made.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return made;
}

/** Show a problem at the top of the page, read out by screen readers. */
export function showProblem(error) {
  const box = document.getElementById("problem");
  box.textContent = error instanceof ApiError || error instanceof Error ? error.message : String(error);
  box.hidden = false;
}

export function clearProblem() {
  const box = document.getElementById("problem");
  box.textContent = "";
  box.hidden = true;
}

/** An instant as the reader's local date and time, with the zone. */
export function when(instant) {
  if (!instant) return "—";
  const date = new Date(instant);
  return Number.isNaN(date.getTime()) ? instant : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
