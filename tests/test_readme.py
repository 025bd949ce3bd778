"""Every README walkthrough, run as written against `livecoins serve` (the `local_server`
fixture), so the README cannot drift from what the server does.

What is run comes from README.md itself, in order: every section with a ```graphql block is a
walkthrough. In it, `livecoins token` lines of ```sh blocks are run as commands (each prints
the token of its `--name`), other ```sh blocks run whole with bash, and each ```graphql block
is one document, sent with the token its first line names (`# as Cora`; `# as Vic, then as
Wen` sends it once for each; `# as anyone` sends none; `# as Vic: answers StreamNotLive`
expects that user error). A placeholder is an id prefix and
three dots in a string (`"str_..."`) and takes the newest id with that prefix answered so
far. Only the server address differs from the README: http://127.0.0.1:8000 is the test
server's. Every answer must be free of errors and of user-error union members; a
subscription stays open to the end of its section and must have seen every gift the section
sent to its stream, and then complete when the stream ends. A new section with GraphQL
blocks is a walkthrough too, and runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from graphql import OperationDefinitionNode, parse

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_ADDRESS = "http://127.0.0.1:8000"
PLACEHOLDER = re.compile(r'"([a-z]+_)\.\.\."')
MINTED_ID = re.compile(r"^[a-z]+_[0-9A-Z]{26}$")
AS = re.compile(r"\bas (\w+)")
ANSWERS = re.compile(r"\banswers (\w+)")
BASH = shutil.which("bash") or "/bin/bash"  # as a reader's shell runs them


@dataclass
class Block:
    language: str
    text: str
    line: int  # where it starts in README.md, for failure messages


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def sections(text: str) -> list[Section]:
    """README.md's `## ` sections with their fenced blocks (indented ones too)."""
    found: list[Section] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            found.append(Section(line[3:].strip()))
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if fence and found:
            indent, language, start = fence.group(1), fence.group(2), i + 1
            body: list[str] = []
            i += 1
            while not re.match(r"^\s*```\s*$", lines[i]):
                body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            found[-1].blocks.append(Block(language, "\n".join(body), start))
        i += 1
    return found


def walkthroughs() -> list[Section]:
    return [
        s for s in sections(README.read_text()) if any(b.language == "graphql" for b in s.blocks)
    ]


def user_error_types() -> set[str]:
    sdl = (ROOT / "schema" / "schema.graphql").read_text()
    return set(re.findall(r"^type (\w+) implements UserError", sdl, re.MULTILINE))


def test_readme_has_the_walkthroughs_it_promises() -> None:
    titles = [s.title for s in walkthroughs()]
    promised = [
        "Try it in GraphiQL",
        "A live stream, step by step",
        "From diamonds to cash, step by step",
    ]
    assert [t for t in titles if t in promised] == promised


def test_each_graphql_block_is_one_document_with_its_caller_and_placeholders() -> None:
    for section in walkthroughs():
        for block in section.blocks:
            if block.language != "graphql":
                continue
            where = f"README.md line {block.line}"
            # GraphiQL runs one operation per document: two anonymous ones are refused
            operations = [
                d for d in parse(block.text).definitions if isinstance(d, OperationDefinitionNode)
            ]
            assert len(operations) == 1, f"{where}: one operation per block"
            first = block.text.splitlines()[0]
            assert first.startswith("# as "), f"{where}: say whose token (# as ...)"
            # placeholders are marked one way only: "<prefix>_..."
            strings = re.findall(r'"([^"]*)"', block.text)
            loose = [s for s in strings if "..." in s and not PLACEHOLDER.fullmatch(f'"{s}"')]
            assert not loose, f'{where}: placeholders are written as "str_...": {loose}'
            assert "<" not in block.text, f"{where}: no <...> placeholders in documents"


def test_readme_and_docs_link_only_inside_the_repository() -> None:
    documents = [README, *sorted((ROOT / "docs").glob("*.md"))]
    for document in documents:
        text = document.read_text()
        assert "../shared" not in text, f"{document.name} points outside the repository"
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            path = (document.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT), f"{document.name}: {target} leaves the repository"
            assert path.exists(), f"{document.name}: {target} does not exist"


