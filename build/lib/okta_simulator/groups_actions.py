"""Groups, memberships and group-to-app assignments.

Assigning a group to an app makes Okta create a GROUP-scoped app user per member (each with an
`application.user_membership.add`), and remove it (`.remove`) when the member leaves, unless the user
is also assigned directly or by another group.
"""
from __future__ import annotations

from .apps_actions import get_app, membership_event
from .domain import Group, new_app_user
from .errors import not_found
from .events import app_target, group_target, user_target
from .ids import okta_id
from .push_mappings import push_group_update, remove_mappings_of_group
from .sim import Simulator
from .users_actions import get_user


def get_group(sim: Simulator, group_id: str) -> Group:
    group = sim.org.groups.get(group_id)
    if group is None:
        raise not_found("UserGroup", group_id)
    return group


def create_group(sim: Simulator, name: str, description: str = "") -> Group:
    now = sim.now()
    group = Group(okta_id("00g"), name, description, now, now)
    sim.org.groups[group.id] = group
    sim.record("group.lifecycle.create", [group_target(group)], "/api/v1/groups")
    return group


def update_group(sim: Simulator, group_id: str, name: str | None = None, description: str | None = None) -> Group:
    group = get_group(sim, group_id)
    group.name = name if name is not None else group.name
    group.description = description if description is not None else group.description
    group.last_updated = sim.now()
    sim.record("group.profile.update", [group_target(group)], f"/api/v1/groups/{group.id}")
    push_group_update(sim, group.id)
    return group


def delete_group(sim: Simulator, group_id: str) -> None:
    group = get_group(sim, group_id)
    for app_id in [a for a, groups in sim.org.app_groups.items() if group.id in groups]:
        unassign_group(sim, app_id, group.id)
    remove_mappings_of_group(sim, group.id)
    sim.record("group.lifecycle.delete", [group_target(group)], f"/api/v1/groups/{group.id}")
    del sim.org.groups[group.id]


def add_member(sim: Simulator, group_id: str, user_id: str) -> None:
    group, user = get_group(sim, group_id), get_user(sim, user_id)
    if user.id in group.members:
        return
    group.members.append(user.id)
    group.last_membership_updated = sim.now()
    uri = f"/api/v1/groups/{group.id}/users/{user.id}"
    sim.record("group.user_membership.add", [user_target(user), group_target(group)], uri)
    for app_id, groups in sim.org.app_groups.items():
        if group.id in groups:
            _grant(sim, app_id, user.id, group.id)


def remove_member(sim: Simulator, group_id: str, user_id: str) -> None:
    group, user = get_group(sim, group_id), get_user(sim, user_id)
    if user.id not in group.members:
        raise not_found("GroupMembership", user_id)
    group.members.remove(user.id)
    group.last_membership_updated = sim.now()
    uri = f"/api/v1/groups/{group.id}/users/{user.id}"
    sim.record("group.user_membership.remove", [user_target(user), group_target(group)], uri)
    for app_id, groups in sim.org.app_groups.items():
        if group.id in groups:
            _revoke(sim, app_id, user.id, group.id)


def assign_group(sim: Simulator, app_id: str, group_id: str) -> None:
    app, group = get_app(sim, app_id), get_group(sim, group_id)
    groups = sim.org.app_groups.setdefault(app.id, [])
    if group.id in groups:
        return
    groups.append(group.id)
    uri = f"/api/v1/apps/{app.id}/groups/{group.id}"
    sim.record("group.application_assignment.add", [app_target(app), group_target(group)], uri)
    for user_id in list(group.members):
        _grant(sim, app.id, user_id, group.id)


def unassign_group(sim: Simulator, app_id: str, group_id: str) -> None:
    app, group = get_app(sim, app_id), get_group(sim, group_id)
    groups = sim.org.app_groups.get(app.id, [])
    if group.id not in groups:
        raise not_found("ApplicationGroupAssignment", group_id)
    groups.remove(group.id)
    uri = f"/api/v1/apps/{app.id}/groups/{group.id}"
    sim.record("group.application_assignment.remove", [app_target(app), group_target(group)], uri)
    for user_id in list(group.members):
        _revoke(sim, app.id, user_id, group.id)


def _grant(sim: Simulator, app_id: str, user_id: str, group_id: str) -> None:
    au = sim.org.app_users.get((app_id, user_id))
    if au is None:
        user = sim.org.users[user_id]
        au = new_app_user(app_id, user, user.profile["login"], "GROUP", sim.now())
        sim.org.app_users[(app_id, user_id)] = au
        au.group_ids.add(group_id)
        membership_event(sim, "application.user_membership.add", au)
    au.group_ids.add(group_id)


def _revoke(sim: Simulator, app_id: str, user_id: str, group_id: str) -> None:
    au = sim.org.app_users.get((app_id, user_id))
    if au is None:
        return
    au.group_ids.discard(group_id)
    if au.scope == "GROUP" and not au.group_ids:
        membership_event(sim, "application.user_membership.remove", au)
        del sim.org.app_users[(app_id, user_id)]
