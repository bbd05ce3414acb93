"""The role model of SPEC §1: the full role × action matrix, role parsing and ``authorize``."""

from __future__ import annotations

import pytest

from mlgrid.auth.roles import Action, Principal, Role, authorize, parse_role, role_allows, roles_allowing
from mlgrid.errors import Forbidden, InvalidField

A = Action
READS = {A.READ, A.READ_ROLES, A.READ_SUBSCRIPTIONS, A.READ_EVENTS}
MANAGEMENT = {
    A.WRITE,
    A.DELETE,
    A.MANAGE_SUBSCRIPTIONS,
    A.LIST_KEYS,
    A.REGENERATE_KEY,
    A.READ_SECRETS,
    A.SCORE,
    A.RUN_CODE,  # jobs and deployments run code on the host (contained): Owner and Contributor
}
DATA = {A.PUBLISH, A.RECEIVE}

# Written out by hand from the spec, independently of the module's own table.
EXPECTED: dict[Role, set[Action]] = {
    Role.OWNER: READS | MANAGEMENT | DATA | {A.MANAGE_ROLES},
    Role.CONTRIBUTOR: READS | MANAGEMENT | DATA,
    Role.READER: READS | {A.RECEIVE},
    Role.DATA_SENDER: {A.PUBLISH},
    Role.DATA_RECEIVER: {A.RECEIVE},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_role_matrix(role: Role, action: Action) -> None:
    assert role_allows(role, action) is (action in EXPECTED[role])


def test_spec_statements() -> None:
    assert role_allows(Role.OWNER, A.MANAGE_ROLES)
    assert not role_allows(Role.CONTRIBUTOR, A.MANAGE_ROLES)
    assert role_allows(Role.CONTRIBUTOR, A.MANAGE_SUBSCRIPTIONS)
    assert not role_allows(Role.READER, A.MANAGE_SUBSCRIPTIONS)
    assert role_allows(Role.CONTRIBUTOR, A.READ_SECRETS)  # getFullUrl "to Contributors"
    assert not role_allows(Role.READER, A.READ_SECRETS)
    assert role_allows(Role.READER, A.RECEIVE)  # §7: "DataReceiver (or Reader and above)"
    assert not role_allows(Role.DATA_SENDER, A.RECEIVE)
    assert not role_allows(Role.DATA_RECEIVER, A.PUBLISH)
    assert not role_allows(Role.DATA_SENDER, A.READ)
    assert not any(role_allows(role, A.MANAGE_PRINCIPALS) for role in Role)


def test_roles_allowing() -> None:
    assert roles_allowing(A.PUBLISH) == (Role.OWNER, Role.CONTRIBUTOR, Role.DATA_SENDER)
    assert roles_allowing(A.MANAGE_ROLES) == (Role.OWNER,)
    assert roles_allowing(A.MANAGE_PRINCIPALS) == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Owner", Role.OWNER),
        ("owner", Role.OWNER),
        ("CONTRIBUTOR", Role.CONTRIBUTOR),
        ("reader", Role.READER),
        ("DataSender", Role.DATA_SENDER),
        ("datareceiver", Role.DATA_RECEIVER),
        ("Data Receiver", Role.DATA_RECEIVER),
        ("EventGrid Data Sender", Role.DATA_SENDER),
        (" Reader ", Role.READER),
    ],
)
def test_parse_role(value: str, expected: Role) -> None:
    assert parse_role(value, "role") is expected


@pytest.mark.parametrize("value", ["Admin", "", "Owners", None, 3, ["Owner"]])
def test_parse_role_refuses_and_names_the_field(value: object) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_role(value, "role")
    assert caught.value.field_name == "role"
    assert caught.value.status == 400
    assert "role" in caught.value.message
    assert "Owner, Contributor, Reader, DataSender, DataReceiver" in caught.value.message


def test_parse_role_default_field_is_role() -> None:
    with pytest.raises(InvalidField) as caught:
        parse_role("nope")
    assert caught.value.field_name == "role"


def test_role_values_are_the_api_spelling() -> None:
    assert [role.value for role in Role] == ["Owner", "Contributor", "Reader", "DataSender", "DataReceiver"]


def test_admin_may_do_everything_without_assignments() -> None:
    admin = Principal("admin", is_admin=True)
    for action in Action:
        authorize(admin, [], action, "/topics/t1")


def test_authorize_allows_when_any_role_grants() -> None:
    alice = Principal("alice")
    authorize(alice, [Role.DATA_SENDER], A.PUBLISH, "/topics/t1")
    authorize(alice, iter([Role.READER, Role.CONTRIBUTOR]), A.MANAGE_SUBSCRIPTIONS, "/topics/t1")


def test_forbidden_names_principal_action_resource_and_roles() -> None:
    with pytest.raises(Forbidden) as caught:
        authorize(Principal("bob"), [Role.READER], A.PUBLISH, "/topics/t1")
    error = caught.value
    assert error.status == 403
    assert error.code == "Forbidden"
    for part in ("'bob'", "publish", "/topics/t1", "Owner, Contributor or DataSender", "has Reader"):
        assert part in error.message


def test_forbidden_without_any_role() -> None:
    with pytest.raises(Forbidden, match="has no role"):
        authorize(Principal("carol"), [], A.READ, "/workspaces/ws1")


def test_forbidden_without_resource_name() -> None:
    with pytest.raises(Forbidden, match="this resource"):
        authorize(Principal("carol"), [Role.READER], A.DELETE)


def test_principals_are_admin_only() -> None:
    with pytest.raises(Forbidden, match="only the admin principal"):
        authorize(Principal("owner"), [Role.OWNER], A.MANAGE_PRINCIPALS)


def test_principal_is_frozen() -> None:
    principal = Principal("alice")
    assert principal.is_admin is False
    with pytest.raises(AttributeError):
        principal.name = "mallory"  # type: ignore[misc]
