"use strict";
// The task page: the server sends this script and no task data; the script asks the
// JSON API with the session the person's token was exchanged for once (an HttpOnly
// cookie the script never sees; the token itself is kept nowhere).
(function () {
  const match = location.pathname.match(/^(.*)\/workflows\/([^/]+)\/tasks\/(\d+)\/?$/);
  const $ = (id) => document.getElementById(id);
  if (!match) { show("This is not a task address."); return; }
  const [, base, workflow, taskId] = match;
  const api = `${base}/api/workflows/${workflow}/tasks/${taskId}`;
  let following = null;

  function show(text) { const m = $("message"); m.textContent = text; m.hidden = false; }
  function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "–"; }
  function cell(row, text, cls) {
    const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
  }
  function badge(el, status) { el.textContent = status; el.className = `status ${status}`; }

  async function call(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (r.status === 401) { const body = await r.json(); ask(body.detail); throw new Error("auth"); }
    if (!r.ok) { const body = await r.json(); show(`${body.errorMsg}: ${body.detail || ""}`); throw new Error("api"); }
    return r;
  }

  // Why the person must sign in: the server says which (expired, revoked, ended...).
  function ask(why) {
    $("task").hidden = true; $("login").hidden = false;
    if (why && why !== "no Authorization header") show(why); else $("message").hidden = true;
  }

  async function refresh() {
    const task = await (await call(api)).json();
    $("login").hidden = true; $("message").hidden = true; $("task").hidden = false;
    $("title").textContent = `${task.workflow_name} #${task.task_id}`;
    badge($("status"), task.status);
    const facts = $("facts"); facts.replaceChildren();
    for (const [k, v] of [["env", task.env_name], ["attempt", task.attempt], ["created by", task.created_by],
                          ["created", when(task.create_time)], ["started", when(task.start_time)],
                          ["ended", when(task.end_time)]]) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v; facts.append(dt, dd);
    }
    const commits = $("commits").tBodies[0]; commits.replaceChildren();
    for (const c of task.commits) {
      const row = commits.insertRow();
      cell(row, c.service); cell(row, c.repo_name); cell(row, c.ref);
      const code = document.createElement("code"); code.textContent = c.commit.slice(0, 12);
      row.insertCell().append(code);
    }
    const jobs = $("jobs").tBodies[0]; jobs.replaceChildren();
    for (const j of task.jobs) {
      const row = jobs.insertRow();
      cell(row, j.attempt); cell(row, j.stage); cell(row, j.service);
      badge(row.insertCell().appendChild(document.createElement("span")), j.status);
      cell(row, j.start_time && j.end_time ? `${j.end_time - j.start_time}s` : "");
      cell(row, j.detail || "");
      const button = document.createElement("button"); button.type = "button"; button.textContent = "log";
      button.addEventListener("click", () => follow(j));
      row.insertCell().append(button);
    }
    if (!["passed", "failed", "timeout", "cancelled"].includes(task.status)) setTimeout(tick, 2000);
  }

  async function follow(job) {
    const mine = following = { job, offset: 0 };
    $("log-title").textContent = `${job.stage} ${job.service}, attempt ${job.attempt}`;
    $("log-title").hidden = false; const pre = $("log"); pre.textContent = ""; pre.hidden = false;
    while (following === mine) {
      const r = await call(`${base}${job.log_url}?offset=${mine.offset}`);
      pre.append(document.createTextNode(await r.text()));
      mine.offset = Number(r.headers.get("X-Next-Offset"));
      if (r.headers.get("X-Log-Complete") === "true") break;
      await new Promise((done) => setTimeout(done, 1000));
    }
  }

  function tick() { refresh().catch(() => {}); }

  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch(`${base}/api/session`, {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("token").value.trim() }),
    });
    $("token").value = "";
    if (!r.ok) { const body = await r.json(); show(`Sign-in failed: ${body.detail || body.errorMsg}`); return; }
    tick();
  });
  $("forget").addEventListener("click", async () => {
    await fetch(`${base}/api/session`, { method: "DELETE", credentials: "same-origin" });
    ask();
  });
  tick();
})();
