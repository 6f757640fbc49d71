"""``bridgectl``: every operator command of the bridge under one roof (typer + rich).

Installed by the project (``[project.scripts]``); ``python -m bridgectl`` is the same. Every command takes ``--json``
(one JSON document on stdout instead of tables). Exit codes: **0** ok; **1** something is wrong or differs (drift
found, a connector not usable, a dead letter not replayed, an outcome not reached); **2** bad input or usage (an
unknown app or user, a malformed id, a missing ``--yes``, releasing a guard that is not set, a bad connectors file
or setting). Tracebacks never show local variables and mask secrets (:mod:`okta_bridge.entry`).
"""
