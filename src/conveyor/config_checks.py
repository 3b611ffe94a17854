"""Checks across a config's parts: names that must exist, names that must not clash,
secrets long enough to mask, settings that need each other."""

import os
import re

from conveyor.domain.masking import MIN_SECRET_CHARS
from conveyor.domain.variables import (
    repo_variables,
    variable_name_problem,
    variable_value_problem,
)
from conveyor.settings import Config, TriggerConfig

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def cross_reference_problems(cfg: Config) -> list[str]:
    """What is wrong between the parts of a config each of which is valid alone."""
    problems = []
    for kind, names in (
        ("repo", cfg.repos),
        ("service", cfg.services),
        ("env", cfg.envs),
        ("workflow", cfg.workflows),
        ("role", cfg.roles),
    ):
        for name in names:
            if not _NAME.fullmatch(name):
                problems.append(
                    f"{kind}s.{name}: a {kind} name may hold only letters, digits, '.', '_', '-'"
                    " and must start with a letter or digit"
                )
    for sname, svc in cfg.services.items():
        for i, repo in enumerate(svc.build.repos):
            if repo not in cfg.repos:
                problems.append(f"services.{sname}.build.repos[{i}]: unknown repo {repo!r}")
            if repo in svc.build.repos[:i]:
                problems.append(f"services.{sname}.build.repos[{i}]: repo {repo!r} listed twice")
    problems += variable_clash_problems(cfg)
    for wname, wf in cfg.workflows.items():
        if wf.env not in cfg.envs:
            problems.append(f"workflows.{wname}.env: unknown env {wf.env!r}")
        for i, env in enumerate(wf.envs):
            if env not in cfg.envs:
                problems.append(f"workflows.{wname}.envs[{i}]: unknown env {env!r}")
        for i, svc_name in enumerate(wf.services):
            if svc_name not in cfg.services:
                problems.append(f"workflows.{wname}.services[{i}]: unknown service {svc_name!r}")
            if svc_name in wf.services[:i]:
                problems.append(
                    f"workflows.{wname}.services[{i}]: service {svc_name!r} listed twice"
                )
    for ename, env_cfg in cfg.envs.items():
        for key, value in env_cfg.secrets.items():
            if key in env_cfg.vars:
                problems.append(f"envs.{ename}.secrets.{key}: also given in vars")
            name = value.removeprefix("env:")
            if value.startswith("env:") and name not in os.environ:
                problems.append(
                    f"envs.{ename}.secrets.{key}: environment variable {name!r} is not set"
                )
                continue
            resolved = os.environ[name] if value.startswith("env:") else value
            if len(resolved) < MIN_SECRET_CHARS:
                # Masking a 3-character value would garble ordinary output, and not
                # masking it silently would be worse: refuse it.
                problems.append(
                    f"envs.{ename}.secrets.{key}: a secret must be at least {MIN_SECRET_CHARS} "
                    f"characters long, or it could not be masked in job logs "
                    f"(this one has {len(resolved)})"
                )
    for sname in cfg.services:
        if not cfg.services[sname].network and cfg.sandbox_of(sname) != "bubblewrap":
            problems.append(
                f"services.{sname}.network: false needs sandbox: bubblewrap, the only way "
                "Conveyor has to take a job's network away"
            )
    if cfg.executor == "celery" and not cfg.broker_url:
        problems.append("broker_url: required when executor is 'celery'")
    problems += gitlab_problems(cfg)
    return problems


def _secret_problem(where: str, value: str | None) -> str | None:
    """Why a secret written as `value` (maybe `env:NAME`) cannot be used."""
    if value is None:
        return None
    name = value.removeprefix("env:")
    if value.startswith("env:") and name not in os.environ:
        return f"{where}: environment variable {name!r} is not set"
    resolved = os.environ[name] if value.startswith("env:") else value
    if len(resolved) < MIN_SECRET_CHARS:
        return (
            f"{where}: must be at least {MIN_SECRET_CHARS} characters long, or it could not "
            f"be masked in job logs (this one has {len(resolved)})"
        )
    return None


