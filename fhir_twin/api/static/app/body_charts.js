// Digital Body: a uPlot chart per measured field over the chosen range, the NEWS2 bands behind the
// vital signs it scores (the cut-offs come from GET /twin/models/news2, never a copy here), readings
// that need verification and converted ones marked apart, and each chart's text alternative and
// values table. Long series are downsampled by the server (series?points=N, N about the chart's
// width); the answer's total is said beside what is drawn.
import uPlot from "./vendor/uplot/uPlot.esm.js";
import { api, el, when } from "./api.js";

// The server takes 3 to MAX_POINTS points per series; a chart never asks for more than it has pixels.
const MAX_POINTS = 5000;
const MIN_POINTS = 3;
const HEIGHT = 220;
const FLAG_WORDS = {
  implausible: "implausible",
  unit: "in a unit with no conversion",
  status: "in a status the field does not accept",
  comparator: "a bound, not a value",
  "unknown-answer": "an answer the field does not know",
  absent: "no value",
  "no-time": "no time",
};

function cssColour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function count(number) {
  return number.toLocaleString("en");
}

function flagWords(flag) {
  return FLAG_WORDS[flag] || flag;
}

/** The range form's choice as series query parameters (``from``/``to`` instants). */
export function rangeQuery(form) {
  const chosen = form.elements.range.value;
  const query = new URLSearchParams();
  if (chosen === "custom") {
    const from = form.elements.from.value;
    const to = form.elements.to.value;
    if (from) query.set("from", new Date(from).toISOString());
    if (to) query.set("to", new Date(to).toISOString());
  } else if (chosen !== "all") {
    query.set("from", new Date(Date.now() - Number(chosen) * 3600 * 1000).toISOString());
  }
  return query;
}

/** The value axis: the readings that are used or converted, with a margin; flagged ones do not stretch it. */
function valueRange(points) {
  const values = points.map((point) => point.value);
  if (!values.length) return [0, 1];
  const least = Math.min(...values);
  const most = Math.max(...values);
  const margin = Math.max((most - least) * 0.1, Math.abs(most) * 0.05, 1);
  return [least - margin, most + margin];
}

/** The time axis: the readings' span, or a day around a single reading. */
function timeRange(xs) {
  if (!xs.length) return [Date.now() / 1000 - 86400, Date.now() / 1000];
  const first = xs[0];
  const last = xs[xs.length - 1];
  return first === last ? [first - 43200, last + 43200] : [first, last];
}

/** A value as a clinician reads it: a converted one to one decimal, with what was measured. */
function reading(point, unit) {
  if (!point.converted) return `${point.value} ${unit}`;
  return `${Math.round(point.value * 10) / 10} ${unit} (measured ${point.originalValue} ${point.originalUnit})`;
}

/** What one chart says in words: latest value and time, what is drawn of how many, what is marked. */
function summary(label, unit, state, shown, total, flagged, converted, unplotted) {
  const latest = state.latest;
  const parts = [
    latest ? `latest ${reading(latest, unit)} at ${when(latest.time)}` : "no usable reading",
    `${count(shown)} of ${count(total)} points shown`,
  ];
  if (flagged.length) {
    const reasons = [...new Set(flagged.map((point) => flagWords(point.flag)))].join(", ");
    parts.push(`${count(flagged.length)} need${flagged.length === 1 ? "s" : ""} verification (${reasons}), never used`);
  }
  if (converted.length) parts.push(`${count(converted.length)} converted to ${unit}`);
  if (unplotted) parts.push(`${count(unplotted)} with no value to draw`);
  if (state.unverified) {
    parts.push(`newest reading ${state.unverified.originalValue ?? state.unverified.value} at ${when(state.unverified.time)} needs verification`);
  }
  return `${label} (${unit}): ${parts.join("; ")}.`;
}

