// The trial detail: metrics, the architecture per stage with its cost and CRF fractions (from
// POST /api/cost), the per-epoch curve and the downloads.
import { api } from "./api.js";
import { ACCURACY_TICKS, count, escape, fixed, pct, techniques } from "./format.js";

let shown = 0; // the latest request wins when points are clicked in quick succession

export async function showTrial(el, state, trial) {
  if (!trial) return;
  const ticket = ++shown;
  el.innerHTML = `<p class="muted">loading trial #${trial.number}…</p>`;
  // baselines come complete in the snapshot; study trials are fetched in full (arch, curve)
  const full = trial.baseline ? trial : await api(`/api/dashboard/studies/${state.id}/trials/${trial.number}`);
  const report = full.arch ? await api("/api/cost", { method: "POST", body: { arch: full.arch } }).catch(() => null) : null;
  if (ticket !== shown) return;
  el.innerHTML = render(state, full, report);
  el.dataset.trial = String(full.number);
  const curve = full.curve || [];
  if (curve.length) {
    await Plotly.react(el.querySelector(".curve"), curveTraces(curve), {
      margin: { l: 50, r: 50, t: 10, b: 40 },
      xaxis: { title: { text: "epoch" }, dtick: 1 },
      yaxis: { title: { text: "val top-1" }, tickformat: ACCURACY_TICKS, range: [0, 1] },
      yaxis2: { title: { text: "loss" }, overlaying: "y", side: "right", showgrid: false },
      legend: { orientation: "h", y: -0.3 },
      height: 220,
    }, { displaylogo: false, responsive: true });
  }
}

function curveTraces(curve) {
  const epochs = curve.map((c) => c.epoch);
  const traces = [{ type: "scatter", mode: "lines+markers", name: "val top-1", x: epochs, y: curve.map((c) => c.val_top1) }];
  for (const key of Object.keys(curve[0])) {
    if (key.endsWith("loss") && typeof curve[0][key] === "number") {
      traces.push({ type: "scatter", mode: "lines", name: key, yaxis: "y2", x: epochs, y: curve.map((c) => c[key]) });
    }
  }
  return traces;
}

function render(state, t, report) {
  const exportable = !t.baseline && t.state === "COMPLETE" && !t.rejected;
  const base = `/api/studies/${state.id}/trials/${t.number}/export`;
  const stageCost = new Map((report?.stages || []).map((s) => [s.stage, s]));
  const meanCrf = new Map();
  for (const b of report?.blocks || []) {
    if (b.stage == null || b.crf_mean_fraction == null) continue;
    meanCrf.set(b.stage, [...(meanCrf.get(b.stage) || []), b.crf_mean_fraction]);
  }
  const avg = (xs) => (xs && xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const stages = (t.arch?.stages || []).map((s, i) => {
    const c = stageCost.get(i);
    return `<tr><td>${i}</td><td>${escape(s.block)}</td><td>${s.repeat ?? 1}</td><td>${s.out}</td><td>${s.stride ?? 1}</td>
      <td>${escape(techniques(s))}</td><td>${count(c?.madds)}</td><td>${count(c?.params)}</td>
      <td>${fixed(c?.crf_min_fraction, 3)}</td><td>${fixed(avg(meanCrf.get(i)), 3)}</td></tr>`;
  });
  const downloads = exportable
    ? `<a class="button" id="download-json" download href="${base}?format=json">arch JSON</a>
       <a class="button" id="download-yaml" download href="${base}?format=yaml">arch YAML</a>`
    : `<span class="muted">only trained, feasible trials export</span>`;
  return `
    <h2>${t.baseline ? `Baseline ${escape(t.baseline)}` : `Trial #${t.number}`}
      <span class="cat">${t.state}${t.rejected ? " · rejected" : ""}${state.front.has(t.number) && !t.baseline ? " · Pareto front" : ""}</span></h2>
    <dl class="stats">
      <div><dt>accuracy</dt><dd>${pct(t.rejected ? null : t.values?.val_top1)}</dd></div>
      <div><dt>MAdds</dt><dd>${count(t.cost?.madds)}</dd></div>
      <div><dt>params</dt><dd>${count(t.cost?.params)}</dd></div>
      <div><dt>FCRF</dt><dd>${report?.fcrf == null ? "–" : report.fcrf ? "yes" : "no"}</dd></div>
      ${t.values?.latency_ms != null ? `<div><dt>latency</dt><dd>${fixed(t.values.latency_ms, 2)} ms</dd></div>` : ""}
      ${t.full ? `<div><dt>full top-1 / top-5</dt><dd id="full-top1">${pct(t.full.top1)} / ${pct(t.full.top5)}</dd></div>
        <div><dt>full training</dt><dd>job ${t.full.job_id} · ${escape(t.full.recipe)} · ${t.full.epochs} ep · ${escape(t.full.status)}</dd></div>` : ""}
    </dl>
    ${t.rejected ? `<p class="error">rejected: ${t.reasons.map((r) => escape(r.message || r.constraint)).join("; ")}</p>` : ""}
    ${t.state === "PRUNED" ? `<p class="muted">pruned at epoch ${t.pruned_at_epoch ?? "?"}</p>` : ""}
    <p class="buttons">${downloads}
      <a class="button" download href="/api/studies/${state.id}/export">front bundle</a></p>
    <table class="arch">
      <thead><tr><th>stage</th><th>block</th><th>repeat</th><th>out</th><th>stride</th><th>techniques</th>
        <th>MAdds</th><th>params</th><th>CRF min</th><th>CRF mean</th></tr></thead>
      <tbody>${stages.join("")}</tbody>
    </table>
    ${(t.curve || []).length ? '<div class="curve"></div>' : '<p class="muted">no learning curve recorded</p>'}`;
}
