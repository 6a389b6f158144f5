// The Doctor's newest NEWS2 and PCE results as the lists show them: the band in words beside its
// colour (never colour alone), the score, and whether the result is preliminary.
import { el, when } from "./api.js";

// RCP NEWS2 Chart 2: the clinical risk bands; "low-medium" is a low total with a 3 in one parameter.
const NEWS2_BANDS = {
  low: "low",
  "low-medium": "low–medium",
  medium: "medium",
  high: "high",
};

/** When the result was made, under it: a score is the patient's state at that time, not now. */
function madeAt(result) {
  return result.occurrence ? [el("br"), el("time", { class: "assessed muted", datetime: result.occurrence, text: when(result.occurrence) })] : [];
}

/** A NEWS2 result as a badge "7 · high", coloured by band, its sentence as the title, and its time. */
export function news2Badge(news2) {
  if (!news2) return el("span", { class: "muted", text: "none" });
  const band = NEWS2_BANDS[news2.band] || news2.band || news2.risk || "unbanded";
  // A partial set's score is a lower bound (the RiskAssessment says "at least"): so is the badge.
  const bound = news2.bound ? "at least " : "";
  const badge = el("span", {
    class: `band band-${NEWS2_BANDS[news2.band] ? news2.band : "unknown"}`,
    title: news2.text || null,
    text: `${bound}${news2.score ?? "?"} · ${band}`,
  });
  const status = news2.status === "preliminary" ? [" ", el("span", { class: "muted", text: "preliminary" })] : [];
  return [badge, ...status, ...madeAt(news2)];
}

/** A PCE 10-year risk as a percentage with one decimal, "12.3 %", and its time. */
export function pcePercent(pce) {
  if (!pce) return el("span", { class: "muted", text: "none" });
  const percent = typeof pce.percent === "number" ? pce.percent : pce.probability * 100;
  const text = `${percent.toFixed(1)} %`;
  const status = pce.status === "preliminary" ? [" ", el("span", { class: "muted", text: "preliminary" })] : [];
  return [text, ...status, ...madeAt(pce)];
}
