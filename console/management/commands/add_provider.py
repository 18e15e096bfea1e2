from django.core.management.base import BaseCommand, CommandError

from console import providers
from console.forms import FORMS_BY_KIND
from console.management.commands._cli import cli_actor, from_environment, print_checks
from console.management.commands.check_issuer import COGNITO_ISSUER
from console.models import Provider


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
        parser.add_argument("--kind", choices=Provider.Kind.values, required=True)
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
        form = FORMS_BY_KIND[options["kind"]](data=self._form_data(options))
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

    def _form_data(self, options):
        kind, location = options["kind"], options["location"]
        data = {"name": options["name"], "client_id": options["client_id"]}
        if kind == Provider.Kind.KEYCLOAK:
            if options["client_secret_env"]:
                raise CommandError(
                    "Keycloak has no --client-secret-env: Diffgram reads its client's secret "
                    "from Keycloak's admin API.",
                    returncode=2,
                )
            data |= {
                "keycloak_server_url": location,
                "keycloak_realm": options["realm"],
                "keycloak_master_user": options["master_user"],
                "keycloak_master_password": from_environment(options["master_password_env"]),
                "keycloak_diffgram_user": options["diffgram_user"],
                "keycloak_diffgram_password": from_environment(options["diffgram_password_env"]),
                "diffgram_url_base": options["url_base"],
            }
            return data
        data["client_secret"] = from_environment(options["client_secret_env"])
        if kind == Provider.Kind.COGNITO:
            match = COGNITO_ISSUER.match(location)
            data |= {
                "aws_region": options["region"] or (match["region"] if match else ""),
                "user_pool_id": options["user_pool_id"] or (match["pool"] if match else ""),
                "cognito_domain": options["domain"],
                "scopes": options["scopes"] or "openid email",
                "diffgram_url_base": options["url_base"],
            }
        else:
            data |= {"issuer": location, "scopes": options["scopes"] or "openid email profile"}
        return data
