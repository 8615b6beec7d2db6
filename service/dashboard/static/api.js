// REST calls: JSON in and out, the bearer token for mutating calls (kept in localStorage), and
// error bodies turned into messages (a 422's `loc` paths included).

const TOKEN_KEY = "clnas.token";

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY) || "",
  set: (value) => (value ? localStorage.setItem(TOKEN_KEY, value) : localStorage.removeItem(TOKEN_KEY)),
};

export class ApiError extends Error {
  constructor(status, detail) {
    super(describe(status, detail));
    this.status = status;
    this.detail = detail;
  }

  // [{loc: "search.n_trials", msg}] for a 422, [] otherwise
  get problems() {
    if (!Array.isArray(this.detail)) return [];
    return this.detail.map((d) => ({
      loc: (d.loc || []).filter((part, i) => !(i === 0 && part === "body")).join("."),
      msg: d.msg,
    }));
  }
}

function describe(status, detail) {
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
  return `${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && token.get()) headers.Authorization = `Bearer ${token.get()}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return read(response);
}

// The JSON body of a response, or an ApiError (and a token prompt on 401).
export async function read(response) {
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("clnas:unauthorized"));
    throw new ApiError(response.status, data?.detail ?? response.statusText);
  }
  return data;
}
