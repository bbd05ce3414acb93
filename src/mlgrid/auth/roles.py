"""The role model of SPEC §1 and the one check every guarded operation goes through.

Roles are assigned to a principal on a workspace or a topic. A workspace's assignments also
govern its system topic (``/systemTopics/{ws}``, ``/workspaces/{ws}/eventSubscriptions``); which
assignments apply to a request is for the caller to collect — this module only answers "may
someone holding these roles perform this action".

| action | Owner | Contributor | Reader | DataSender | DataReceiver |
|---|---|---|---|---|---|
| READ, READ_SUBSCRIPTIONS, READ_EVENTS, READ_ROLES | yes | yes | yes | | |
| WRITE, DELETE, MANAGE_SUBSCRIPTIONS, SCORE | yes | yes | | | |
| RUN_CODE | yes | yes | | | |
| LIST_KEYS, REGENERATE_KEY, READ_SECRETS | yes | yes | | | |
| MANAGE_ROLES | yes | | | | |
| PUBLISH | yes | yes | | yes | |
| RECEIVE | yes | yes | yes | | yes |
| MANAGE_PRINCIPALS | admin only | | | | |

Decisions where the spec or Azure leave room:

* **Contributor may list and regenerate keys** (``LIST_KEYS``, ``REGENERATE_KEY``). In Azure these
  are management actions (``Microsoft.EventGrid/topics/listKeys/action``) that the built-in
  Contributor role includes; holding a key is no more than Contributor can already do (it could
  add a subscription and read every event). Contributor also reads full webhook URLs
  (``READ_SECRETS``, for ``getFullUrl``), which the spec grants to Contributors explicitly.
* **Owner and Contributor may publish and receive.** Azure keeps data actions in separate
  "Data Sender/Receiver" roles, but the spec says Owner may do "everything on the resource" and
  Contributor everything but role assignments; a workspace owner who cannot publish to their
  own topic would be a surprise here.
* **Reader may receive** from pull subscriptions, because SPEC §7 allows "DataReceiver (or
  Reader and above)". Receiving acknowledges, i.e. consumes, events: grant Reader knowingly.
* **Reader may read role assignments** (as Azure's Reader reads ``roleAssignments``); only Owner
  changes them.
* **Scoring an endpoint** (``SCORE``) is a write-like action, as in Azure ML where Reader cannot
  call an online endpoint; Owner and Contributor may.
* **Replaying and redelivering** are subscription management (``MANAGE_SUBSCRIPTIONS``): they
  cause deliveries, which reading must never do.
* **Running code on the host** (``RUN_CODE``: submitting a job, deploying an endpoint — its
  pickled models and entry script run in the scoring process) is its own action, as Azure ML
  keeps it in the "AzureML Data Scientist" role apart from plain reads. Owner and Contributor
  hold it; the code runs contained (``workspace.processes``), so it reaches its own working
  copy and its run, not the server's secrets (``docs/security.md``).
* **Run tokens** (what a job gets as ``MLGRID_TOKEN``) hold no role: they read and write their
  own run only (``broker.access``).
* **Principals** are not resources anybody is assigned on; creating them is reserved to the
  admin principal (``MANAGE_PRINCIPALS`` is in no role).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from mlgrid.errors import Forbidden, invalid

ADMIN_PRINCIPAL_NAME = "admin"
"""The principal created on the first start of a data directory (token in ``admin.token``)."""


class Role(StrEnum):
    """A role a principal holds on a workspace or topic; the value is the API spelling."""

    OWNER = "Owner"
    CONTRIBUTOR = "Contributor"
    READER = "Reader"
    DATA_SENDER = "DataSender"
    DATA_RECEIVER = "DataReceiver"


class Action(StrEnum):
    """Something a request wants to do to a resource; each guarded route names exactly one."""

    READ = "read"
    """Read the resource: a topic's or workspace's properties; a workspace's runs, metrics,
    artifacts, models, endpoints, datasets, drift monitors and their runs."""
    WRITE = "write"
    """Create or change the resource or anything inside a workspace (runs, jobs, models,
    deployments, datasets, drift monitors and drift runs)."""
    DELETE = "delete"
    READ_ROLES = "readRoleAssignments"
    MANAGE_ROLES = "manageRoleAssignments"
    READ_SUBSCRIPTIONS = "readEventSubscriptions"
    """Read event subscriptions, their deliveries and dead letters."""
    MANAGE_SUBSCRIPTIONS = "manageEventSubscriptions"
    """Create, update, delete event subscriptions; redeliver dead letters; replay."""
    READ_EVENTS = "readEvents"
    """List the retained events of a topic."""
    PUBLISH = "publish"
    RECEIVE = "receive"
    """Receive, acknowledge, release, reject and renew locks on pull subscriptions."""
    LIST_KEYS = "listKeys"
    REGENERATE_KEY = "regenerateKey"
    READ_SECRETS = "readSecrets"
    """Read write-only values back, e.g. a subscription's full endpoint URL (``getFullUrl``)."""
    SCORE = "score"
    """Send a scoring request to a deployed endpoint."""
    RUN_CODE = "runCode"
    """Make the server run code: submit a job, deploy an endpoint (models and entry scripts)."""
    MANAGE_PRINCIPALS = "managePrincipals"
    """Create principals and issue their tokens (admin only)."""


