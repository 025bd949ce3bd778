"""A local AWS cloud: ministack with CloudFormation, Lambda, API Gateway, Cognito and IAM, and
template.yaml deployed into it (`make cloud`, and the cloud suite in tests/cloud/).

ministack (in .venv-engine, with aws-sam-translator and cryptography beside it) applies the SAM
transform, runs the Python functions as subprocesses of its own interpreter, routes the
explicit ApiGatewayV2 resources, verifies Cognito ID tokens in the JWT authorizer and, with
AUTH=true, enforces each function's IAM role. The functions run the bundle `make
build/local-cloud/bundle.zip` builds for this machine (the same recipe as `sam build`).

It listens on 127.0.0.1 only, keeps its Lambda workers' folders in a temporary directory of its
own, and `stop` ends it by its PID and removes that directory. docs/aws.md lists what it
cannot prove.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
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

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **ROOT_KEYS)

    def deploy(
        self, bundle: Path, name: str = "livecoins", parameters: dict[str, str] | None = None
    ) -> Stack:
        """Create the stack from template.yaml with the bundle as every function's code."""
        started = time.monotonic()
        s3 = self.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(bundle), BUCKET, "bundle.zip")
        body = (ROOT / "template.yaml").read_text()
        assert "CodeUri: .\n" in body
        body = body.replace("CodeUri: .\n", f"CodeUri: s3://{BUCKET}/bundle.zip\n")
        values = {"LocalCloudUrl": self.url, **(parameters or {})}
        cloudformation = self.client("cloudformation")
        cloudformation.create_stack(
            StackName=name,
            TemplateBody=body,
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

    def seed_catalog(self, stack: Stack) -> int:
        """The default catalog into the stack's catalog table (as `livecoins seed` does)."""
        return seed_catalog_table(stack.outputs["CatalogTableName"], self.url, ROOT_KEYS)

    def stop(self) -> None:
        """End ministack by its PID (its Lambda workers end with it) and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
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
