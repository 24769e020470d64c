#!/usr/bin/env python3
"""Validate the deployment manifests against their official JSON schemas.

    python3 tests/manifests/validate.py

What is checked, and with what:

* docker/k8s/**/*.yaml (the unsharded store's files and the sharded one's
  in docker/k8s/shards/): every YAML document, against the Kubernetes JSON schemas
  (generated from Kubernetes' OpenAPI spec) that kubernetes-validate 1.37.0
  ships, for Kubernetes 1.30 and 1.37, in strict mode: an unknown or misspelt
  field is an error, and so is a kind/apiVersion that has no schema in that
  Kubernetes version (which kubernetes-validate itself only warns about).
* docker/docker-compose.yml and docker/docker-compose.shards.yml: against the
  Compose Specification schema
  (JSON Schema draft 2020-12; it knows the top-level `name:` of Compose v2),
  the copy vendored in check-jsonschema 0.39.0 (vendor/compose-spec.json),
  with the jsonschema library. YAML anchors and `<<` merges are resolved first.

Before the real files, broken copies of them (one planted defect each, such
as `spec.replicass` or `ports: 5`) must be rejected, with the defect named in
the validator's message: a checker that accepts them fails this script.

Not checked: anything beyond the schemas, e.g. that names and labels
referenced across objects agree, value ranges and other rules enforced only
by the Kubernetes API server, `format` annotations (not enforced by
jsonschema), and Compose's `${VAR}` interpolation (such values are checked as
the literal strings).

The tools are installed with pip into a private virtualenv,
${XDG_CACHE_HOME:-~/.cache}/causalkv-ci/venv, made on the first run and
reused after. Exits 0 only if every real file passes and every broken copy is
rejected; 1 otherwise, including when the tools cannot be installed.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = ["kubernetes-validate==1.37.0", "check-jsonschema==0.39.0"]
K8S_VERSIONS = ["1.30", "1.37"]
ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "causalkv-ci" / "venv"


def ensure_venv() -> Path:
    """The venv's python, with REQUIREMENTS installed (exits 1 if they cannot be)."""
    python, marker = VENV / "bin" / "python", VENV / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"manifests: installing {' '.join(REQUIREMENTS)} into {VENV}", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *REQUIREMENTS], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        shutil.rmtree(VENV, ignore_errors=True)
        sys.exit(f"manifests: FAILED: could not install the validators ({e}); NOTHING WAS CHECKED")
    marker.write_text(wanted)
    return python


def _statefulset(docs):
    return next(d for d in docs if d.get("kind") == "StatefulSet")


