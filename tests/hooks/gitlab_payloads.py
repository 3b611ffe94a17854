"""GitLab webhook requests, shaped as GitLab documents them.

Source: GitLab's "Webhook events" page,
https://docs.gitlab.com/user/project/integrations/webhook_events/ (its Markdown source is
``doc/user/project/integrations/webhook_events.md`` in gitlab-org/gitlab): the payload
examples of "Push events", "Tag events" and "Merge request events", with every key, its
nesting and its type. The headers follow "Delivery headers" and "Secret token" of
https://docs.gitlab.com/user/project/integrations/webhooks/.

Where the examples are only sample data, the values here are derived from the arguments
the way GitLab derives them (``Project#hook_attrs``, ``Gitlab::DataBuilder::Push``):

- one ``project`` object for every event: the documented keys, ``ci_config_path``
  included (the push and tag examples omit it, but ``Project#hook_attrs`` always sends it);
- a tag push carries ``user_username`` and ``user_email`` like a push (one builder makes
  both; the tag example happens to omit them);
- deleting a branch or a tag: ``after`` is forty zeros, ``checkout_sha`` is null and
  ``commits`` is empty; creating one: ``before`` is forty zeros.

Nothing here is sent anywhere: these build the bodies and headers a test posts to
Conveyor's hook endpoint.
"""

from collections.abc import Sequence
from hashlib import sha256
from typing import Any, Final
from uuid import uuid4
from zlib import crc32

GITLAB_URL: Final = "https://gitlab.example.com"
GITLAB_HOST: Final = "gitlab.example.com"
GITLAB_VERSION: Final = "17.11.1"
ZERO_SHA: Final = "0" * 40

PUSH_HOOK: Final = "Push Hook"
TAG_PUSH_HOOK: Final = "Tag Push Hook"
MERGE_REQUEST_HOOK: Final = "Merge Request Hook"

# Every `object_attributes.action` the "Merge request events" section lists.
MR_ACTIONS: Final[tuple[str, ...]] = (
    "open",
    "close",
    "reopen",
    "update",
    "approved",
    "unapproved",
    "approval",
    "unapproval",
    "merge",
)

# X-Gitlab-Webhook-UUID: one per configured webhook, so constant across deliveries.
WEBHOOK_UUID: Final = "02affd2d-2cba-4033-917d-ec22d5dc4b38"

_STATE_IDS: Final = {"opened": 1, "closed": 2, "merged": 3, "locked": 4}
_ACTION_STATES: Final = {"close": "closed", "merge": "merged"}
_KNOWN_USERS: Final = {"jsmith": "John Smith", "root": "Administrator"}
_CREATED_AT: Final = "2013-12-03T17:23:34Z"
_UPDATED_AT: Final = "2013-12-03T17:23:34Z"
_CHANGED_FROM: Final = "2017-09-15 16:50:55 UTC"
_CHANGED_TO: Final = "2017-09-15 16:52:00 UTC"


def headers(
    event: str,
    secret: str | None,
    uuid: str | None = None,
    *,
    idempotency_key: str | None = None,
    webhook_uuid: str = WEBHOOK_UUID,
    instance: str = GITLAB_URL,
) -> dict[str, str]:
    """The headers of one delivery of `event` ("Push Hook", ...).

    X-Gitlab-Token is the webhook's secret token, absent when the hook has none;
    X-Gitlab-Event-UUID is `uuid`, or a fresh one; Idempotency-Key (GitLab 17.4+) stays
    the same across retries of one delivery, a fresh uuid4 unless given.
    """
    sent = {
        "Content-Type": "application/json",
        "User-Agent": f"GitLab/{GITLAB_VERSION}",
        "Idempotency-Key": idempotency_key or str(uuid4()),
        "X-Gitlab-Event": event,
        "X-Gitlab-Webhook-UUID": webhook_uuid,
        "X-Gitlab-Instance": instance,
        "X-Gitlab-Event-UUID": uuid or str(uuid4()),
    }
    if secret is not None:
        sent["X-Gitlab-Token"] = secret
    return sent


def push(
    *,
    project: str = "demo/voting-app",
    project_id: int = 15,
    ref: str = "refs/heads/master",
    before: str,
    after: str,
    checkout_sha: str | None,
    user: str = "jsmith",
    commits: Sequence[str] | None = None,
    total_commits_count: int | None = None,
    ref_protected: bool | None = None,
    default_branch: str = "master",
) -> dict[str, Any]:
    """A "Push Hook" body for a push of `ref` from `before` to `after`.

    `commits`: the pushed commits' SHAs, oldest first (default: `after` alone, none
    when the branch is deleted); GitLab lists the newest 20 and counts them all in
    `total_commits_count`. `ref_protected` defaults to whether `ref` is the default
    branch.
    """
    if ref_protected is None:
        ref_protected = ref == f"refs/heads/{default_branch}"
    return _push_body(
        kind="push",
        project=project,
        project_id=project_id,
        ref=ref,
        before=before,
        after=after,
        checkout_sha=checkout_sha,
        user=user,
        commits=commits,
        total_commits_count=total_commits_count,
        ref_protected=ref_protected,
        default_branch=default_branch,
    )


