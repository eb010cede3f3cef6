"""Writes a copy of the OpenAPI document for openapi-python-client, as JSON.

openapi-python-client has no support for non-JSON request bodies (`POST /v2/packages`
takes `application/yaml` besides `application/json`): it warns about them. This drops
every request-body content type that is not JSON, and any operation left without a body
type, so the generator can run with `--fail-on-warning` and a new warning means a new
problem in the document. Everything dropped is printed to stderr.

usage: python filter_spec.py IN.yaml OUT.json
(ruamel.yaml is a dependency of openapi-python-client, so the generator's venv has it.)
"""

import json
import sys

from ruamel.yaml import YAML

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def is_json(media_type: str) -> bool:
    media_type = media_type.split(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = YAML(typ="safe").load(f)
    for path, item in (doc.get("paths") or {}).items():
        for method in [m for m in item if m in METHODS]:
            body = item[method].get("requestBody")
            if not body or "content" not in body:
                continue
            dropped = [t for t in body["content"] if not is_json(t)]
            for media_type in dropped:
                del body["content"][media_type]
                print(
                    f"filter_spec: {method.upper()} {path}: dropped request body type {media_type}",
                    file=sys.stderr,
                )
            if not body["content"]:
                del item[method]
                print(
                    f"filter_spec: {method.upper()} {path}: dropped (no JSON request body)",
                    file=sys.stderr,
                )
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
