"""The operator's connector test, against a real demo target process."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_test_connectors_reports_each_app(stack):
    stack.start_fixtures()
    good = {"okta_app_id": "0oagoodxxxxxxxxxxxxx", "name": "jira", "base_url": f"{stack.target_url}/scim/v1/",
            "auth": {"type": "header", "value_env": "DEMO_TARGET_TOKEN", "value_prefix": "Bearer "}}
    v2 = {**good, "okta_app_id": "0oav2xxxxxxxxxxxxxxx", "name": "confluence", "base_url": f"{stack.target_url}/scim/v2/"}
    bad = {**good, "okta_app_id": "0oabadxxxxxxxxxxxxxx", "name": "wrongtoken",
           "auth": {"type": "header", "value_env": "WRONG_TOKEN", "value_prefix": "Bearer "}}
    path = stack.write_connectors([good, v2, bad])
    env = {**stack.service_env("cli"), "WRONG_TOKEN": "not-the-token", "COLUMNS": "220"}
    run = subprocess.run([sys.executable, "-m", "scim_dispatcher.cli", "test-connectors", "--connectors-file",
                          str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any("jira" in l and "ok" in l for l in lines)
    assert any("confluence" in l and "2.0" in l and "ok" in l for l in lines)
    assert any("wrongtoken" in l and "401" in l for l in lines)
    assert "not-the-token" not in run.stdout + run.stderr
