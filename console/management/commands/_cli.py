"""Helpers shared by the console's management commands."""

import getpass
import os

from django.core.management.base import CommandError

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


def from_environment(variable):
    """The value of the environment variable named on the command line ("" when none is), so
    that secrets never appear in a command line or a shell history."""
    if not variable:
        return ""
    if variable not in os.environ:
        raise CommandError(f"Environment variable {variable} is not set", returncode=2)
    return os.environ[variable]
