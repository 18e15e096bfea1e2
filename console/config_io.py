"""Configuration as code: every provider and instance as one YAML document, and back.

Secrets are never written. A stored secret is exported as a reference to an environment
variable ({env: NAME}); {unchanged: true} keeps what is stored, and no key (or null) means "not
set". On import, {env: NAME} reads that variable only in the command-line import, run by someone
who holds the host's environment anyway. The web import never reads the server's environment
(it holds SECRET_KEY, the encryption keys and the database password): each {env: NAME} there is
a secret to type into its confirmation form, and whether NAME exists is never said. Import
validates every object with the same forms the UI uses, reports errors with their line, and
applies everything in one transaction. YAML anchors and aliases are refused: a config file never
needs them, and nested aliases expand exponentially.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, cast

import yaml
from django.db import models

from console import audit, discovery, instances, kinds, providers
from console.instance_forms import InstanceForm
from console.models import Instance, Provider

FORMAT_VERSION = 1
MAX_BYTES = 1024 * 1024
# The fields of each object are the fields of its form (the same as the UI and the JSON API).
INSTANCE_FIELDS = [name for name in InstanceForm.Meta.fields if name != "name"]


def provider_fields(kind) -> list[str]:
    return [name for name in kind.editable_fields if name != "name"]


class ConfigImportError(Exception):
    """The file cannot be imported; `problems` are "line N: path: message" strings."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def secret_variable(provider_name, secret) -> str:
    slug = re.sub(r"[^A-Z0-9]+", "_", provider_name.upper()).strip("_")
    return f"DIFFGRAM_SSO_{slug}_{secret.upper()}"


# --- export -------------------------------------------------------------------------------------


def _instance_default(name):
    """What an instance field is when a document leaves it out: the model's default."""
    field = cast(models.Field, Instance._meta.get_field(name))
    return field.get_default() if field.has_default() else ""


def export_document() -> dict[str, Any]:
    document: dict[str, Any] = {"version": FORMAT_VERSION, "providers": [], "instances": []}
    for provider in Provider.objects.order_by("name"):
        kind = kinds.of(provider)
        entry = {"name": provider.name, "kind": provider.kind, "enabled": provider.enabled}
        for name in provider_fields(kind):
            if getattr(provider, name):
                entry[name] = getattr(provider, name)
        for secret in kind.secret_names:
            if provider.has_secret(secret):
                entry[secret] = {"env": secret_variable(provider.name, secret)}
        document["providers"].append(entry)
    for instance in Instance.objects.select_related("provider").order_by("name"):
        values = {**instance.audit_fields(), "name": instance.name}  # provider by name
        entry = {"name": instance.name}
        entry.update({name: values[name] for name in INSTANCE_FIELDS if values[name]})
        document["instances"].append(entry)
    return document


def export_yaml() -> str:
    header = (
        "# Diffgram SSO console configuration. Secrets are references, never values:\n"
        "# {env: NAME} is read from the environment on import.\n"
    )
    return header + yaml.safe_dump(export_document(), sort_keys=False, allow_unicode=True)


# --- import -------------------------------------------------------------------------------------


@dataclass
class PlannedChange:
    kind: str  # "provider" or "instance"
    name: str
    action: str  # "create", "change" or "unchanged"
    changes: dict = field(default_factory=dict)
    form: Any = None
    enabled: bool = True  # providers: enabled after the import
    data: dict = field(default_factory=dict)  # instances: the form data to apply


def _lines(text):
    """{path tuple: line number} for every node of the YAML document."""
    lines = {}

    def walk(node, path) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def _refuse_aliases(text):
    """Anchors and aliases, refused before anything expands them."""
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
            line = token.start_mark.line + 1
            raise ConfigImportError(
                [f"line {line}: YAML anchors and aliases (&, *) are not accepted in a config file"]
            )


