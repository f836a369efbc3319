"""``get-pipeline-definition``: print or write a pipeline's definition JSON, offline.

Needs no AWS account, credentials or network: the definition only refers to the code by its
content-addressed S3 keys; ``run-pipeline`` uploads the code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines import _cli


def build_definition(module_name: str, kwargs: dict) -> str:
    """The definition JSON of ``module.get_pipeline(**kwargs)``, as SageMaker receives it."""
    module = _cli.load_pipeline_module(module_name)
    _cli.check_kwargs(module.get_pipeline, kwargs)
    return module.get_pipeline(**kwargs).definition()


def _main(argv: Sequence[str] | None) -> int:
    parser = _cli.ArgumentParser(prog="get-pipeline-definition", description=__doc__.splitlines()[0])
    _cli.add_module_options(parser)
    parser.add_argument("--file-name", type=Path, help="write the definition to this file instead of stdout")
    args = parser.parse_args(argv)
    _cli.configure_logging(args.verbose)

    kwargs = _cli.parse_json(args.kwargs, "--kwargs", dict, '\'{"region": "us-east-1"}\'')
    definition = build_definition(args.module_name, kwargs)
    if args.file_name:
        _cli.write_atomically(args.file_name, definition, "--file-name")
        print(f"wrote {args.file_name}", file=sys.stderr)
    else:
        sys.stdout.write(definition + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
