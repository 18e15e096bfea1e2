import dataclasses
import json
import re

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from console import diffgram, diffgram_releases, discovery
from console.management.commands._cli import print_checks
from console.models import Provider

COGNITO_ISSUER = re.compile(
    r"^https://cognito-idp\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<pool>[\w-]+)/?$"
)


class Command(BaseCommand):
    help = (
        "Validate an identity provider against its discovery document and JWKS without saving "
        "anything. Exit 0 when no check fails (warnings allowed), 1 when a check fails, 2 on "
        "bad arguments. For --kind keycloak, ISSUER is the Keycloak server URL."
    )

    def add_arguments(self, parser):
        parser.add_argument("issuer", metavar="ISSUER")
        parser.add_argument("--kind", choices=Provider.Kind.values, default=Provider.Kind.OIDC)
        parser.add_argument("--client-id", default="")
        parser.add_argument("--confidential", action="store_true", help="the client has a secret")
        parser.add_argument("--realm", default="", help="Keycloak realm (required for keycloak)")
        parser.add_argument("--url-base", default="", help="a Diffgram URL_BASE to check")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        draft = self._draft_provider(options)
        spec = dataclasses.replace(
            draft.spec(url_base=options["url_base"]),
            confidential=options["confidential"],
            # Not known here: the credentials and instances are checked by add_provider.
            keycloak_master_user=None,
            keycloak_diffgram_user=None,
            instance_names=None,
        )
        report = discovery.validate(spec, allow_loopback_http=settings.SSO_ADMIN_ALLOW_PRIVATE_URLS)
        issues = diffgram_releases.known_issues(
            spec.diffgram_version, spec.kind, client_secret=spec.confidential
        )
        document = report.discovery.document if report.discovery else None
        config = draft.diffgram_config()
        config = diffgram.ProviderConfig(
            **{**config.__dict__, "discovery": document if isinstance(document, dict) else {}}
        )
        variables = diffgram.masked(diffgram.settings_for(config, options["url_base"]))
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

    def _draft_provider(self, options):
        kind, issuer = options["kind"], options["issuer"]
        draft = Provider(kind=kind, issuer=issuer, client_id=options["client_id"])
        if kind == Provider.Kind.KEYCLOAK:
            if not options["realm"]:
                raise CommandError("--realm is required with --kind keycloak", returncode=2)
            draft.keycloak_server_url, draft.keycloak_realm = issuer, options["realm"]
        elif kind == Provider.Kind.COGNITO:
            match = COGNITO_ISSUER.match(issuer)
            if not match:
                raise CommandError(
                    "For --kind cognito, ISSUER is "
                    "https://cognito-idp.<region>.amazonaws.com/<user-pool-id>",
                    returncode=2,
                )
            draft.aws_region, draft.user_pool_id = match["region"], match["pool"]
        return draft
