"""Demo on-prem SCIM target (Jira-like), SCIM 1.1 under /scim/v1 and 2.0 under /scim/v2, and the same
for each tenant under /t/{tenant}/scim/v1|v2 (a store per tenant).

See README.md in this directory. Entry points: ``python -m demo_scim_target``,
``demo_scim_target.app.create_app``, ``demo_scim_target.process.start_target``,
``demo_scim_target.admin_client.TargetAdmin``.
"""
