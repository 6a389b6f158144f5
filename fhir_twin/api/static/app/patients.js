// The patients list: a FHIR Patient search through /twin/patients, each row with the Doctor's
// newest NEWS2 and PCE results, sorted and paged by the server. The search, sort and page live in
// this page's URL (never the token), so a reload, the back button or a shared link shows the same.
import { api, clearProblem, el, keepPageQuery, me, pageCounts, pageQuery, showProblem, when } from "./api.js";
import { news2Badge, pcePercent } from "./risk.js";

const PAGE_SIZE = 20;
const form = document.getElementById("patient-search");
const status = document.getElementById("patients-status");
const results = document.getElementById("patients-results");
const pager = document.getElementById("patients-pager");
const SEARCHED = ["name", "identifier", "birthdate"];

/** The view the URL asks for, checked: unknown sorts fall back to the form's first. */
function wanted() {
  const query = pageQuery();
  const sorts = [...form.elements.sort.options].map((option) => option.value);
  const count = Number.parseInt(query.count, 10);
  const offset = Number.parseInt(query.offset, 10);
  return {
    name: query.name || "",
    identifier: query.identifier || "",
    birthdate: query.birthdate || "",
    sort: sorts.includes(query.sort) ? query.sort : sorts[0],
    offset: offset > 0 ? offset : 0,
    count: count > 0 && count <= 100 ? count : PAGE_SIZE,
  };
}

function described(state) {
  const terms = SEARCHED.filter((name) => state[name]).map((name) => `${name} “${state[name]}”`);
  return terms.length ? `Patients with ${terms.join(", ")}` : "All patients";
}

function row(patient) {
  const link = el("a", { href: `/app/patients/${encodeURIComponent(patient.id)}` }, patient.name || `Patient ${patient.id}`);
  return el(
    "tr",
    {},
    el("th", { scope: "row" }, link),
    el("td", {}, patient.birthDate || "—"),
    el("td", {}, patient.gender || "—"),
    el("td", { class: "identifier" }, patient.identifier || "—"),
    el("td", { class: "news2" }, news2Badge(patient.news2)),
    el("td", { class: "pce" }, pcePercent(patient.pce)),
    el("td", {}, patient.lastMeasured ? el("time", { datetime: patient.lastMeasured }, when(patient.lastMeasured)) : "—"),
  );
}

async function show(state) {
  clearProblem();
  for (const name of [...SEARCHED, "sort"]) form.elements[name].value = state[name];
  const query = new URLSearchParams({ _sort: state.sort, _count: state.count, _offset: state.offset });
  for (const name of SEARCHED) if (state[name]) query.set(name, state[name]);
  status.textContent = "Searching…";
  let found;
  try {
    found = await api(`/twin/patients?${query}`);
  } catch (error) {
    results.hidden = true;
    pager.hidden = true;
    status.textContent = "The search failed; nothing is shown.";
    showProblem(error);
    return;
  }
  const tbody = document.querySelector("#patients-table tbody");
  tbody.replaceChildren(...found.patients.map(row));
  const sortText = form.elements.sort.selectedOptions[0].textContent;
  document.getElementById("patients-caption").textContent = `${described(state)}, sorted by ${sortText}`;
  results.hidden = found.patients.length === 0;
  if (found.total === 0) status.textContent = `No patient found. ${described(state)}: none.`;
  else if (found.patients.length === 0) status.textContent = `No patients on this page: ${found.total} in all.`;
  else status.textContent = `${found.total} patient${found.total === 1 ? "" : "s"} found.`;
  const counts = pageCounts(found.offset, found.patients.length, found.total);
  document.getElementById("patients-counts").textContent = counts;
  const previous = document.getElementById("patients-previous");
  const next = document.getElementById("patients-next");
  previous.disabled = found.offset <= 0;
  next.disabled = found.offset + found.patients.length >= found.total;
  previous.onclick = () => go({ ...state, offset: Math.max(0, found.offset - state.count) });
  next.onclick = () => go({ ...state, offset: found.offset + state.count });
  pager.hidden = found.total <= state.count && found.offset === 0;
}

/** Show ``state`` and keep it in the URL; the default page size stays out of it. */
function go(state) {
  keepPageQuery({ ...state, offset: state.offset || "", count: state.count === PAGE_SIZE ? "" : state.count });
  return show(state);
}

function submitted() {
  const state = wanted();
  for (const name of [...SEARCHED, "sort"]) state[name] = form.elements[name].value.trim();
  return go({ ...state, offset: 0 });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  submitted();
});
form.elements.sort.addEventListener("change", submitted);
form.addEventListener("reset", (event) => {
  event.preventDefault();
  go({ ...wanted(), name: "", identifier: "", birthdate: "", sort: "name", offset: 0 });
});
window.addEventListener("popstate", () => show(wanted()));

me()
  .then((who) => {
    if (!who.can.patients) {
      form.hidden = true;
      showProblem("This token may not search patients.");
      return null;
    }
    return show(wanted());
  })
  .catch(showProblem);
