from okta_bridge.entry import quiet_collector

from .cli import main

quiet_collector()  # as the services do: the simulator's pauses would show in the benchmark's latencies
main()
