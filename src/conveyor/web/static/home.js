"use strict";
// `/`: every workflow the person may view, its newest task, how many run and wait.
(() => {
  const { $, el, setText, badge, sync, ago, nowS, path, taskUrl, base } = CV;
  document.title = "Workflows — Conveyor";

  function make(wf) {
    const link = el("a", { href: `${base}/workflows/${path(wf.name)}`, text: wf.name });
    return el("tr", {},
      el("td", { "data-label": "workflow" }, link),
      el("td", { class: "latest", "data-label": "latest" }),
      el("td", { class: "running num", "data-label": "running" }),
      el("td", { class: "waiting num", "data-label": "waiting" }),
      el("td", { class: "actions" }));
  }
  function update(row, wf) {
    const latest = row.querySelector(".latest");
    if (wf.latest) {
      const t = wf.latest;
      const key = `${t.task_id} ${t.status}`;
      if (latest.dataset.shown !== key) {
        latest.dataset.shown = key;
        const status = el("span"); badge(status, t.status);
        latest.replaceChildren(el("a", { href: taskUrl(wf.name, t.task_id), text: `#${t.task_id}` }),
          " ", status, " ", el("span", { class: "when" }));
      }
      setText(latest.querySelector(".when"), ago(t.create_time, nowS()));
    } else if (latest.dataset.shown !== "none") {
      latest.dataset.shown = "none"; latest.replaceChildren(el("span", { class: "muted", text: "no task yet" }));
    }
    setText(row.querySelector(".running"), wf.running);
    setText(row.querySelector(".waiting"), wf.waiting);
    const actions = row.querySelector(".actions");
    if (wf.may_create && !actions.firstChild) {
      actions.append(el("a", { class: "button", href: `${base}/workflows/${path(wf.name)}/run`, text: "Run" }));
    }
  }

  let live = null;
  CV.page(() => {
    if (live) { live.now(); return; }
    live = CV.poll(async () => {
      const workflows = await CV.json("/api/workflows");
      sync($("workflows").tBodies[0], workflows, (w) => w.name, make, update);
      $("none").hidden = workflows.length > 0;
      return 3000;
    }, 3000);
  });
})();
