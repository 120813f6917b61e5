#!/usr/bin/env python3
"""Checks the example manifests against the generated JSON Schemas with an independent
validator (python-jsonschema, Draft 7), so that a schema bug in sectl's own generator
cannot hide behind sectl's own decoder.

For every YAML file under manifests/ and examples/:
  * the first line is `# yaml-language-server: $schema=<relative path>`, the path
    resolves to schemas/<kind>.json, and every document in the file is of that kind;
  * every document validates against that schema;
  * mutated copies of every document are rejected: an unknown field at the top level,
    in metadata, in spec, inside a nested object of spec (and of status); wrong types;
    each required field of spec missing, and spec itself missing; a wrong kind.

Also: every schema in schemas/ is itself a valid Draft 7 schema, and has a file using it.

Usage: python3 tests/schema_check.py [--dump DIR]
  --dump DIR  also write every mutated document to DIR (one YAML file each, named
              NNN-<reject|lenient>-<what>.yaml) for tests/schemas.rs, which checks that
              sectl's decoder rejects the `reject` ones too.
Exit status: 0 all good, 1 failures (listed), 3 python packages missing.
"""

import copy
import json
import os
import re
import sys

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover - exercised only on badly set-up machines
    print(
        f"schema_check.py: cannot import a required package ({e}).\n"
        "Run `pip install jsonschema pyyaml` (CI installs them in .ci/run).",
        file=sys.stderr,
    )
    sys.exit(3)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_DIR = os.path.join(ROOT, "schemas")
MANIFEST_DIRS = ["manifests", "examples"]
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)\s*$")

failures = []


def fail(msg):
    failures.append(msg)


def yaml_files():
    out = []
    for d in MANIFEST_DIRS:
        top = os.path.join(ROOT, d)
        if not os.path.isdir(top):
            fail(f"{d}/ is missing")
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            for f in sorted(filenames):
                if f.endswith((".yaml", ".yml")) and not f.startswith("."):
                    out.append(os.path.join(dirpath, f))
    return out


def rel(p):
    return os.path.relpath(p, ROOT)


def load_schemas():
    schemas = {}
    for f in sorted(os.listdir(SCHEMA_DIR)):
        if not f.endswith(".json"):
            continue
        path = os.path.join(SCHEMA_DIR, f)
        with open(path, encoding="utf-8") as fh:
            s = json.load(fh)
        try:
            jsonschema.Draft7Validator.check_schema(s)
        except jsonschema.exceptions.SchemaError as e:
            fail(f"schemas/{f} is not a valid Draft 7 schema: {e.message}")
            continue
        kind = s.get("properties", {}).get("kind", {}).get("const")
        if not kind or f != kind.lower() + ".json":
            fail(f"schemas/{f}: properties.kind.const is {kind!r}, which does not match the file name")
        schemas[os.path.realpath(path)] = (kind, jsonschema.Draft7Validator(s), s)
    if not schemas:
        fail("schemas/ holds no *.json; run `cargo run -- schema --out schemas`")
    return schemas


def is_valid(validator, doc):
    return not list(validator.iter_errors(doc))


def resolve(schema, sub):
    """Follows a local $ref ("#/definitions/X") once."""
    while isinstance(sub, dict) and "$ref" in sub:
        ref = sub["$ref"]
        assert ref.startswith("#/definitions/"), ref
        sub = schema["definitions"][ref[len("#/definitions/"):]]
    return sub


def nested_objects(value, path, seen=None):
    """Every dict inside `value` (looking through lists), one per distinct shape of path
    (indexes ignored: spec.serverUnits[].devices[] once), as (path, path of keys)."""
    if seen is None:
        seen = set()
    children = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    for k, v in children:
        p = path + [k]
        if isinstance(v, dict):
            shape = tuple("[]" if isinstance(x, int) else x for x in p)
            if shape not in seen:
                seen.add(shape)
                yield p
        if isinstance(v, (dict, list)):
            yield from nested_objects(v, p, seen)


