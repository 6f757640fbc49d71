from bridge_console.main import main
from okta_bridge.entry import run_service

run_service("console", main)
