// The audit views (auditor role): who accessed one patient's record, filtered and paged, per
// client, as CSV; and the state of the audit trail's hash chain, verified on demand. Everything
// comes from /twin/audit/..., itself read as an AuditEvent search and audited as one.
import { api, clearProblem, el, keepPageQuery, me, pageCounts, pageQuery, showProblem, when } from "./api.js";

const PAGE_SIZE = 50;
const FIELDS = ["patient", "identifier", "agent", "action", "outcome", "from", "to"];
const FILTERS = ["agent", "action", "outcome", "from", "to"];
// AuditEvent.action (R4 audit-event-action) and AuditEvent.outcome (audit-event-outcome) in words.
const ACTIONS = { C: "create", R: "read", U: "update", D: "delete", E: "execute" };
const OUTCOMES = { 0: "success", 4: "minor failure", 8: "serious failure", 12: "major failure" };

const form = document.getElementById("audit-search");
const status = document.getElementById("audit-status");
const results = document.getElementById("audit-results");

function wanted() {
  const query = pageQuery();
  const offset = Number.parseInt(query.offset, 10);
  const count = Number.parseInt(query.count, 10);
  const state = { offset: offset > 0 ? offset : 0, count: count > 0 && count <= 200 ? count : PAGE_SIZE };
  for (const name of FIELDS) state[name] = query[name] || "";
  return state;
}

/** The API's query for ``state``: the patient (by id or identifier) and the filters. */
function apiQuery(state) {
  const query = new URLSearchParams();
  for (const name of FIELDS) if (state[name]) query.set(name, state[name]);
  // A date range's end is inclusive: to=2026-12-06 reads as that day as it ends (FHIR dateTime).
  return query;
}

/** "success", or the failure as the trail describes it ("403: ..."), marked in words and colour. */
function outcome(said) {
  if (said === "success") return said;
  return el("span", { class: "flag" }, `failed: ${said || "no description"}`);
}

function accessRow(access) {
  return el(
    "tr",
    {},
    el("td", {}, el("time", { datetime: access.time }, when(access.time))),
    el("td", {}, access.agent || "—"),
    el("td", {}, access.user || "—"),
    el("td", { title: access.interaction || null }, ACTIONS[access.action] || access.action || "—"),
    el("td", { class: "what", title: access.event || null }, access.what || "—"),
    el("td", {}, outcome(access.outcome)),
    el("td", {}, access.address || "—"),
  );
}

function summaryRow(client) {
  const actions = Object.entries(client.actions || {})
    .map(([code, n]) => `${ACTIONS[code] || code} ${n}`)
    .join(", ");
  return el(
    "tr",
    {},
    el("th", { scope: "row" }, client.agent || "—"),
    el("td", {}, String(client.count)),
    el("td", {}, actions || "—"),
    el("td", {}, client.failures ? el("span", { class: "flag" }, String(client.failures)) : "0"),
    el("td", {}, when(client.first)),
    el("td", {}, when(client.last)),
  );
}

function described(state) {
  const who = state.patient ? `Patient/${state.patient}` : `the patient with identifier ${state.identifier}`;
  const filters = FILTERS.filter((name) => state[name]).map((name) => {
    if (name === "action") return `action ${ACTIONS[state.action] || state.action}`;
    if (name === "outcome") return `outcome ${OUTCOMES[state.outcome] || state.outcome}`;
    return `${name} ${state[name]}`;
  });
  return filters.length ? `${who}, ${filters.join(", ")}` : who;
}

