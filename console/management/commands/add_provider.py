from django.core.management.base import BaseCommand, CommandError

from console import kinds, providers
from console.management.commands._cli import cli_actor, from_environment, print_checks

# Each secret is read from the environment variable its option names, never from an argument.
SECRET_OPTIONS = {
    "client_secret": "client_secret_env",
    "keycloak_master_password": "master_password_env",
    "keycloak_diffgram_password": "diffgram_password_env",
}


class Command(BaseCommand):
    help = (
        "Create an identity provider as the form does (same validation, same audit events), "
        "then validate it. Secrets (the client secret, the Keycloak passwords) are read from "
        "the environment variables named by the --*-env options, never from the command line. "
        "Exit 0 when created and valid, 1 when created but a validation check fails, 2 when "
        "nothing was created."
    )

    def add_arguments(self, parser):
        parser.add_argument("location", metavar="ISSUER-or-SERVER")
        parser.add_argument("--kind", choices=list(kinds.KINDS), required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--client-id", required=True)
        parser.add_argument("--realm", default="", help="Keycloak realm")
        parser.add_argument("--region", default="", help="Cognito: AWS region")
        parser.add_argument("--user-pool-id", default="", help="Cognito: user pool id")
        parser.add_argument("--domain", default="", help="Cognito: hosted-UI domain")
        parser.add_argument("--scopes", default="", help="space-separated scopes")
        parser.add_argument("--url-base", default="", help="a Diffgram URL_BASE for the checks")
        parser.add_argument("--client-secret-env", metavar="VAR", default="")
        keycloak = parser.add_argument_group(
            "Keycloak: what Diffgram logs in with at every start (docs/DIFFGRAM.md)"
        )
        keycloak.add_argument("--master-user", default="", help="a master-realm admin")
        keycloak.add_argument("--master-password-env", metavar="VAR", default="")
        keycloak.add_argument("--diffgram-user", default="", help="the realm user Diffgram sets")
        keycloak.add_argument("--diffgram-password-env", metavar="VAR", default="")

    def handle(self, *args, **options):
        kind = kinds.KINDS[options["kind"]]
        form = kind.form(data=self._form_data(kind, options))
        if not form.is_valid():
            problems = [f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()]
            raise CommandError("Not created:\n  " + "\n  ".join(problems), returncode=2)
        provider = providers.save_provider(form, actor=cli_actor("add_provider"))
        provider, report = providers.run_validation(provider, actor=cli_actor("add_provider"))
        self.stdout.write(f"Created provider {provider.name} (id {provider.pk}).")
        print_checks(self.stdout, self.style, report.checks)
        if not report.ok:
            self.stderr.write("Validation failed: it cannot be published until the checks pass.")
            raise SystemExit(1)

    def _form_data(self, kind, options):
        try:
            fields = kind.command_fields(options["location"], options)
        except ValueError as error:
            raise CommandError(str(error), returncode=2) from None
        data = {"name": options["name"], "client_id": options["client_id"], **fields}
        for secret, option in SECRET_OPTIONS.items():
            if secret in kind.secret_names:
                data[secret] = from_environment(options[option])
            elif options[option]:
                flag = "--" + option.replace("_", "-")
                raise CommandError(
                    f"A {kind.label} provider takes no {flag}: it has no {secret.replace('_', ' ')}"
                    " to keep.",
                    returncode=2,
                )
        return data
