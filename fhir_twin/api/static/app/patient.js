// The patient page: the Digital Body's charts, the Digital Case's timeline and the Digital Doctor's
// assessments, all read through the twin and FHIR APIs with the signed-in token. A refusal (403,
// or 404 for a patient outside a patient token's reach) is shown, and nothing of the record is.
// ``body.dataset.ready`` turns "1" once every chart of the chosen range is drawn (tests and
// bench/app_page.py wait for it; the performance mark "fhir-twin:charts-drawn" times it).
import { api, clearProblem, me, showProblem } from "./api.js";
import { drawBody, followWidth, rangeQuery } from "./body_charts.js";
import { drawCase } from "./case_timeline.js";
import { drawDoctor, wireDialog } from "./doctor_panel.js";

const patientId = document.body.dataset.patient;

function displayName(patient) {
  const name = (patient.name || []).find((found) => found.use === "official") || patient.name?.[0];
  if (!name) return `Patient ${patient.id}`;
  return name.text || [...(name.given || []), name.family].filter(Boolean).join(" ") || `Patient ${patient.id}`;
}

function facts(twin) {
  const about = twin.patient;
  const parts = [about.gender, about.birthDate ? `born ${about.birthDate}` : null, about.age !== null ? `age ${about.age}` : null, about.deceased ? "deceased" : null];
  return parts.filter(Boolean).join(" · ");
}

async function showBody(fields, twin, bands) {
  document.body.dataset.ready = "0";
  const form = document.getElementById("range-form");
  await drawBody(document.getElementById("charts"), document.getElementById("coded"), patientId, fields, twin, bands, rangeQuery(form));
  document.body.dataset.ready = "1";
  performance.mark("fhir-twin:charts-drawn");
}

async function main() {
  wireDialog();
  const who = await me();
  const id = encodeURIComponent(patientId);
  // The twin document is the slow answer (every point of every field): it is asked for first, and
  // the charts' series go out as soon as the cheap list of fields with readings is in, each chart
  // waiting for the document only to say its latest value. A refusal of any of them ends the page.
  const twinAsked = api(`/twin/patients/${id}`);
  const bandsAsked = api("/twin/models/news2").then((news2) => news2.bands);
  for (const asked of [twinAsked, bandsAsked]) asked.catch(() => {});
  const [patient, listed] = await Promise.all([api(`/fhir/Patient/${id}`), api(`/twin/patients/${id}/series`)]);
  const name = displayName(patient);
  document.getElementById("patient-name").textContent = name;
  document.title = `${name} · fhir-twin`;
  document.getElementById("patient-page").hidden = false;

  const form = document.getElementById("range-form");
  form.elements.range.addEventListener("change", () => {
    for (const part of form.querySelectorAll(".custom-range")) part.hidden = form.elements.range.value !== "custom";
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearProblem();
    showBody(listed.fields, twinAsked, bandsAsked).catch(showProblem);
  });
  followWidth(document.getElementById("charts"));
  const charts = showBody(listed.fields, twinAsked, bandsAsked);
  const twin = await twinAsked;
  document.getElementById("patient-facts").textContent = facts(twin);
  drawCase(document.getElementById("timeline"), twin.case);
  await Promise.all([charts, drawDoctor(document.getElementById("models"), patientId, twin, who.can)]);
}

main().catch((error) => {
  document.getElementById("patient-page").hidden = true;
  document.getElementById("patient-name").textContent = "Patient not shown";
  document.body.dataset.ready = "error";
  showProblem(error);
});
