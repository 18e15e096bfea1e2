import dataclasses
import json

from django.core.management.base import BaseCommand, CommandError

from console import diffgram, kinds
from console.management.commands._cli import print_checks


class Command(BaseCommand):
    help = (
        "Validate an identity provider against its discovery document and JWKS without saving "
        "anything. Exit 0 when no check fails (warnings allowed), 1 when a check fails, 2 on "
        "bad arguments. ISSUER is "
        + "; ".join(f"for {kind.slug}, {kind.location_help}" for kind in kinds.KINDS.values())
        + "."
    )

    def add_arguments(self, parser):
        parser.add_argument("issuer", metavar="ISSUER")
        parser.add_argument("--kind", choices=list(kinds.KINDS), default=kinds.OIDC.slug)
        parser.add_argument("--client-id", default="")
        parser.add_argument("--confidential", action="store_true", help="the client has a secret")
        parser.add_argument("--realm", default="", help="Keycloak realm (required for keycloak)")
        parser.add_argument("--url-base", default="", help="a Diffgram URL_BASE to check")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        kind = kinds.KINDS[options["kind"]]
        try:
            fields = kind.command_fields(options["issuer"], options)
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        draft = kind.draft({"client_id": options["client_id"], **fields})
        spec = dataclasses.replace(
            kind.spec(draft, url_base=options["url_base"]),
            confidential=options["confidential"],
            # Not known here: the credentials and instances are checked by add_provider.
            keycloak_master_user=None,
            keycloak_diffgram_user=None,
            instance_names=None,
        )
        report = kind.validate(spec)
        issues = kind.known_issues(client_secret=spec.confidential)
        document = report.discovery.document if report.discovery else None
        config = dataclasses.replace(
            draft.diffgram_config(), discovery=document if isinstance(document, dict) else {}
        )
        variables = diffgram.masked(kind.diffgram_settings(config, options["url_base"]))
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": report.ok,
                        "checks": report.as_list(),
                        "diffgram": variables,
                        "known_issues": [dataclasses.asdict(issue) for issue in issues or []],
                    },
                    indent=2,
                )
            )
        else:
            print_checks(self.stdout, self.style, report.checks)
            if variables:
                self.stdout.write("\nDiffgram settings:")
                for name, value in variables.items():
                    self.stdout.write(f"  {name}={value}")
            if issues:
                self.stdout.write(
                    f"\nKnown defects of Diffgram {spec.diffgram_version} no setting fixes:"
                )
                for issue in issues:
                    self.stdout.write(f"  - {issue.issue}.\n    {issue.consequence}.")
                    self.stdout.write(f"    Workaround: {issue.workaround}.")
        if not report.ok:
            raise SystemExit(1)
