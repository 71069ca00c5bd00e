"""The shell commands of a README section, so tests run them as the reader would."""

from __future__ import annotations

import pathlib
import re
import shlex

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def section(heading: str) -> str:
    """The README's text under ``heading`` (its whole line, without the #s), up to the next heading as high."""
    text = README.read_text()
    found = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.MULTILINE)
    assert found, f"the README has no section {heading!r}"
    level = len(found.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, found.end())
    return text[found.end():end.start() if end else len(text)]


def sh_blocks(heading: str) -> list[list[str]]:
    """The ```sh blocks of a section, each as its command lines (continued lines joined; read them with
    ``words``)."""
    blocks = []
    for body in re.findall(r"^```sh\n(.*?)^```", section(heading), re.MULTILINE | re.DOTALL):
        joined = body.replace("\\\n", " ")
        blocks.append([line.strip() for line in joined.splitlines() if shlex.split(line, comments=True)])
    return blocks


def block_running(heading: str, command: str) -> list[str]:
    """The one block of the section that holds ``command``."""
    [block] = [b for b in sh_blocks(heading) if any(command in line for line in b)]
    return block


def words(line: str) -> list[str]:
    """A command line as the shell splits it, its comment dropped."""
    return shlex.split(line, comments=True)


def exported(block: list[str]) -> dict[str, str]:
    """What the block's ``export`` lines set."""
    env = {}
    for line in block:
        argv = words(line)
        if argv[0] == "export":
            env.update(word.split("=", 1) for word in argv[1:])  # type: ignore[misc]
    return env


def agglo_commands(block: list[str]) -> list[list[str]]:
    """The block's ``agglo`` commands, as argument lists after the program's name."""
    return [words(line)[1:] for line in block if line.startswith("agglo ")]
