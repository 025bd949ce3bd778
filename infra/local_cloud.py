"""A local AWS cloud: ministack with CloudFormation, Lambda, API Gateway, Cognito and IAM, and
template.yaml deployed into it (`make cloud`, and the cloud suite in tests/cloud/).

ministack (in .venv-engine, with aws-sam-translator and cryptography beside it) applies the SAM
transform, runs the Python functions as subprocesses of its own interpreter, routes the
explicit ApiGatewayV2 resources, verifies Cognito ID tokens in the JWT authorizer and, with
AUTH=true, enforces each function's IAM role. The functions run the bundle `make
build/local-cloud/bundle.zip` builds for this machine (the same recipe as `sam build`).

It listens on 127.0.0.1 only, keeps its Lambda workers' folders in a temporary directory of its
own, and `stop` ends it (and its Lambda workers: its own process group) within a few seconds
and removes that directory. docs/aws.md lists what it cannot prove.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.engine import _die_with_parent, free_port

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "build" / "local-cloud" / "bundle.zip"
BUCKET = "livecoins-local-cloud"
REGION = "us-east-1"
# ministack's root credentials: anything signed with them is the account itself.
ROOT_KEYS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
# What only a test or trial stack sets (template.yaml's defaults are production's).
TRIAL_PARAMETERS = {
    "DeletionProtection": "false",
    "PaymentProvider": "sandbox",
    "EarningsHoldSeconds": "0",
}
# How long `stop` lets ministack end on its own: its SIGTERM handler then waits for open
# connections and worker threads (15 s and more, measured), with nothing to save (no state
# is persisted), so the rest of its process group is killed.
STOP_GRACE_SECONDS = 2.0
# The least event each function answers: its first invocation builds what it uses.
WARM_EVENTS = {
    "GraphQLFunction": {
        "version": "2.0",
        "rawPath": "/health",
        "headers": {},
        "requestContext": {"http": {"method": "GET"}},
    },
    "GiftFeedSocketFunction": {
        "requestContext": {"routeKey": "$disconnect", "connectionId": "warm-up"}
    },
    "GiftFeedFanOutFunction": {"Records": []},
    "GiftFeedPostFunction": {"Records": []},
    "PayoutsFunction": {"limit": 1},
}


def build_bundle(python: str) -> Path:
    """The functions' code and runtime requirements for this machine (Makefile), rebuilt only
    when a source file or requirements.txt changed."""
    subprocess.run(  # noqa: S603 - our own Makefile
        ["make", "--no-print-directory", "-s", str(BUNDLE.relative_to(ROOT)), f"PYTHON={python}"],  # noqa: S607
        cwd=ROOT,
        check=True,
    )
    return BUNDLE


@dataclass
class Stack:
    """A deployed stack: its outputs and the local URLs that reach it."""

    name: str
    outputs: dict[str, str]
    cloud_url: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def graphql_url(self) -> str:
        return f"{self.cloud_url}/_aws/execute-api/{self.outputs['HttpApiId']}/graphql"

    @property
    def public_graphql_url(self) -> str:
        return f"{self.cloud_url}/_aws/execute-api/{self.outputs['HttpApiId']}/public/graphql"

    @property
    def webhook_url(self) -> str:
        return f"{self.cloud_url}/_aws/execute-api/{self.outputs['HttpApiId']}/webhooks/stripe"

    @property
    def health_url(self) -> str:
        return f"{self.cloud_url}/_aws/execute-api/{self.outputs['HttpApiId']}/health"

    @property
    def gift_feed_url(self) -> str:
        ws = self.cloud_url.replace("http://", "ws://", 1)
        return f"{ws}/_aws/execute-api/{self.outputs['GiftFeedApiId']}/live"


class LocalCloud:
    """ministack as a child process; `engine_command` is its script in .venv-engine."""

    def __init__(self, engine_command: str = ".venv-engine/bin/ministack") -> None:
        self.command = str((ROOT / engine_command).resolve())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: str | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.workdir = tempfile.mkdtemp(prefix="livecoins-cloud-")
        log = open(Path(self.workdir) / "ministack.log", "wb")
        env = {
            **os.environ,
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "IOT_MTLS_ENABLED": "0",  # else it also listens on 0.0.0.0:8883
            "SFTP_ENABLED": "0",
            "AUTH": "true",  # enforce the functions' IAM roles
            "LOG_LEVEL": "WARNING",
            "PERSIST_STATE": "0",
            # Lambda workers unpack the bundle here (about 55 MB each): removed in stop().
            "TMPDIR": self.workdir,
            "AWS_DEFAULT_REGION": REGION,
        }
        for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.pop(name, None)
        self.process = subprocess.Popen(  # noqa: S603 - the engine's own script
            [self.command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the local cloud exited at start: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_ministack/health", timeout=1):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the local cloud did not start in time")

    def log_tail(self, lines: int = 40) -> str:
        if not self.workdir:
            return ""
        path = Path(self.workdir) / "ministack.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def client(self, service: str, read_timeout: float = 60) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(read_timeout=read_timeout, retries={"mode": "standard"})
        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION, config=config, **ROOT_KEYS
        )

    def deploy(
        self, bundle: Path, name: str = "livecoins", parameters: dict[str, str] | None = None
    ) -> Stack:
        """Create the stack from template.yaml with the bundle as every function's code."""
        started = time.monotonic()
        s3 = self.client("s3")
        if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(bundle), BUCKET, "bundle.zip")
        body = (ROOT / "template.yaml").read_text()
        assert "CodeUri: .\n" in body
        body = body.replace("CodeUri: .\n", f"CodeUri: s3://{BUCKET}/bundle.zip\n")
        # From S3, as `sam deploy` sends it: a template body inline may not pass 51,200 bytes
        s3.put_object(Bucket=BUCKET, Key=f"{name}.yaml", Body=body.encode())
        values = {"LocalCloudUrl": self.url, **(parameters or {})}
        cloudformation = self.client("cloudformation")
        cloudformation.create_stack(
            StackName=name,
            TemplateURL=f"{self.url}/{BUCKET}/{name}.yaml",
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        outputs = self._wait(name, "CREATE_COMPLETE")
        stack = Stack(name, outputs, self.url)
        stack.timings["deploy"] = time.monotonic() - started
        return stack

    def update(self, stack: Stack, parameters: dict[str, str]) -> None:
        """Change some parameters of a deployed stack (the others keep their values)."""
        cloudformation = self.client("cloudformation")
        current = cloudformation.describe_stacks(StackName=stack.name)["Stacks"][0]["Parameters"]
        values = [
            {"ParameterKey": p["ParameterKey"], "ParameterValue": parameters[p["ParameterKey"]]}
            if p["ParameterKey"] in parameters
            else {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
            for p in current
        ]
        cloudformation.update_stack(
            StackName=stack.name,
            UsePreviousTemplate=True,
            Parameters=values,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack.outputs = self._wait(stack.name, "UPDATE_COMPLETE")

    def _wait(self, name: str, done: str, timeout: float = 120.0) -> dict[str, str]:
        cloudformation = self.client("cloudformation")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
            status = found["StackStatus"]
            if status == done:
                return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
            if status.endswith("FAILED") or "ROLLBACK" in status:
                events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
                reasons = [
                    f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                    for e in events
                    if e.get("ResourceStatusReason")
                ]
                raise RuntimeError(f"stack {name} is {status}: " + json.dumps(reasons[:10]))
            time.sleep(0.1)
        raise RuntimeError(f"stack {name} did not reach {done} in {timeout:.0f} s")

    def secret(self, name: str, value: dict[str, Any]) -> str:
        """A Secrets Manager secret (JSON) in the local cloud: its ARN."""
        created = self.client("secretsmanager").create_secret(
            Name=name, SecretString=json.dumps(value)
        )
        return str(created["ARN"])

    def functions(self, stack: Stack) -> dict[str, str]:
        """The stack's functions: logical id -> function name."""
        resources = self.client("cloudformation").describe_stack_resources(StackName=stack.name)
        return {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in resources["StackResources"]
            if r["ResourceType"] == "AWS::Lambda::Function"
        }

    def warm(self, stack: Stack) -> dict[str, float]:
        """Invoke each function once, in parallel, so that the first request is not a cold
        start (3.5 to 6 s each measured on an idle machine; 37 to 64 s for the four at once
        while it was shared): seconds each took. Raises if one failed."""
        lam = self.client("lambda", read_timeout=300)
        names = self.functions(stack)

        def invoke(logical: str) -> float:
            started = time.monotonic()
            answer = lam.invoke(
                FunctionName=names[logical], Payload=json.dumps(WARM_EVENTS[logical]).encode()
            )
            if answer.get("FunctionError"):
                raise RuntimeError(f"{logical} failed: {answer['Payload'].read()[:500]!r}")
            return time.monotonic() - started

        with ThreadPoolExecutor(len(WARM_EVENTS)) as pool:
            took = dict(zip(WARM_EVENTS, pool.map(invoke, WARM_EVENTS), strict=True))
        return took

    def seed_catalog(self, stack: Stack) -> int:
        """The default catalog into the stack's catalog table (as `livecoins seed` does)."""
        return seed_catalog_table(stack.outputs["CatalogTableName"], self.url, ROOT_KEYS)

    def stop(self) -> None:
        """End ministack (SIGTERM, then after STOP_GRACE_SECONDS a SIGKILL to its process
        group: it and its Lambda workers, which it started in its own session) and remove its
        folder."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
            # Its Lambda workers outlive it otherwise (they only notice at their next read).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        if self.workdir:
            # The workers' unpacked bundles (about 140 MB a function): removing them took up
            # to a minute on a busy machine, so a detached `rm` does it and stop returns now.
            subprocess.Popen(  # noqa: S603 - our own folder
                ["rm", "-rf", "--", self.workdir],  # noqa: S607
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.workdir = None


def seed_catalog_table(
    table: str, endpoint: str | None = None, credentials: dict[str, str] | None = None
) -> int:
    """Add the default catalog to one deployed catalog table, never overwriting admin edits."""
    import asyncio

    import boto3

    from infra.config import Settings
    from infra.dynamo import Dynamo
    from infra.services import Services
    from resolvers.catalog import seed

    settings = Settings(dynamodb_endpoint=endpoint, table_overrides={"catalog": table})
    region = REGION if endpoint else None  # on AWS: the caller's configured region
    client = boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name=region, **(credentials or {})
    )
    services = Services(settings, Dynamo(settings, client), None)
    return asyncio.run(seed(services.catalog))
