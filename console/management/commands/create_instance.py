from django.core.management.base import BaseCommand, CommandError

from console import instances
from console.instance_forms import InstanceForm
from console.management.commands._cli import cli_actor
from console.models import Provider


class Command(BaseCommand):
    help = (
        "Register a Diffgram instance as the form does (same rules, same audit events) and print "
        "its id and API token once. --push is none, webhook:URL or ssm:REGION[:PREFIX]."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--url-base", required=True)
        parser.add_argument("--provider", required=True, help="provider name")
        parser.add_argument("--group", default="default")
        parser.add_argument("--shape", choices=["compose", "helm"], default="compose")
        parser.add_argument(
            "--push", default="none", help="none | webhook:URL | ssm:REGION[:PREFIX]"
        )
        parser.add_argument(
            "--allow-plain-http", action="store_true",
            help="allow an http:// webhook off this host (pushes carry secrets)",
        )  # fmt: skip

    def handle(self, *args, **options):
        provider = Provider.objects.filter(name=options["provider"]).first()
        if provider is None:
            raise CommandError(f"No provider named {options['provider']!r}", returncode=2)
        data = {
            "name": options["name"],
            "url_base": options["url_base"],
            "shape": options["shape"],
            "rollout_group": options["group"],
            "provider": provider.pk,
            **self._push(options["push"]),
            "webhook_allow_http": options["allow_plain_http"],
        }
        form = InstanceForm(data=data)
        if not form.is_valid():
            problems = [f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()]
            raise CommandError("Not created:\n  " + "\n  ".join(problems), returncode=2)
        instance, token = instances.create_instance(form, actor=cli_actor("create_instance"))
        self.stdout.write(f"instance id: {instance.pk}")
        self.stdout.write(f"token: {token}")
        if instance.push_target == "webhook":
            self.stdout.write(f"signing secret: {instance.signing_secret()}")
        self.stdout.write("The token is shown only this once.")

    def _push(self, spec):
        kind, _, rest = spec.partition(":")
        if kind == "none" and not rest:
            return {"push_target": "none"}
        if kind == "webhook" and rest:
            return {"push_target": "webhook", "webhook_url": rest}
        if kind == "ssm" and rest:
            region, _, prefix = rest.partition(":")
            return {"push_target": "ssm", "ssm_region": region, "ssm_prefix": prefix}
        raise CommandError(
            f"--push {spec!r}: use none, webhook:URL or ssm:REGION[:PREFIX]", returncode=2
        )