def tag_push(
    *,
    project: str = "demo/voting-app",
    project_id: int = 15,
    ref: str = "refs/tags/v1.0.0",
    before: str,
    after: str,
    checkout_sha: str | None,
    user: str = "jsmith",
    ref_protected: bool = True,
    default_branch: str = "master",
) -> dict[str, Any]:
    """A "Tag Push Hook" body: a tag created (`before` zeros) or deleted (`after` zeros).

    `after` is the tag object (an annotated tag's own SHA), `checkout_sha` the commit it
    points to, null on deletion. `commits` is empty, as in the documented example.
    """
    return _push_body(
        kind="tag_push",
        project=project,
        project_id=project_id,
        ref=ref,
        before=before,
        after=after,
        checkout_sha=checkout_sha,
        user=user,
        commits=(),
        total_commits_count=0,
        ref_protected=ref_protected,
        default_branch=default_branch,
    )


def merge_request(
    *,
    action: str,
    iid: int = 1,
    project: str = "demo/voting-app",
    project_id: int = 15,
    source_branch: str = "ms-viewport",
    target_branch: str = "master",
    last_commit: str,
    oldrev: str | None = None,
    state: str | None = None,
    user: str = "jsmith",
    changes: dict[str, Any] | None = None,
    title: str = "MS-Viewport",
    draft: bool = False,
    labels: Sequence[str] = ("API",),
    source_project: str | None = None,
    source_project_id: int | None = None,
    default_branch: str = "master",
) -> dict[str, Any]:
    """A "Merge Request Hook" body: merge request `iid` of `project`, `action` done by `user`.

    `last_commit` is the source branch's head. `oldrev` (the previous head) is sent only
    when the update brought new commits. `state` defaults from the action: "closed" for
    close, "merged" for merge, "opened" otherwise. `changes` defaults to what GitLab
    reports for the action: the state for close/reopen/merge, a labels edit for an
    update without new commits, nothing otherwise. `source_project` and
    `source_project_id` describe a fork (default: `project` itself).
    """
    if state is None:
        state = _ACTION_STATES.get(action, "opened")
    if changes is None:
        changes = _default_changes(action, oldrev, labels, project_id)
    target = _project(project, project_id, default_branch)
    source = (
        target
        if source_project is None and source_project_id is None
        else _project(
            source_project or project,
            project_id if source_project_id is None else source_project_id,
            default_branch,
        )
    )
    label_objects = _labels(labels, project_id)
    full_title = f"Draft: {title}" if draft else title
    attributes: dict[str, Any] = {
        "id": project_id * 1000 + iid,
        "iid": iid,
        "target_branch": target_branch,
        "source_branch": source_branch,
        "source_project_id": source["id"],
        "author_id": _user_id(user),
        "assignee_ids": [6],
        "assignee_id": 6,
        "reviewer_ids": [6],
        "title": full_title,
        "created_at": _CREATED_AT,
        "updated_at": _UPDATED_AT,
        "last_edited_at": _UPDATED_AT,
        "last_edited_by_id": _user_id(user),
        "milestone_id": None,
        "state_id": _STATE_IDS.get(state, 1),
        "state": state,
        "blocking_discussions_resolved": True,
        "work_in_progress": draft,
        "draft": draft,
        "first_contribution": True,
        "merge_status": "unchecked" if state == "opened" else "can_be_merged",
        "target_project_id": project_id,
        "description": "",
        "prepared_at": "2013-12-03T19:23:34Z",
        "total_time_spent": 1800,
        "time_change": 30,
        "human_total_time_spent": "30m",
        "human_time_change": "30s",
        "human_time_estimate": "30m",
        "url": f"{target['web_url']}/-/merge_requests/{iid}",
        "source": source,
        "target": target,
        "last_commit": {
            "id": last_commit,
            "message": f"Update {source_branch}\n",
            "title": f"Update {source_branch}",
            "timestamp": "2012-01-03T23:36:29+02:00",
            "url": f"{source['web_url']}/-/commit/{last_commit}",
            "author": {"name": _display_name(user), "email": _email(user)},
        },
        "labels": label_objects,
        "action": action,
        "detailed_merge_status": "mergeable" if state == "opened" else "not_open",
    }
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    reviewer = {
        "id": 6,
        "name": "User1",
        "username": "user1",
        "avatar_url": _avatar("user1"),
    }
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {
            "id": _user_id(user),
            "name": _display_name(user),
            "username": user,
            "avatar_url": _avatar(user),
            "email": _email(user),
        },
        "project": target,
        "repository": {
            "name": target["name"],
            "url": target["url"],
            "description": target["description"],
            "homepage": target["homepage"],
        },
        "object_attributes": attributes,
        "labels": label_objects,
        "changes": changes,
        "assignees": [dict(reviewer)],
        "reviewers": [dict(reviewer)],
    }


