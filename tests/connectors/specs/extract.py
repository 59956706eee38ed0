"""Cut the excerpts the contract suite validates against out of the providers' full API descriptions.

    python tests/connectors/specs/extract.py BREVO_YML MAILCHIMP_JSON[.gz]

writes ``brevo-v3.excerpt.json`` and ``mailchimp-3.0.55.excerpt.json`` beside this file. Only the
operations below are kept (the ones syncd's connectors call and the simulators serve), with every
component they reference (the ``$ref`` closure), the servers and the security schemes. Keys that
only document (``description``, ``title``, ``example``, ``x-*``...) are dropped; nothing that a
validator reads is changed. The tests read the excerpts only, never the full files (see README.md).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent

BREVO_OPERATIONS = [
    ("/contacts", "get"),
    ("/contacts", "post"),
    ("/contacts/import", "post"),
    ("/contacts/lists", "get"),
    ("/contacts/lists", "post"),
    ("/contacts/lists/{listId}", "get"),
    ("/contacts/lists/{listId}/contacts", "get"),
    ("/contacts/lists/{listId}/contacts/add", "post"),
    ("/contacts/lists/{listId}/contacts/remove", "post"),
    ("/contacts/{identifier}", "get"),
    ("/contacts/{identifier}/campaignStats", "get"),
    ("/contacts/{identifier}", "put"),
    ("/contacts/{identifier}", "delete"),
    ("/processes/{processId}", "get"),
    ("/smtp/email", "post"),
    ("/webhooks", "get"),
    ("/webhooks", "post"),
    ("/webhooks/{webhookId}", "delete"),
]
MAILCHIMP_OPERATIONS = [
    ("/ping", "get"),
    ("/lists", "post"),
    ("/lists/{list_id}", "get"),
    ("/lists/{list_id}", "post"),
    ("/lists/{list_id}/members", "get"),
    ("/lists/{list_id}/members", "post"),
    ("/lists/{list_id}/members/{subscriber_hash}", "get"),
    ("/lists/{list_id}/members/{subscriber_hash}", "put"),
    ("/lists/{list_id}/members/{subscriber_hash}", "patch"),
    ("/lists/{list_id}/members/{subscriber_hash}", "delete"),
    ("/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent", "post"),
    ("/lists/{list_id}/segments", "get"),
    ("/lists/{list_id}/segments", "post"),
    ("/lists/{list_id}/segments/{segment_id}", "post"),
    ("/lists/{list_id}/tag-search", "get"),
    ("/lists/{list_id}/webhooks", "get"),
    ("/lists/{list_id}/webhooks", "post"),
    ("/lists/{list_id}/webhooks/{webhook_id}", "delete"),
]
# Documentation only: no validator reads them. (A schema's title names it when it is hoisted.)
DOC_KEYS = {"description", "title", "example", "examples", "externalDocs", "tags", "summary"}
# Values, not schemas: copied as they are.
VALUE_KEYS = {"default", "enum"}
# Keys under which a schema sits (a dict of schemas for "properties").
SCHEMA_KEYS = {"schema", "items", "additionalProperties", "not"}
SCHEMA_LIST_KEYS = {"allOf", "anyOf", "oneOf"}
# A repeated inline schema at least this long (compact JSON) is moved to components/schemas.
HOIST_MIN_CHARS = 400


def strip_docs(node: Any, *, names: bool = False, keep: frozenset[str] = frozenset()) -> Any:
    """``node`` without documentation keys. Under ``properties`` the keys are field names (a field
    may be called ``title``), so ``names`` keeps them all."""
    if isinstance(node, list):
        return [strip_docs(v, keep=keep) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if not names and key not in keep and (key in DOC_KEYS or key.startswith("x-")):
            continue
        if not names and key in VALUE_KEYS:
            out[key] = value
            continue
        if key == "responses" and isinstance(value, dict):
            out[key] = {code: _response(r, keep) for code, r in value.items()}
            continue
        named = key in ("properties", "paths", "content", "schemas")
        out[key] = strip_docs(value, names=named, keep=keep)
    return out


def _response(response: dict, keep: frozenset[str]) -> dict:
    # A Response object must have a description (OpenAPI 3.0): it stays.
    kept = {"description": response["description"]} if "description" in response else {}
    return {**kept, **strip_docs(response, keep=keep)}


def schema_slots(node: Any, in_schema: bool = False) -> Any:
    """(container, key) of every schema below ``node``, deepest first."""
    if isinstance(node, list):
        for v in node:
            yield from schema_slots(v)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in VALUE_KEYS:
            continue
        if key in SCHEMA_KEYS and isinstance(value, dict):
            yield from schema_slots(value, True)
            yield node, key
        elif key in SCHEMA_LIST_KEYS and isinstance(value, list):
            for i, v in enumerate(value):
                yield from schema_slots(v, True)
                yield value, i
        elif key == "properties" and in_schema and isinstance(value, dict):
            for name, v in value.items():
                yield from schema_slots(v, True)
                yield value, name
        else:
            yield from schema_slots(value)


def canonical(schema: dict) -> str:
    return json.dumps(strip_docs(schema), sort_keys=True, separators=(",", ":"))


def hoist(tree: dict, schemas: dict[str, dict]) -> None:
    """Move each inline schema that occurs more than once into ``schemas``, named by its title,
    and point every occurrence at it. The same schema in one place instead of many: the
    validation is unchanged, the file is a quarter of the size."""
    while True:
        seen: dict[str, list[tuple[Any, Any]]] = {}
        for slot in schema_slots([tree, schemas]):
            node = slot[0][slot[1]]
            if "$ref" not in node:
                key = canonical(node)
                if len(key) >= HOIST_MIN_CHARS:
                    seen.setdefault(key, []).append(slot)
        repeated = [(len(k) * (len(s) - 1), k) for k, s in seen.items() if len(s) > 1]
        if not repeated:
            return
        _, key = max(repeated)
        slots = seen[key]
        first = slots[0][0][slots[0][1]]
        base = re.sub(r"[^A-Za-z0-9]", "", str(first.get("title", "")).title()) or "Shared"
        name, n = base, 1
        while name in schemas:
            n += 1
            name = f"{base}{n}"
        schemas[name] = first
        for container, index in slots:
            container[index] = {"$ref": f"#/components/schemas/{name}"}


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


def excerpt(spec: dict, operations: list[tuple[str, str]], source: str) -> dict:
    paths: dict[str, dict] = {}
    for path, method in operations:
        item = spec["paths"][path]
        kept = paths.setdefault(path, {k: v for k, v in item.items() if k == "parameters"})
        kept[method] = item[method]
    components: dict[str, dict] = {"securitySchemes": spec["components"]["securitySchemes"]}
    todo = refs(paths)
    seen: set[str] = set()
    while todo:
        ref = todo.pop()
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        todo |= refs(node) - seen
    titled = frozenset({"title"})
    paths = strip_docs(paths, names=True, keep=titled)
    components = strip_docs(components, names=True, keep=titled)
    hoist(paths, components.setdefault("schemas", {}))
    info = {k: spec["info"][k] for k in ("title", "version")}
    info["x-excerpt-of"] = source
    return {
        "openapi": spec["openapi"],
        "info": info,
        "servers": spec["servers"],
        "security": spec["security"],
        "paths": strip_docs(paths, names=True),
        "components": strip_docs(
            {kind: dict(sorted(nodes.items())) for kind, nodes in sorted(components.items()) if nodes},
            names=True,
        ),
    }


def write(spec: dict, name: str) -> None:
    target = HERE / name
    target.write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n")
    print(f"{target}: {len(spec['paths'])} paths, {target.stat().st_size} bytes")


def main(brevo_yml: str, mailchimp_json: str) -> None:
    with open(brevo_yml, encoding="utf-8") as f:
        brevo = yaml.safe_load(f)
    opener = gzip.open if mailchimp_json.endswith(".gz") else open
    with opener(mailchimp_json, "rt", encoding="utf-8") as f:
        mailchimp = json.load(f)
    write(excerpt(brevo, BREVO_OPERATIONS, Path(brevo_yml).name), "brevo-v3.excerpt.json")
    write(
        excerpt(mailchimp, MAILCHIMP_OPERATIONS, Path(mailchimp_json).name), "mailchimp-3.0.55.excerpt.json"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