async function show(state) {
  clearProblem();
  for (const name of FIELDS) form.elements[name].value = state[name];
  if (!state.patient && !state.identifier) {
    results.hidden = true;
    status.textContent = "Give a patient id or an identifier to see who accessed the record.";
    return;
  }
  if (state.patient && state.identifier) {
    results.hidden = true;
    status.textContent = "Give a patient id or an identifier, not both.";
    return;
  }
  const query = apiQuery(state);
  const paged = new URLSearchParams(query);
  paged.set("_count", state.count);
  paged.set("_offset", state.offset);
  status.textContent = "Reading the audit trail…";
  let accesses;
  let summary;
  try {
    [accesses, summary] = await Promise.all([api(`/twin/audit/accesses?${paged}`), api(`/twin/audit/summary?${query}`)]);
  } catch (error) {
    results.hidden = true;
    status.textContent = "The audit trail could not be read; nothing is shown.";
    showProblem(error);
    return;
  }
  document.querySelector("#accesses-table tbody").replaceChildren(...accesses.accesses.map(accessRow));
  document.querySelector("#summary-table tbody").replaceChildren(...summary.clients.map(summaryRow));
  const subject = described(state);
  document.getElementById("accesses-caption").textContent = `Accesses to ${subject}, newest first`;
  document.getElementById("summary-caption").textContent = `Accesses to ${subject} by client`;
  results.hidden = false;
  status.textContent = accesses.total
    ? `${accesses.total} access${accesses.total === 1 ? "" : "es"} to Patient/${accesses.patient}.`
    : `No access to Patient/${accesses.patient} matches.`;
  const offset = accesses.offset ?? state.offset;
  document.getElementById("audit-counts").textContent = pageCounts(offset, accesses.accesses.length, accesses.total);
  const previous = document.getElementById("audit-previous");
  const next = document.getElementById("audit-next");
  previous.disabled = offset <= 0;
  next.disabled = offset + accesses.accesses.length >= accesses.total;
  previous.onclick = () => go({ ...state, offset: Math.max(0, offset - state.count) });
  next.onclick = () => go({ ...state, offset: offset + state.count });
  document.getElementById("audit-csv").onclick = () => download(query, accesses.patient);
}

function go(state) {
  keepPageQuery({ ...state, offset: state.offset || "", count: state.count === PAGE_SIZE ? "" : state.count });
  return show(state);
}

/** Every matching access as CSV, fetched with the token (never in a URL) and saved from a Blob. */
async function download(query, patient) {
  clearProblem();
  try {
    const csv = await api(`/twin/audit/accesses?${query}`, { as: "blob", headers: { Accept: "text/csv" } });
    const url = URL.createObjectURL(csv);
    const link = el("a", { href: url, download: `accesses-${patient}.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    status.textContent = `Downloaded accesses-${patient}.csv.`;
  } catch (error) {
    showProblem(error);
  }
}

function fact(term, ...definition) {
  return [el("dt", {}, term), el("dd", {}, ...definition)];
}

/** The chain's head and its last verification; a broken chain is said first and loudly. */
function showChain(chain) {
  const verdict = document.getElementById("chain-verdict");
  const checked = chain.lastVerification;
  if (!checked) verdict.replaceChildren(el("p", { class: "verdict" }, "The chain has never been verified."));
  else if (checked.ok) verdict.replaceChildren(el("p", { class: "verdict verdict-ok" }, "OK: the chain is intact."));
  else {
    verdict.replaceChildren(
      el("div", { class: "broken", role: "alert" },
        el("p", { class: "verdict" }, "BROKEN: the audit trail was changed."),
        el("p", {}, checked.problem || "The verification found a problem but gave no detail.")),
    );
  }
  const head = chain.head;
  document.getElementById("chain-state").replaceChildren(
    ...fact("Head", head ? `record ${head.seq}` : "no record yet"),
    ...(head ? fact("Head hash", el("span", { class: "hash" }, head.hash)) : []),
    ...(checked
      ? [
          ...fact("Last verified", el("time", { datetime: checked.at }, when(checked.at))),
          ...fact("By", checked.by || "—"),
          ...fact("Result", checked.ok ? "OK" : "BROKEN"),
          ...fact("Records checked", String(checked.checked ?? "—")),
        ]
      : fact("Last verified", "never")),
  );
}

async function verify() {
  const button = document.getElementById("chain-verify");
  clearProblem();
  button.disabled = true;
  button.textContent = "Verifying…";
  try {
    showChain(await api("/twin/audit/chain/verify", { method: "POST" }));
  } catch (error) {
    showProblem(error);
  } finally {
    button.disabled = false;
    button.textContent = "Verify now";
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const state = { ...wanted(), offset: 0 };
  for (const name of FIELDS) state[name] = form.elements[name].value.trim();
  go(state);
});
window.addEventListener("popstate", () => show(wanted()));
document.getElementById("chain-verify").addEventListener("click", verify);

me()
  .then(async (who) => {
    if (!who.can.audit) {
      showProblem("This token may not read the audit trail: the audit views are for auditors.");
      return;
    }
    document.getElementById("audit-views").hidden = false;
    await Promise.all([api("/twin/audit/chain").then(showChain), show(wanted())]);
  })
  .catch(showProblem);
