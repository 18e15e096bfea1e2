"""Helpers shared by the console's management commands."""

import getpass

from console import audit


def cli_actor(command):
    """Who ran a command, for the audit history: the OS user and the command."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return audit.Actor(audit.ActorType.SYSTEM, "", f"manage.py {command} ({user})"[:150])


def print_checks(stdout, style, checks):
    marks = {
        "pass": style.SUCCESS("PASS"),
        "warn": style.WARNING("WARN"),
        "fail": style.ERROR("FAIL"),
    }
    for check in checks:
        mark = marks.get(check.status, "SKIP")
        stdout.write(f"{mark}  {check.id:<20} {check.message}")