def show_path(keys):
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else k)
    return out


def get_keys(doc, keys):
    cur = doc
    for k in keys:
        cur = cur[k]
    return cur


# Wrong-type mutations per kind: (dotted path, wrong value, does sectl's decoder reject
# it too?). sectl's YAML decoder accepts a plain scalar such as 12345678 or 42 for a
# string field (it reads the text); JSON Schema is stricter, which editors show early.
WRONG_TYPES = {
    "VMDefinition": [
        ("spec.memoryMiB", "2048", True),
        ("spec.memoryMiB", "lots", True),
        ("spec.vmName", 12345678, False),
        ("spec.cpus", 1.5, True),
        ("spec.persistent", "yes", True),
        ("spec.devices", {"mn": "4683"}, True),
        ("spec.state", "STARTED", True),
    ],
    "SEServer": [
        ("spec.serverUnits.0.cpus", "eight", True),
        ("spec.serverUnits.0.memoryMiB", "64 GiB", True),
        ("spec.serverUnits.0.type", "s390", True),
        ("spec.netUnit.speedGbps", 5, True),
        ("spec.managementUnits", "abgwhite", True),
    ],
    "ManagementCluster": [
        ("spec.islE.bandwidthGbps", "fast", True),
        ("spec.servers", "se701", True),
        ("spec.configDisks.0.sizeGb", 4, True),
    ],
    "SUCluster": [
        ("spec.active", "yes", True),
        ("spec.serverUnits", ["ABGSE701"], True),
    ],
    "LiveMigration": [
        ("spec.checkOnly", "no", True),
        ("spec.vm", ["vm12prod"], True),
    ],
    "VMRecovery": [
        ("spec.vm", {"name": "vm12prod"}, True),
        ("spec.targetServerUnit", 701, False),
    ],
}


def set_path(doc, dotted, value):
    parts = dotted.split(".")
    cur = doc
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    last = parts[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value


def has_path(doc, dotted):
    cur = doc
    for p in dotted.split("."):
        try:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        except (KeyError, IndexError, ValueError, TypeError):
            return False
    return True


def mutations(doc, schema):
    """Yields (what, mutated document, must sectl's decoder reject it too)."""
    m = copy.deepcopy(doc)
    m["bogusTopLevel"] = 1
    yield "unknown field at top level", m, True

    m = copy.deepcopy(doc)
    m["metadata"]["bogusMeta"] = "x"
    yield "unknown field in metadata", m, True

    m = copy.deepcopy(doc)
    m["spec"]["bogusSpecField"] = True
    yield "unknown field in spec", m, True

    # An unknown field in every kind of nested object of spec (a device, a CPU pool, ...).
    for keys in nested_objects(doc["spec"], ["spec"]) if isinstance(doc.get("spec"), dict) else []:
        m = copy.deepcopy(doc)
        get_keys(m, keys)["bogusNested"] = 1
        yield f"unknown field in {show_path(keys)}", m, True

    # Status is the controller's; sectl ignores a manifest's status, the schema still
    # describes it strictly.
    m = copy.deepcopy(doc)
    m["status"] = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ok", "message": "", "bogus": 1}]
    }
    yield "unknown field in status.conditions[0]", m, False

    m = copy.deepcopy(doc)
    m["status"] = {"bogusStatus": 1}
    yield "unknown field in status", m, False

    m = copy.deepcopy(doc)
    m["metadata"]["name"] = 42
    yield "number for metadata.name", m, False

    m = copy.deepcopy(doc)
    m["metadata"]["name"] = "Not_A_DNS_Label"
    yield "invalid metadata.name", m, True

    m = copy.deepcopy(doc)
    m["metadata"]["labels"] = {"env": 3}
    yield "number as a label value", m, False

    for path, value, strict in WRONG_TYPES.get(doc["kind"], []):
        if has_path(doc, path):
            m = copy.deepcopy(doc)
            set_path(m, path, value)
            yield f"wrong type: {path} = {value!r}", m, strict

    m = copy.deepcopy(doc)
    del m["spec"]
    yield "missing spec", m, True

    for top in ("apiVersion", "kind", "metadata"):
        m = copy.deepcopy(doc)
        del m[top]
        yield f"missing {top}", m, True

    m = copy.deepcopy(doc)
    del m["metadata"]["name"]
    yield "missing metadata.name", m, True

    spec_schema = resolve(schema, schema["properties"]["spec"])
    for req in spec_schema.get("required", []):
        m = copy.deepcopy(doc)
        m["spec"].pop(req, None)
        yield f"missing spec.{req}", m, True

    m = copy.deepcopy(doc)
    m["apiVersion"] = "sectl.io/v1"
    yield "wrong apiVersion", m, True

    m = copy.deepcopy(doc)
    m["kind"] = "VMRecovery" if doc["kind"] != "VMRecovery" else "LiveMigration"
    yield "another kind than the schema's", m, False


