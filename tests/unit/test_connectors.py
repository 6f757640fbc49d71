"""The connectors file: defaults, SCIM version from the base URL, auth from env vars, mappings, and errors that
name the entry and the field but never a secret."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from okta_bridge.connectors import DEFAULT_MAPPINGS, ConnectorsFileError, load_connectors

SECRET = "sup3r-s3cret-t0ken-value"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connectors.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def one_app(tmp_path: Path, extra: str = "", *, base_url: str = "https://jira.lan/scim/v2/",
            auth: str = "{type: none}") -> Path:
    entry = f"okta_app_id: 0oa1jiraxxxxxxxxxxxx\nname: jira\nbase_url: {base_url}\nauth: {auth}\n" + textwrap.dedent(extra)
    body = textwrap.indent(entry.strip("\n"), "    ").replace("    ", "  - ", 1)
    return write(tmp_path, "apps:\n" + body + "\n")


def failure(path: Path) -> str:
    with pytest.raises(ConnectorsFileError) as info:
        load_connectors(path)
    return str(info.value)


def test_defaults_mirror_oktas_connector_form(tmp_path):
    app = load_connectors(one_app(tmp_path)).apps[0]
    assert app.unique_user_field == "userName"
    assert app.timeout_s == 30.0
    assert app.pool == "default"
    assert app.suspended == "ignore"  # Okta's SCIM 1.1 and 2.0 pages: no deprovisioning for suspended users
    assert app.deactivate_with == "PUT"
    assert (app.actions.create_users, app.actions.update_users, app.actions.deactivate_users) == (True, True, True)
    assert app.actions.push_pending_users is False
    assert app.password_on_create == "random"  # Okta's client sends a random password on create
    assert (app.content_type, app.send_if_match, app.max_response_bytes) == (None, True, 32 * 1024 * 1024)
    assert app.mappings == DEFAULT_MAPPINGS
    assert app.auth_headers() == {}


@pytest.mark.parametrize(("base_url", "version"), [
    ("https://jira.lan/scim/v1/", "1.1"),
    ("https://jira.lan/scim/v1", "1.1"),
    ("https://jira.lan/scim/v2/", "2.0"),
    ("https://jira.lan/scim/v2", "2.0"),
    ("https://jira.lan/scim/", "1.1"),
    ("https://jira.lan:8080/api", "1.1"),
    ("https://jira.lan/v2/scim/", "1.1"),  # only the end of the URL counts
])
def test_version_from_base_url_as_oktas_agent_reads_it(tmp_path, base_url, version):
    assert load_connectors(one_app(tmp_path, base_url=base_url)).apps[0].version == version


@pytest.mark.parametrize(("base_url", "override"), [("https://jira.lan/scim/v2/", "1.1"),
                                                    ("https://jira.lan/scim/v1/", "2.0"),
                                                    ("https://jira.lan/scim/", "2.0")])
def test_scim_version_overrides_the_url(tmp_path, base_url, override):
    path = one_app(tmp_path, f'scim_version: "{override}"', base_url=base_url)
    assert load_connectors(path).apps[0].version == override


def test_header_auth_reads_its_value_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JIRA_TOKEN", SECRET)
    path = one_app(tmp_path, auth="{type: header, value_env: JIRA_TOKEN, value_prefix: 'Bearer '}")
    assert load_connectors(path).apps[0].auth_headers() == {"Authorization": f"Bearer {SECRET}"}


def test_header_auth_with_a_custom_header_name(tmp_path, monkeypatch):
    monkeypatch.setenv("JIRA_KEY", SECRET)
    path = one_app(tmp_path, auth="{type: header, header_name: X-Api-Key, value_env: JIRA_KEY}")
    assert load_connectors(path).apps[0].auth_headers() == {"X-Api-Key": SECRET}


def test_basic_auth_reads_both_parts_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JIRA_USER", "svc-okta")
    monkeypatch.setenv("JIRA_PASS", SECRET)
    path = one_app(tmp_path, auth="{type: basic, username_env: JIRA_USER, password_env: JIRA_PASS}")
    header = load_connectors(path).apps[0].auth_headers()["Authorization"]
    assert header.startswith("Basic ")
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == f"svc-okta:{SECRET}"


def test_a_missing_env_var_fails_naming_the_variable_and_the_entry(tmp_path, monkeypatch):
    monkeypatch.delenv("JIRA_TOKEN_MISSING", raising=False)
    message = failure(one_app(tmp_path, auth="{type: header, value_env: JIRA_TOKEN_MISSING}"))
    assert "JIRA_TOKEN_MISSING" in message
    assert "apps[0] (jira)" in message


def test_a_missing_basic_password_var_never_prints_the_username_value(tmp_path, monkeypatch):
    monkeypatch.setenv("JIRA_USER", SECRET)
    monkeypatch.delenv("JIRA_PASS_MISSING", raising=False)
    message = failure(one_app(tmp_path, auth="{type: basic, username_env: JIRA_USER, password_env: JIRA_PASS_MISSING}"))
    assert "JIRA_PASS_MISSING" in message
    assert SECRET not in message


def test_no_secret_appears_when_another_field_of_the_entry_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("JIRA_TOKEN", SECRET)
    path = one_app(tmp_path, "timeout_s: -1\nbogus: 1", auth="{type: header, value_env: JIRA_TOKEN}")
    message = failure(path)
    assert "timeout_s" in message and "bogus" in message
    assert SECRET not in message


def test_unknown_auth_type_is_rejected_naming_the_field(tmp_path):
    message = failure(one_app(tmp_path, auth="{type: oauth}"))
    assert "apps[0] (jira)" in message and "auth" in message


def test_attribute_mappings_add_override_and_remove_defaults(tmp_path):
    path = one_app(tmp_path, """
        attribute_mappings:
          "urn:okta:jira:1.0:user:department": profile.department
          userName: profile.email
          locale: null""")
    mappings = load_connectors(path).apps[0].mappings
    assert mappings["urn:okta:jira:1.0:user:department"] == "profile.department"
    assert mappings["userName"] == "profile.email"
    assert "locale" not in mappings
    assert mappings["name.givenName"] == DEFAULT_MAPPINGS["name.givenName"]


@pytest.mark.parametrize(("mapping", "field"), [
    ("active: profile.x", "active"),
    ("password: profile.x", "password"),
    ("title: ldap.title", "title"),
])
def test_bad_mappings_fail_naming_the_entry_and_the_field(tmp_path, mapping, field):
    message = failure(one_app(tmp_path, f"attribute_mappings:\n  {mapping}"))
    assert "apps[0] (jira)" in message
    assert "attribute_mappings" in message and field in message


def test_error_names_the_second_entry_by_its_name(tmp_path):
    path = write(tmp_path, """
        apps:
          - {okta_app_id: 0oa1jiraxxxxxxxxxxxx, name: jira, base_url: "https://jira.lan/scim/v2/", auth: {type: none}}
          - {okta_app_id: 0oa2wikixxxxxxxxxxxx, name: wiki, base_url: "ftp://wiki.lan/scim/", auth: {type: none}}
        """)
    message = failure(path)
    assert "apps[1] (wiki)" in message
    assert "base_url" in message
    assert "apps[0]" not in message


def test_an_entry_that_is_not_a_mapping_fails_with_connectors_file_error(tmp_path):
    path = write(tmp_path, """
        apps:
          - {okta_app_id: 0oa1jiraxxxxxxxxxxxx, name: jira, base_url: "https://jira.lan/scim/v2/", auth: {type: none}}
          - just-a-string
        """)
    assert "apps[1]" in failure(path)


@pytest.mark.parametrize("field", ["okta_app_id", "name"])
def test_duplicates_are_rejected(tmp_path, field):
    second = {"okta_app_id": "0oa2wikixxxxxxxxxxxx", "name": "wiki"}
    second[field] = {"okta_app_id": "0oa1jiraxxxxxxxxxxxx", "name": "jira"}[field]
    path = write(tmp_path, f"""
        apps:
          - {{okta_app_id: 0oa1jiraxxxxxxxxxxxx, name: jira, base_url: "https://jira.lan/scim/v2/", auth: {{type: none}}}}
          - {{okta_app_id: {second['okta_app_id']}, name: {second['name']}, base_url: "https://w.lan/scim/v2/",
              auth: {{type: none}}}}
        """)
    message = failure(path)
    assert f"duplicate {field}" in message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "apps: [\n"])
def test_a_file_that_is_not_a_connectors_file_fails_cleanly(tmp_path, text):
    path = tmp_path / "connectors.yaml"
    path.write_text(text)
    with pytest.raises(ConnectorsFileError):
        load_connectors(path)


def test_a_missing_file_fails_cleanly(tmp_path):
    with pytest.raises(ConnectorsFileError, match="cannot read"):
        load_connectors(tmp_path / "nope.yaml")


def test_by_app_id_and_pools(tmp_path):
    path = write(tmp_path, """
        apps:
          - {okta_app_id: 0oa1jiraxxxxxxxxxxxx, name: jira, base_url: "https://jira.lan/scim/v2/", auth: {type: none}}
          - {okta_app_id: 0oa2wikixxxxxxxxxxxx, name: wiki, base_url: "https://wiki.lan/scim/", auth: {type: none}, pool: slow}
        """)
    file = load_connectors(path)
    assert set(file.by_app_id()) == {"0oa1jiraxxxxxxxxxxxx", "0oa2wikixxxxxxxxxxxx"}
    assert file.pool_names() == {"default", "slow"}


def test_connectors_are_frozen(tmp_path):
    app = load_connectors(one_app(tmp_path)).apps[0]
    with pytest.raises(Exception):
        app.name = "other"  # type: ignore[misc]


def test_a_secret_pasted_into_the_file_by_mistake_is_not_echoed(tmp_path):
    message = failure(one_app(tmp_path, auth=f"{{type: header, value_env: X, value: {SECRET}}}"))
    assert "value" in message
    assert SECRET not in message


@pytest.mark.parametrize(("old", "new"), [("true", "random"), ("false", "none")])
def test_the_deprecated_sync_password_is_read_as_password_on_create_with_a_warning(tmp_path, caplog, old, new):
    app = load_connectors(one_app(tmp_path, f"actions: {{sync_password: {old}}}\n")).apps[0]
    assert app.password_on_create == new
    assert f"actions.sync_password is deprecated; read as password_on_create: {new}" in caplog.text


def test_sync_password_contradicting_password_on_create_is_refused(tmp_path):
    message = failure(one_app(tmp_path, "actions: {sync_password: false}\npassword_on_create: random\n"))
    assert "apps[0] (jira)" in message and "contradicts password_on_create" in message


@pytest.mark.parametrize(("extra", "field"), [
    ("password_on_create: always\n", "password_on_create"),
    ("content_type: text/xml\n", "content_type"),
    ("max_response_mb: 0\n", "max_response_mb"),
])
def test_new_target_settings_are_checked(tmp_path, extra, field):
    assert f"apps[0] (jira): {field}:" in failure(one_app(tmp_path, extra))


def test_new_target_settings_are_read(tmp_path):
    extra = "password_on_create: none\ncontent_type: application/json\nsend_if_match: false\nmax_response_mb: 64\n"
    app = load_connectors(one_app(tmp_path, extra)).apps[0]
    assert (app.password_on_create, app.content_type, app.send_if_match) == ("none", "application/json", False)
    assert app.max_response_bytes == 64 * 1024 * 1024
