"use strict";
// `/workflows/<name>/run`: start a task through the same create call as any client:
// choose services, a branch or a merge request per repo, and the declared variables.
(() => {
  const { $, el, setText, path, taskUrl, base } = CV;
  const name = decodeURIComponent(location.pathname.match(/\/workflows\/([^/]+)\/run\/?$/)[1]);
  document.title = `Run ${name} — Conveyor`;
  $("crumbs").append(" / ", el("a", { href: `${base}/workflows/${path(name)}`, text: name }), " / run");
  setText($("name"), `Run ${name}`);
  let workflow = null;

  function repoFields(service, repo) {
    const id = `${service.name}--${repo.name}`;
    return el("div", { class: "repo" },
      el("span", { class: "repo-name", text: repo.name }),
      el("label", {}, "branch ", el("input", { id: `${id}--branch`, value: repo.default_branch, required: true,
        autocomplete: "off", "aria-label": `${service.name} ${repo.name} branch` })),
      el("label", {}, "merge request ", el("input", { id: `${id}--pr`, type: "number", min: "0", placeholder: "none",
        "aria-label": `${service.name} ${repo.name} merge request` })));
  }
  function serviceFields(service) {
    const box = el("input", { type: "checkbox", id: `${service.name}--on`, checked: true });
    const vars = Object.entries(service.variables).map(([k, v]) => el("label", { class: "var" }, `${k} `,
      el("input", { id: `${service.name}--var--${k}`, value: v, autocomplete: "off", "data-var": k })));
    return el("div", { class: "service", "data-service": service.name },
      el("label", { class: "service-name" }, box, ` ${service.name}`),
      ...service.repos.map((r) => repoFields(service, r)),
      vars.length ? el("div", { class: "vars" }, el("span", { class: "muted", text: "build variables" }), ...vars) : null);
  }
  function request() {
    const targets = [];
    for (const service of workflow.services) {
      if (!$(`${service.name}--on`).checked) continue;
      const repos = service.repos.map((repo) => {
        const id = `${service.name}--${repo.name}`;
        const pr = $(`${id}--pr`).value.trim();
        return { repo_name: repo.name, branch: $(`${id}--branch`).value.trim(), pr: pr ? Number(pr) : 0 };
      });
      const envs = Object.entries(service.variables)
        .map(([k, v]) => ({ key: k, value: $(`${service.name}--var--${k}`).value }))
        .filter((e) => e.value !== service.variables[e.key]);
      targets.push({ name: service.name, build: { repos }, ...(envs.length ? { envs } : {}) });
    }
    return { workflow_name: name, env_name: $("env").value, targets };
  }

  $("run").addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = $("run").querySelector("button[type=submit]");
    button.disabled = true;
    $("run-error").hidden = true;
    try {
      const r = await CV.json("/api/directory/workflowTask/create", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request()),
      });
      location.assign(taskUrl(r.workflow_name, r.task_id));
    } catch (err) {
      if (!(err instanceof CV.ApiError && err.status === 401)) {
        setText($("run-error"), err instanceof CV.Offline ? "The server cannot be reached; try again." : err.message);
        $("run-error").hidden = false;
      }
      button.disabled = false;
    }
  });

  async function load() {
    if (workflow) return;  // signed in again mid-way: keep what was typed
    workflow = await CV.json(`/api/workflows/${path(name)}`);
    if (!workflow.may_create) { CV.problem(`You may not start tasks of ${name}.`); return; }
    const envs = [...new Set([workflow.env, ...workflow.envs])];
    $("env").replaceChildren(...envs.map((env) => el("option", { text: env })));
    $("targets").replaceChildren(el("legend", { text: "Services to build and deploy" }),
      ...workflow.services.map(serviceFields));
    $("run").hidden = false;
  }
  CV.page(() => load().catch((e) => {
    if (!(e instanceof CV.ApiError && e.status === 401)) CV.problem(e.message);
  }));
})();
