"use strict";
// The page a task's `url` points at: its commits, and each attempt as stages (build ->
// deploy per service) with live elapsed times; Cancel and Restart where they would work.
(() => {
  const { $, el, setText, badge, sync, duration, stamp, refLabel, path, taskUrl, base } = CV;
  const m = location.pathname.match(/\/workflows\/([^/]+)\/tasks\/(\d+)\/?$/);
  const name = decodeURIComponent(m[1]), id = Number(m[2]);
  const api = `/api/workflows/${path(name)}/tasks/${id}`;
  let task = null, skew = 0;  // skew: the server's clock minus this browser's
  const now = () => CV.nowS() + skew;
  $("crumbs").append(" / ", el("a", { href: `${base}/workflows/${path(name)}`, text: name }), ` / #${id}`);
  setText($("name"), `${name} #${id}`);

  // A running thing's time counts up every second; an ended one's is fixed.
  function took(start, end) {
    if (!start) return "";
    return duration((end || now()) - start);
  }
  function tick() {
    for (const node of document.querySelectorAll("[data-start]")) {
      setText(node, took(Number(node.dataset.start), Number(node.dataset.end) || null));
    }
  }
  function timer(node, start, end) {
    node.dataset.start = start || ""; node.dataset.end = end || "";
    setText(node, took(start, end));
  }

  function facts(t) {
    const attempt = t.attempts[t.attempts.length - 1] || {};
    const rows = [
      ["environment", t.env_name],
      ["created", `${stamp(t.create_time)} by ${t.created_by}`],
      ["started", attempt.start_time ? stamp(attempt.start_time) : "not yet"],
      ["ended", attempt.end_time ? stamp(attempt.end_time) : "not yet"],
    ];
    const dl = $("facts");
    if (!dl.children.length) {
      for (const [k] of [...rows, ["took", ""]]) dl.append(el("dt", { text: k }), el("dd", { "data-fact": k }));
    }
    for (const [k, v] of rows) setText(dl.querySelector(`[data-fact="${k}"]`), v);
    timer(dl.querySelector('[data-fact="took"]'), attempt.start_time, attempt.end_time);
  }

  function commits(t) {
    // A merge request build pins two commits: the request's head, and its target
    // branch's head it was merged onto.
    const rows = t.commits.map((c) => {
      const mr = t.commits.find((o) => o !== c && o.service === c.service && o.repo_name === c.repo_name
                                && o.kind === "merge_request");
      return { ...c, label: c.kind === "branch" && mr ? `onto ${c.ref}` : refLabel(c) };
    });
    sync($("commits").tBodies[0], rows, (c) => `${c.service} ${c.repo_name} ${c.ref}`, (c) => {
      const ref = c.ref_url ? el("a", { href: c.ref_url, text: c.label }) : el("span", { text: c.label });
      const sha = el("code", { text: c.commit.slice(0, 12), title: c.commit });
      return el("tr", {}, el("td", { "data-label": "service", text: c.service }),
        el("td", { "data-label": "repo", text: c.repo_name }), el("td", { "data-label": "ref" }, ref),
        el("td", { "data-label": "commit" }, c.commit_url ? el("a", { href: c.commit_url }, sha) : sha));
    }, () => {});
  }

  // Attempt n shows, for each service and stage, the newest job up to n: jobs that
  // passed before a restart are kept, not run again.
  function stagesOf(t, n) {
    const services = [...new Set(t.jobs.map((j) => j.service))];
    return services.map((service) => {
      const pick = (stage) => t.jobs.filter((j) => j.service === service && j.stage === stage && j.attempt <= n)
        .sort((a, b) => b.attempt - a.attempt)[0];
      return { service, build: pick("build"), deploy: pick("deploy") };
    });
  }
  function jobCell(cell, job, n) {
    if (!job) { setText(cell, ""); return; }
    if (!cell.firstChild) {
      cell.append(el("span", { class: "status" }), " ", el("span", { class: "took" }), " ",
        el("a", { class: "log-link", text: "log" }), el("div", { class: "why" }));
    }
    badge(cell.querySelector(".status"), job.status);
    timer(cell.querySelector(".took"), job.start_time, job.end_time);
    const log = cell.querySelector(".log-link");
    log.href = `${taskUrl(name, id)}/jobs/${job.id}`;
    log.setAttribute("aria-label", `log of ${job.stage} ${job.service}, attempt ${job.attempt}`);
    const kept = job.attempt < n ? `kept from attempt ${job.attempt}` : "";
    setText(cell.querySelector(".why"), [kept, job.detail].filter(Boolean).join("; "));
  }
  function attempts(t) {
    const list = [...t.attempts].reverse();
    sync($("attempts"), list, (a) => a.number, (a) => el("section", { class: "attempt" },
      el("h2", { text: `Attempt ${a.number}` }), el("p", { class: "who" }),
      el("table", { class: "stages" },
        el("thead", {}, el("tr", {}, el("th", { text: "service" }), el("th", { text: "build" }), el("th", { text: "deploy" }))),
        el("tbody"))), (section, a) => {
      const who = a.number === 1 ? `created by ${a.requested_by}` : `restarted by ${a.requested_by}`;
      const status = a.status || (a.start_time ? "running" : "created");
      setText(section.querySelector(".who"), `${who}, ${stamp(a.create_time)} · ${status}` +
        (a.start_time ? ` · took ${took(a.start_time, a.end_time)}` : ""));
      sync(section.querySelector("tbody"), stagesOf(t, a.number), (s) => s.service, (s) => el("tr", {},
        el("th", { scope: "row", text: s.service }), el("td", { class: "job build", "data-label": "build" }),
        el("td", { class: "job deploy", "data-label": "deploy" })), (row, s) => {
        jobCell(row.querySelector(".build"), s.build, a.number);
        jobCell(row.querySelector(".deploy"), s.deploy, a.number);
      });
    });
  }

  function render(t) {
    task = t; skew = t.server_time - CV.nowS();
    document.title = `${name} #${id} · ${t.status} — Conveyor`;
    badge($("status"), t.status);
    $("cancel").hidden = !t.may_cancel; $("restart").hidden = !t.may_restart;
    facts(t); commits(t); attempts(t);
  }

  async function act(what) {
    if (!confirm(`${what === "cancel" ? "Cancel" : "Restart"} ${name} #${id}?`)) return;
    CV.problem("");
    try {
      await CV.request(`/api/directory/workflowTask/id/${id}/pipelines/${path(name)}/${what}`, { method: "POST" });
    } catch (e) {
      if (!(e instanceof CV.ApiError && e.status === 401)) CV.problem(e.message);
    }
    live.now();
  }
  $("cancel").addEventListener("click", () => act("cancel"));
  $("restart").addEventListener("click", () => act("restart"));

  let live = null;
  CV.page(() => {
    if (live) { live.now(); return; }
    live = CV.poll(async () => {
      render(await CV.json(api));
      return CV.TERMINAL.includes(task.status) ? 10000 : 1000;
    }, 1000);
    setInterval(tick, 1000);
  });
})();
