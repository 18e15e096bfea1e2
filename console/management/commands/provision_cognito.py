from django.core.management.base import BaseCommand, CommandError

from console import cognito, cognito_provisioning
from console.kinds import ProvisionCognitoForm
from console.management.commands._cli import cli_actor, print_checks


class Command(BaseCommand):
    help = (
        "Create in an existing Cognito user pool the public app client Diffgram needs (the "
        "guide's steps 1 to 3: code grant, openid and email scopes, ALLOW_USER_PASSWORD_AUTH, "
        "the callback and sign-out URLs of each --url-base), and a hosted-UI domain when the "
        "pool has none; then store the provider using it and validate it, as the form does. "
        "Exit 0 when created and valid, 1 when created but a check fails, 2 when nothing was "
        "created."
    )

    def add_arguments(self, parser):
        parser.add_argument("--region", required=True)
        parser.add_argument("--user-pool-id", required=True)
        parser.add_argument("--name", required=True, help="the provider's name in the console")
        parser.add_argument("--client-name", default="diffgram", help="the app client's name")
        parser.add_argument("--domain-prefix", default="", help="if the pool has no domain")
        parser.add_argument(
            "--url-base", action="append", default=[], required=True,
            help="a Diffgram URL_BASE (repeat for several instances)",
        )  # fmt: skip
        parser.add_argument("--role-arn", default="", help="an IAM role to assume")

    def handle(self, *args, **options):
        form = ProvisionCognitoForm(
            data={
                "name": options["name"],
                "aws_region": options["region"],
                "user_pool_id": options["user_pool_id"],
                "aws_role_arn": options["role_arn"],
                "client_name": options["client_name"],
                "domain_prefix": options["domain_prefix"],
                "url_bases": "\n".join(options["url_base"]),
            }
        )
        if not form.is_valid():
            problems = [f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()]
            raise CommandError("Nothing created:\n  " + "\n  ".join(problems), returncode=2)
        try:
            provider, report = cognito_provisioning.provision(
                form, actor=cli_actor("provision_cognito")
            )
        except cognito.AWSError as error:
            raise CommandError(f"Nothing created: {error}", returncode=2) from None
        self.stdout.write(
            f"Created app client {provider.client_id} in {provider.user_pool_id} "
            f"(hosted UI {provider.cognito_domain}) and provider {provider.name} "
            f"(id {provider.pk})."
        )
        print_checks(self.stdout, self.style, report.checks)
        if not report.ok:
            self.stderr.write("Validation failed: it cannot be published until the checks pass.")
            raise SystemExit(1)