class Walk:
    """The state a reader carries from step to step: tokens, ids, open subscriptions."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}  # prefix ("str_") -> the newest id answered
        self.gifts: dict[str, set[str]] = {}  # stream id -> transfer ids sent in this section
        self.feeds: list[tuple[str, list[dict[str, Any]], asyncio.Task[None], str]] = []
        self.user_errors = user_error_types()
        self.expected: str | None = None  # the user error a block says it answers
        self.answered: set[str] = set()

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's `livecoins`
        env.pop("LIVECOINS_JWT_SECRET", None)
        return env

    def shell(self, block: Block) -> None:
        where = f"README.md line {block.line}"
        text = block.text.replace(README_ADDRESS, self.url)
        if "livecoins token" not in text or text.lstrip().startswith("TOKEN="):
            out = subprocess.run(
                [BASH, "-euo", "pipefail", "-c", text],
                cwd=ROOT,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, f"{where}: {out.stderr}"
            answer = json.loads(out.stdout)
            assert "errors" not in answer, f"{where}: {answer}"
            return
        for line in text.splitlines():
            command = line.split("#")[0].strip()
            if not command:
                continue
            out = subprocess.run(
                [BASH, "-c", command],
                cwd=ROOT,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, f"{where}: {command}: {out.stderr}"
            name = re.search(r"--name (\w+)", command) or re.search(r"--sub (\w+)", command)
            assert name, f"{where}: {command} names no user"
            self.tokens[name.group(1).lower()] = out.stdout.strip()

    def fill(self, block: Block) -> str:
        def placeholder(match: re.Match[str]) -> str:
            prefix = match.group(1)
            assert prefix in self.ids, (
                f"README.md line {block.line}: no earlier step answered a {prefix} id"
            )
            return f'"{self.ids[prefix]}"'

        return PLACEHOLDER.sub(placeholder, block.text)

    def callers(self, block: Block) -> list[str | None]:
        names = AS.findall(block.text.splitlines()[0].split(":")[0])
        assert names, f"README.md line {block.line}: whose token?"
        return [None if name == "anyone" else name.lower() for name in names]

    def headers(self, caller: str | None, block: Block) -> dict[str, str]:
        if caller is None:
            return {}
        assert caller in self.tokens, f"README.md line {block.line}: no token minted for {caller}"
        return {"Authorization": f"Bearer {self.tokens[caller]}"}

    async def graphql(self, block: Block) -> None:
        document = self.fill(block).replace(README_ADDRESS, self.url)  # e.g. a returnUrl
        if document.split("\n", 1)[1].lstrip().startswith("subscription"):
            await self.subscribe(document, block)
            return
        expected = ANSWERS.search(block.text.splitlines()[0])
        self.expected = expected.group(1) if expected else None
        for caller in self.callers(block):
            where = f"README.md line {block.line} as {caller or 'anyone'}"
            self.answered: set[str] = set()
            async with self.http.post(
                f"{self.url}/graphql",
                json={"query": document},
                headers=self.headers(caller, block),
            ) as response:
                assert response.status == 200, f"{where}: HTTP {response.status}"
                answer = await response.json()
            assert not answer.get("errors"), f"{where}: {answer['errors']}"
            self.learn(answer["data"], where, document)
            if self.expected:
                assert self.expected in self.answered, f"{where}: expected {self.expected}"

    def learn(self, data: Any, where: str, document: str) -> None:
        """Remember the ids answered; fail on a user-error member."""
        if isinstance(data, dict):
            kind = data.get("__typename")
            if kind:
                self.answered.add(kind)
            if kind != self.expected:
                assert kind not in self.user_errors, f"{where}: answered {kind}: {data}"
            for value in data.values():
                self.learn(value, where, document)
            if kind == "GiftSent" or "sendGift" in data:
                sent = data.get("sendGift", data)
                stream = re.search(r'streamId: "([^"]+)"', document)
                transfer = sent.get("transfer", {}).get("id") if isinstance(sent, dict) else None
                if stream and transfer:
                    self.gifts.setdefault(stream.group(1), set()).add(transfer)
        elif isinstance(data, list):
            for value in data:
                self.learn(value, where, document)
        elif isinstance(data, str) and MINTED_ID.match(data):
            self.ids[data.split("_")[0] + "_"] = data

    async def subscribe(self, document: str, block: Block) -> None:
        where = f"README.md line {block.line}"
        stream = re.search(r'streamId: "([^"]+)"', document)
        assert stream, f"{where}: a feed of which stream?"
        (caller,) = self.callers(block)
        ws = await self.http.ws_connect(
            f"{self.url}/graphql",
            protocols=["graphql-transport-ws"],
            headers=self.headers(caller, block),
        )
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json(timeout=5))["type"] == "connection_ack", where
        await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": document}})
        received: list[dict[str, Any]] = []

        async def read() -> None:
            async for message in ws:
                payload = json.loads(message.data)
                received.append(payload)
                if payload["type"] in ("complete", "error"):
                    break
            await ws.close()

        self.feeds.append((stream.group(1), received, asyncio.create_task(read()), where))
        await asyncio.sleep(0.2)  # the subscription is registered before the next step

    async def close_section(self) -> None:
        for stream, received, task, where in self.feeds:
            # ending the stream (the section's last step) completes the feed
            await asyncio.wait_for(task, timeout=5)
            assert received[-1]["type"] == "complete", f"{where}: {received[-1]}"
            seen = {m["payload"]["data"]["giftFeed"]["id"] for m in received if m["type"] == "next"}
            assert seen == self.gifts.get(stream, set()), f"{where}: the feed missed gifts"
            assert seen, f"{where}: the section sent no gift to watch"
        self.feeds.clear()
        self.gifts.clear()


@pytest.mark.engine
async def test_every_walkthrough_works_as_written(local_server: Any) -> None:
    async with aiohttp.ClientSession() as http:
        walk = Walk(local_server.url, http)
        for section in walkthroughs():
            for block in section.blocks:
                if block.language == "sh":
                    walk.shell(block)
                elif block.language == "graphql":
                    await walk.graphql(block)
                elif block.language == "json":
                    # the Headers example: a real token begins the same way
                    shown = re.search(r"Bearer (\w+)\.\.\.", block.text)
                    assert shown and all(t.startswith(shown.group(1)) for t in walk.tokens.values())
            await walk.close_section()
    assert {"alice", "root", "cora", "vic", "wen"} <= set(walk.tokens)
    # AND `livecoins audit` finds every coin and diamond the walkthroughs moved where it belongs
    audited = audit(local_server)
    assert audited.returncode == 0, audited.stdout + audited.stderr


def audit(server: Any) -> subprocess.CompletedProcess[str]:
    """`livecoins audit` against the running server's engine (its endpoint, as it printed)."""
    found = (re.search(r"engine up on (http://\S+)", line) for line in server.output)
    endpoint = next(m.group(1) for m in found if m)
    env = {**os.environ, "LIVECOINS_DYNAMODB_ENDPOINT": endpoint}
    for name in ("LIVECOINS_TABLE_PREFIX", "LIVECOINS_PAYMENT_PROVIDER"):
        env.pop(name, None)
    command = [str(ROOT / ".venv" / "bin" / "livecoins"), "audit", "--segments", "2"]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
