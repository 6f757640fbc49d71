"""``map_user``: the connector's attribute mappings applied to an Okta user (mapping.py; brief section 2)."""

from __future__ import annotations

from typing import Any

from tests.unit.fakes import app_connector
from translator.mapping import map_user

DEPARTMENT = "urn:okta:jira:1.0:user:department"


def user(**profile: Any) -> dict[str, Any]:
    base = {"login": "ann@acme.com", "email": "ann.example@acme.com", "firstName": "Ann", "lastName": "Example",
            "displayName": "Ann Example", "locale": "en_US", "department": "Eng"}
    return {"id": "00u1", "status": "ACTIVE", "profile": {**base, **profile}}


def as_dict(attrs) -> dict[str, Any]:
    return {a.path: a.value for a in attrs}


def test_default_mappings():
    attrs, unique = map_user(app_connector(), user(), "ann.app")
    assert as_dict(attrs) == {
        "userName": "ann.app",
        "name.givenName": "Ann",
        "name.familyName": "Example",
        "emails": [{"value": "ann.example@acme.com", "type": "work", "primary": True}],
        "displayName": "Ann Example",
        "locale": "en_US",
        "externalId": "00u1",
    }
    assert unique == "ann.app"


def test_user_name_falls_back_to_the_okta_login_without_an_app_username():
    attrs, unique = map_user(app_connector(), user(), None)
    assert as_dict(attrs)["userName"] == "ann@acme.com"
    assert unique == "ann@acme.com"


def test_custom_attribute_from_the_profile():
    app = app_connector(attribute_mappings={DEPARTMENT: "profile.department"})
    attrs, _ = map_user(app, user(department="Platform"), "ann.app")
    assert as_dict(attrs)[DEPARTMENT] == "Platform"


def test_app_profile_source():
    app = app_connector(attribute_mappings={"title": "appProfile.title"})
    attrs, _ = map_user(app, user(), "ann.app", {"title": "Engineer"})
    assert as_dict(attrs)["title"] == "Engineer"
    attrs, _ = map_user(app, user(), "ann.app")
    assert "title" not in as_dict(attrs)


def test_a_mapping_removed_with_null_is_not_sent():
    app = app_connector(attribute_mappings={"locale": None, "displayName": None})
    attrs, _ = map_user(app, user(), "ann.app")
    assert "locale" not in as_dict(attrs) and "displayName" not in as_dict(attrs)
    assert "userName" in as_dict(attrs)


def test_a_source_missing_in_okta_leaves_the_attribute_out():
    profile_without_locale = user()
    del profile_without_locale["profile"]["locale"]
    attrs, _ = map_user(app_connector(), profile_without_locale, "ann.app")
    assert "locale" not in as_dict(attrs)
    assert all(a.value is not None for a in attrs)


def test_an_overridden_default_takes_the_new_source():
    app = app_connector(attribute_mappings={"userName": "profile.email"})
    attrs, unique = map_user(app, user(), "ann.app")
    assert as_dict(attrs)["userName"] == "ann.example@acme.com"
    assert unique == "ann.example@acme.com"


def test_unique_value_for_emails_is_the_address_not_the_list():
    app = app_connector(unique_user_field="emails")
    _, unique = map_user(app, user(), "ann.app")
    assert unique == "ann.example@acme.com"


def test_unique_value_falls_back_when_the_unique_attribute_is_not_mapped():
    app = app_connector(attribute_mappings={"userName": None})
    _, unique = map_user(app, user(), None)
    assert unique == "ann@acme.com"
    _, unique = map_user(app, {"id": "00u9", "profile": {}}, None)
    assert unique == "00u9"


def test_deleted_user_stub_still_gives_a_lookup_value():
    attrs, unique = map_user(app_connector(), {"id": "00u1", "profile": {}}, "ann.app")
    assert unique == "ann.app"
    assert as_dict(attrs) == {"userName": "ann.app", "externalId": "00u1"}
