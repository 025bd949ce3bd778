"""The cloud suite's stacks: template.yaml deployed into the local cloud (ministack with
AUTH=true: every function runs under its own IAM role), with users signed up and in through
the emulated Cognito (real RS256 ID tokens; the admin in the `admin` group).

`cloud` is the real configuration: PaymentProvider=stripe, the keys in the local cloud's
Secrets Manager (StripeSecretArn), Stripe's API played by tests/stripe_fake.py on a port the
functions reach (LocalStripeUrl). `sandbox` is a second stack in the same local cloud with
sandbox payments (what `make cloud` deploys), deployed only when a test asks for it. Both have
deletion protection off and no earnings hold (infra.local_cloud's TRIAL_PARAMETERS).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from infra.local_cloud import TRIAL_PARAMETERS, LocalCloud, Stack, build_bundle
from tests.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, StripeFake, served

PASSWORD = "Correct-Horse-Battery-9"  # a local test user's


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def http(url: str, body: Any = None, token: str | None = None, method: str | None = None) -> Reply:
    """One HTTP request; JSON in and out."""
    data = json.dumps(body).encode() if body is not None else None
    verb = method or ("POST" if data else "GET")
    request = urllib.request.Request(url, data=data, method=verb)  # noqa: S310 - 127.0.0.1
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - 127.0.0.1
            text = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        text, status, headers = error.read(), error.code, dict(error.headers)
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text.decode(errors="replace")
    return Reply(status, parsed, headers)


@dataclass
class User:
    email: str
    sub: str
    id_token: str


@dataclass
class Cloud:
    """The deployed stack, its cloud, its users and what the suite measured."""

    cloud: LocalCloud
    stack: Stack
    users: dict[str, User] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    stripe: StripeFake | None = None  # Stripe's API, for a stack with PaymentProvider=stripe
    secret_arn: str = ""

    def gql(self, user: str | None, query: str, variables: dict[str, Any] | None = None) -> Any:
        """POST a document: signed in as `user`, or to the public endpoint."""
        token = self.users[user].id_token if user else None
        url = self.stack.graphql_url if user else self.stack.public_graphql_url
        reply = http(url, {"query": query, "variables": variables or {}}, token)
        assert reply.status == 200, (reply.status, reply.body)
        return reply.body

    def data(self, user: str | None, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = self.gql(user, query, variables)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def sign_up(self, name: str, birthdate: str, admin: bool = False) -> User:
        from pycognito.aws_srp import AWSSRP

        idp = self.cloud.client("cognito-idp")
        pool, client = self.stack.outputs["UserPoolId"], self.stack.outputs["UserPoolClientId"]
        email = f"{name}-{int(time.time() * 1000)}@example.com"
        idp.sign_up(
            ClientId=client,
            Username=email,
            Password=PASSWORD,
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "birthdate", "Value": birthdate},
                {"Name": "name", "Value": name.title()},
            ],
        )
        idp.admin_confirm_sign_up(UserPoolId=pool, Username=email)
        if admin:
            idp.admin_add_user_to_group(UserPoolId=pool, Username=email, GroupName="admin")
        # Signed in with SRP, as a browser with Amplify or any Cognito SDK would (pycognito's
        # own token check would fetch the keys from AWS: the authorizer checks them here).
        srp = AWSSRP(email, PASSWORD, pool, client, client=idp)
        id_token = srp.authenticate_user()["AuthenticationResult"]["IdToken"]
        claims = json.loads(_b64(id_token.split(".")[1]))
        user = User(email, claims["sub"], id_token)
        self.users[name] = user
        return user

    def table(self, logical: str) -> str:
        """The physical name of one of the stack's tables (or other resources)."""
        resources = self.cloud.client("cloudformation").describe_stack_resources(
            StackName=self.stack.name, LogicalResourceId=logical
        )["StackResources"]
        return str(resources[0]["PhysicalResourceId"])

    def invoke(self, function: str, event: Any) -> Any:
        """Invoke one of the stack's functions directly (as an operator would the payouts
        function); it runs under its own role. Its answer, or AssertionError with the error."""
        answer = self.cloud.client("lambda").invoke(
            FunctionName=self.table(function), Payload=json.dumps(event).encode()
        )
        payload = json.loads(answer["Payload"].read() or b"null")
        assert not answer.get("FunctionError"), payload
        return payload


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture(scope="session")
def local_cloud() -> Iterator[tuple[LocalCloud, Any]]:
    """The local cloud and the functions' bundle, for every stack of the session."""
    bundle = build_bundle(sys.executable)
    local = LocalCloud()
    local.start()
    try:
        yield local, bundle
    except BaseException:
        print(local.log_tail(80))
        raise
    finally:
        started = time.monotonic()
        local.stop()
        print(f"\nlocal cloud stopped in {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="session")
def cloud(local_cloud: tuple[LocalCloud, Any]) -> Iterator[Cloud]:
    started = time.monotonic()
    local, bundle = local_cloud
    stripe = StripeFake()
    with served(stripe) as stripe_url:
        arn = local.secret(
            "livecoins/stripe", {"apiKey": SECRET_KEY, "webhookSecret": WEBHOOK_SECRET}
        )
        parameters = {
            **TRIAL_PARAMETERS,
            "PaymentProvider": "stripe",
            "StripeSecretArn": arn,
            "LocalStripeUrl": stripe_url,
        }
        try:
            stack = local.deploy(bundle, parameters=parameters)
            local.seed_catalog(stack)
            deployed = Cloud(local, stack, stripe=stripe, secret_arn=arn)
            deployed.timings["deploy"] = stack.timings["deploy"]
            # as `make cloud` does: the four cold starts at once, not one in each first test
            deployed.timings["warm_up"] = max(local.warm(stack).values())
            for name, birthdate, admin in (
                ("vic", "1990-01-01", False),
                ("cora", "1995-05-05", False),
                ("wen", "1988-08-08", False),
                ("root", "1980-01-01", True),
                ("kid", "2015-06-01", False),
            ):
                deployed.sign_up(name, birthdate, admin)
        except BaseException:
            print(local.log_tail(80))
            raise
        deployed.timings["setup"] = time.monotonic() - started
        yield deployed
        print(f"\ncloud suite timings: {json.dumps(deployed.timings)}")


@pytest.fixture(scope="session")
def sandbox(local_cloud: tuple[LocalCloud, Any]) -> Cloud:
    """A second stack with sandbox payments (tok_visa), as `make cloud` deploys it."""
    local, bundle = local_cloud
    stack = local.deploy(bundle, name="livecoins-sandbox", parameters=TRIAL_PARAMETERS)
    local.seed_catalog(stack)
    local.warm(stack)
    return Cloud(local, stack)