function valuesTable(label, unit, points) {
  const rows = points.map((point) =>
    el(
      "tr",
      {},
      el("td", {}, when(point.time)),
      el("td", {}, point.value === null ? "—" : String(point.converted ? Math.round(point.value * 10) / 10 : point.value)),
      el("td", {}, [point.originalValue, point.originalUnit].filter((part) => part !== null && part !== undefined).join(" ")),
      el(
        "td",
        { class: point.flag ? "flag" : null },
        point.flag ? `needs verification: ${flagWords(point.flag)}` : point.converted ? `converted to ${unit}` : "",
      ),
    ),
  );
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("caption", {}, `${label}: the ${count(points.length)} points shown, oldest first`),
      el(
        "thead",
        {},
        el("tr", {}, el("th", { scope: "col" }, "Time"), el("th", { scope: "col" }, `Value (${unit})`), el("th", { scope: "col" }, "As sent"), el("th", { scope: "col" }, "Note")),
      ),
      el("tbody", {}, rows),
    ),
  );
}

/** Paint the NEWS2 cells behind the plot, each coloured by its points; their number goes in ``data-bands``. */
function bandPainter(cells, holder) {
  return (u) => {
    const { min, max } = u.scales.y;
    if (min === undefined || max === undefined) return;
    const { left, top, width, height } = u.bbox;
    let drawn = 0;
    u.ctx.save();
    for (const cell of cells) {
      const low = Math.max(cell.from ?? -Infinity, min);
      const high = Math.min(cell.below ?? Infinity, max);
      if (low >= high) continue;
      const y1 = u.valToPos(high, "y", true);
      const y2 = u.valToPos(low, "y", true);
      u.ctx.fillStyle = cssColour(`--news2-${cell.points}`);
      u.ctx.fillRect(left, Math.max(y1, top), width, Math.min(y2, top + height) - Math.max(y1, top));
      drawn += 1;
    }
    u.ctx.restore();
    holder.dataset.bands = String(drawn);
  };
}

/** One field's chart in ``figure``: its series asked for at once, drawn when the twin document
 * (``twin``, a promise: the field's latest value) and the NEWS2 cut-offs are in; resolves once
 * uPlot has drawn it. */
async function drawField(figure, patientId, field, twin, allBands, query) {
  const width = Math.max(figure.clientWidth - 8, 240);
  const ask = new URLSearchParams(query);
  ask.set("points", String(Math.min(Math.max(width, MIN_POINTS), MAX_POINTS)));
  const [series, twinDocument, cutOffs] = await Promise.all([
    api(`/twin/patients/${encodeURIComponent(patientId)}/series/${encodeURIComponent(field)}?${ask}`),
    twin,
    allBands,
  ]);
  const state = twinDocument.body[field];
  const bands = cutOffs[field];
  const unit = series.unit || "";
  const points = series.points;
  const total = series.total ?? points.length;
  const xs = [];
  const usable = [];
  const flaggedYs = [];
  const convertedYs = [];
  const flagged = points.filter((point) => point.flag);
  const converted = points.filter((point) => point.converted && !point.flag);
  let plotted = 0;
  let unplotted = 0;
  const drawable = points.filter((point) => typeof point.value === "number" && point.time);
  const used = drawable.filter((point) => !point.flag);
  const [low, high] = valueRange(used.length ? used : drawable);
  let offScale = 0;
  for (const point of drawable) {
    plotted += 1;
    xs.push(Date.parse(point.time) / 1000);
    usable.push(point.flag || point.converted ? null : point.value);
    convertedYs.push(point.converted && !point.flag ? point.value : null);
    if (point.flag && (point.value < low || point.value > high)) offScale += 1;
    // A reading that needs verification is often far off the scale (a heart rate of 900/min): it is
    // drawn at the chart's edge, and its value is in the text and the table.
    flaggedYs.push(point.flag ? Math.min(Math.max(point.value, low), high) : null);
  }
  unplotted = points.length - drawable.length;
  let said = summary(series.label, unit, state, plotted, total, flagged, converted, unplotted);
  if (offScale) said = `${said.slice(0, -1)}; ${count(offScale)} off the scale, drawn at its edge.`;
  figure.replaceChildren();
  const plot = el("div", { class: "plot", role: "img", "aria-label": said });
  const caption = el("figcaption", {}, el("strong", {}, series.label), ` ${said.slice(series.label.length + 1)}`);
  const toggle = el("button", { type: "button", class: "secondary", "aria-expanded": "false" }, "Show values");
  const table = el("div", { class: "values", hidden: true });
  toggle.addEventListener("click", () => {
    const opening = table.hidden;
    if (opening && !table.firstChild) table.append(valuesTable(series.label, unit, points));
    table.hidden = !opening;
    toggle.setAttribute("aria-expanded", String(opening));
    toggle.textContent = opening ? "Hide values" : "Show values";
  });
  figure.append(caption, plot, toggle, table);
  figure.dataset.points = String(plotted);
  figure.dataset.total = String(total);
  figure.dataset.flagged = String(flagged.length);
  figure.dataset.downsampled = String(Boolean(series.downsampled));

  const ink = cssColour("--accent");
  const drawn = new Promise((resolve) => {
    const hooks = { draw: [() => resolve()] };
    if (bands) hooks.drawClear = [bandPainter(bands, figure)];
    const options = {
      width,
      height: HEIGHT,
      scales: { x: { time: true, range: () => timeRange(xs) }, y: { range: () => [low, high] } },
      axes: [{}, { label: `${series.label} (${unit})`, size: 56 }],
      legend: { live: false },
      series: [
        {},
        { label: `${series.label} (${unit})`, stroke: ink, width: 1.5, spanGaps: true, points: { size: 4, fill: ink } },
        { label: "needs verification", stroke: cssColour("--flag"), paths: () => null, points: { show: true, size: 12, width: 2, fill: "#ffffff", stroke: cssColour("--flag") } },
        { label: `converted to ${unit}`, stroke: cssColour("--converted"), paths: () => null, points: { show: true, size: 8, width: 2, fill: cssColour("--converted"), stroke: cssColour("--ink") } },
      ],
      hooks,
    };
    const chart = new uPlot(options, [xs, usable, flaggedYs, convertedYs], plot);
    figure.chart = chart;
  });
  return drawn;
}

