"""Every AWS client the console uses, made in one place: boto3's standard credential chain,
optionally an assumed IAM role, and the endpoint AWS_ENDPOINT_URL names (a moto server in
tests). AWS errors become AWSError with a message naming what to do (the IAM permission to add),
never a botocore exception."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from django.conf import settings

if TYPE_CHECKING:
    import boto3

THROTTLED = {"TooManyRequestsException", "ThrottlingException", "LimitExceededException"}
DENIED = {
    "AccessDeniedException",
    "AccessDenied",
    "NotAuthorizedException",
    "UnauthorizedOperation",
}
# Errors of a single call that a later call may not meet again.
TRANSIENT = THROTTLED | {"TooManyUpdates", "InternalServerError", "ServiceUnavailable"}
# What the console's own calls may raise; anything else is a defect, not an AWS answer.
ERRORS = (ClientError, BotoCoreError)


class AWSError(Exception):
    """Something AWS refused; the message says what to do about it."""

    def __init__(self, message, *, code="", transient=False):
        super().__init__(message)
        self.code = code  # AWS's error code, "" when AWS did not answer
        self.transient = transient  # a later call may succeed (throttled, unreachable)


def endpoint_url(service) -> str | None:
    """Where calls to `service` go: AWS itself unless AWS_ENDPOINT_URL (or, for Cognito,
    AWS_ENDPOINT_URL_COGNITO_IDP) names a stand-in, as boto3 itself reads them."""
    if service == "cognito-idp" and settings.AWS_ENDPOINT_URL_COGNITO_IDP:
        return settings.AWS_ENDPOINT_URL_COGNITO_IDP
    return settings.AWS_ENDPOINT_URL or None


_threads = threading.local()


def session() -> boto3.session.Session:
    """This thread's session with the standard credential chain: boto3 sessions must not be
    shared between threads (pushes and web requests run in threads), clients may."""
    if not hasattr(_threads, "session"):
        import boto3  # on first use, not at start-up: most processes make no AWS call

        _threads.session = boto3.session.Session()
    return _threads.session


def client(service, *, region=None, role_arn="") -> Any:
    """A client with the credentials of `role_arn` when given, else of this thread's session."""
    chosen = _assumed(role_arn, region) if role_arn else session()
    return chosen.client(service, region_name=region, endpoint_url=endpoint_url(service))


def _assumed(role_arn, region) -> boto3.session.Session:
    credentials = call(
        session().client("sts", endpoint_url=endpoint_url("sts"), region_name=region),
        "assume_role", "sts:AssumeRole", role_arn,
        RoleArn=role_arn, RoleSessionName="diffgram-sso-console",
    )["Credentials"]  # fmt: skip
    import boto3

    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def error_code(error) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def explain(error, permission, resource) -> str:
    """What an AWS error means for the admin, naming the permission to add when denied."""
    if isinstance(error, NoCredentialsError):
        return (
            "No AWS credentials found. Give the console an IAM role (or the standard AWS_* "
            "variables) with the policy in README.md."
        )
    if isinstance(error, ClientError):
        code = error_code(error)
        if code in DENIED:
            return f"AWS denied {permission} on {resource}: add it to the console's IAM policy."
        if code == "ResourceNotFoundException":
            return f"AWS has no {resource} in this region ({code})."
        if code in THROTTLED:
            return f"AWS throttled {permission}; try again in a moment."
        return f"AWS refused {permission} on {resource}: {code}."
    return f"Could not reach AWS for {permission}: {error}"


def call(aws_client, operation, permission, resource, **arguments) -> Any:
    """One boto3 call; an AWS error becomes an AWSError saying what to do about it."""
    try:
        return getattr(aws_client, operation)(**arguments)
    except ERRORS as error:
        code = error_code(error)
        unreachable = not isinstance(error, (ClientError, NoCredentialsError))
        raise AWSError(
            explain(error, permission, resource),
            code=code,
            transient=code in TRANSIENT or unreachable,
        ) from None
