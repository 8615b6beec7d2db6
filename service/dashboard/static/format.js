// Numbers, labels and hover text shared by the views.

export function count(n) {
  if (n == null || Number.isNaN(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

// Accuracy axes: d3 "p" with two significant digits ("0.40%", "1.2%", "35%"); ".0%" printed
// proxy accuracies of a few percent as "1%, 1%, 1%, 0%, 0%".
export const ACCURACY_TICKS = ".2p";
export const pct = (x) => (x == null ? "–" : `${(100 * x).toFixed(2)}%`);
export const fixed = (x, digits = 3) => (x == null ? "–" : Number(x).toFixed(digits));
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

export function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Stage keys shown as the letters the papers use: HetConv part P, ChannelNets channel-wise
// kernel dc, ANTNets SE ratio r and ensemble width K (the length of e-ANT's groups list).
const LETTERS = { part: "P", cw_kernel: "dc", se_ratio: "r", expand: "e", kernel: "k" };
const SHAPE_KEYS = new Set(["block", "repeat", "out", "stride"]);

export function techniques(stage) {
  const parts = [];
  for (const [key, value] of Object.entries(stage)) {
    if (SHAPE_KEYS.has(key)) continue;
    if (key === "groups" && Array.isArray(value)) parts.push(`K=${value.length}`, `groups=${value.join("/")}`);
    else parts.push(`${LETTERS[key] ?? key}=${value}`);
  }
  return parts.join(" ");
}

export function stageLabel(stage, i) {
  const stride = stage.stride > 1 ? ` s${stage.stride}` : "";
  return `${i}: ${stage.block}×${stage.repeat} ${stage.out}${stride} ${techniques(stage)}`.trim();
}

// How a trial is drawn: its category decides the trace (colour and symbol).
export function category(trial, front) {
  if (trial.rejected) return "rejected";
  if (trial.state === "COMPLETE") return front.has(trial.number) ? "front" : "completed";
  if (trial.state === "PRUNED") return "pruned";
  if (trial.state === "FAIL") return "failed";
  return "running";
}

export function accuracy(trial) {
  return trial.rejected ? null : trial.values?.val_top1 ?? null;
}

export function fullTop1(trial) {
  return trial.full?.top1 ?? null;
}

export function hoverText(trial, front) {
  const cat = category(trial, front);
  const lines = [
    `<b>#${trial.number}</b> ${trial.state}${cat === "front" ? " · Pareto front" : ""}`
      + (trial.baseline ? ` · baseline ${escape(trial.baseline)}` : ""),
    `accuracy ${pct(accuracy(trial))} · MAdds ${count(trial.cost?.madds)} · params ${count(trial.cost?.params)}`,
  ];
  if (trial.values?.latency_ms != null) lines.push(`latency ${fixed(trial.values.latency_ms, 2)} ms`);
  (trial.stages || []).forEach((stage, i) => lines.push(stageLabel(stage, i)));
  if (trial.full) {
    lines.push(`full training (${escape(trial.full.recipe)}, ${trial.full.epochs} ep, ${escape(trial.full.status)}): `
      + `top-1 ${pct(trial.full.top1)}`);
  }
  if (trial.rejected) lines.push(`rejected: ${trial.reasons.map((r) => escape(r.message || r.constraint)).join("; ")}`);
  if (trial.state === "PRUNED") lines.push(`pruned at epoch ${trial.pruned_at_epoch ?? "?"}`);
  if (cat === "running" || cat === "pruned" || cat === "failed") lines.push("no final accuracy (drawn at 0)");
  return lines.join("<br>");
}
