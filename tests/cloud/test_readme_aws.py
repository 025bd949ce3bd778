"""README's AWS walkthrough, run as written against the local cloud: "Try the AWS shape
locally" says to export its `AWS_ENDPOINT_URL` line and run steps 5 and 6 of "Deploy to AWS"
with the ids and URLs `make cloud` printed. Only the placeholders are filled in (with the
sandbox stack's, the configuration `make cloud` deploys); the commands run with bash, as a
reader's shell would, the AWS CLI and curl from the PATH."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from infra.local_cloud import ROOT
from tests.cloud.conftest import Cloud
from tests.test_readme import README, sections

pytestmark = pytest.mark.cloud
BASH = shutil.which("bash") or "/bin/bash"


def _blocks(title: str) -> list[str]:
    (section,) = [s for s in sections(README.read_text()) if s.title == title]
    return [b.text for b in section.blocks if b.language == "sh"]


def test_the_readme_signs_up_and_calls_the_local_cloud_as_written(sandbox: Cloud) -> None:
    missing = [tool for tool in ("aws", "curl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"README's prerequisites are missing here: {missing}")
    # GIVEN the export line of "Try the AWS shape locally", at the URL `make cloud` printed
    (export,) = [b for b in _blocks("Try the AWS shape locally") if "AWS_ENDPOINT_URL" in b]
    assert "--endpoint-url" not in export
    export = export.replace("http://127.0.0.1:<port>", sandbox.cloud.url)
    # AND steps 5 and 6 of "Deploy to AWS" with the stack's ids and URLs
    steps = [b for b in _blocks("Deploy to AWS") if "cognito-idp" in b or "curl" in b]
    assert len(steps) == 2, steps
    outputs = sandbox.stack.outputs
    values = {
        "<UserPoolId>": outputs["UserPoolId"],
        "<UserPoolClientId>": outputs["UserPoolClientId"],
        "<HealthUrl>": sandbox.stack.health_url,
        "<GraphQLUrl>": sandbox.stack.graphql_url,
    }
    script = "\n".join(["set -euo pipefail", export, *steps])
    for placeholder, value in values.items():
        script = script.replace(placeholder, value)
    assert not re.search(r"<[A-Z][A-Za-z]+>", script), script
    # WHEN a reader runs them (no AWS settings of their own in the way)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [BASH, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    # THEN the user exists, is signed in with SRP, and `me` answers through the authorizer
    assert done.returncode == 0, done.stdout + done.stderr
    health, me = _documents(done.stdout)[-2:]  # after the AWS CLI's own answers
    assert health == {"status": "ok"}
    assert me == {"data": {"me": {"displayName": "You", "wallet": {"coins": 0}}}}, me


def _documents(text: str) -> list[object]:
    """The JSON values printed one after another (curl adds no newline after a body)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return found
        value, at = decoder.raw_decode(text, at)
        found.append(value)
