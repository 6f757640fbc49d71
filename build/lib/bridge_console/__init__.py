"""The operator console: a small web service of its own (``python -m bridge_console``) with server-rendered pages.

Pages: the apps at a glance and one page per app (health, pool backlog, error rate, last success, circuit, guard
with release/discard), the audit log with filters, one change's timeline with a link to its trace, dead letters with
replay, and preview / provision-on-demand for one user. Sign-in with Okta (OIDC authorization code with PKCE; roles
from a group claim) or with a static token of ``API_TOKENS`` (the audit API's model and names). Every action is a
form post with a CSRF token, checked against the session; preview and provision are rate-limited against the Okta
budget. Settings: :class:`console.settings.ConsoleSettings` (``CONSOLE_*``), plus the services' own (RabbitMQ as
its own broker user ``bridge-console``, MongoDB, Okta read credentials, the connectors file and the targets' secrets
for a preview's reads).
"""
