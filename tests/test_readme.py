"""Every shell command in README.md, run as a newcomer would: in a fresh copy of the project with no
`../shared` beside it and no internet.

The copy holds the files a clone would (git's tracked and not-ignored files of this working tree), inside
this run's temp folder, with this venv linked in as `.venv`. The README's ```bash blocks run in order,
each block in one shell in the copy (so a `cd` holds for the rest of its block), with web access cut
(a proxy on a closed port) so that no command can reach the Hub or web image search. A comment before
a block says how it is tested:

- `<!-- readme-test: skip (why) -->`: not run; the report lists it with its reason.
- `<!-- readme-test: stops without data (what it needs) -->`: each command succeeds or stops with a
  message and an exit code, never a Python traceback; then the block runs again with photos made from
  tests/fixtures/bears in data/bears, and every command must succeed.
- none: every command must succeed.

`pip install` commands are not run: the copy shares this venv, which already has them (the suite runs
in it), and PyPI may be out of reach. The report of what ran, stopped or was skipped is written to
test-artifacts/readme_commands.txt.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import FIXTURE_BEARS, ROOT, variants

MARKER = re.compile(r"<!-- readme-test: (skip|stops without data) \((.+)\) -->")
RC = "@@readme-test rc="
NO_WEB = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"}


@dataclass
class Block:
    line: int  # where the block starts in README.md
    commands: list[str]
    mode: str = "run"  # "run", "skip" or "stops without data"
    why: str = ""


@dataclass
class Outcome:
    command: str
    rc: int
    output: str

    def crashed(self) -> bool:
        return "Traceback (most recent call last)" in self.output or self.rc >= 128


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, block: Block, what: str) -> None:
        self.lines.append(f"README.md:{block.line} {what}")


def bash_blocks(readme: str) -> list[Block]:
    """The ```bash blocks, each with the test marker of the line before it; commands joined across `\\`."""
    lines, blocks = readme.splitlines(), []
    for number, line in enumerate(lines):
        if line.strip() != "```bash":
            continue
        end = lines.index("```", number + 1)
        body = "\n".join(lines[number + 1 : end]).replace("\\\n", " ")
        marker = MARKER.search(lines[number - 1]) if number else None
        block = Block(number + 1, [command.strip() for command in body.splitlines() if command.strip()])
        if marker:
            block.mode, block.why = marker.groups()
        blocks.append(block)
    return blocks


def fresh_copy(target: Path) -> Path:
    """The files a clone of this working tree holds, plus this venv as `.venv`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not in the copy
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to((ROOT / ".venv").resolve())
    return target


def run_block(commands: list[str], cwd: Path, timeout: float) -> list[Outcome]:
    """The commands in one shell, each followed by its exit code, so that each one's output is its own."""
    script = "".join(f"{command}\necho '{RC}'$?\n" for command in commands)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env={**os.environ, **NO_WEB},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    parts = re.split(rf"{RC}(\d+)\n", done.stdout)  # output, rc, output, rc, ..., what came after
    outcomes = [Outcome(c, int(rc), out) for c, out, rc in zip(commands, parts[0::2], parts[1::2])]
    assert len(outcomes) == len(commands), f"the block ended early:\n{done.stdout[-3000:]}"
    return outcomes


def runnable(block: Block, report: Report) -> list[str]:
    commands = []
    for command in block.commands:
        if re.match(r"\S*pip install ", command):
            report.add(block, f"not run (installs into the shared venv): {command}")
        else:
            commands.append(command)
    return commands


def give_photos(copy: Path) -> None:
    """data/bears as the training command expects it: enough photos for a batch of 32 (two variants of
    each fixture photo)."""
    for photo in sorted(FIXTURE_BEARS.glob("*/*.jpg")):
        variants(photo, copy / "data" / "bears" / photo.parent.name, 2)


def check(block: Block, outcomes: list[Outcome], may_stop: bool, report: Report) -> list[str]:
    """Problems with one run of a block, for the assertion; each command's result goes in the report."""
    problems = []
    for outcome in outcomes:
        said = (outcome.output.strip().splitlines() or [""])[-1]
        if outcome.rc == 0:
            report.add(block, f"ran: {outcome.command}")
        elif may_stop and said and not outcome.crashed():
            report.add(block, f"stopped with {outcome.rc} ({said}): {outcome.command}")
        else:
            report.add(block, f"FAILED with {outcome.rc}: {outcome.command}")
            problems.append(f"README.md:{block.line} `{outcome.command}` exit {outcome.rc}:\n{outcome.output[-3000:]}")
    return problems


def test_readme_commands_run_in_a_fresh_clone(tmp_path, artifacts):
    copy = fresh_copy(tmp_path / "bear-classifier")
    blocks, report, problems = bash_blocks((copy / "README.md").read_text()), Report(), []
    assert len(blocks) >= 5, "README.md has fewer bash blocks than expected: is the parser broken?"
    for block in blocks:
        if block.mode == "skip":
            report.add(block, f"skipped ({block.why}): " + " | ".join(block.commands))
            continue
        commands = runnable(block, report)
        may_stop = block.mode == "stops without data"
        problems += check(block, run_block(commands, copy, timeout=300), may_stop, report)
        if may_stop:
            give_photos(copy)
            report.add(block, "again, with photos made from tests/fixtures/bears in data/bears:")
            problems += check(block, run_block(commands, copy, timeout=600), False, report)
    (artifacts / "readme_commands.txt").write_text("\n".join(report.lines) + "\n")
    print("\n".join(report.lines))
    assert not problems, "\n\n".join(problems)
