// The studies list and the form that submits a new study from a built-in space.
import { api, ApiError } from "./api.js";
import { count, escape, fixed, when } from "./format.js";

const ACTIVE = new Set(["queued", "running", "cancelling"]);

function template(space) {
  const stamp = new Date().toISOString().slice(0, 16).replace(/[-:T]/g, "");
  return {
    format: "clnas.study/1",
    name: `${space.name}-${stamp}`,
    space: space.name,
    dataset: space.dataset,
    budget: {},
    objectives: ["accuracy", "madds"],
    proxy: { epochs: 2, batch_size: 64 },
    search: { sampler: "nsga2", n_trials: 32, max_concurrent: 2, seed: 0 },
    baselines: [],
  };
}

function row(study) {
  const p = study.progress;
  const done = p.finished;
  const share = Math.min(100, (100 * done) / Math.max(1, study.n_trials));
  return `<tr data-study="${study.id}">
    <td><a href="#/studies/${study.id}">${escape(study.name)}</a>
      ${study.synthetic ? '<span class="badge synthetic" title="trained on synthetic data">synthetic</span>' : ""}</td>
    <td><span class="status ${escape(study.status)}">${escape(study.status)}</span></td>
    <td class="num"><div class="bar" title="${share.toFixed(0)}%"><span style="width:${share}%"></span></div>
      ${done} / ${study.n_trials}</td>
    <td class="num">${p.front_size}</td>
    <td class="num">${fixed(study.hypervolume, 4)}</td>
    <td>${escape(study.space)} · ${escape(study.dataset)}</td>
    <td>${when(study.created_at)}</td>
  </tr>`;
}

export function showStudies(root) {
  window.clnas.view = "studies";
  window.clnas.rendered = null;
  root.innerHTML = `
    <section class="card">
      <h1>Studies <small id="studies-total"></small></h1>
      <table class="studies" id="studies">
        <thead><tr><th>name</th><th>status</th><th>progress (done / budget)</th><th>front</th>
          <th>hypervolume</th><th>space · dataset</th><th>created</th></tr></thead>
        <tbody></tbody>
      </table>
      <p class="muted" id="studies-empty" hidden>No studies yet: submit one below.</p>
    </section>
    <section class="card">
      <h2>New study</h2>
      <form id="submit-study">
        <label>built-in space <select id="space"></select></label>
        <p class="muted" id="space-description"></p>
        <label for="study-json">clnas.study/1 document</label>
        <textarea id="study-json" rows="16" spellcheck="false"></textarea>
        <ul class="problems" id="problems"></ul>
        <button type="submit">submit study</button>
      </form>
    </section>`;
  const tbody = root.querySelector("#studies tbody");
  let timer = null;
  let delay = 2000;
  let alive = true;

  async function refresh() {
    try {
      const list = await api("/api/dashboard/studies?limit=500");
      tbody.innerHTML = list.items.map(row).join("");
      root.querySelector("#studies-total").textContent = `(${list.total})`;
      root.querySelector("#studies-empty").hidden = list.total > 0;
      window.clnas.studies = list.items.length;
      delay = list.items.some((s) => ACTIVE.has(s.status)) ? 2000 : Math.min(delay * 2, 30000);
    } catch (err) {
      delay = Math.min(delay * 2, 30000);
      window.clnas.errors.push(String(err));
    }
    if (alive) timer = setTimeout(refresh, delay);
  }

  setUpForm(root).catch((err) => {
    root.querySelector("#problems").innerHTML = `<li>cannot load the built-in spaces: ${escape(err.message)}</li>`;
  });
  refresh().then(() => {
    window.clnas.rendered = "studies";
  });
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}

async function setUpForm(root) {
  const select = root.querySelector("#space");
  const editor = root.querySelector("#study-json");
  const problems = root.querySelector("#problems");
  const spaces = await api("/api/spaces");
  select.innerHTML = spaces.map((s) => `<option value="${escape(s.name)}">${escape(s.name)}</option>`).join("");
  const pick = () => {
    const space = spaces.find((s) => s.name === select.value);
    root.querySelector("#space-description").textContent =
      `${space.description} (${space.dataset}, ${space.resolution}px, ${space.num_classes} classes; blocks: ${space.blocks.join(", ")})`;
    editor.value = JSON.stringify(template(space), null, 2);
  };
  select.addEventListener("change", pick);
  if (spaces.some((s) => s.name === "default")) select.value = "default";
  pick();

  const show = (items) => {
    problems.innerHTML = items
      .map((p) => `<li>${p.loc ? `<code>${escape(p.loc)}</code>: ` : ""}${escape(p.msg)}</li>`)
      .join("");
  };
  root.querySelector("#submit-study").addEventListener("submit", async (event) => {
    event.preventDefault();
    show([]);
    let doc;
    try {
      doc = JSON.parse(editor.value);
    } catch (err) {
      show([{ loc: "", msg: `not JSON: ${err.message}` }]);
      return;
    }
    try {
      const study = await api("/api/studies", { method: "POST", body: doc });
      show([]);
      location.hash = `#/studies/${study.id}`;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.status === 401) show([{ loc: "", msg: "a bearer token is needed: paste it above, then submit again" }]);
      else if (err.problems.length) show(err.problems);
      else show([{ loc: "", msg: err.message }]);
    }
  });
}