/** Charts follow their column's width when the window changes. */
export function followWidth(container) {
  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      for (const figure of container.querySelectorAll("figure.chart")) {
        figure.chart?.setSize({ width: Math.max(figure.clientWidth - 8, 240), height: HEIGHT });
      }
    });
  });
}

/** Draw every quantity field that has readings (``fields``, from ``GET …/series``: the fields the
 * twin document counts readings of) and the coded fields' table; ``twin`` and ``bands`` are the
 * promised twin document and NEWS2 cut-offs. Resolves when all are drawn. */
export async function drawBody(container, codedContainer, patientId, fields, twin, bands, query) {
  const charted = fields.filter((field) => field.kind === "quantity");
  const coded = fields.filter((field) => field.kind !== "quantity");
  for (const old of container.querySelectorAll("figure")) old.chart?.destroy();
  container.replaceChildren();
  if (!charted.length) container.append(el("p", { class: "muted" }, "No measurements are recorded."));
  // Every figure is placed before any is measured, so each chart takes its column's width.
  const figures = charted.map((field) => el("figure", { class: "chart", id: `chart-${field.field}`, "data-field": field.field }, el("p", { class: "muted" }, `Loading ${field.label}…`)));
  container.append(...figures);
  const jobs = charted.map((field, i) => drawField(figures[i], patientId, field.field, twin, bands, query));
  await Promise.all([...jobs, drawCoded(codedContainer, coded, twin)]);
}

/** The coded fields' latest usable readings, once the twin document is in. */
async function drawCoded(codedContainer, coded, twin) {
  codedContainer.replaceChildren();
  if (!coded.length) return;
  const body = (await twin).body;
  codedContainer.append(
    el("h3", {}, "Coded readings"),
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        {},
        el("caption", {}, "Each coded field's latest usable reading"),
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Field"), el("th", { scope: "col" }, "Latest"), el("th", { scope: "col" }, "Time"), el("th", { scope: "col" }, "Readings"))),
        el(
          "tbody",
          {},
          coded.map((field) => body[field.field]).map((state) =>
            el(
              "tr",
              {},
              el("th", { scope: "row" }, state.label),
              el("td", {}, state.latest ? state.latest.category ?? state.latest.originalValue ?? "—" : "—", state.unverified ? el("span", { class: "flag" }, ` (newer reading needs verification: ${flagWords(state.unverified.flag)})`) : null),
              el("td", {}, when(state.latest?.time)),
              el("td", {}, count(state.count)),
            ),
          ),
        ),
      ),
    ),
  );
}
