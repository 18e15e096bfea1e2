"""The .env rules the agent writes by and the console renders by: which variables are managed,
how a value is quoted so that docker compose (and python-dotenv) read it back exactly, and how
the managed lines are merged into an operator's file. Standard library only: it ships inside the
agent (console/agent_setup.py builds the file operators download)."""

import re

# The variables the console manages and the agent writes; nothing else.
MANAGED = (
    "USE_OAUTH2", "OAUTH2_PROVIDER_NAME", "OAUTH2_PROVIDER_HOST", "OAUTH2_PROVIDER_CLIENT_ID",
    "OAUTH2_PROVIDER_CLIENT_SECRET", "OAUTH2_PROVIDER_PUBLIC_KEY", "COGNITO_LOGIN_URL",
    "KEYCLOAK_REALM", "KEY_CLOAK_MASTER_USER", "KEY_CLOAK_MASTER_PASSWORD",
    "KEY_CLOAK_DIFFGRAM_USER", "KEY_CLOAK_DIFFGRAM_PASSWORD",
)  # fmt: skip
HEADER_COMMENT = "# Diffgram SSO: managed by the SSO console's agent"
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")
UNQUOTED = re.compile(r"[A-Za-z0-9_./:@%+,=~-]+")


def env_value(value):
    """A value as docker compose (and python-dotenv) read it back exactly. The console renders
    its env files with this same function.

    Plain values stay unquoted; otherwise single quotes, which neither parser interprets;
    values holding a single quote or a backslash go in double quotes with escapes, "$" doubled
    so that compose does not interpolate it.
    """
    if UNQUOTED.fullmatch(value):
        return value
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("$", "$$")
    )
    return f'"{escaped}"'


def split_entries(text):
    """The file as a list of (name or None, raw text) entries; a quoted value may span lines."""
    entries, lines, index = [], text.splitlines(keepends=True), 0
    while index < len(lines):
        line = lines[index]
        match = ASSIGNMENT.match(line.rstrip("\r\n"))
        if not match:
            entries.append((None, line))
            index += 1
            continue
        raw, value = line, match.group(2)
        quote = value[:1] if value[:1] in ("'", '"') else ""
        if quote and not _closes(value[1:], quote):
            while index + 1 < len(lines):
                index += 1
                raw += lines[index]
                if _closes(lines[index].rstrip("\r\n"), quote):
                    break
        entries.append((match.group(1), raw))
        index += 1
    return entries


def _closes(rest, quote):
    position = 0
    while True:
        position = rest.find(quote, position)
        if position < 0:
            return False
        if position == 0 or rest[position - 1] != "\\":
            return True
        position += 1


def refused_names(settings):
    """The names in `settings` this agent will not write: only the SSO variables it manages.
    A signed push must not be able to set POSTGRES_PASSWORD or inject a line."""
    return sorted(name for name in settings if name not in MANAGED)


def merge_env(existing, settings):
    """Replace the managed variables in `existing` with `settings`, keeping everything else."""
    lines, seen = [], set()
    for name, raw in split_entries(existing):
        if name in MANAGED:
            if name in settings and name not in seen:
                lines.append(f"{name}={env_value(settings[name])}\n")
                seen.add(name)
            continue  # removed from the configuration, or a duplicate
        lines.append(raw if raw.endswith("\n") else raw + "\n")
    # In the console's own order, whatever order a pull or a push lists them in.
    missing = [name for name in MANAGED if name in settings and name not in seen]
    if missing:
        if HEADER_COMMENT + "\n" not in lines:
            if lines and lines[-1].strip():
                lines.append("\n")
            lines.append(HEADER_COMMENT + "\n")
        lines.extend(f"{name}={env_value(settings[name])}\n" for name in missing)
    return "".join(lines)


def parse_env_body(body):
    """The console's env rendering back to {name: value} (the console writes only what
    env_value produces)."""
    settings = {}
    for name, raw in split_entries(body):
        if name is None:
            continue
        value = raw.split("=", 1)[1].rstrip("\n")
        if value[:1] == "'" and value[-1:] == "'":
            value = value[1:-1]
        elif value[:1] == '"' and value[-1:] == '"':
            value = re.sub(
                r"\\(.)|\$\$",
                lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)) if m.group(1) else "$",
                value[1:-1],
            )
        settings[name] = value
    return settings
