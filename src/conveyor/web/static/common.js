"use strict";
// What every page shares: the API with the session cookie (the token itself is kept
// nowhere), sign-in, the "connection lost" banner, live polling that survives a server
// restart, and DOM updates that keep focus (rows are updated in place, never rebuilt).
const CV = (() => {
  const $ = (id) => document.getElementById(id);
  const base = location.pathname.replace(/\/(workflows\/.*)?$/, "");
  const TERMINAL = ["passed", "failed", "timeout", "cancelled"];
  let csrf = null;

  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.errorMsg ? `${body.errorMsg}: ${body.detail || ""}` : `HTTP ${status}`);
      this.status = status; this.body = body || {};
    }
  }
  class Offline extends Error {}

  // One request. A network failure or a 5xx is `Offline` (worth retrying); a 401 asks
  // the person to sign in; any other error is an ApiError carrying the server's words.
  async function request(path, options = {}, retried = false) {
    const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
    const changes = init.method && init.method !== "GET";
    if (changes) {
      if (csrf === null) await loadSession();
      if (csrf) init.headers["X-CSRF-Token"] = csrf;
    }
    let r;
    try { r = await fetch(`${base}${path}`, init); } catch (e) { throw new Offline(String(e)); }
    if (r.status >= 500) throw new Offline(`HTTP ${r.status}`);
    if (r.ok) return r;
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (r.status === 401) { csrf = null; signIn(body && body.detail); }
    // Signed in again in another tab: this tab's CSRF token is the old session's.
    if (r.status === 403 && changes && !retried && body && /^X-CSRF-Token/.test(body.detail || "")) {
      csrf = null;
      return request(path, options, true);
    }
    throw new ApiError(r.status, body);
  }
  async function json(path, options) { return (await request(path, options)).json(); }

  // This browser's session, as GET /api/session answers: 200 and the session (its CSRF
  // token kept for changes), 204 none, 401 why the one it had ended. Throws if the server
  // cannot be reached.
  async function readSession() {
    const r = await fetch(`${base}/api/session`, { credentials: "same-origin" });
    const body = r.status === 200 || r.status === 401 ? await r.json().catch(() => ({})) : {};
    csrf = r.status === 200 ? body.csrf_token : "";
    showUser(r.status === 200 ? body : null);
    return { status: r.status, body };
  }

  async function loadSession() {
    try { await readSession(); } catch (e) { csrf = null; }
  }

  // A page starts by asking for this browser's session: with one, `begin()` runs; without
  // one, the sign-in form shows (saying why an old session ended) and `begin()` runs after
  // signing in. `begin` may run more than once.
  function page(begin) {
    setupSignIn(begin);
    (async () => {
      for (let wait = 1000; ; wait = Math.min(wait * 2, 5000)) {
        try {
          const { status, body } = await readSession();
          if (status === 204) { signIn(); return; }
          if (status === 401) { signIn(body.detail); return; }
          if (status === 200) { online(); begin(); return; }
        } catch (e) { /* the server is away: say so, and ask again */ }
        offline();
        await new Promise((done) => setTimeout(done, wait));
      }
    })();
  }

  // -- sign-in ------------------------------------------------------------------------
  let onSignedIn = () => {};
  function signIn(why) {
    const form = $("login");
    $("content").hidden = true; form.hidden = false; showUser(null);
    const text = why && why !== "no Authorization header" ? why : "";
    $("login-error").textContent = text; $("login-error").hidden = !text;
    $("token").focus();
  }
  function showUser(session) {
    const who = $("who");
    if (!who) return;
    who.hidden = !session;
    if (session) $("who-name").textContent = session.user;
  }
  function setupSignIn(then) {
    onSignedIn = then;
    $("login").addEventListener("submit", async (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      $("token").value = "";
      let r;
      try {
        r = await fetch(`${base}/api/session`, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
        });
      } catch (err) { signIn("The server cannot be reached; try again."); return; }
      const body = await r.json().catch(() => ({}));
      if (!r.ok) { signIn(`Sign-in failed: ${body.detail || body.errorMsg || r.status}`); return; }
      csrf = body.csrf_token; showUser(body);
      $("login").hidden = true; $("content").hidden = false;
      onSignedIn();
    });
    $("sign-out").addEventListener("click", async () => {
      await fetch(`${base}/api/session`, { method: "DELETE", credentials: "same-origin" }).catch(() => {});
      csrf = null; signIn("Signed out.");
    });
  }

  // -- live updates that survive the server going away --------------------------------
  // Calls `step` again and again: after `every` ms while it returns true, never again
  // once it returns false. A failed step shows the banner and is retried, backing off
  // to 5 s; the banner goes once a step succeeds.
  function poll(step, every) {
    let delay = every, timer = null, stopped = false, busy = false, again = false;
    async function run() {
      timer = null; busy = true; again = false;
      try {
        const more = await step();
        online();
        delay = every;
        if (more && !stopped) timer = setTimeout(run, typeof more === "number" ? more : every);
      } catch (e) {
        if (e instanceof Offline) {
          offline();
          delay = Math.min(delay * 2, 5000);
          if (!stopped) timer = setTimeout(run, delay);
        } else if (!(e instanceof ApiError && e.status === 401)) {
          problem(e.message);
        }
      } finally {
        busy = false;
        // Asked for while this step was in flight: its answer may predate what changed.
        if (again) { if (timer) clearTimeout(timer); run(); }
      }
    }
    run();
    return {
      stop() { stopped = true; if (timer) clearTimeout(timer); },
      // At once, instead of at the next turn (after an action, or after signing in).
      now() {
        stopped = false;
        if (busy) { again = true; return; }
        if (timer) clearTimeout(timer);
        run();
      },
    };
  }
  function offline() {
    const b = $("banner");
    b.textContent = "The server cannot be reached; retrying. What you see may be out of date.";
    b.hidden = false;
  }
  function online() { $("banner").hidden = true; }
  function problem(text) { const p = $("problem"); p.textContent = text; p.hidden = !text; }

  // -- DOM -----------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }
  function setText(node, text) { if (node.textContent !== String(text)) node.textContent = text; }
  function badge(node, status) {
    setText(node, status);
    const cls = `status ${status}`;
    if (node.className !== cls) node.className = cls;
  }
  // Keeps `parent`'s children in the order of `items`, one per key: a child is made by
  // `make(item)` once and updated by `update(child, item)` each time, so focus, selection
  // and scroll stay where the person left them.
  function sync(parent, items, key, make, update) {
    const old = new Map([...parent.children].map((c) => [c.dataset.key, c]));
    let at = parent.firstElementChild;
    for (const item of items) {
      const k = String(key(item));
      let child = old.get(k);
      if (!child) { child = make(item); child.dataset.key = k; }
      old.delete(k);
      update(child, item);
      if (child !== at) parent.insertBefore(child, at); else at = at.nextElementSibling;
    }
    for (const gone of old.values()) gone.remove();
  }

  // -- words and times -------------------------------------------------------------------
  function duration(s) {
    if (s === null || s === undefined || s < 0) return "";
    s = Math.floor(s);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h ${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
  }
  function ago(ts, now) {
    const s = Math.max(0, now - ts);
    if (s < 60) return "just now";
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return new Date(ts * 1000).toLocaleDateString();
  }
  function stamp(ts) { return ts ? new Date(ts * 1000).toLocaleString() : ""; }
  function nowS() { return Date.now() / 1000; }
  // "MR !7" for a merge request's head, the branch name for a branch.
  function refLabel(commit) {
    const mr = commit.ref.match(/^refs\/merge-requests\/(\d+)\//);
    return mr ? `MR !${mr[1]}` : commit.ref;
  }
  function path(...parts) { return parts.map(encodeURIComponent).join("/"); }
  function taskUrl(wf, id) { return `${base}/workflows/${path(wf)}/tasks/${id}`; }

  return {
    $, base, TERMINAL, ApiError, Offline, request, json, page, signIn, poll, problem,
    el, setText, badge, sync, duration, ago, stamp, nowS, refLabel, path, taskUrl, loadSession,
  };
})();
