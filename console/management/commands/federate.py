from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from console import cognito, federation, kinds
from console.federation_forms import TYPES_BY_SHORT_NAME, FederationForm, data_for, name_in_pool
from console.management.commands._cli import cli_actor, from_environment
from console.models import Provider


class Command(BaseCommand):
    help = (
        "Federate an identity provider into a Cognito provider's user pool, as the Inspect page "
        "does (same checks, same audit events): --type oidc --from PROVIDER (a stored, "
        "validated generic OIDC or Keycloak provider), --type google|facebook|amazon|apple "
        "--client-id ID --client-secret-env VAR, or --type saml --name N --metadata-url URL. "
        "Running it again for the same name updates that provider. Secrets come from the "
        "environment (or, for Apple, the .p8 file), never from the command line. --remove, "
        "--enable and --disable act on an existing one. Exit 0 when done, 2 when nothing changed."
    )

    def add_arguments(self, parser):
        parser.add_argument("cognito", metavar="COGNITO_PROVIDER", help="the Cognito provider")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--type", choices=sorted(TYPES_BY_SHORT_NAME))
        action.add_argument("--remove", metavar="NAME")
        action.add_argument("--enable", metavar="NAME")
        action.add_argument("--disable", metavar="NAME")
        parser.add_argument("--name", default="", help="OIDC, SAML: its name in the pool")
        parser.add_argument("--from", dest="upstream", metavar="PROVIDER", default="")
        parser.add_argument("--client-id", default="")
        parser.add_argument("--client-secret-env", metavar="VAR", default="")
        parser.add_argument("--scopes", default="", help="default: the provider type's usual")
        parser.add_argument("--attributes-request-method", choices=["GET", "POST"], default="")
        parser.add_argument("--api-version", default="", help="Facebook")
        parser.add_argument("--team-id", default="", help="Apple")
        parser.add_argument("--key-id", default="", help="Apple")
        parser.add_argument("--private-key-file", metavar="PATH", default="", help="Apple .p8")
        parser.add_argument("--metadata-url", default="", help="SAML")
        parser.add_argument("--email-attribute", default="", help="SAML")
        parser.add_argument(
            "--not-enabled", action="store_true", help="do not enable it on the app client"
        )

    def handle(self, *args, **options):
        provider = Provider.objects.filter(
            name=options["cognito"], kind__in=kinds.slugs_where("aws_user_pool")
        ).first()
        if provider is None:
            raise CommandError(f"No Cognito provider named {options['cognito']!r}.", returncode=2)
        actor = cli_actor("federate")
        try:
            if options["remove"]:
                federation.remove(provider, options["remove"], actor=actor)
                self.stdout.write(f"Removed {options['remove']} from {provider.user_pool_id}.")
            elif options["enable"] or options["disable"]:
                name = options["enable"] or options["disable"]
                federation.set_enabled(provider, name, bool(options["enable"]), actor=actor)
                state = "Enabled" if options["enable"] else "Disabled"
                self.stdout.write(f"{state} {name} on the app client {provider.client_id}.")
            else:
                self._federate(provider, options, actor)
        except (cognito.AWSError, federation.FederationRefused) as error:
            raise CommandError(str(error), returncode=2) from None

    def _federate(self, provider, options, actor):
        kind = TYPES_BY_SHORT_NAME[options["type"]]
        upstream = None
        if options["upstream"]:
            upstream = Provider.objects.filter(name=options["upstream"]).first()
            if upstream is None:
                raise CommandError(f"No provider named {options['upstream']!r}.", returncode=2)
        name = name_in_pool(kind, options["name"], upstream)
        existing = provider.federations.filter(name=name).first() if name else None
        form = FederationForm(
            data=self._form_data(options, existing, upstream), instance=existing, idp_type=kind,
            cognito=provider,
        )  # fmt: skip
        if not form.is_valid():
            problems = [f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()]
            raise CommandError("Nothing changed:\n  " + "\n  ".join(problems), returncode=2)
        record = federation.federate(form, actor=actor)
        state = "enabled" if form.cleaned_data["enabled"] else "not enabled"
        self.stdout.write(f"Federated {record.name} ({record.type}) into {provider.user_pool_id}, "
                          f"{state} on the app client {provider.client_id}.")  # fmt: skip
        uri = federation.redirect_uri_at_aws(provider, kind)
        if uri:
            self.stdout.write(f"Allow this redirect URI at the provider: {uri}")

    def _form_data(self, options, existing, upstream):
        private_key = ""
        if options["private_key_file"]:
            try:
                private_key = Path(options["private_key_file"]).read_text()
            except OSError as error:
                raise CommandError(f"Cannot read the private key: {error}", returncode=2) from None
        return data_for(
            existing,
            name=options["name"],
            upstream=upstream.pk if upstream else None,
            client_id=options["client_id"],
            client_secret=from_environment(options["client_secret_env"]),
            private_key=private_key,
            authorize_scopes=options["scopes"],
            attributes_request_method=options["attributes_request_method"],
            api_version=options["api_version"],
            team_id=options["team_id"],
            key_id=options["key_id"],
            metadata_url=options["metadata_url"],
            email_attribute=options["email_attribute"],
            enabled=not options["not_enabled"],
        )
