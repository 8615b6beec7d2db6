// The study view: header, accuracy-vs-cost scatter with the Pareto front, trial detail,
// hypervolume history, rejection statistics and the trial table; live while the study runs.
import { api, read } from "./api.js";
import { escape, fixed, when } from "./format.js";
import { showTrial } from "./trial.js";
import { drawScatter } from "./scatter.js";
import { TrialTable } from "./table.js";

const ACTIVE = new Set(["queued", "running", "cancelling"]);
const RESYNC_EVERY = 10; // changes between full re-reads (finished trials can gain `full`)
const MAX_DELAY = 15000;

export function showStudy(root, id) {
  window.clnas.view = "study";
  window.clnas.rendered = null;
  window.clnas.studyId = id;
  root.innerHTML = `
    <section class="card" id="study-header"><p class="muted">loading study ${id}…</p></section>
    <div class="columns">
      <section class="card plot-card">
        <div class="controls">
          <label>x axis <select id="x-metric">
            <option value="madds">MAdds</option><option value="params">parameters</option>
            <option value="latency_ms">latency (ms)</option></select></label>
          <label><input type="checkbox" id="x-log" checked> log x</label>
          <label><input type="checkbox" id="show-rejected"> show rejected</label>
          <span class="muted" id="live-state"></span>
        </div>
        <div id="scatter" class="plot"></div>
      </section>
      <section class="card detail" id="trial-detail"><p class="muted">Click a point or a table row for the trial's
        architecture, learning curve, CRF fractions and downloads.</p></section>
    </div>
    <div class="columns">
      <section class="card"><h2>Hypervolume over trials</h2><div id="hv-plot" class="small-plot"></div></section>
      <section class="card"><h2>Rejected candidates by reason</h2><div id="rejections"></div></section>
    </div>
    <section class="card"><h2>Trials</h2><div id="trial-table"></div></section>`;

  const state = {
    id,
    study: null,
    trials: new Map(), // number -> compact trial
    front: new Set(),
    baselines: [],
    history: [],
    version: null,
    changes: 0,
  };
  const controls = {
    x: root.querySelector("#x-metric"),
    log: root.querySelector("#x-log"),
    rejected: root.querySelector("#show-rejected"),
  };
  const select = (trial) => showTrial(root.querySelector("#trial-detail"), state, trial);
  const table = new TrialTable(root.querySelector("#trial-table"), state, (n) => select(state.trials.get(n)));
  const scatterDiv = root.querySelector("#scatter");
  let alive = true;
  let timer = null;

  const redrawScatter = () =>
    drawScatter(scatterDiv, state, {
      x: controls.x.value,
      log: controls.log.checked,
      showRejected: controls.rejected.checked,
    }).then((plotted) => {
      window.clnas.plotted = plotted;
    });
  for (const c of Object.values(controls)) c.addEventListener("change", redrawScatter);
  scatterDiv.addEventListener("clnas:pick", (event) => {
    const { number, baseline } = event.detail;
    select(baseline != null ? state.baselines[baseline] : state.trials.get(number));
  });

  // Apply a snapshot; returns true when anything changed. Only the parts that depend on what
  // changed are redrawn; Plotly.react diffs the traces rather than rebuilding the plots.
  async function apply(snap) {
    if (snap.version === state.version) return false;
    state.version = snap.version;
    state.study = snap.study;
    for (const t of snap.trials) state.trials.set(t.number, t);
    state.front = new Set(snap.front);
    state.baselines = snap.baselines;
    state.history = snap.hypervolume_history;
    state.total = snap.total;
    const latency = state.study.metrics.includes("latency_ms");
    controls.x.querySelector('option[value="latency_ms"]').disabled = !latency;
    renderHeader(root.querySelector("#study-header"), state);
    renderRejections(root.querySelector("#rejections"), state.study.progress);
    await Promise.all([redrawScatter(), drawHistory(root.querySelector("#hv-plot"), state.history)]);
    table.update();
    return true;
  }

  // Trials numbered below every unfinished one cannot change, so each poll asks only for
  // the rest; every RESYNC_EVERY changes it reads everything again.
  function since() {
    if (state.changes % RESYNC_EVERY === 0) return 0;
    let first = state.trials.size;
    for (const t of state.trials.values()) {
      if ((t.state === "RUNNING" || t.state === "WAITING") && t.number < first) first = t.number;
    }
    return first;
  }

  async function poll(delay) {
    let changed = false;
    try {
      const snap = await api(`/api/dashboard/studies/${id}?since=${since()}`);
      if (!alive) return;
      changed = await apply(snap);
      if (changed) state.changes += 1;
      root.querySelector("#live-state").textContent = ACTIVE.has(state.study.status)
        ? `live: ${state.trials.size} trials, checking every ${((changed ? 1000 : delay) / 1000).toFixed(0)} s`
        : "";
    } catch (err) {
      window.clnas.errors.push(String(err));
      root.querySelector("#live-state").textContent = `cannot reach the service (${escape(err.message)}); retrying`;
    }
    const next = changed ? 1000 : Math.min(delay * 2, MAX_DELAY);
    if (alive && (state.study === null || ACTIVE.has(state.study.status) || changed)) {
      timer = setTimeout(() => poll(next), next);
    }
  }

  const prefetch = window.clnasPrefetch;
  window.clnasPrefetch = null; // only the first view of the page load can use it
  const first = prefetch && prefetch.id === id ? prefetch.response.then(read) : api(`/api/dashboard/studies/${id}`);
  first
    .then(async (snap) => {
      window.clnas.dataMs = performance.now();
      await apply(snap);
      state.changes = 1;
      window.clnas.rendered = id;
      window.clnas.renderMs = performance.now();
      if (ACTIVE.has(state.study.status)) timer = setTimeout(() => poll(1000), 1000);
    })
    .catch((err) => {
      root.querySelector("#study-header").innerHTML = `<p class="error">${escape(err.message)}</p>`;
    });

  return () => {
    alive = false;
    clearTimeout(timer);
  };
}

