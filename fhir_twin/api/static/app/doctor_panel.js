// Digital Doctor: per model, its assessments of this patient over time (a RiskAssessment search by
// subject and method), the newest with its rationale, status and why, inputs (each basis resource
// shown as FHIR JSON fetched with the token: a plain link would not carry it) and model card; and,
// for a token that may run $whatif, the Pooled Cohort Equations' what-if, never recorded.
import { api, el, when } from "./api.js";

const MODEL_SYSTEM = "urn:fhir-twin:CodeSystem/model";
const SCORE_EXTENSION = "urn:fhir-twin:StructureDefinition/prediction-score";
const PCE = "pooled-cohort-ascvd";
const HISTORY = 20;
// The Body fields the PCE what-if changes (README "$whatif"): their names are the twin's.
const WHATIF_NUMBERS = [
  ["systolic_bp", "Systolic blood pressure", "mm[Hg]", 1],
  ["total_cholesterol", "Total cholesterol", "mg/dL", 1],
  ["hdl_cholesterol", "HDL cholesterol", "mg/dL", 1],
];
const SMOKING = ["current", "former", "never"];

/** The one dialog of the page: a title and a text (FHIR JSON, a model card). */
export function showText(title, text) {
  const dialog = document.getElementById("resource-dialog");
  document.getElementById("resource-title").textContent = title;
  document.getElementById("resource-body").textContent = text;
  if (!dialog.open) dialog.showModal();
}

export function wireDialog() {
  const dialog = document.getElementById("resource-dialog");
  document.getElementById("resource-close").addEventListener("click", () => dialog.close());
}

function prediction(resource) {
  return resource.prediction?.[0] || {};
}

function score(resource) {
  return (prediction(resource).extension || []).find((extension) => extension.url === SCORE_EXTENSION)?.valueDecimal;
}

function percent(probability) {
  return `${(probability * 100).toFixed(1)} %`;
}

/** What an assessment says, short: "NEWS2 6", "5.3 %", with its band in words. */
function said(resource) {
  const found = prediction(resource);
  const parts = [];
  const points = score(resource);
  if (points !== undefined) parts.push(`score ${points}`);
  if (typeof found.probabilityDecimal === "number") parts.push(percent(found.probabilityDecimal));
  const risk = found.qualitativeRisk?.text || found.qualitativeRisk?.coding?.[0]?.code;
  if (risk) parts.push(risk);
  return parts.join(", ") || "no prediction";
}

function resourceButton(reference) {
  return el(
    "button",
    {
      type: "button",
      class: "link",
      onclick: async () => {
        try {
          showText(reference, JSON.stringify(await api(`/fhir/${reference}`), null, 2));
        } catch (error) {
          showText(reference, `Could not read it: ${error.message}`);
        }
      },
    },
    reference,
  );
}

async function showCard(performer) {
  try {
    const found = await api(`/fhir/DocumentReference?${new URLSearchParams({ subject: performer, _count: "1" })}`);
    const card = found.entry?.[0]?.resource;
    const data = card?.content?.[0]?.attachment?.data;
    if (!data) {
      showText(`Model card of ${performer}`, "No model card is stored for this model version.");
      return;
    }
    const text = new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
    showText(`Model card of ${performer}`, text);
  } catch (error) {
    showText(`Model card of ${performer}`, `Could not read it: ${error.message}`);
  }
}

function historyTable(model, assessments) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "history" },
      el("caption", {}, `${model}: the ${assessments.length} newest assessments, newest first`),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "When"), el("th", { scope: "col" }, "Result"), el("th", { scope: "col" }, "Status"))),
      el(
        "tbody",
        {},
        assessments.map((resource) => el("tr", {}, el("td", {}, when(resource.occurrenceDateTime)), el("td", {}, said(resource)), el("td", {}, resource.status))),
      ),
    ),
  );
}

function newest(resource, info) {
  const notes = (resource.note || []).map((note) => note.text).filter(Boolean);
  const basis = (resource.basis || []).map((entry) => entry.reference).filter(Boolean);
  const performer = resource.performer?.reference;
  return el(
    "div",
    { class: "newest" },
    el("p", { class: "result" }, el("strong", {}, said(resource)), ` on ${when(resource.occurrenceDateTime)}`),
    el("p", {}, el("span", { class: `status status-${resource.status}` }, resource.status), notes.length ? " because:" : " : every input complete, current and verified."),
    notes.length ? el("ul", { class: "notes" }, notes.map((note) => el("li", {}, note))) : null,
    prediction(resource).rationale ? el("p", { class: "rationale" }, prediction(resource).rationale) : null,
    resource.mitigation ? el("p", { class: "mitigation" }, el("strong", {}, "Response: "), resource.mitigation) : null,
    info?.intendedUse ? el("p", { class: "muted" }, el("strong", {}, "Intended use: "), info.intendedUse) : null,
    el("details", {}, el("summary", {}, `Inputs (${basis.length})`), el("ul", { class: "basis" }, basis.map((reference) => el("li", {}, resourceButton(reference))))),
    el("p", {}, resourceButton(`RiskAssessment/${resource.id}`), " ", performer ? el("button", { type: "button", class: "link", onclick: () => showCard(performer) }, "Model card") : null),
  );
}

