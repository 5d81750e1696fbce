// GeneXfer web app: the API key (kept per tab in sessionStorage), the problem+json display,
// downloads and JSON forms that call the /v1 API with the key. htmx does the rest.
(function () {
  "use strict";

  const KEY = "genexfer.apiKey";
  const body = document.body;
  const authOn = body.dataset.auth === "on";
  const storedKey = () => sessionStorage.getItem(KEY);

  function withKey(headers) {
    const key = storedKey();
    if (key) headers["Authorization"] = "Bearer " + key;
    return headers;
  }

  // pages other than sign-in need a key when the server asks for one
  if (authOn && !storedKey() && body.dataset.page !== "sign-in") {
    const here = location.pathname + location.search;
    location.replace("/ui/sign-in?next=" + encodeURIComponent(here));
    return;
  }

  // ---- problems (RFC 9457) -------------------------------------------------------------------
  const box = document.getElementById("problem");

  function element(tag, text, cls) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }

  function showProblem(problem) {
    box.replaceChildren();
    const title = problem.title || "Error";
    const status = problem.status ? " (" + problem.status + ")" : "";
    box.append(element("h2", title + status));
    if (problem.detail) box.append(element("p", problem.detail));
    for (const field of ["samples", "genes"]) {
      const ids = problem[field];
      if (Array.isArray(ids) && ids.length) {
        box.append(element("p", field + ": " + ids.slice(0, 50).join(", "), "ids"));
      }
    }
    if (Array.isArray(problem.errors)) {
      const list = element("ul");
      for (const e of problem.errors.slice(0, 10)) {
        const where = Array.isArray(e.loc) ? e.loc.join(".") + ": " : "";
        list.append(element("li", where + (e.msg || "")));
      }
      box.append(list);
    }
    if (problem.status === 401 && body.dataset.page !== "sign-in") {
      const link = element("a", "Sign in with an API key");
      link.href = "/ui/sign-in?next=" + encodeURIComponent(location.pathname + location.search);
      const line = element("p");
      line.append(link);
      box.append(line);
    }
    const close = element("button", "Dismiss", "secondary");
    close.type = "button";
    close.addEventListener("click", clearProblem);
    box.append(close);
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }

  function clearProblem() {
    box.hidden = true;
    box.replaceChildren();
  }

  function parseProblem(text, status, statusText) {
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed === "object") return parsed;
    } catch (_) {
      /* not JSON: described below */
    }
    return { title: statusText || "Error", status: status, detail: "The server answered " + status + "." };
  }

  async function problemOf(response) {
    return parseProblem(await response.text(), response.status, response.statusText);
  }

  // ---- htmx: the key on every request, problems shown, follow-ups -------------------------
  document.addEventListener("htmx:configRequest", (e) => withKey(e.detail.headers));
  document.addEventListener("htmx:beforeRequest", (e) => {
    const elt = e.detail.elt;
    if (elt.tagName === "FORM" || elt.tagName === "BUTTON") clearProblem();
  });
  document.addEventListener("htmx:responseError", (e) => {
    const xhr = e.detail.xhr;
    showProblem(parseProblem(xhr.responseText, xhr.status, xhr.statusText));
  });
  document.addEventListener("htmx:sendError", () =>
    showProblem({ title: "The server cannot be reached", detail: "Check the connection and try again." })
  );
  document.addEventListener("htmx:afterRequest", (e) => {
    const elt = e.detail.elt;
    if (!e.detail.successful) return;
    if (elt.dataset.then) htmx.trigger(body, elt.dataset.then);
    if (elt.tagName === "FORM" && "reset" in elt.dataset) elt.reset();
    if (elt.dataset.done) announce(elt.dataset.done);
  });

  const status = document.getElementById("status");
  function announce(text) {
    if (!status) return;
    status.textContent = text;
    status.hidden = false;
    setTimeout(() => (status.hidden = true), 6000);
  }

  // ---- sign in / out -----------------------------------------------------------------------
  const signIn = document.getElementById("sign-in");
  if (signIn) {
    signIn.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearProblem();
      const key = String(new FormData(signIn).get("key") || "").trim();
      const r = await fetch("/ui/parts/session", { headers: { Authorization: "Bearer " + key } });
      if (!r.ok) return showProblem(await problemOf(r));
      sessionStorage.setItem(KEY, key);
      const next = new URLSearchParams(location.search).get("next");
      location.assign(next && next.startsWith("/ui/") ? next : "/ui/models");
    });
  }
  document.addEventListener("click", (ev) => {
    if (!ev.target.closest("[data-sign-out]")) return;
    sessionStorage.removeItem(KEY);
    location.assign("/ui/sign-in");
  });

  // ---- downloads through the API, with the key ----------------------------------------------
  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("[data-download]");
    if (!button) return;
    ev.preventDefault();
    clearProblem();
    const init = { method: button.dataset.method || "GET", headers: withKey({}) };
    if (button.dataset.accept) init.headers["Accept"] = button.dataset.accept;
    if (button.dataset.bodyFrom) {
      init.body = document.getElementById(button.dataset.bodyFrom).textContent;
      init.headers["Content-Type"] = "application/json";
    }
    button.disabled = true;
    try {
      const r = await fetch(button.dataset.download, init);
      if (!r.ok) return showProblem(await problemOf(r));
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await r.blob());
      link.download = button.dataset.filename || "download";
      body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      announce("Downloaded " + link.download);
    } finally {
      button.disabled = false;
    }
  });

  // ---- forms posted as JSON to /v1 (e.g. a fine-tuning job) ---------------------------------
  function setPath(target, path, value) {
    let node = target;
    for (const part of path.slice(0, -1)) node = node[part] = node[part] || {};
    node[path[path.length - 1]] = value;
  }

  function formJson(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.value === "") continue;
      let value = el.value;
      const type = el.dataset.type;
      if (type === "int") value = parseInt(value, 10);
      else if (type === "float") value = parseFloat(value);
      else if (type === "int-list")
        value = value
          .split(",")
          .map((s) => parseInt(s.trim(), 10))
          .filter((n) => !Number.isNaN(n));
      setPath(out, el.name.split("."), value);
    }
    return out;
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!form.matches("form[data-json]")) return;
    ev.preventDefault();
    clearProblem();
    const submit = form.querySelector("[type=submit]");
    if (submit) submit.disabled = true;
    try {
      const r = await fetch(form.getAttribute("action"), {
        method: "POST",
        headers: withKey({ "Content-Type": "application/json", Accept: "application/json" }),
        body: JSON.stringify(formJson(form)),
      });
      if (!r.ok) return showProblem(await problemOf(r));
      const out = await r.json();
      if (form.dataset.next) location.assign(form.dataset.next.replace("{id}", out.id));
    } finally {
      if (submit) submit.disabled = false;
    }
  });

  // ---- filter a long list (the gene panel) ----------------------------------------------------
  document.addEventListener("input", (ev) => {
    const input = ev.target.closest("[data-filter]");
    if (!input) return;
    const needle = input.value.trim().toLowerCase();
    let shown = 0;
    for (const item of document.querySelectorAll(input.dataset.filter)) {
      const hit = !needle || item.textContent.toLowerCase().includes(needle);
      item.hidden = !hit;
      if (hit) shown += 1;
    }
    const count = document.getElementById(input.getAttribute("aria-controls") + "-count");
    if (count) count.textContent = shown + " shown";
  });
})();
