from audit_recorder.main import main
from okta_bridge.entry import run_service

run_service("audit-recorder", main)
