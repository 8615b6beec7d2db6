// The accuracy-vs-cost scatter: one WebGL trace per trial category (thousands of points stay
// fast), the Pareto front as a step line, baselines as labelled stars, promoted trials ringed.
import { ACCURACY_TICKS, accuracy, category, hoverText } from "./format.js";

const CATEGORIES = [
  // name, legend label, marker
  ["completed", "completed", { color: "#1f77b4", size: 6, opacity: 0.65 }],
  ["front", "Pareto front", { color: "#d62728", size: 9, line: { color: "#000", width: 1 } }],
  ["pruned", "pruned (no final accuracy)", { color: "#ff7f0e", size: 6, symbol: "triangle-down" }],
  ["failed", "failed", { color: "#8c564b", size: 7, symbol: "x" }],
  ["running", "running", { color: "#2ca02c", size: 8, symbol: "circle-open", line: { width: 2 } }],
  ["rejected", "rejected (over budget)", { color: "#b0b0b0", size: 5, opacity: 0.5 }],
];
const AXES = {
  madds: { title: "MAdds", get: (t) => t.cost?.madds },
  params: { title: "parameters", get: (t) => t.cost?.params },
  latency_ms: { title: "latency (ms)", get: (t) => t.values?.latency_ms },
};

function point(trial, axis) {
  const x = axis.get(trial);
  // Trials without a final accuracy (running, pruned, failed, rejected) sit at 0.
  return x == null ? null : [x, accuracy(trial) ?? 0];
}

function trialTraces(state, axis, showRejected) {
  const groups = Object.fromEntries(CATEGORIES.map(([name]) => [name, { x: [], y: [], n: [], text: [] }]));
  let unplotted = 0;
  for (const trial of state.trials.values()) {
    const xy = point(trial, axis);
    if (xy === null) {
      unplotted += 1;
      continue;
    }
    const g = groups[category(trial, state.front)];
    g.x.push(xy[0]);
    g.y.push(xy[1]);
    g.n.push(trial.number);
    g.text.push(hoverText(trial, state.front));
  }
  const traces = CATEGORIES.map(([name, label, marker]) => ({
    type: "scattergl",
    mode: "markers",
    name: `${label} (${groups[name].x.length})`,
    meta: { trials: name },
    visible: name === "rejected" && !showRejected ? false : true,
    x: groups[name].x,
    y: groups[name].y,
    customdata: groups[name].n,
    hovertext: groups[name].text,
    hoverinfo: "text",
    marker,
  }));
  return { traces, unplotted };
}

// The front as a staircase in the objectives' plane: only meaningful when x is an objective.
function frontLine(state, axis, xName) {
  if (!state.study.metrics.includes(xName)) return null;
  const pts = [...state.front]
    .map((n) => state.trials.get(n))
    .filter(Boolean)
    .map((t) => point(t, axis))
    .filter(Boolean)
    .sort((a, b) => a[0] - b[0]);
  return {
    type: "scatter",
    mode: "lines",
    name: "front (step)",
    line: { shape: "hv", color: "#d62728", width: 1.5 },
    x: pts.map((p) => p[0]),
    y: pts.map((p) => p[1]),
    hoverinfo: "skip",
  };
}

function promoted(state, axis) {
  const rows = [...state.trials.values()].filter((t) => t.full).map((t) => [t, point(t, axis)]).filter(([, p]) => p);
  return {
    type: "scattergl",
    mode: "markers",
    name: `promoted to full training (${rows.length})`,
    meta: { promoted: true },
    x: rows.map(([, p]) => p[0]),
    y: rows.map(([, p]) => p[1]),
    customdata: rows.map(([t]) => t.number),
    hovertext: rows.map(([t]) => hoverText(t, state.front)),
    hoverinfo: "text",
    marker: { symbol: "circle-open", size: 16, color: "#9467bd", line: { width: 3 } },
    visible: rows.length ? true : false,
  };
}

function baselines(state, axis) {
  const rows = state.baselines.map((t, i) => [t, i, point(t, axis)]).filter(([, , p]) => p);
  return {
    type: "scatter",
    mode: "markers+text",
    name: `zoo baselines (${rows.length})`,
    meta: { baselines: true },
    x: rows.map(([, , p]) => p[0]),
    y: rows.map(([, , p]) => p[1]),
    text: rows.map(([t]) => t.baseline),
    textposition: "top center",
    customdata: rows.map(([, i]) => i),
    hovertext: rows.map(([t]) => hoverText(t, state.front)),
    hoverinfo: "text",
    marker: { symbol: "star", size: 14, color: "#17becf", line: { color: "#000", width: 1 } },
  };
}

export async function drawScatter(el, state, { x, log, showRejected }) {
  const axis = AXES[x];
  const { traces, unplotted } = trialTraces(state, axis, showRejected);
  const line = frontLine(state, axis, x);
  const data = [...traces, promoted(state, axis), baselines(state, axis), ...(line ? [line] : [])];
  const layout = {
    margin: { l: 60, r: 10, t: 10, b: 50 },
    xaxis: { title: { text: axis.title }, type: log ? "log" : "linear" },
    yaxis: { title: { text: "proxy accuracy (val top-1)" }, tickformat: ACCURACY_TICKS },
    legend: { orientation: "h", y: -0.18 },
    hovermode: "closest",
    uirevision: `${state.id}-${x}-${log}`, // keep the user's zoom across live updates
  };
  if (!el.dataset.wired) {
    await Plotly.newPlot(el, data, layout, { displaylogo: false, responsive: true });
    el.on("plotly_click", (event) => {
      const p = event.points[0];
      const meta = p.data.meta || {};
      const detail = meta.baselines ? { baseline: p.customdata } : { number: p.customdata };
      el.dispatchEvent(new CustomEvent("clnas:pick", { detail }));
    });
    el.dataset.wired = "1";
  } else {
    await Plotly.react(el, data, layout, { displaylogo: false, responsive: true });
  }
  // What the tests compare with the API: counted from the traces Plotly holds.
  const shown = el.data.filter((d) => d.meta && d.meta.trials);
  const plotted = {
    all: shown.reduce((n, d) => n + d.x.length, 0),
    visible: shown.filter((d) => d.visible === true).reduce((n, d) => n + d.x.length, 0),
    byCategory: Object.fromEntries(shown.map((d) => [d.meta.trials, d.x.length])),
    front: [...el.data.find((d) => d.meta && d.meta.trials === "front").customdata],
    unplotted,
    promoted: el.data.find((d) => d.meta && d.meta.promoted).x.length,
    baselines: el.data.find((d) => d.meta && d.meta.baselines).x.length,
  };
  el.dataset.points = String(plotted.visible);
  return plotted;
}
