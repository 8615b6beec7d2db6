// The router (#/ and #/studies/{id}) and the bearer-token form.
import { token } from "./api.js";
import { showStudies } from "./studies.js";
import { showStudy } from "./study.js";

// State read by the browser tests and the render benchmark (never scraped from the canvas).
window.clnas = { view: null, rendered: null, dataMs: null, renderMs: null, plotted: null, errors: [] };

let leave = () => {};

function route() {
  leave();
  const view = document.getElementById("view");
  view.replaceChildren();
  const match = location.hash.match(/^#\/studies\/(\d+)/);
  leave = match ? showStudy(view, Number(match[1])) : showStudies(view);
}

function setUpToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const open = () => {
    form.hidden = false;
    input.value = token.get();
    input.focus();
  };
  document.getElementById("token-button").addEventListener("click", () => (form.hidden ? open() : (form.hidden = true)));
  document.getElementById("token-clear").addEventListener("click", () => {
    token.set("");
    input.value = "";
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    form.hidden = true;
  });
  window.addEventListener("clnas:unauthorized", open);
}

setUpToken();
window.addEventListener("hashchange", route);
route();