function renderHeader(el, { study, total }) {
  const p = study.progress;
  const share = Math.min(100, (100 * p.finished) / Math.max(1, study.n_trials));
  const tau = study.kendall_tau
    ? `<div><dt>Kendall τ (proxy vs full)</dt><dd id="kendall-tau">${fixed(study.kendall_tau.tau, 3)} <small>(n=${study.kendall_tau.n})</small></dd></div>`
    : "";
  el.innerHTML = `
    <h1>${escape(study.name)}
      <span class="status ${escape(study.status)}">${escape(study.status)}</span>
      ${study.synthetic ? '<span class="badge synthetic" id="synthetic-badge" title="accuracies come from synthetic data, not a real dataset">synthetic data</span>' : ""}
    </h1>
    <p class="muted">space ${escape(study.space)} · dataset ${escape(study.dataset)} ·
      objectives ${study.objectives.map(escape).join(", ")} · created ${when(study.created_at)}
      ${study.finished_at ? `· finished ${when(study.finished_at)}` : ""}</p>
    ${study.error ? `<p class="error">${escape(study.error)}</p>` : ""}
    <div class="bar wide"><span style="width:${share}%"></span></div>
    <dl class="stats" data-trials="${total}" data-front="${p.front_size}">
      <div><dt>done / budget</dt><dd>${p.finished} / ${study.n_trials}</dd></div>
      <div><dt>completed</dt><dd>${p.completed}</dd></div>
      <div><dt>running</dt><dd>${p.running}</dd></div>
      <div><dt>pruned</dt><dd>${p.pruned}</dd></div>
      <div><dt>failed</dt><dd>${p.failed}</dd></div>
      <div><dt>rejected</dt><dd>${p.rejected}</dd></div>
      <div><dt>front</dt><dd>${p.front_size}</dd></div>
      <div><dt>hypervolume</dt><dd>${fixed(study.hypervolume, 4)}</dd></div>
      <div><dt>baselines</dt><dd>${p.baselines_done} / ${p.baselines_total}</dd></div>
      ${tau}
    </dl>
    <p><a class="button" href="/api/studies/${study.id}/export" download id="download-bundle">download front bundle (clnas.bundle/1)</a></p>`;
}

function renderRejections(el, progress) {
  const reasons = Object.entries(progress.rejected_by_reason).sort((a, b) => b[1] - a[1]);
  if (!reasons.length) {
    el.innerHTML = '<p class="muted">None rejected.</p>';
    return;
  }
  const most = reasons[0][1];
  el.innerHTML = `<p>${progress.rejected} of ${progress.sampled} candidates rejected before training
    (a candidate can break several constraints).</p>
    <table class="reasons">${reasons
      .map(([reason, n]) => `<tr><th>${escape(reason)}</th><td class="num">${n}</td>
        <td class="barcell"><div class="bar"><span style="width:${(100 * n) / most}%"></span></div></td></tr>`)
      .join("")}</table>`;
}

function drawHistory(el, history) {
  return Plotly.react(
    el,
    [{
      type: "scatter",
      mode: "lines",
      line: { shape: "hv", color: "#1f77b4" },
      x: history.map((p) => p.trial),
      y: history.map((p) => p.hypervolume),
      hovertemplate: "after trial %{x}: %{y:.4f}<extra></extra>",
    }],
    {
      margin: { l: 50, r: 10, t: 10, b: 40 },
      xaxis: { title: { text: "trial" } },
      yaxis: { title: { text: "hypervolume" }, rangemode: "tozero" },
      uirevision: "history",
    },
    { displaylogo: false, responsive: true },
  );
}
