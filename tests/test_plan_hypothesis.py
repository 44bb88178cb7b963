"""Property tests: whatever the bytes, load_waves returns or raises PlanError; dumps round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import PlanError
from orchestrator.plan import WAVE_NAME_RE, LoadResult, load_waves
from orchestrator.planfile import dump_wave

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = """\
wave: wave-01
description: Payments stack
accountID: "111122223333"
region: us-east-1
applications:
  - applicationID: app-0a1b2c3d4e5f6a7b8
    name: payments
    sourceServerIDs:
      - s-0a1b2c3d4e5f6a7b8
      - s-1b2c3d4e5f6a7b8c9
  - applicationID: app-1b2c3d4e5f6a7b8c9
    sourceServerIDs: [s-2c3d4e5f6a7b8c9d0]
"""

# Pieces of YAML syntax and of the plan schema, so generated text reaches deep into the loader.
TOKENS = [
    "wave",
    "applications",
    "applicationID",
    "sourceServerIDs",
    "name",
    "accountID",
    "region",
    "description",
    ": ",
    ":",
    "- ",
    "-",
    "\n",
    "  ",
    "    ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a",
    "*a",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!foo ",
    "? ",
    "|\n",
    ">-\n",
    "'",
    '"',
    "#",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "~",
    "null",
    "yes",
    "0x1f",
    "1e9",
    "2024-02-30",
    "111122223333",
    "app-0a1b2c3d4e5f6a7b8",
    "s-0a1b2c3d4e5f6a7b8",
    "\t",
    "\\",
    "<<",
    "=",
    "\ufeff",
    "\x00",
    "\x85",
    "é",
    "\u2028",
    "\ud7ff",
]


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hypothesis") / "plan.yaml"


def load_bytes(path: Path, data: bytes) -> LoadResult | None:
    """Load `data` as a plan file: a result, or None after checking the PlanError is located."""
    path.write_bytes(data)
    try:
        return load_waves([path])
    except PlanError as exc:
        assert exc.diagnostics, "a refusal always says why"
        assert all(d.path == str(path) and d.line >= 0 and d.col >= 0 for d in exc.diagnostics)
        return None


@FAST
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_anything_but_plan_error(plan_file: Path, data: bytes) -> None:
    """Random bytes either load or are refused with PlanError, never another exception."""
    load_bytes(plan_file, data)


@FAST
@given(text=st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=80).map("".join))
def test_yaml_ish_text_never_raises_anything_but_plan_error(plan_file: Path, text: str) -> None:
    """Text built from YAML syntax and plan keys either loads or is refused with PlanError."""
    load_bytes(plan_file, text.encode("utf-8", errors="surrogatepass"))


@st.composite
def mutated_plans(draw: st.DrawFn) -> bytes:
    """A valid plan with a few random edits: deletions, insertions, swapped or doubled lines."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "swap", "double", "replace"]))
        pos = draw(st.integers(0, len(text)))
        if kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 20)) :]
        elif kind == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS) | st.text(max_size=5)) + text[pos:]
        elif kind == "replace" and pos < len(text):
            text = text[:pos] + draw(st.characters()) + text[pos + 1 :]
        else:
            lines = text.splitlines(keepends=True)
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(i, lines[j])
            text = "".join(lines)
    return text.encode("utf-8", errors="surrogatepass")


@FAST
@given(data=mutated_plans())
def test_mutated_valid_plans_never_raise_anything_but_plan_error(
    plan_file: Path, data: bytes
) -> None:
    """A valid plan damaged at random either loads or is refused with PlanError."""
    load_bytes(plan_file, data)


ids17 = st.text(alphabet="0123456789abcdefABCDEFxyz", min_size=17, max_size=17)
labels = st.none() | st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)


@st.composite
def plans(
    draw: st.DrawFn,
) -> tuple[str, list[tuple[str, str | None, list[str]]], dict[str, str | None]]:
    """A valid wave as dump_wave's plain arguments: unique IDs, free-text names."""
    name = draw(st.from_regex(WAVE_NAME_RE, fullmatch=True))
    app_ids = draw(st.lists(ids17, min_size=1, max_size=5, unique=True))
    server_ids = iter(
        draw(st.lists(ids17, min_size=len(app_ids) * 3, max_size=len(app_ids) * 3, unique=True))
    )
    apps = []
    for app_id in app_ids:
        count = draw(st.integers(1, 3))
        apps.append(
            (f"app-{app_id}", draw(labels), [f"s-{next(server_ids)}" for _ in range(count)])
        )
    extra = {
        "description": draw(labels),
        "account_id": draw(st.none() | st.from_regex(r"[0-9]{12}", fullmatch=True)),
        "region": draw(st.none() | st.sampled_from(["us-east-1", "eu-west-2", "us-gov-west-1"])),
    }
    return name, apps, extra


@settings(max_examples=150, deadline=None)
@given(plan=plans())
def test_generated_valid_plans_round_trip_through_dump_wave(
    plan_file: Path,
    plan: tuple[str, list[tuple[str, str | None, list[str]]], dict[str, str | None]],
) -> None:
    """Any valid wave written by dump_wave loads back with the same name, settings and IDs."""
    name, apps, extra = plan
    result = load_bytes(plan_file, dump_wave(name, apps, **extra).encode("utf-8"))
    assert result is not None
    (wave,) = result.waves
    assert (wave.name, wave.description, wave.account_id, wave.region) == (
        name,
        extra["description"],
        extra["account_id"],
        extra["region"],
    )
    assert [(a.application_id, a.name, list(a.server_ids)) for a in wave.applications] == apps
    again = load_bytes(plan_file, dump_wave(wave).encode("utf-8"))
    assert again is not None and again.waves[0].applications == wave.applications