_DESCRIPTIONS: dict[Action, str] = {
    Action.READ: "read",
    Action.WRITE: "change",
    Action.DELETE: "delete",
    Action.READ_ROLES: "read role assignments of",
    Action.MANAGE_ROLES: "change role assignments of",
    Action.READ_SUBSCRIPTIONS: "read event subscriptions of",
    Action.MANAGE_SUBSCRIPTIONS: "create, change or delete event subscriptions of",
    Action.READ_EVENTS: "read the events of",
    Action.PUBLISH: "publish events to",
    Action.RECEIVE: "receive events from",
    Action.LIST_KEYS: "list the keys of",
    Action.REGENERATE_KEY: "regenerate the keys of",
    Action.READ_SECRETS: "read secrets of",
    Action.SCORE: "score with",
    Action.RUN_CODE: "run code (jobs, deployments) in",
    Action.MANAGE_PRINCIPALS: "manage principals on",
}

_ADMIN_ONLY = frozenset({Action.MANAGE_PRINCIPALS})
_READ_ACTIONS = frozenset({Action.READ, Action.READ_ROLES, Action.READ_SUBSCRIPTIONS, Action.READ_EVENTS})
_OWNER_ACTIONS = frozenset(Action) - _ADMIN_ONLY

ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.OWNER: _OWNER_ACTIONS,
    Role.CONTRIBUTOR: _OWNER_ACTIONS - {Action.MANAGE_ROLES},
    Role.READER: _READ_ACTIONS | {Action.RECEIVE},
    Role.DATA_SENDER: frozenset({Action.PUBLISH}),
    Role.DATA_RECEIVER: frozenset({Action.RECEIVE}),
}
"""What each role may do; the table of the module docstring, as data."""

_ROLE_BY_NAME: dict[str, Role] = {role.value.lower(): role for role in Role} | {
    # Azure's built-in role names, so assignments copied from Azure docs work.
    "eventgriddatasender": Role.DATA_SENDER,
    "eventgriddatareceiver": Role.DATA_RECEIVER,
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a named holder of a bearer token; ``is_admin`` bypasses every role check.

    ``run_scope`` is set for a job's run token: (workspace key, run id), the only run it may
    read and write; such a principal holds no role anywhere."""

    name: str
    is_admin: bool = False
    run_scope: tuple[str, str] | None = None


def role_allows(role: Role, action: Action) -> bool:
    """Whether holding ``role`` is enough for ``action``."""
    return action in ROLE_ACTIONS[role]


def roles_allowing(action: Action) -> tuple[Role, ...]:
    """The roles that grant ``action``, in ``Role`` order (for messages and docs)."""
    return tuple(role for role in Role if role_allows(role, action))


def parse_role(value: object, field: str = "role") -> Role:
    """Read a role from a request body, ignoring case and spaces; ``InvalidField`` naming ``field``.

    Azure's built-in names ``EventGrid Data Sender`` and ``EventGrid Data Receiver`` are accepted
    as ``DataSender`` and ``DataReceiver``.
    """
    expected = ", ".join(role.value for role in Role)
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, one of {expected}")
    role = _ROLE_BY_NAME.get("".join(value.split()).lower())
    if role is None:
        raise invalid(field, f"{value[:64]!r} is not a role; expected one of {expected}")
    return role


def authorize(
    principal: Principal,
    assignments: Iterable[Role],
    action: Action,
    resource: str | None = None,
) -> None:
    """Allow ``action`` when the principal is the admin or one of its ``assignments`` grants it.

    ``assignments`` are the roles the principal holds on the resource (already collected by the
    caller, e.g. the workspace's assignments for its system topic). ``resource`` is the path used
    in the message (``/topics/t1``). Raises ``Forbidden`` (403) naming the principal, the action,
    the resource, the roles that would grant it and the ones held — enough to fix the assignment
    without reading the code.
    """
    if principal.is_admin:
        return
    held = tuple(dict.fromkeys(assignments))
    if any(role_allows(role, action) for role in held):
        return
    target = resource or "this resource"
    wanted = f"may not {_DESCRIPTIONS[action]} {target} (action {action.value})"
    needed = roles_allowing(action)
    if not needed:
        raise Forbidden(f"principal {principal.name!r} {wanted}: only the admin principal may")
    has = ", ".join(role.value for role in held) if held else "no role"
    raise Forbidden(
        f"principal {principal.name!r} {wanted}: that needs the role {_one_of(needed)}; it has {has} there"
    )


def _one_of(roles: tuple[Role, ...]) -> str:
    names = [role.value for role in roles]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
