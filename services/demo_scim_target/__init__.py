"""Demo on-prem SCIM target (Jira-like), SCIM 1.1 under /scim/v1 and 2.0 under /scim/v2.

See README.md in this directory. Entry points: ``python -m demo_scim_target``,
``demo_scim_target.app.create_app``, ``demo_scim_target.process.start_target``,
``demo_scim_target.admin_client.TargetAdmin``.
"""
