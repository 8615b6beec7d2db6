// The trial table: sortable columns, a category filter, 50 rows a page; only the visible page
// is rendered, so a study of thousands of trials stays responsive.
import { accuracy, category, count, escape, fixed, fullTop1, pct } from "./format.js";

const PAGE = 50;
const COLUMNS = [
  // key, header, value for sorting, cell html
  ["number", "#", (t) => t.number, (t) => t.number],
  ["state", "state", (t) => t.state, (t, s) => `<span class="cat ${category(t, s.front)}">${t.state}${t.rejected ? " (rejected)" : ""}</span>`],
  ["front", "front", (t, s) => (s.front.has(t.number) ? 1 : 0), (t, s) => (s.front.has(t.number) ? "★" : "")],
  ["accuracy", "accuracy", (t) => accuracy(t), (t) => pct(accuracy(t))],
  ["madds", "MAdds", (t) => t.cost?.madds, (t) => count(t.cost?.madds)],
  ["params", "params", (t) => t.cost?.params, (t) => count(t.cost?.params)],
  ["latency", "latency ms", (t) => t.values?.latency_ms, (t) => fixed(t.values?.latency_ms, 2)],
  ["blocks", "blocks per stage", (t) => (t.stages || []).map((s) => s.block).join(" "), (t) => escape((t.stages || []).map((s) => s.block).join(" "))],
  ["epochs", "epochs", (t) => t.epochs_done, (t) => t.epochs_done],
  ["full", "full top-1", (t) => fullTop1(t), (t) => (t.full ? pct(fullTop1(t)) : "")],
  ["reasons", "rejected because", (t) => t.reasons.map((r) => r.constraint).join(","), (t) => escape(t.reasons.map((r) => r.message || r.constraint).join("; "))],
];
const FILTERS = ["all", "front", "completed", "pruned", "failed", "running", "rejected", "promoted"];

export class TrialTable {
  constructor(el, state, onPick) {
    this.el = el;
    this.state = state;
    this.sort = { key: "number", desc: false };
    this.filter = "all";
    this.page = 0;
    el.innerHTML = `
      <div class="controls">
        <label>show <select class="filter">${FILTERS.map((f) => `<option>${f}</option>`).join("")}</select></label>
        <button type="button" class="prev">‹ prev</button>
        <span class="page"></span>
        <button type="button" class="next">next ›</button>
      </div>
      <table class="trials">
        <thead><tr>${COLUMNS.map(([key, label]) => `<th data-key="${key}" title="sort">${label}</th>`).join("")}</tr></thead>
        <tbody></tbody>
      </table>`;
    el.querySelector(".filter").addEventListener("change", (e) => {
      this.filter = e.target.value;
      this.page = 0;
      this.update();
    });
    el.querySelector(".prev").addEventListener("click", () => this.turn(-1));
    el.querySelector(".next").addEventListener("click", () => this.turn(1));
    el.querySelector("thead").addEventListener("click", (e) => {
      const key = e.target.closest("th")?.dataset.key;
      if (!key) return;
      this.sort = { key, desc: this.sort.key === key ? !this.sort.desc : key !== "number" };
      this.update();
    });
    el.querySelector("tbody").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-number]");
      if (tr) onPick(Number(tr.dataset.number));
    });
  }

  rows() {
    const { front } = this.state;
    const keep = {
      all: () => true,
      promoted: (t) => Boolean(t.full),
    }[this.filter] ?? ((t) => category(t, front) === this.filter);
    const col = COLUMNS.find(([key]) => key === this.sort.key);
    const value = (t) => col[2](t, this.state);
    const sign = this.sort.desc ? -1 : 1;
    return [...this.state.trials.values()].filter(keep).sort((a, b) => {
      const va = value(a);
      const vb = value(b);
      if (va == null || vb == null) return va == null ? (vb == null ? 0 : 1) : -1; // blanks last
      return (va < vb ? -1 : va > vb ? 1 : 0) * sign || a.number - b.number;
    });
  }

  turn(step) {
    this.page += step;
    this.update();
  }

  update() {
    const rows = this.rows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    this.page = Math.min(Math.max(0, this.page), pages - 1);
    const shown = rows.slice(this.page * PAGE, (this.page + 1) * PAGE);
    this.el.querySelector("tbody").innerHTML = shown
      .map((t) => `<tr data-number="${t.number}">${COLUMNS.map(([, , , cell]) => `<td>${cell(t, this.state)}</td>`).join("")}</tr>`)
      .join("");
    this.el.querySelector(".page").textContent = `page ${this.page + 1} of ${pages} (${rows.length} trials)`;
    this.el.querySelector(".prev").disabled = this.page === 0;
    this.el.querySelector(".next").disabled = this.page >= pages - 1;
    for (const th of this.el.querySelectorAll("th")) {
      th.classList.toggle("sorted", th.dataset.key === this.sort.key);
      th.classList.toggle("desc", th.dataset.key === this.sort.key && this.sort.desc);
    }
    this.el.dataset.rows = String(rows.length);
  }
}
