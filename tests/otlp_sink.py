"""A local OTLP/HTTP trace receiver for the benchmark: it accepts every export (protobuf or JSON), counts the spans
and answers 200, as a collector in front of Jaeger would; ``GET /stats`` returns the counts. Run as its own process so
that its CPU is counted apart: ``python -m tests.otlp_sink --port 4318``."""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

COUNTS = {"exports": 0, "spans": 0, "bytes": 0}
DUMP: list = []  # with --dump FILE: each span as a JSON line (service, name, start and end in epoch seconds)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        COUNTS["exports"] += 1
        COUNTS["bytes"] += len(body)
        COUNTS["spans"] += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        if DUMP:
            _dump(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        payload = json.dumps(COUNTS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:  # quiet
        pass


def _dump(request: ExportTraceServiceRequest) -> None:
    lines = []
    for rs in request.resource_spans:
        service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
        for ss in rs.scope_spans:
            for span in ss.spans:
                lines.append(json.dumps({"service": service, "name": span.name, "trace": span.trace_id.hex(),
                                         "start": span.start_time_unix_nano / 1e9,
                                         "end": span.end_time_unix_nano / 1e9}))
    DUMP[0].write("\n".join(lines) + "\n")
    DUMP[0].flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dump", help="write every span's service, name, trace and times to this file")
    args = parser.parse_args()
    if args.dump:
        DUMP.append(open(args.dump, "a", buffering=1 << 20))  # noqa: SIM115 - open for the process's life
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
