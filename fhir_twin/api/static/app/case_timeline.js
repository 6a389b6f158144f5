// Digital Case: the twin document's case entries as a timeline, one list per kind, newest first,
// each with its dates and status; entries the record does not place in time come last.
import { el, when } from "./api.js";

const KINDS = [
  ["encounters", "Encounters"],
  ["conditions", "Conditions"],
  ["medications", "Medications"],
  ["procedures", "Procedures"],
  ["diagnostic_reports", "Reports"],
  ["care_plans", "Care plans"],
  ["goals", "Goals"],
];

function newestFirst(left, right) {
  if (!left.start) return right.start ? 1 : 0;
  if (!right.start) return -1;
  return Date.parse(right.start) - Date.parse(left.start);
}

function dates(entry) {
  if (!entry.start) return "no date recorded";
  return entry.end ? `${when(entry.start)} – ${when(entry.end)}` : `${when(entry.start)} –`;
}

function results(entry) {
  if (!entry.results?.length) return null;
  return el(
    "ul",
    { class: "results" },
    entry.results.map((result) => el("li", {}, [result.display || result.code, result.value, result.unit].filter((part) => part !== null && part !== undefined && part !== "").join(" "))),
  );
}

/** Fill ``container`` from ``twinCase`` (the twin document's ``case``). */
export function drawCase(container, twinCase) {
  container.replaceChildren();
  let any = false;
  for (const [kind, title] of KINDS) {
    const entries = [...(twinCase[kind] || [])].sort(newestFirst);
    if (!entries.length) continue;
    any = true;
    container.append(
      el("h3", { id: `case-${kind}` }, `${title} (${entries.length})`),
      el(
        "ol",
        { class: "timeline", "aria-labelledby": `case-${kind}`, "data-kind": kind },
        entries.map((entry) =>
          el(
            "li",
            {},
            el("time", { datetime: entry.start || null }, dates(entry)),
            el("span", { class: "what" }, entry.display || entry.code || entry.source),
            entry.status ? el("span", { class: "status" }, entry.status) : null,
            results(entry),
          ),
        ),
      ),
    );
  }
  if (!any) container.append(el("p", { class: "muted" }, "No encounters, conditions, medications, procedures or reports are recorded."));
}