def main(argv):
    dump_dir = None
    if len(argv) == 3 and argv[1] == "--dump":
        dump_dir = argv[2]
        os.makedirs(dump_dir, exist_ok=True)
    elif len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2

    schemas = load_schemas()
    used = set()
    files = yaml_files()
    if not files:
        fail("no YAML files under manifests/ or examples/")
    ndocs = nmut = 0
    kinds_mutated_nested = set()
    for path in files:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        first = text.split("\n", 1)[0]
        mt = SCHEMA_LINE.match(first)
        if not mt:
            fail(f"{rel(path)}: the first line must be `# yaml-language-server: $schema=<path to schemas/<kind>.json>`, got {first!r}")
            continue
        target = os.path.realpath(os.path.join(os.path.dirname(path), mt.group(1)))
        if target not in schemas:
            fail(f"{rel(path)}: $schema={mt.group(1)} does not point to a schema in schemas/")
            continue
        kind, validator, schema = schemas[target]
        used.add(target)
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            fail(f"{rel(path)}: not YAML: {e}")
            continue
        if not docs:
            fail(f"{rel(path)}: no documents")
        for i, doc in enumerate(docs, 1):
            where = f"{rel(path)} document {i}"
            ndocs += 1
            if not isinstance(doc, dict):
                fail(f"{where}: not a mapping")
                continue
            if doc.get("kind") != kind:
                fail(f"{where}: kind {doc.get('kind')!r}, but the file's $schema line names {kind}; keep one kind per file")
                continue
            errs = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for e in errs:
                p = ".".join(str(x) for x in e.absolute_path) or "(document)"
                fail(f"{where}: {p}: {e.message}")
            if errs:
                continue
            for what, m, strict in mutations(doc, schema):
                nmut += 1
                if what.startswith("unknown field in spec.") or what.startswith("unknown field in spec["):
                    kinds_mutated_nested.add(kind)
                if is_valid(validator, m):
                    fail(f"{where}: mutation accepted by the schema: {what}")
                if dump_dir is not None:
                    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{os.path.basename(path)}-{i}-{what}").strip("-")
                    name = f"{nmut:04d}-{'reject' if strict else 'lenient'}-{slug[:100]}.yaml"
                    with open(os.path.join(dump_dir, name), "w", encoding="utf-8") as fh:
                        fh.write(f"# {where}: {what}\n")
                        yaml.safe_dump(m, fh, sort_keys=False)
    for target in schemas:
        if target not in used:
            fail(f"schemas/{os.path.basename(target)} is used by no file under manifests/ or examples/")
    for kind in ("SEServer", "ManagementCluster", "VMDefinition"):
        if kind not in kinds_mutated_nested:
            fail(f"no {kind} document had a nested object in spec to mutate")

    if failures:
        for f in failures:
            print(f"FAIL {f}", file=sys.stderr)
        print(f"schema_check.py: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print(f"schema_check.py: {len(files)} files, {ndocs} documents valid, {nmut} mutations rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
