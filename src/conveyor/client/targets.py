"""`--target SERVICE[:REPO@BRANCH|:REPO!MR]` and `--var KEY=VALUE` as a create body's
targets."""

from typing import Any

from conveyor.client.api import ClientError


def _repo(spec: str, service: dict[str, Any]) -> dict[str, Any]:
    defaults = {r["name"]: r["default_branch"] for r in service["repos"]}
    if "!" in spec:
        name, _, mr = spec.partition("!")
        if not mr.isdigit() or int(mr) < 1:
            raise ClientError(
                f"--target {service['name']}:{spec}: {mr!r} is not a merge request number"
            )
        if name not in defaults:
            raise ClientError(
                f"--target {service['name']}:{spec}: {name!r} is not a repo of its build "
                f"({', '.join(defaults)})"
            )
        # The merge request's head is built merged onto the repo's default branch.
        return {"repo_name": name, "branch": defaults[name], "pr": int(mr)}
    name, at, branch = spec.partition("@")
    if not at or not branch:
        raise ClientError(f"--target {service['name']}:{spec}: give REPO@BRANCH or REPO!MR")
    return {"repo_name": name, "branch": branch}


def build_targets(
    specs: list[str], variables: list[str], workflow: dict[str, Any]
) -> list[dict[str, Any]]:
    """The create body's targets, one per service in the order first named; a service
    named without a repo builds every repo from its default branch."""
    services = {s["name"]: s for s in workflow["services"]}
    targets: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, colon, repo = spec.partition(":")
        if name not in services:
            raise ClientError(
                f"--target {spec}: {name!r} is not a service of workflow {workflow['name']!r} "
                f"({', '.join(services)})"
            )
        target = targets.setdefault(name, {"name": name, "build": {"repos": []}})
        if colon:
            target["build"]["repos"].append(_repo(repo, services[name]))
    values: dict[str, str] = {}
    for raw in variables:
        key, eq, value = raw.partition("=")
        if not eq or not key:
            raise ClientError(f"--var {raw}: give KEY=VALUE")
        values[key] = value
    for key in values:
        if not any(key in services[t]["variables"] for t in targets):
            raise ClientError(f"--var {key}: no service of this run declares it")
    for name, target in targets.items():
        declared = services[name]["variables"]
        envs = [{"key": k, "value": v} for k, v in values.items() if k in declared]
        if envs:
            target["envs"] = envs
    return list(targets.values())