function bodyValue(twin, field) {
  const latest = twin.body[field]?.latest;
  if (!latest) return "";
  return latest.value ?? latest.category ?? "";
}

/** The PCE what-if form: the twin's current values filled in; the answer beside the recorded risk. */
function whatif(patientId, twin, current) {
  const output = el("output", { class: "whatif-result", "aria-live": "polite" });
  const inputs = WHATIF_NUMBERS.map(([field, label, unit, step]) =>
    el("div", {}, el("label", { for: `whatif-${field}` }, `${label} (${unit})`), el("input", { id: `whatif-${field}`, name: field, type: "number", step: String(step), min: "0", value: String(bodyValue(twin, field)) })),
  );
  const smoking = el(
    "select",
    { id: "whatif-smoking_status", name: "smoking_status" },
    SMOKING.map((answer) => el("option", { value: answer, selected: bodyValue(twin, "smoking_status") === answer }, answer)),
  );
  const form = el(
    "form",
    { class: "filters whatif", id: "whatif-form" },
    inputs,
    el("div", {}, el("label", { for: "whatif-smoking_status" }, "Smoking"), smoking),
    el("div", {}, el("button", { type: "submit" }, "Compute what-if")),
  );
  const initial = Object.fromEntries([...WHATIF_NUMBERS.map(([field]) => [field, String(bodyValue(twin, field))]), ["smoking_status", String(bodyValue(twin, "smoking_status"))]]);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const parameter = [{ name: "model", valueCode: PCE }];
    for (const [field] of WHATIF_NUMBERS) {
      const value = form.elements[field].value;
      if (value !== "" && value !== initial[field]) parameter.push({ name: field, valueDecimal: Number(value) });
    }
    if (form.elements.smoking_status.value !== initial.smoking_status) parameter.push({ name: "smoking_status", valueCode: form.elements.smoking_status.value });
    if (parameter.length === 1) {
      output.replaceChildren("Change a value to see its risk.");
      return;
    }
    output.replaceChildren("Computing…");
    try {
      const answer = await api(`/fhir/Patient/${encodeURIComponent(patientId)}/$whatif`, { method: "POST", body: { resourceType: "Parameters", parameter } });
      const parts = Object.fromEntries((answer.parameter?.[0]?.part || []).map((part) => [part.name, part.resource ?? part.valueString ?? part.valueCode]));
      const simulated = parts.simulated;
      if (!simulated || typeof simulated === "string") {
        output.replaceChildren(`No what-if risk: ${simulated || "the model did not score"}`);
        return;
      }
      const probability = prediction(simulated).probabilityDecimal;
      output.dataset.probability = String(probability);
      output.replaceChildren(
        el("span", { class: "recorded" }, el("strong", {}, "Recorded: "), said(current)),
        el("span", { class: "simulated" }, el("strong", {}, "What-if (not recorded): "), said(simulated)),
        el("span", { class: "muted" }, (simulated.note || []).map((note) => note.text).join(" ")),
      );
    } catch (error) {
      output.replaceChildren(`The what-if failed: ${error.message}`);
    }
  });
  return el(
    "div",
    { class: "card whatif-card" },
    el("h4", {}, "What if? (a simulation: nothing is recorded)"),
    el("p", { class: "muted" }, "Change the readings to see the 10-year risk they would give. Blood-pressure treatment is read from the medication list, not a reading, so it is not a what-if input; the recorded assessment's notes say the risk the other answer gives."),
    form,
    output,
  );
}

async function modelSection(patientId, twin, summary, info, canWhatif) {
  const query = new URLSearchParams({ subject: `Patient/${patientId}`, method: `${MODEL_SYSTEM}|${summary.model}`, _sort: "-date", _count: String(HISTORY) });
  const found = await api(`/fhir/RiskAssessment?${query}`);
  const assessments = (found.entry || []).map((entry) => entry.resource);
  const latest = assessments[0] || (await api(`/fhir/${summary.reference}`));
  const section = el(
    "section",
    { class: "model card", id: `model-${summary.model}`, "data-model": summary.model, "aria-labelledby": `model-${summary.model}-title` },
    el("h3", { id: `model-${summary.model}-title` }, info?.outcome ? `${summary.model}: ${info.outcome}` : summary.model),
    newest(latest, info),
    historyTable(summary.model, assessments),
  );
  if (summary.model === PCE && canWhatif) section.append(whatif(patientId, twin, latest));
  return section;
}

/** Fill ``container`` with a section per model that has assessed the patient. */
export async function drawDoctor(container, patientId, twin, can) {
  container.replaceChildren();
  if (!twin.assessments.length) {
    container.append(el("p", { class: "muted" }, "No model has recorded an assessment of this patient: none could score the record as it stands (each needs readings the record does not hold, or applies to patients unlike this one; the model cards say which). This is not a low risk."));
    return;
  }
  const catalog = await api("/twin/models");
  const infos = Object.fromEntries(catalog.models.map((model) => [model.id, model]));
  const sections = await Promise.all(twin.assessments.map((summary) => modelSection(patientId, twin, summary, infos[summary.model], can.whatif)));
  container.append(...sections);
}
