"""template.yaml against the AWS rules the local cloud does not enforce (../shared/FACTS.md,
docs/aws.md "What it got wrong"): ministack deploys a template that AWS would refuse, or that
AWS would deploy and then quietly not work. Each test names the AWS document its rule comes
from; they read the template, its offline SAM translation (aws-sam-translator, the transform
AWS runs) and, for the secrets, the functions' own code.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from infra.tables import _CfnLoader

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "template.yaml").read_text()
TEMPLATE: dict[str, Any] = yaml.load(TEXT, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = sorted(n for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function")
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:livecoins/stripe-AbCdEf"
CONNECT_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:livecoins/connect-AbCdEf"
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
XRAY_WRITE = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"


def _of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def _refs(node: Any) -> set[str]:
    """Every resource or parameter a node names (Ref, GetAtt, Sub's ${...})."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "GetAtt":
                found.add(value.split(".")[0] if isinstance(value, str) else value[0])
            elif key == "Sub":
                text = value if isinstance(value, str) else value[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _statements(function: str) -> list[dict[str, Any]]:
    """The function's inline policy statements, both branches of any Fn::If."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "If" in node:
                for branch in node["If"][1:]:
                    walk(branch)
            elif "Statement" in node:
                found.extend(node["Statement"])
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(RESOURCES[function]["Properties"].get("Policies", []))
    return found


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- Cognito ------------------------------------------------------------------------------


def test_the_app_client_may_write_every_required_attribute() -> None:
    """AWS refuses to create an app client whose WriteAttributes leave out a required
    attribute ("Invalid write attributes specified while creating a client",
    InvalidParameterException), and sign-up cannot set an attribute the client may not write.
    ministack creates the client and signs users up regardless.

    https://docs.aws.amazon.com/cognito/latest/developerguide/user-pool-settings-attributes.html
    ("Attribute permissions and scopes"; required attributes are set at sign-up), and
    https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UserPoolClientType.html
    (WriteAttributes); the error text as AWS returns it: aws/aws-cdk issue #20760.
    """
    pools = _of_type("AWS::Cognito::UserPool")
    clients = _of_type("AWS::Cognito::UserPoolClient")
    assert clients
    for name, client in clients.items():
        (pool,) = _refs(client["Properties"]["UserPoolId"])
        required = {
            a["Name"] for a in pools[pool]["Properties"].get("Schema", []) if a.get("Required")
        }
        username = set(pools[pool]["Properties"].get("UsernameAttributes", []))
        writable = set(client["Properties"].get("WriteAttributes", required | username))
        assert required <= writable, (name, required - writable)


def test_the_birthdate_is_set_at_sign_up_and_never_changed() -> None:
    """Adulthood is decided from `birthdate`: writable by the app client (required, above)
    but immutable, so a user cannot change it with UpdateUserAttributes after sign-up.
    ministack lets users change an immutable attribute; AWS does not.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-cognito-userpool-schemaattribute.html
    (Mutable: "Specifies whether the value of the attribute can be changed"), and
    https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pool-updating.html
    (required attributes cannot change after the pool is created: choose them right first).
    """
    (pool,) = _of_type("AWS::Cognito::UserPool").values()
    (birthdate,) = [a for a in pool["Properties"]["Schema"] if a["Name"] == "birthdate"]
    assert birthdate["Required"] is True and birthdate["Mutable"] is False


# --- Alarms -------------------------------------------------------------------------------

AWS_MANAGED_KEY = re.compile(r"^(alias/aws/|arn:aws[\w-]*:kms:[^:]*:[^:]*:alias/aws/)")


def test_every_alarm_can_reach_its_topic() -> None:
    """An alarm's actions must be topics of this stack (present whenever the alarm is) that
    CloudWatch can publish to. A topic encrypted with the AWS managed key `alias/aws/sns`
    cannot receive alarms (its key policy cannot be changed to let CloudWatch use it): the
    topic needs no encryption or a customer managed key whose policy allows the service
    principal cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*. ministack
    publishes to any topic.

    https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html ("Enable compatibility
    between event sources from AWS services and encrypted topics"), and
    https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger.
    """
    alarms = _of_type("AWS::CloudWatch::Alarm")
    assert alarms
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        actions = [
            a
            for kind in ("AlarmActions", "OKActions", "InsufficientDataActions")
            for a in properties.get(kind, [])
        ]
        assert actions, f"{name} notifies nobody"
        for action in actions:
            assert isinstance(action, dict) and set(action) == {"Ref"}, (name, action)
            topic = RESOURCES.get(action["Ref"])
            assert topic is not None and topic["Type"] == "AWS::SNS::Topic", (name, action)
            assert topic.get("Condition") in (None, alarm.get("Condition")), name
            _assert_cloudwatch_may_publish(action["Ref"], topic)


def _assert_cloudwatch_may_publish(name: str, topic: dict[str, Any]) -> None:
    key = topic["Properties"].get("KmsMasterKeyId")
    if key is not None:
        assert not (isinstance(key, str) and AWS_MANAGED_KEY.match(key)), (name, key)
        (key_name,) = _refs(key)
        policy = RESOURCES[key_name]["Properties"]["KeyPolicy"]
        granted = {
            action
            for statement in policy["Statement"]
            if statement["Effect"] == "Allow"
            and "cloudwatch.amazonaws.com" in _listed(statement["Principal"].get("Service", []))
            and "Condition" not in statement
            for action in _listed(statement["Action"])
        }
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= granted, (name, granted)
    for policy in _of_type("AWS::SNS::TopicPolicy").values():
        if name in _refs(policy["Properties"]["Topics"]):  # a custom policy replaces the default
            document = json.dumps(policy["Properties"]["PolicyDocument"])
            assert "cloudwatch.amazonaws.com" in document and "sns:Publish" in document, name


def _alarmed(namespace: str, metric: str, dimension: str, value: Any) -> list[str]:
    return [
        name
        for name, alarm in _of_type("AWS::CloudWatch::Alarm").items()
        if alarm["Properties"]["Namespace"] == namespace
        and alarm["Properties"]["MetricName"] == metric
        and {"Name": dimension, "Value": value} in alarm["Properties"].get("Dimensions", [])
    ]


@pytest.mark.parametrize(
    ("namespace", "metric", "dimension", "value"),
    [
        ("AWS/Lambda", "IteratorAge", "FunctionName", {"Ref": "GiftFeedFanOutFunction"}),
        ("AWS/Lambda", "Errors", "FunctionName", {"Ref": "GiftFeedFanOutFunction"}),
        ("AWS/Lambda", "Throttles", "FunctionName", {"Ref": "GiftFeedFanOutFunction"}),
        ("AWS/Lambda", "Errors", "FunctionName", {"Ref": "GiftFeedSocketFunction"}),
        ("AWS/Lambda", "Throttles", "FunctionName", {"Ref": "GiftFeedSocketFunction"}),
        ("AWS/Lambda", "Throttles", "FunctionName", {"Ref": "GraphQLFunction"}),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            {"GetAtt": ["GiftFeedFailures", "QueueName"]},
        ),
    ],
)
def test_the_feed_and_the_api_are_alarmed(
    namespace: str, metric: str, dimension: str, value: Any
) -> None:
    """The live feed fails quietly: a fan-out that falls behind its streams (IteratorAge,
    milliseconds behind), throttled or failing functions, batches given up on (messages in
    GiftFeedFailures). Each has an alarm.

    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html (Errors,
    Throttles, IteratorAge for stream event sources), and
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
    """
    if isinstance(value, dict) and "GetAtt" in value:
        value = {"GetAtt": ".".join(value["GetAtt"])}
    assert _alarmed(namespace, metric, dimension, value), (namespace, metric, value)


# --- Managed policies ---------------------------------------------------------------------


def translated(parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """template.yaml through the SAM transform, as CloudFormation runs it with these
    parameter values (the others at their defaults)."""
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform

    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/code.zip"

    class NoIam:
        def load(self) -> dict[str, str]:
            return {}

    loader = ManagedPolicyLoader(NoIam())  # type: ignore[arg-type]
    return transform(_json_form(template), parameters or {}, loader)


def _json_form(node: Any) -> Any:
    """The loader's {"Sub": ...} tags as CloudFormation JSON ({"Fn::Sub": ...})."""
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, value),) = node.items()
            if key in {"Ref", "Sub", "GetAtt", "If", "Not", "Equals", "Join"}:
                name = "Ref" if key == "Ref" else f"Fn::{key}"
                if key == "GetAtt" and isinstance(value, str):
                    value = value.split(".", 1)
                return {name: _json_form(value)}
        return {k: _json_form(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_json_form(v) for v in node]
    return node


def _managed_policies(template: dict[str, Any]) -> dict[str, list[str]]:
    return {
        name: sorted(
            re.sub(r"arn:\$\{AWS::Partition\}|arn:aws[\w-]*", "arn:aws", _arn(arn))
            for arn in resource["Properties"].get("ManagedPolicyArns", [])
        )
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role"
    }


def _arn(value: Any) -> str:
    return value["Fn::Sub"] if isinstance(value, dict) else str(value)


def test_roles_carry_no_managed_policy_beyond_what_docs_aws_md_states() -> None:
    """The SAM transform attaches AWSXrayWriteOnlyAccess (Resource "*") to a function's role
    whenever its Tracing property is set, to anything but Disabled: with the old
    `Tracing: !If [Trace, Active, PassThrough]` every role had it with tracing off. Now the
    parameter itself is the mode, and only Active brings the policy, as docs/aws.md says.

    https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/sam-resource-function.html#sam-function-tracing
    (and aws-sam-translator's SamFunction._construct_role, which this translation runs).
    """
    default = _managed_policies(translated())
    assert len(default) == len(FUNCTIONS)
    assert all(policies == [BASIC_EXECUTION] for policies in default.values()), default
    traced = _managed_policies(translated({"Tracing": "Active"}))
    assert all(p == sorted([BASIC_EXECUTION, XRAY_WRITE]) for p in traced.values()), traced
    stated = (ROOT / "docs" / "aws.md").read_text()
    assert "AWSLambdaBasicExecutionRole" in stated and "AWSXrayWriteOnlyAccess" in stated


# --- Size -----------------------------------------------------------------------------------


def test_the_template_fits_in_the_quota_of_a_template_uploaded_to_s3() -> None:
    """CloudFormation takes at most 51,200 bytes of template inline (TemplateBody) and 1 MB
    from S3 (TemplateURL). This one is over the first, so it must go by S3: `sam deploy`
    uploads it, and so does the local cloud (infra/local_cloud.py), whose ministack refuses an
    inline body past the quota with AWS's ValidationError.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html"""
    assert len(TEXT.encode()) <= 1_000_000, len(TEXT.encode())
    deploys = (ROOT / "infra" / "local_cloud.py").read_text()
    assert "TemplateURL=" in deploys and "TemplateBody" not in deploys


# --- Secrets ------------------------------------------------------------------------------


def _may_read_the_secret(function: str, parameter: str = "StripeSecretArn") -> bool:
    return any(
        s["Effect"] == "Allow"
        and "secretsmanager:GetSecretValue" in _listed(s["Action"])
        and parameter in _refs(s["Resource"])
        for s in _statements(function)
    )


def test_the_secret_is_readable_by_exactly_the_functions_that_read_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A function that reads a secret its role may not read fails (AccessDeniedException
    GetSecretValue: the feed's handshake answered 403); a role that may read a secret its
    function never reads is privilege to spare. Here each function runs its own handler,
    with the environment the template gives it in a Stripe deployment, and the functions
    that read the Stripe secret must be exactly those whose role may.

    https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html
    (an identity must be allowed secretsmanager:GetSecretValue on the secret), and
    https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
    """
    readers = {
        f for f in FUNCTIONS if SECRET_ARN in _reads_the_secret(f, _environment(f), monkeypatch)
    }
    allowed = {f for f in FUNCTIONS if _may_read_the_secret(f)}
    assert readers == allowed == {"GraphQLFunction"}
    # The template hands the secret's ARN to that function only, too.
    named = {f for f in FUNCTIONS if "LIVECOINS_STRIPE_SECRET_ARN" in _environment(f)}
    assert named == {"GraphQLFunction"}


def test_the_payouts_endpoint_secret_is_readable_by_exactly_the_functions_that_read_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same rule for the payouts endpoint's own secret (StripeConnectSecretArn): the
    function that serves POST /webhooks/stripe-connect and pays withdrawals reads it (and the
    platform's key, from the Stripe secret, when the Connect secret names none); no other
    function may, whatever it is invoked with."""
    readers = {
        f
        for f in FUNCTIONS
        if CONNECT_ARN in _reads_the_secret(f, _environment(f), monkeypatch, _PAYOUTS_EVENTS)
    }
    allowed = {f for f in FUNCTIONS if _may_read_the_secret(f, "StripeConnectSecretArn")}
    assert readers == allowed == {"GraphQLFunction"}
    named = {f for f in FUNCTIONS if "LIVECOINS_STRIPE_CONNECT_SECRET_ARN" in _environment(f)}
    assert named == {"GraphQLFunction"}
    # reading the Connect secret without its own key, it also reads the platform's key
    both = _reads_the_secret(
        "GraphQLFunction", _environment("GraphQLFunction"), monkeypatch, _PAYOUTS_EVENTS
    )
    assert set(both) == {CONNECT_ARN, SECRET_ARN}


def test_payout_return_origins_default_to_the_cors_origins() -> None:
    told = _environment("GraphQLFunction", told={"CorsOrigins": "https://app.example.com"})
    assert told["LIVECOINS_PAYOUT_RETURN_ORIGINS"] == "https://app.example.com"
    own = _environment(
        "GraphQLFunction",
        told={
            "CorsOrigins": "https://app.example.com",
            "PayoutReturnOrigins": "https://pay.example",
        },
    )
    assert own["LIVECOINS_PAYOUT_RETURN_ORIGINS"] == "https://pay.example"


def test_the_functions_that_take_no_payment_never_read_the_secret_whatever_they_are_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The code's half of the rule above: handed the GraphQL function's whole environment
    (what Globals used to give every function), the feed, the fan-out and the payouts
    function still build no payment provider."""
    money = _environment("GraphQLFunction")
    for function in FUNCTIONS:
        if function != "GraphQLFunction":
            told = {**_environment(function), **money}
            assert not _reads_the_secret(function, told, monkeypatch), function
            read = _reads_the_secret(function, told, monkeypatch, _PAYOUTS_EVENTS)
            assert not read, function


def _environment(
    function: str, stores: bool = False, told: dict[str, str] | None = None
) -> dict[str, str]:
    """The variables template.yaml gives `function`, resolved for an AWS deployment with
    PaymentProvider=stripe, PayoutsProvider=stripe and their secrets (tables named
    rules-<Logical>), and the parameters `told`; with `stores`, selling in both stores too,
    their keys in their own secrets."""
    variables = {
        **TEMPLATE["Globals"]["Function"]["Environment"]["Variables"],
        **RESOURCES[function]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    parameters = {name: str(p.get("Default", "")) for name, p in TEMPLATE["Parameters"].items()} | {
        "PaymentProvider": "stripe",
        "StripeSecretArn": SECRET_ARN,
        "PayoutsProvider": "stripe",
        "StripeConnectSecretArn": CONNECT_ARN,
        "LocalCloudUrl": "",
        **(told or {}),
    }
    if stores:
        parameters |= STORES
    return {name: _resolve(value, parameters) for name, value in variables.items()}


def _resolve(node: Any, parameters: dict[str, str]) -> str:
    if isinstance(node, str | int | float):
        return str(node)
    ((key, value),) = node.items()
    if key == "Ref":
        return parameters.get(value, f"rules-{value}")
    if key == "Join":  # of a list parameter: its comma-separated text
        separator, ((ref, name),) = value[0], value[1].items()
        assert ref == "Ref", value
        return separator.join(v for v in parameters.get(name, "").split(",") if v)
    if key == "If":
        condition, then, otherwise = value
        if condition == "SellsInAppStore":
            return _resolve(then if parameters.get("AppStoreBundleId") else otherwise, parameters)
        if condition == "HasPayoutReturnOrigins":
            return _resolve(
                then if parameters.get("PayoutReturnOrigins") else otherwise, parameters
            )
        assert condition == "InLocalCloud", condition  # the only other one environments use
        return _resolve(otherwise, parameters)  # on AWS, LocalCloudUrl is empty
    if key == "Sub":  # URLs and ARNs: a well-formed stand-in is enough to build a client
        return re.sub(r"\$\{[^}]+\}", "x", value).replace("https://x", "https://rules")
    raise AssertionError(f"unexpected {key} in an environment variable")


def _reads_the_secret(
    function: str,
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    events: dict[str, Any] | None = None,
) -> list[str]:
    """Run the function's handler once (its first invocation builds what it uses), in moto,
    with its event of `events`, and say which Stripe secrets it asked Secrets Manager for."""
    from moto import mock_aws

    import handlers.gift_feed
    import handlers.lambda_api
    import handlers.payouts
    import infra.stripe_connect
    import infra.stripe_payments
    from infra.config import Settings
    from infra.dynamo import Dynamo
    from infra.tables import ensure_tables

    reads: list[str] = []

    def secret(arn: str, region: str) -> tuple[str, str]:
        reads.append(arn)
        return "sk_test_rules", "whsec_rules"

    def connect_secret(arn: str, region: str) -> tuple[str | None, str]:
        reads.append(arn)
        return None, "whsec_rules_connect"

    with monkeypatch.context() as patch, mock_aws():
        patch.setattr(infra.stripe_payments, "_secret", secret)
        patch.setattr(infra.stripe_connect, "_secret", connect_secret)
        for module, name in (
            (handlers.lambda_api, "_default"),
            (handlers.payouts, "_default"),
            (handlers.gift_feed, "_socket"),
            (handlers.gift_feed, "_fanout"),
            (handlers.gift_feed, "_posting"),
        ):
            patch.setattr(module, name, None)  # a new process: nothing built yet
        for name in [n for n in os.environ if n.startswith("LIVECOINS_")]:
            patch.delenv(name)
        for name, value in environment.items():
            patch.setenv(name, value)
        settings = Settings.from_env()
        ensure_tables(Dynamo(settings).client, settings)
        module_name, handler_name = RESOURCES[function]["Properties"]["Handler"].rsplit(".", 1)
        handler = getattr(importlib.import_module(module_name), handler_name)
        answer = handler((events or _EVENTS)[function], _context(function))
    assert "errorMessage" not in json.dumps(answer), answer
    return reads


# The least each function is invoked with: enough for it to build its process's state.
_EVENTS: dict[str, Any] = {
    "GraphQLFunction": {
        "version": "2.0",
        "rawPath": "/health",
        "headers": {},
        "requestContext": {"http": {"method": "GET"}},
    },
    "PayoutsFunction": {"limit": 1},
    "GiftFeedSocketFunction": {"requestContext": {"routeKey": "$disconnect", "connectionId": "c"}},
    "GiftFeedFanOutFunction": {"Records": []},
    "StoreCatchUpFunction": {},
    "GiftFeedPostFunction": {"Records": []},
}


# The same, with the GraphQL function serving the payouts endpoint (which builds the payouts
# processor, and so reads its secret).
_PAYOUTS_EVENTS: dict[str, Any] = _EVENTS | {
    "GraphQLFunction": {
        "version": "2.0",
        "rawPath": "/webhooks/stripe-connect",
        "headers": {"stripe-signature": "t=1,v1=00"},
        "body": "{}",
        "requestContext": {"http": {"method": "POST"}},
    },
}


def _context(function: str) -> Any:
    return SimpleNamespace(
        function_name=function,
        memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
        aws_request_id="rules",
    )


# --- The stores' secrets ------------------------------------------------------------------

APP_STORE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:livecoins/app-store-AbC"
PLAY_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:livecoins/play-AbC"
STORES = {
    "AppStoreBundleId": "com.livecoins.app",
    "AppStoreAppAppleId": "1234567890",
    "AppStoreSecretArn": APP_STORE_SECRET,
    "PlayPackageName": "com.livecoins.app",
    "PlaySecretArn": PLAY_SECRET,
    "PlayPushAudience": "https://rules/webhooks/play",
    "PlayPushServiceAccount": "push@rules.iam.gserviceaccount.com",
}
STORE_SECRETS = {"AppStoreSecretArn": APP_STORE_SECRET, "PlaySecretArn": PLAY_SECRET}
# What makes each function use the stores: their webhooks, the catch-up's run.
_STORE_EVENTS: dict[str, list[Any]] = {
    "GraphQLFunction": [
        {
            "version": "2.0",
            "rawPath": path,
            "headers": {},
            "body": '{"signedPayload": "a.b.c"}',
            "requestContext": {"http": {"method": "POST"}},
        }
        for path in ("/webhooks/app-store", "/webhooks/play")
    ],
}


def _may_read(function: str, parameter: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and "secretsmanager:GetSecretValue" in _listed(s["Action"])
        and parameter in _refs(s["Resource"])
        for s in _statements(function)
    )


def test_each_store_secret_is_readable_by_exactly_the_functions_that_read_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The App Store key and the Google service account, each in its own secret: the GraphQL
    function reads both (redeeming, the notifications), the scheduled catch-up both (the
    refund reads); no other function may, nor is told their ARNs. Each function runs its
    handler with the template's environment in a deployment selling in both stores, on an
    event that makes it use them."""
    for parameter, arn in STORE_SECRETS.items():
        readers = {
            f
            for f in FUNCTIONS
            if arn in _store_secrets_read(f, _environment(f, stores=True), monkeypatch, tmp_path)
        }
        allowed = {f for f in FUNCTIONS if _may_read(f, parameter)}
        assert readers == allowed == {"GraphQLFunction", "StoreCatchUpFunction"}, parameter
        variable = (
            "LIVECOINS_APP_STORE_SECRET_ARN"
            if "App" in parameter
            else ("LIVECOINS_PLAY_SECRET_ARN")
        )
        named = {f for f in FUNCTIONS if _environment(f, stores=True).get(variable)}
        assert named == {"GraphQLFunction", "StoreCatchUpFunction"}, variable


def test_the_functions_that_sell_nothing_never_read_a_store_secret_whatever_they_are_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    told = _environment("GraphQLFunction", stores=True)
    for function in ("PayoutsFunction", "GiftFeedSocketFunction", "GiftFeedFanOutFunction"):
        environment = {**_environment(function), **told}
        assert not _store_secrets_read(function, environment, monkeypatch, tmp_path), function


def _store_secrets_read(
    function: str, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> set[str]:
    """Run the function's handler on the events that make it use the stores (in moto, the
    stores' hosts unreachable) and say which store secrets it asked Secrets Manager for."""
    from moto import mock_aws

    import handlers.gift_feed
    import handlers.lambda_api
    import handlers.payouts
    import handlers.store_catch_up
    import infra.app_store
    import infra.play_store
    import infra.stripe_payments
    from infra.config import Settings
    from infra.dynamo import Dynamo
    from infra.tables import ensure_tables
    from tests.app_store_fake import AppStoreFake
    from tests.play_store_fake import PlayStoreFake

    reads: set[str] = set()
    apple = AppStoreFake()
    root = tmp_path / "AppleRootCA-G3.cer"
    root.write_bytes(apple.chain.root_der)

    def app_store_secret(arn: str, region: str) -> Any:
        reads.add(arn)
        return infra.app_store.AppStoreKey("KEY", "issuer", apple.private_key_pem)

    def play_secret(arn: str, region: str) -> Any:
        reads.add(arn)
        return PlayStoreFake().service_account_info("http://127.0.0.1:9/token")

    with monkeypatch.context() as patch, mock_aws():
        patch.setattr(infra.stripe_payments, "_secret", lambda arn, region: ("sk_r", "whsec_r"))
        patch.setattr(infra.app_store, "_secret", app_store_secret)
        patch.setattr(infra.play_store, "_secret", play_secret)
        for module, name in (
            (handlers.lambda_api, "_default"),
            (handlers.payouts, "_default"),
            (handlers.gift_feed, "_socket"),
            (handlers.gift_feed, "_fanout"),
            (handlers.store_catch_up, "_default"),
        ):
            patch.setattr(module, name, None)
        for name in [n for n in os.environ if n.startswith("LIVECOINS_")]:
            patch.delenv(name)
        for name, value in environment.items():
            patch.setenv(name, value)
        if environment.get("LIVECOINS_APP_STORE_ROOT_CERTIFICATES"):
            patch.setenv("LIVECOINS_APP_STORE_ROOT_CERTIFICATES", str(root))
        # the stores' hosts refuse at once, and nothing is retried for long
        patch.setenv("LIVECOINS_APP_STORE_API_BASE", "http://127.0.0.1:9")
        patch.setenv("LIVECOINS_APP_STORE_SANDBOX_API_BASE", "http://127.0.0.1:9")
        patch.setenv("LIVECOINS_PLAY_API_BASE", "http://127.0.0.1:9")
        patch.setenv("LIVECOINS_PLAY_CERTS_URL", "http://127.0.0.1:9/certs")
        patch.setenv("LIVECOINS_RETRY_BUDGET_SECONDS", "0.1")
        settings = Settings.from_env()
        ensure_tables(Dynamo(settings).client, settings)
        module_name, handler_name = RESOURCES[function]["Properties"]["Handler"].rsplit(".", 1)
        handler = getattr(importlib.import_module(module_name), handler_name)
        for event in _STORE_EVENTS.get(function, [_EVENTS[function]]):
            answer = handler(event, _context(function))
            assert "errorMessage" not in json.dumps(answer), answer
    return reads