def gitlab_problems(cfg: Config) -> list[str]:
    """Hooks in and statuses out need GitLab's address, a project per repo they name,
    and services that build the trigger's repo."""
    problems = []
    if cfg.gitlab is not None:
        for key in ("token", "webhook_secret"):
            problem = _secret_problem(f"gitlab.{key}", getattr(cfg.gitlab, key))
            if problem:
                problems.append(problem)
    for i, note in enumerate(cfg.notifications):
        problem = _secret_problem(f"notifications[{i}].secret", note.secret)
        if problem:
            problems.append(problem)
    for rname, repo in cfg.repos.items():
        where = f"repos.{rname}.gitlab_webhook_secret"
        problem = _secret_problem(where, repo.gitlab_webhook_secret)
        if problem:
            problems.append(problem)
        if repo.gitlab_webhook_secret is not None and repo.gitlab_project is None:
            problems.append(f"{where}: needs the repo's gitlab_project")
        if repo.gitlab_webhook_secret is not None:
            for other, twin in cfg.repos.items():
                if other != rname and (
                    twin.url == repo.url
                    or (
                        repo.gitlab_project is not None
                        and twin.gitlab_project == repo.gitlab_project
                    )
                ):
                    problems.append(
                        f"{where}: repo {other!r} has the same project or url, so the secret "
                        "would not guard it"
                    )
        if repo.gitlab_project is not None and cfg.gitlab is None:
            problems.append(f"repos.{rname}.gitlab_project: needs a gitlab section (its url)")
        if isinstance(repo.gitlab_project, str) and not _PROJECT.fullmatch(repo.gitlab_project):
            problems.append(
                f"repos.{rname}.gitlab_project: {repo.gitlab_project!r} is neither a "
                "path_with_namespace (group/project) nor a numeric id"
            )
    for wname, wf in cfg.workflows.items():
        for i, trigger in enumerate(wf.triggers):
            where = f"workflows.{wname}.triggers[{i}]"
            problems += _trigger_problems(cfg, where, wf.services, trigger)
            named = cfg.repos.get(trigger.repo)
            own = named is not None and named.gitlab_webhook_secret is not None
            if cfg.gitlab is None or (cfg.gitlab.webhook_secret is None and not own):
                problems.append(
                    f"{where}: hooks need gitlab.url and a webhook secret "
                    "(gitlab.webhook_secret, or the repo's gitlab_webhook_secret)"
                )
    return problems


_PROJECT = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+|[0-9]+")
_PATTERNS_OF = {"push": "branches", "merge_request": "target_branches", "tag": "tags"}


def _trigger_problems(
    cfg: Config, where: str, workflow_services: list[str], trigger: TriggerConfig
) -> list[str]:
    problems = []
    for key in set(_PATTERNS_OF.values()) - {_PATTERNS_OF[trigger.event]}:
        if getattr(trigger, key) is not None:
            problems.append(
                f"{where}.{key}: not for a {trigger.event} trigger "
                f"(it takes {_PATTERNS_OF[trigger.event]})"
            )
    if trigger.forks is not None and trigger.event != "merge_request":
        problems.append(f"{where}.forks: only a merge_request trigger builds forks")
    repo = cfg.repos.get(trigger.repo)
    if repo is None:
        return [*problems, f"{where}.repo: unknown repo {trigger.repo!r}"]
    if repo.gitlab_project is None:
        problems.append(
            f"{where}.repo: repo {trigger.repo!r} has no gitlab_project, so no hook names it"
        )
    building = [
        s
        for s in workflow_services
        if s in cfg.services and trigger.repo in cfg.services[s].build.repos
    ]
    if trigger.services is None and not building:
        problems.append(f"{where}.repo: no service of the workflow builds repo {trigger.repo!r}")
    for j, name in enumerate(trigger.services or []):
        if name not in workflow_services:
            problems.append(f"{where}.services[{j}]: {name!r} is not a service of the workflow")
    return problems


def variable_clash_problems(cfg: Config) -> list[str]:
    """A build variable or output must not share its name with a variable Conveyor or the
    env sets for the job: its value would otherwise be silently overridden, or override."""
    problems = []
    for sname, svc in cfg.services.items():
        declared = svc.build.variables
        for name, value in declared.items():
            for problem in (variable_name_problem(name), variable_value_problem(value)):
                if problem:
                    problems.append(f"services.{sname}.build.variables.{name}: {problem}")
        for i, name in enumerate(svc.build.outputs):
            problem = variable_name_problem(name)
            if name in svc.build.outputs[:i]:
                problem = "listed twice"
            if problem:
                problems.append(f"services.{sname}.build.outputs[{i}]: {name!r} {problem}")
        # The names this service's build itself decides, by the key they are under.
        owned = {"variables": set(declared), "outputs": set(svc.build.outputs)}
        for repo in svc.build.repos:
            for kind, names in owned.items():
                for name in sorted(set(repo_variables(repo)) & names):
                    where = f"services.{sname}.build.{kind}.{name}"
                    problems.append(f"{where}: Conveyor sets it (repo {repo!r})")
        # The envs this service may run in, each with a workflow that takes it there.
        reach: dict[str, str] = {}
        for wname, wf in cfg.workflows.items():
            if sname in wf.services:
                for ename in sorted(wf.allowed_envs & cfg.envs.keys()):
                    reach.setdefault(ename, wname)
        for ename, wname in reach.items():
            env = cfg.envs[ename]
            for kind, env_names in (("vars", set(env.vars)), ("secrets", set(env.secrets))):
                for own, names in owned.items():
                    for name in sorted(env_names & names):
                        problems.append(
                            f"services.{sname}.build.{own}.{name}: also in "
                            f"envs.{ename}.{kind} (workflow {wname!r} runs it there)"
                        )
    return problems
