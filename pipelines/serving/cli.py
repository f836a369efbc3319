"""``local-endpoint``: start, list, stop and invoke local endpoints (SageMaker's inference contract on
127.0.0.1), kept under the local home (``$MLOPS_LOCAL_HOME``).

Errors are one ``Error:`` line; exit codes: 1 the endpoint failed or refused, 2 bad input, 4 not found.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines import _cli
from pipelines.errors import UsageError
from pipelines.local_home import ACCOUNTS
from pipelines.serving.endpoints import HOST, IN_SERVICE, EndpointError, LocalEndpoints

REQUEST_TIMEOUT_S = 60  # SageMaker's limit for one invocation


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.ArgumentParser(
        prog="local-endpoint",
        description="Start, list, stop and invoke local endpoints that speak SageMaker's inference contract.",
        epilog="Exit codes: 0 done, 1 the endpoint failed or refused, 2 bad input, 4 no such endpoint/model.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub = commands.add_parser(
        "start", help="serve a model.tar.gz (replacing a running endpoint of that name)"
    )
    sub.add_argument("name", help="letters, digits and '-', up to 63 characters")
    sub.add_argument(
        "--model-data-url", required=True, help="s3:// URI in the local object store, or a model.tar.gz path"
    )
    sub.add_argument("--port", required=True, type=int, help="port on 127.0.0.1")
    sub.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the server (repeatable)",
    )

    sub = commands.add_parser("list", help="list the endpoints with their live status")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub = commands.add_parser("describe", help="print one endpoint as JSON")
    sub.add_argument("name")

    sub = commands.add_parser("stop", help="stop an endpoint (stopping a stopped one does nothing)")
    sub.add_argument("name")

    sub = commands.add_parser("invoke", help="POST one request to /invocations and print the answer")
    sub.add_argument("name")
    body = sub.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="the request body, e.g. '1,2,3'")
    body.add_argument("--body-file", type=Path, help="a file holding the request body")
    sub.add_argument("--content-type", default="text/csv", help="default text/csv")
    sub.add_argument("--accept", default=None, help="response type (default: the endpoint's default)")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return _COMMANDS[args.command](LocalEndpoints(), args)


def _start(endpoints: LocalEndpoints, args) -> int:
    environment = {}
    for item in args.env:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UsageError(f"--env {item!r} is not NAME=VALUE")
        environment[name] = value
    endpoint = endpoints.start(args.name, args.model_data_url, args.port, environment=environment)
    print(f"{endpoint.name}: {endpoint.status} at {endpoint.url} (pid {endpoint.pid}, log {endpoint.log})")
    return 0


def _list(endpoints: LocalEndpoints, args) -> int:
    # This home's endpoints, then those promote started, one namespace per stage account.
    namespaces = [(None, endpoints)]
    accounts = endpoints.home / ACCOUNTS
    if accounts.is_dir():
        namespaces += [
            (path.name, LocalEndpoints(path)) for path in sorted(accounts.iterdir()) if path.is_dir()
        ]
    found = [(account, endpoint) for account, namespace in namespaces for endpoint in namespace.list()]
    if args.json:
        print(json.dumps([{**e.to_dict(), "account": account} for account, e in found], indent=2))
    elif not found:
        print(f"No local endpoints under {endpoints.root} or {accounts}.")
    else:
        rows = [("NAME", "STATUS", "URL", "STARTED", "MODEL DATA")] + [
            (f"{account}/{e.name}" if account else e.name, e.status, e.url, e.started_at, e.model_data_url)
            for account, e in found
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _describe(endpoints: LocalEndpoints, args) -> int:
    print(json.dumps(endpoints.get(args.name).to_dict(), indent=2))
    return 0


def _stop(endpoints: LocalEndpoints, args) -> int:
    endpoint = endpoints.stop(args.name)
    print(f"{endpoint.name}: {endpoint.status}")
    return 0


def _invoke(endpoints: LocalEndpoints, args) -> int:
    endpoint = endpoints.get(args.name)
    if endpoint.status != IN_SERVICE:
        raise EndpointError(
            f"endpoint {endpoint.name!r} is {endpoint.status}, not {IN_SERVICE}; start it with: "
            f"local-endpoint start {endpoint.name} --model-data-url ... --port {endpoint.port}"
        )
    if args.body_file is not None:
        try:
            body = args.body_file.read_bytes()
        except OSError as err:
            raise UsageError(f"--body-file {str(args.body_file)!r}: {err.strerror}") from None
    else:
        body = args.body.encode("utf-8")
    headers = {"Content-Type": args.content_type}
    if args.accept:
        headers["Accept"] = args.accept
    # Always 127.0.0.1 and the recorded port: the address never comes from input.
    connection = http.client.HTTPConnection(HOST, endpoint.port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        status, answer = response.status, response.read().decode("utf-8", "replace")
    except OSError as err:
        raise EndpointError(
            f"endpoint {endpoint.name!r} at {endpoint.url} did not answer ({err}); see its log {endpoint.log}"
        ) from None
    finally:
        connection.close()
    if status != 200:
        raise EndpointError(f"endpoint {endpoint.name!r} answered {status}: {answer.strip()}")
    sys.stdout.write(answer if answer.endswith("\n") else answer + "\n")
    return 0


_COMMANDS = {"start": _start, "list": _list, "describe": _describe, "stop": _stop, "invoke": _invoke}


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
