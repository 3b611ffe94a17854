"use strict";
// `/workflows/<name>`: its tasks, newest first, a page at a time, filtered by status and
// by branch or commit; the first page updates live.
(() => {
  const { $, el, setText, badge, sync, ago, duration, nowS, refLabel, path, taskUrl, base } = CV;
  const name = decodeURIComponent(location.pathname.match(/\/workflows\/([^/]+)\/?$/)[1]);
  const query = new URLSearchParams(location.search);
  const here = `${base}/workflows/${path(name)}`;
  document.title = `${name} — Conveyor`;
  $("crumbs").append(" / ", el("a", { href: here, text: name }));
  setText($("name"), name);
  $("status").value = query.get("status") || "";
  $("ref").value = query.get("ref") || "";

  function api() {
    const q = new URLSearchParams({ limit: "25" });
    if (query.get("status")) q.set("status", query.get("status"));
    const ref = (query.get("ref") || "").trim();
    if (ref) q.set(/^[0-9a-fA-F]{8,40}$/.test(ref) ? "commit" : "branch", ref);
    if (query.get("before")) q.set("before", query.get("before"));
    return `/api/workflows/${path(name)}/tasks?${q}`;
  }
  function built(task) {
    return task.repos.map((r) => `${r.service}: ${r.repo_name} ${refLabel(r)} @ ${r.commit.slice(0, 8)}`).join("\n");
  }
  function make(task) {
    return el("tr", {},
      el("td", { "data-label": "task" }, el("a", { href: taskUrl(name, task.task_id), text: `#${task.task_id}` })),
      el("td", { "data-label": "status" }, el("span", { class: "status" })),
      el("td", { class: "built", "data-label": "built" }),
      el("td", { class: "created", "data-label": "created" }),
      el("td", { class: "took", "data-label": "took" }));
  }
  function update(row, task) {
    badge(row.querySelector(".status"), task.status);
    setText(row.querySelector(".built"), built(task));
    const created = row.querySelector(".created");
    setText(created, ago(task.create_time, nowS())); created.title = CV.stamp(task.create_time);
    const took = task.status === "created" ? "" : task.status === "running"
      ? duration(nowS() - task.start_time) : duration(task.end_time - task.start_time);
    setText(row.querySelector(".took"), took);
  }

  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if ($("status").value) q.set("status", $("status").value);
    if ($("ref").value.trim()) q.set("ref", $("ref").value.trim());
    location.search = q.toString();
  });

  async function loadWorkflow() {
    const wf = await CV.json(`/api/workflows/${path(name)}`);
    if (wf.may_create) { $("run").href = `${here}/run`; $("run").hidden = false; }
  }
  let live = null;
  CV.page(() => {
    loadWorkflow().catch(() => {});
    if (live) live.now(); else live = CV.poll(step, 3000);
  });
  async function step() {
    const page = await CV.json(api());
    sync($("tasks").tBodies[0], page.tasks, (t) => t.task_id, make, update);
    $("empty").hidden = page.tasks.length > 0;
    if (page.next_before) {
      const q = new URLSearchParams(location.search); q.set("before", page.next_before);
      $("older").href = `?${q}`; $("older").hidden = false;
    } else $("older").hidden = true;
    if (query.get("before")) {
      const q = new URLSearchParams(location.search); q.delete("before");
      $("newest").href = `?${q}`; $("newest").hidden = false;
      return false;  // an older page does not change
    }
    return 3000;
  }
})();