def _push_body(
    *,
    kind: str,
    project: str,
    project_id: int,
    ref: str,
    before: str,
    after: str,
    checkout_sha: str | None,
    user: str,
    commits: Sequence[str] | None,
    total_commits_count: int | None,
    ref_protected: bool,
    default_branch: str,
) -> dict[str, Any]:
    attrs = _project(project, project_id, default_branch)
    if commits is None:
        commits = [] if after == ZERO_SHA else [after]
    if total_commits_count is None:
        total_commits_count = len(commits)
    return {
        "object_kind": kind,
        "event_name": kind,
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": ref_protected,
        "checkout_sha": checkout_sha,
        "user_id": _user_id(user),
        "user_name": _display_name(user),
        "user_username": user,
        "user_email": _email(user),
        "user_avatar": _avatar(user),
        "project_id": project_id,
        "project": attrs,
        "repository": {
            "name": attrs["name"],
            "url": attrs["url"],
            "description": attrs["description"],
            "homepage": attrs["homepage"],
            "git_http_url": attrs["git_http_url"],
            "git_ssh_url": attrs["git_ssh_url"],
            "visibility_level": attrs["visibility_level"],
        },
        "commits": [_commit(attrs["web_url"], sha, user) for sha in commits[-20:]],
        "total_commits_count": total_commits_count,
    }


def _project(path: str, project_id: int, default_branch: str) -> dict[str, Any]:
    """`Project#hook_attrs`: the `project`, `source` and `target` objects."""
    namespace, _, name = path.rpartition("/")
    web_url = f"{GITLAB_URL}/{path}"
    ssh_url = f"git@{GITLAB_HOST}:{path}.git"
    http_url = f"{web_url}.git"
    return {
        "id": project_id,
        "name": name,
        "description": "",
        "web_url": web_url,
        "avatar_url": None,
        "git_ssh_url": ssh_url,
        "git_http_url": http_url,
        "namespace": namespace.rpartition("/")[2].title(),
        "visibility_level": 0,
        "path_with_namespace": path,
        "default_branch": default_branch,
        "ci_config_path": None,
        "homepage": web_url,
        "url": ssh_url,
        "ssh_url": ssh_url,
        "http_url": http_url,
    }


def _commit(web_url: str, sha: str, user: str) -> dict[str, Any]:
    title = f"Change {sha[:8]}"
    return {
        "id": sha,
        "message": f"{title}\n\nSee {GITLAB_URL} for more information",
        "title": title,
        "timestamp": "2012-01-03T23:36:29+02:00",
        "url": f"{web_url}/-/commit/{sha}",
        "author": {"name": _display_name(user), "email": _email(user)},
        "added": ["CHANGELOG"],
        "modified": ["app/controller/application.rb"],
        "removed": [],
    }


def _labels(titles: Sequence[str], project_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": 206 + n,
            "title": title,
            "color": "#ffffff",
            "project_id": project_id,
            "created_at": "2013-12-03T17:15:43Z",
            "updated_at": "2013-12-03T17:15:43Z",
            "template": False,
            "description": f"{title} related issues",
            "type": "ProjectLabel",
            "group_id": 41,
        }
        for n, title in enumerate(titles)
    ]


def _default_changes(
    action: str, oldrev: str | None, labels: Sequence[str], project_id: int
) -> dict[str, Any]:
    updated_at = {"previous": _CHANGED_FROM, "current": _CHANGED_TO}
    state_ids = {"close": (1, 2), "reopen": (2, 1), "merge": (1, 3)}
    if action in state_ids:
        previous, current = state_ids[action]
        return {
            "state_id": {"previous": previous, "current": current},
            "updated_at": updated_at,
        }
    if action == "update" and oldrev is None:
        return {
            "updated_by_id": {"previous": None, "current": 1},
            "updated_at": updated_at,
            "labels": {"previous": [], "current": _labels(labels, project_id)},
        }
    return {}


def _user_id(username: str) -> int:
    return 4 if username == "jsmith" else crc32(username.encode()) % 100_000 + 1


def _display_name(username: str) -> str:
    return _KNOWN_USERS.get(username, username.replace(".", " ").title())


def _email(username: str) -> str:
    return f"{username}@example.com"


def _avatar(username: str) -> str:
    digest = sha256(_email(username).encode()).hexdigest()
    return f"https://www.gravatar.com/avatar/{digest}?s=80&d=identicon"