def parse(text) -> tuple[Any, dict[tuple, int]]:
    if len(text.encode()) > MAX_BYTES:
        raise ConfigImportError([f"line 1: the file is larger than {MAX_BYTES // 1024} KiB"])
    try:
        _refuse_aliases(text)
        document = yaml.safe_load(text)
        lines = _lines(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigImportError(
            [f"{where}not valid YAML ({getattr(error, 'problem', error)})"]
        ) from None
    if not isinstance(document, dict):
        raise ConfigImportError(
            ["line 1: the document must be a mapping with providers and instances"]
        )
    return document, lines


class TypedSecrets:
    """The web import's source of secrets: what the admin typed into the confirmation form,
    keyed by (provider name, secret name). It never reads the server's environment."""

    def __init__(self, typed=None):
        self.typed = typed or {}
        self.requested = []  # (provider, secret, the file's NAME) still to be typed

    def get(self, provider, secret, name) -> str | None:
        value = self.typed.get((provider, secret), "")
        if not value:
            self.requested.append((provider, secret, name))
        return value or None


class EnvironmentSecrets:
    """The command line's source of secrets: the environment it runs in."""

    def __init__(self, environ=None):
        self.environ = os.environ if environ is None else environ
        self.requested = []

    def get(self, provider, secret, name) -> str | None:
        return self.environ.get(name)


def plan(text, secrets=None) -> list[PlannedChange]:
    """Validate the document and work out what importing it would do. Raises ConfigImportError.
    `secrets` resolves {env: NAME}: EnvironmentSecrets (the default, for the command line) or
    TypedSecrets (the web import); after planning, its `requested` lists what was missing."""
    secrets = EnvironmentSecrets() if secrets is None else secrets
    document, lines = parse(text)
    problems, changes = [], []

    def problem(path, message) -> None:
        line = next((lines[p] for p in (path, path[:-1], path[:-2]) if p in lines), 1)
        problems.append(f"line {line}: {'.'.join(str(p) for p in path)}: {message}")

    if document.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        problem(("version",), f"unsupported version (this console reads {FORMAT_VERSION})")
    seen_providers: set[str] = set()
    for index, entry in enumerate(document.get("providers") or []):
        path = ("providers", index)
        change = _plan_provider(entry, path, secrets, problem, seen_providers)
        if change:
            changes.append(change)
    known_providers = seen_providers | set(Provider.objects.values_list("name", flat=True))
    for index, entry in enumerate(document.get("instances") or []):
        change = _plan_instance(entry, ("instances", index), problem, known_providers)
        if change:
            changes.append(change)
    if problems:
        raise ConfigImportError(problems)
    return changes


def _plan_provider(entry, path, secrets, problem, seen):
    if not isinstance(entry, dict) or not entry.get("name"):
        problem(path, "each provider needs a name")
        return None
    name, kind = entry["name"], kinds.get(entry.get("kind"))
    if kind is None:
        problem((*path, "kind"), f"must be one of {', '.join(kinds.KINDS)}")
        return None
    if name in seen:
        problem((*path, "name"), f"{name!r} appears twice")
        return None
    seen.add(name)
    existing = Provider.objects.filter(name=name).first()
    if existing and kinds.of(existing) is not kind:
        problem((*path, "kind"), f"{name!r} exists as a {existing.kind} provider")
        return None
    fields = provider_fields(kind)
    allowed = {"name", "kind", "enabled", *fields, *kind.secret_names}
    for key in entry:
        if key not in allowed:
            problem((*path, key), "unknown field")
    defaults = {"scopes": kind.default_scopes}
    data = {"name": name, **{f: entry.get(f) or defaults.get(f, "") for f in fields}}
    secret_changes = {}
    for secret in kind.secret_names:
        reference = entry.get(secret)
        if isinstance(reference, dict) and reference.get("unchanged") is True:
            continue
        if isinstance(reference, dict) and isinstance(reference.get("env"), str):
            value = secrets.get(name, secret, reference["env"])
            if value is None:
                if isinstance(secrets, EnvironmentSecrets):
                    problem((*path, secret), f"environment variable {reference['env']} is not set")
                continue  # the web import asks for it in its confirmation form
            if not (existing and existing.secret(secret) == value):
                data[secret] = value
                secret_changes[secret] = "[changed]"
        elif reference is None:
            if existing and existing.has_secret(secret):
                data[f"clear_{secret}"] = "on"
                secret_changes[secret] = "[cleared]"
        else:
            problem((*path, secret), "a secret must be {env: NAME} or {unchanged: true}")
    # Read the stored values first: validating a ModelForm writes the new ones onto the instance.
    before = {f: getattr(existing, f) for f in fields} if existing else {}
    if existing:
        data["revision"] = existing.revision
    form = kind.form(data=data, instance=existing)
    if not form.is_valid():
        for field_name, errors in form.errors.items():
            problem((*path, field_name), " ".join(str(e) for e in errors))
        return None
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        problem((*path, "enabled"), "must be true or false")
    after = {f: form.cleaned_data.get(f, "") for f in fields}
    diff = audit.field_changes(before, after) if existing else {}
    if existing and existing.enabled != enabled:
        diff["enabled"] = [existing.enabled, enabled]
    diff.update({s: ["[secret]", state] for s, state in secret_changes.items()})
    action = "create" if not existing else ("change" if diff else "unchanged")
    change = PlannedChange("provider", name, action, after if action == "create" else diff, form)
    change.enabled = enabled
    return change


def _plan_instance(entry, path, problem, known_providers):
    if not isinstance(entry, dict) or not entry.get("name"):
        problem(path, "each instance needs a name")
        return None
    for key in entry:
        if key not in {"name", *INSTANCE_FIELDS}:
            problem((*path, key), "unknown field")
    existing = Instance.objects.select_related("provider").filter(name=entry["name"]).first()
    provider_name = entry.get("provider")
    if provider_name and provider_name not in known_providers:
        problem((*path, "provider"), f"no provider named {provider_name!r}")
        return None
    data = {"name": entry["name"]} | {
        name: entry.get(name, _instance_default(name))
        for name in INSTANCE_FIELDS
        if name != "provider"
    }
    provider = Provider.objects.filter(name=provider_name).first() if provider_name else None
    data["provider"] = provider.pk if provider else ""
    before = existing.audit_fields() if existing else {}  # before the form writes onto it
    form = InstanceForm(data=data, instance=existing)
    # A provider created by this same import does not exist yet: check everything else now.
    if provider_name and provider is None:
        form.fields["provider"].required = False
    if not form.is_valid():
        for field_name, errors in form.errors.items():
            if field_name == "provider" and provider is None:
                continue
            problem((*path, field_name), " ".join(str(e) for e in errors))
        if set(form.errors) - {"provider"}:
            return None
    wanted = {**{k: v for k, v in data.items() if k != "provider"}, "provider": provider_name}
    diff = audit.field_changes(before, wanted) if existing else {}
    action = "create" if not existing else ("change" if diff else "unchanged")
    change = PlannedChange(
        "instance", entry["name"], action, wanted if action == "create" else diff
    )
    change.data = {**data, "provider_name": provider_name}
    return change


def apply(changes, *, request=None, actor=None) -> dict[str, str]:
    """Apply a plan in one transaction; returns {instance name: token} for new instances."""
    tokens = {}
    with audit.change():
        for change in changes:
            if change.kind != "provider" or change.action == "unchanged":
                continue
            provider = providers.save_provider(change.form, request=request, actor=actor)
            if provider.enabled != change.enabled:
                providers.set_enabled(provider, change.enabled, request=request, actor=actor)
        for change in changes:
            if change.kind != "instance" or change.action == "unchanged":
                continue
            data = dict(change.data)
            name = data.pop("provider_name")
            data["provider"] = Provider.objects.get(name=name).pk if name else ""
            existing = Instance.objects.filter(name=change.name).first()
            form = InstanceForm(data=data, instance=existing)
            if not form.is_valid():  # the provider now exists; anything else was checked
                raise ConfigImportError([f"{change.name}: {dict(form.errors)}"])
            if existing:
                instances.update_instance(form, request=request, actor=actor)
            else:
                _, tokens[change.name] = instances.create_instance(
                    form, request=request, actor=actor
                )
        audit.record(
            audit.Action.CONFIG_IMPORTED,
            request=request,
            actor=actor,
            target=("config", "", "configuration import"),
            context={
                "created": [f"{c.kind}:{c.name}" for c in changes if c.action == "create"],
                "changed": [f"{c.kind}:{c.name}" for c in changes if c.action == "change"],
                "unchanged": [f"{c.kind}:{c.name}" for c in changes if c.action == "unchanged"],
            },
        )
    return tokens


def validate_imported(changes, *, request=None, actor=None) -> dict[str, discovery.Report]:
    """Validate the providers an import created or changed (HTTP, after the transaction)."""
    results = {}
    for change in changes:
        if change.kind == "provider" and change.action != "unchanged":
            provider = Provider.objects.get(name=change.name)
            _, report = providers.run_validation(provider, request=request, actor=actor)
            results[change.name] = report
    return results


def describe_plan(changes) -> list[str]:
    """Human-readable lines: one per object, then one per changed field."""
    lines = []
    for change in changes:
        lines.append(f"{change.action:<9} {change.kind} {change.name}")
        if change.action == "change":
            for name, (old, new) in change.changes.items():
                lines.append(f"            {name}: {old!r} -> {new!r}")
    return lines