def _set_container_port(docs):
    _statefulset(docs)["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "abc"}]


def _first_service(docs):
    return next(iter(docs[0]["services"].values()))


# Planted defects, one per broken copy: (what, mutate(docs), text the rejection must contain).
BROKEN_K8S = [
    ("spec.replicass: 3 (misspelt field)",
     lambda d: _statefulset(d)["spec"].update(replicass=3), "'replicass' was unexpected"),
    ("pod securityContext.runAsNonroot (misspelt nested field)",
     lambda d: _statefulset(d)["spec"]["template"]["spec"]["securityContext"].update(runAsNonroot=True),
     "'runAsNonroot' was unexpected"),
    ('containerPort: "abc" (wrong type)', _set_container_port,
     "containerPort: 'abc' is not of type 'integer'"),
    ("apiVersion: apps/v1beta2 (no such API)",
     lambda d: _statefulset(d).update(apiVersion="apps/v1beta2"),
     "Couldn't find schema for kind StatefulSet with api version apps/v1beta2"),
]
BROKEN_COMPOSE = [
    ("services.<first>.ports: 5 (wrong type)", lambda d: _first_service(d).update(ports=5),
     "ports: 5 is not of type 'array'"),
    ("services.<first>.restartt (misspelt key)",
     lambda d: _first_service(d).update(restartt="no"), "'restartt' was unexpected"),
    ("top-level volumez: {} (unknown key)", lambda d: d[0].update(volumez={}),
     "'volumez' does not match any of the regexes"),
    ("name: 5 (wrong type)", lambda d: d[0].update(name=5), "name: 5 is not of type 'string'"),
]


def main() -> int:
    import yaml
    import jsonschema
    import kubernetes_validate
    from importlib.metadata import version
    from importlib.resources import files

    compose_text = (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    compose_schema = json.loads(compose_text)
    compose_validator = jsonschema.validators.validator_for(compose_schema)(compose_schema)

    def k8s_errors(docs):
        errors = []
        for doc in docs:
            if not isinstance(doc, dict):
                errors.append(f"not a Kubernetes object: {doc!r:.60}")
                continue
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            for v in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(map(str, e.path)) or "(top)"
                    errors.append(f"{name}, Kubernetes {v}: {where}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    errors.append(f"{name}: {e.message}")
                except Exception as e:  # not a Kubernetes object at all
                    errors.append(f"{name}, Kubernetes {v}: cannot validate: {e!r}")
        return errors

    def compose_errors(docs):
        if len(docs) != 1:
            return [f"expected one YAML document, found {len(docs)}"]
        found = compose_validator.iter_errors(docs[0])
        # Deepest first: the precise error before its echo on the enclosing object.
        return [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}"
                for e in sorted(found, key=lambda e: (-len(e.path), list(map(str, e.path))))]

    def load(path):
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]

    k8s_files = sorted((ROOT / "docker" / "k8s").rglob("*.yaml"))
    compose_file = ROOT / "docker" / "docker-compose.yml"
    compose_files = [compose_file, ROOT / "docker" / "docker-compose.shards.yml"]
    checks = [(p, k8s_errors) for p in k8s_files] + [(p, compose_errors) for p in compose_files]
    self_tests = [(ROOT / "docker" / "k8s" / "statefulset.yaml", k8s_errors, BROKEN_K8S),
                  (ROOT / "docker" / "k8s" / "shards" / "statefulset-shards.yaml", k8s_errors, BROKEN_K8S),
                  (compose_file, compose_errors, BROKEN_COMPOSE),
                  (compose_files[1], compose_errors, BROKEN_COMPOSE)]
    print(f"manifests: kubernetes-validate {version('kubernetes-validate')} (Kubernetes "
          f"{', '.join(K8S_VERSIONS)}, strict); compose-spec.json from check-jsonschema "
          f"{version('check-jsonschema')} (sha256 {hashlib.sha256(compose_text.encode()).hexdigest()[:12]}, "
          f"{compose_schema['$schema']}); "
          f"jsonschema {version('jsonschema')}; PyYAML {version('PyYAML')}")
    ok = bool(k8s_files)
    if not k8s_files:
        print("FAILED  docker/k8s/**/*.yaml: no files found")

    # 1. The checkers must reject broken copies of the real files.
    for path, errors_of, broken in self_tests:
        for what, mutate, needle in broken:
            docs = load(path)
            mutate(docs)
            errors = errors_of(docs)
            hit = next((e for e in errors if needle in e), None)
            if hit:
                print(f"OK      self-test: {path.name} with {what} rejected: {hit}")
            else:
                ok = False
                print(f"FAILED  self-test: {path.name} with {what} was "
                      f"{'rejected for another reason: ' + '; '.join(errors) if errors else 'ACCEPTED'}")

    # 2. The real files.
    for path, errors_of in checks:
        rel = path.relative_to(ROOT)
        try:
            docs = load(path)
            errors = errors_of(docs) if docs else ["no YAML documents"]
        except (OSError, yaml.YAMLError) as e:
            docs, errors = [], [f"cannot read: {e}"]
        if errors:
            ok = False
            print(f"FAILED  {rel}: {'; '.join(errors)}")
        else:
            names = ", ".join(f"{d.get('kind')}/{d['metadata']['name']}" for d in docs) \
                if errors_of is k8s_errors else f"project {docs[0].get('name')!r}"
            print(f"OK      {rel}: {names}")

    print("manifests: all valid, every broken copy rejected" if ok else "manifests: FAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    if Path(sys.prefix).resolve() != VENV.resolve():
        python = ensure_venv()
        os.execv(python, [str(python), __file__, *sys.argv[1:]])
    sys.exit(main())
