"""Prompt expansion: the built-in parser reads paraphrases into the right scene, keeps what it
cannot read unchanged, never invents content, and the external-command hook behaves."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cinecube.data.shapes import ShapesWorld, WorldConfig
from cinecube.errors import CinecubeError
from cinecube.prompting import (
    BuiltinExpander,
    CallableExpander,
    CommandExpander,
    NoExpander,
    NotUnderstood,
    expand,
    get_expander,
    parse_prompt,
    render,
)
from cinecube.prompting.lexicon import variants

# Paraphrases written for these tests, none of them a caption style of the repository:
# prompt -> ([(colour, noun, motion), ...] in order, background).
PARAPHRASES: dict[str, tuple[list[tuple[str | None, str, str | None]], str | None]] = {
    "crimson disc drifting to the right over a pitch-black backdrop": ([("red", "circle", "right")], "black"),
    "a ball that goes left": ([(None, "circle", "left")], None),
    "two squares, one red one green, moving up": ([("red", "square", "up"), ("green", "square", "up")], None),
    "Scarlet ball rolling leftwards across a navy canvas": ([("red", "circle", "left")], "dark blue"),
    "an emerald triangle climbing toward the upper edge, grey background": ([("green", "triangle", "up")], "gray"),
    "Show me a golden cube that slides down": ([("yellow", "square", "down")], None),
    "a tangerine dot zooming off towards the bottom-right corner on cream": (
        [("orange", "circle", "down-right")],
        "beige",
    ),
    "a violet pyramid that does not move, on a sand coloured backdrop": ([("purple", "triangle", "still")], "beige"),
    "turquoise block bouncing around the frame against forest green": ([("cyan", "square", "bouncing")], "dark green"),
    "snow-white orb floating northwest over inky black": ([("white", "circle", "up-left")], "black"),
    "Three circles in red, yellow and blue all falling, with a white background": (
        [("red", "circle", "down"), ("yellow", "circle", "down"), ("blue", "circle", "down")],
        "white",
    ),
    "a purple square moving right and a cyan triangle moving left on gray": (
        [("purple", "square", "right"), ("cyan", "triangle", "left")],
        "gray",
    ),
    "a big lemon-yellow ball starting in the lower left and rising up and to the right": (
        [("yellow", "circle", "up-right")],
        None,
    ),
    "a pair of circles, an amber one heading east and a teal one heading west": (
        [("orange", "circle", "right"), ("cyan", "circle", "left")],
        None,
    ),
    "a lilac box parked in the centre, beige background": ([("purple", "square", "still")], "beige"),
    "the blue triangle travels from the right edge to the left edge": ([("blue", "triangle", "left")], None),
    "small green disc, quickly going downwards from the top": ([("green", "circle", "down")], None),
    "a cobalt triangle on a midnight-blue backdrop, stationary": ([("blue", "triangle", "still")], "dark blue"),
    "a round red thing sliding to the left": ([("red", "circle", "left")], None),
    "a triangular orange shape sinking": ([("orange", "triangle", "down")], None),
    "red and white squares going up, on black": ([("red", "square", "up"), ("white", "square", "up")], "black"),
    "A sapphire ball ricochets off the edges, khaki backdrop.": ([("blue", "circle", "bouncing")], "beige"),
    "quickly, a red circle moves left": ([("red", "circle", "left")], None),
    "the background is white and a red circle rolls right": ([("red", "circle", "right")], "white"),
    "a circle, a square and a triangle, all red": (
        [("red", "circle", None), ("red", "square", None), ("red", "triangle", None)],
        None,
    ),
    "a red circle sliding leftwards; a blue square, not moving; a green triangle falling": (
        [("red", "circle", "left"), ("blue", "square", "still"), ("green", "triangle", "down")],
        None,
    ),
    "backdrop colour grey, a green ball rolling right": ([("green", "circle", "right")], "gray"),
    "a circle moving from left to right": ([(None, "circle", "right")], None),
    "a huge crimson ball descending from the top right corner toward the bottom left, and a tiny cyan block at rest "
    "in the middle, plain dark green backdrop": (
        [("red", "circle", "down-left"), ("cyan", "square", "still")],
        "dark green",
    ),
    "one yellow ball, one purple ball, both heading down": (
        [("yellow", "circle", "down"), ("purple", "circle", "down")],
        None,
    ),
    "green cube and orange sphere, the cube still and the sphere going right": (
        [("green", "square", "still"), ("orange", "circle", "right")],
        None,
    ),
    "a little blue triangle travels across the screen from right to left on cream": (
        [("blue", "triangle", "left")],
        "beige",
    ),
    "a red circle and a blue square, the red one still and the blue one falling": (
        [("red", "circle", "still"), ("blue", "square", "down")],
        None,
    ),
    "a yellow disc is moving left": ([("yellow", "circle", "left")], None),
    "a falling white block on a dark blue background": ([("white", "square", "down")], "dark blue"),
    "a green sweater moving to the right over grass": ([("green", "pullover", "right")], None),
    "an ankle boot falling on a black background": ([(None, "ankle boot", "down")], "black"),
}


@pytest.mark.parametrize("prompt", list(PARAPHRASES))
def test_paraphrases_map_to_the_right_scene(prompt):
    objects, background = PARAPHRASES[prompt]
    parsed = parse_prompt(prompt)
    assert [(o.color, o.noun, o.motion) for o in parsed.objects] == objects
    assert parsed.background == background


@pytest.mark.parametrize(
    ("prompt", "expanded"),
    [
        (
            "crimson disc drifting to the right over a pitch-black backdrop",
            "a red circle moving right on a black background",
        ),
        ("a ball that goes left", "a circle moving left"),
        ("two squares, one red one green, moving up", "a red square moving up and a green square moving up"),
        ("teal box, motionless, on a cream background", "a cyan square standing still on a beige background"),
        # Size, speed and start place are left out in the short style (the default, measured best).
        (
            "small amber square heading up and to the left from the bottom right corner, jet black background",
            "an orange square moving up and to the left on a black background",
        ),
        ("a green sweater moving to the right over grass", "a green pullover moving right over grass"),
        (
            "a pair of yellow jeans lying still on a grey background",
            "a yellow pair of trousers lying still on a plain gray background",
        ),
        ("a camera panning right over a brick wall", "a pan right across a brick wall"),
        ("an image of a lime cube on a sandy background", "an image of a green square on a beige background"),
    ],
)
def test_builtin_expansions(prompt, expanded):
    assert BuiltinExpander().expand(prompt).expanded == expanded


@pytest.mark.parametrize(
    "prompt",
    [
        "a sunset over the sea",
        "a dog running on the beach",
        "a pink circle moving left",  # no palette colour near pink
        "a black circle moving left",  # black is a background, never an object colour
        "a red circle on a blue background",  # no blue background in the worlds
        "four red squares moving up",
        "red circles",  # how many?
        "a red circle moving left then up",  # a sequence, not a diagonal
        "a yellow circle moving up and down",
        "a circle to the left of a square",  # a relation, not a motion
        "a red circle on top of a blue square",
        "a red circle on a brick wall",  # shapes have plain backgrounds
        "a red circle moving left while the camera pans right",
        "an orange rolling left",  # the fruit: nothing to be orange
        "a circle spinning in place",
        "a yellow circle moving in a circle",  # a path, not a second circle
        "a red circle moving left and a blue one the other way",
        "a red circle and the other",
        "the left circle is red",  # where it is, not where it goes
        "a red circle chasing a blue square",
        "",
    ],
)
def test_unparseable_prompts_pass_through_with_a_reason(prompt):
    with pytest.raises(NotUnderstood):
        parse_prompt(prompt)
    result = expand(prompt, "builtin", token_count=len)
    assert result.expanded == prompt and not result.changed
    assert result.reason.startswith("kept as given: ") and "\n" not in result.reason


def test_the_parser_reads_training_captions_back():
    # Train-phrasebook captions (the style the expander writes) parse to their own scenes, and
    # expanding an expansion changes nothing.
    world = ShapesWorld(WorldConfig(frame_counts=(12,)), seed=5)
    for index in range(150):
        sample = world[index]
        parsed = parse_prompt(sample.caption)
        want = [(o.color, o.shape, o.motion) for o in sample.scene.objects]
        assert [(o.color, o.noun, o.motion) for o in parsed.objects] == want, sample.caption
        assert parsed.background in (None, sample.scene.background)
        for style in ("short", "detailed", "auto"):
            once = render(parsed, style)
            assert render(parse_prompt(once), style) == once


def test_details_are_read_and_said_in_the_detailed_style():
    parsed = parse_prompt("a huge ruby ball drifting gently towards the left from the right edge")
    (obj,) = parsed.objects
    assert (obj.size, obj.speed, obj.start, obj.motion) == ("large", "slowly", "right", "left")
    assert render(parsed, "short") == "a red circle moving left"
    assert render(parsed, "auto") == "A large red circle moves slowly from the right side to the left."


def test_the_builtin_expander_never_invents_content():
    # Nothing the prompt did not say (a colour, a background, a motion, a size) appears in its
    # expansion; style words with no counterpart in the worlds are left out, and said to be.
    cases = {
        "a circle": "a circle",
        "a blue ball": "a blue circle",
        "crimson ball heading left, pitch-black canvas": "a red circle moving left on a black background",
        "azure cube, not moving": "a blue square standing still",
        "a ricocheting disc": "a circle bouncing",
        "a lone triangle on beige": "a triangle on a beige background",
        "a shiny green ball rolling downwards": "a green circle moving down",
    }
    for prompt, expanded in cases.items():
        assert BuiltinExpander().expand(prompt).expanded == expanded
    assert BuiltinExpander().expand("a shiny green ball").reason.endswith("left out: shiny")


def test_refused_prompts_are_never_rewritten():
    # The prompt policy's red-team prompts all contain words outside the worlds' vocabulary, so
    # the built-in expander keeps each one as written: a denied prompt stays denied.
    from cinecube.safety.prompts import load_redteam

    prompts = [row["prompt"] for name in ("redteam.jsonl", "redteam_heldout.jsonl") for row in load_redteam(name)]
    assert len(prompts) > 100
    expander = BuiltinExpander()
    assert [p for p in prompts if expander.expand(p).changed] == []


def test_variants_pattern_language():
    assert variants("[to|towards] [the|] left") == ["to the left", "to left", "towards the left", "towards left"]


# ---------------------------------------------------------------------------------------------
# The interface: specs, callables, commands, the length limit
# ---------------------------------------------------------------------------------------------


def test_get_expander_specs():
    assert isinstance(get_expander(None), NoExpander)
    assert isinstance(get_expander("none"), NoExpander)
    assert get_expander("builtin").style == "short"
    assert get_expander("builtin:auto").style == "auto"
    command = get_expander("cmd:tr a-z A-Z", timeout=5)
    assert isinstance(command, CommandExpander) and command.command == "tr a-z A-Z" and command.timeout == 5
    assert isinstance(get_expander(str.upper), CallableExpander)
    builtin = BuiltinExpander()
    assert get_expander(builtin) is builtin
    for bad in ("gpt", "builtin:long", "cmd:", "cmd:   "):
        with pytest.raises(CinecubeError):
            get_expander(bad)


def test_no_expander_keeps_the_prompt():
    result = expand("crimson disc", "none")
    assert (result.expanded, result.by, result.changed) == ("crimson disc", "none", False)


def test_a_callable_expander():
    result = expand("a cat", lambda p: f"  a photo of\n{p}  ", token_count=len)
    assert result.expanded == "a photo of a cat" and result.changed
    with pytest.raises(CinecubeError, match="empty"):
        expand("a cat", lambda p: "  ", token_count=len)


def test_a_command_expander_reads_stdin_and_prints_stdout():
    result = expand("a red circle", "cmd:tr a-z A-Z", token_count=len)
    assert (result.expanded, result.by) == ("A RED CIRCLE", "cmd:tr a-z A-Z")
    same = expand("a red circle", "cmd:cat", token_count=len)
    assert same.expanded == "a red circle" and not same.changed
    lines = expand("x", "cmd:printf 'a red circle\\nmoving left\\n'", token_count=len)
    assert lines.expanded == "a red circle moving left"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("echo 'model not loaded' >&2; exit 3", "failed with exit status 3: model not loaded"),
        ("true", "printed no prompt"),
        ("no-such-expander-command-here", "failed with exit status 127"),
    ],
)
def test_a_failing_command_is_a_one_line_error_naming_it(command, message):
    with pytest.raises(CinecubeError) as info:
        expand("a red circle", f"cmd:{command}", token_count=len)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert command.split()[0] in text


def test_a_slow_command_times_out():
    expander = CommandExpander(f"{sys.executable} -c 'import time; time.sleep(5)'", timeout=0.3)
    with pytest.raises(CinecubeError, match=r"did not answer within 0\.3 s"):
        expander.expand("a red circle")


def test_expansions_stay_within_the_token_limit():
    def words(text: str) -> int:
        return len(text.split())

    # Too long from an external expander: the prompt is kept, and the reason says why.
    result = expand("a red circle", lambda p: "word " * 100, max_tokens=64, token_count=words)
    assert result.expanded == "a red circle" and "100 tokens" in result.reason and "64" in result.reason
    # Too long in the detailed style: the short style is used instead.
    prompt = "a large red ball rolling slowly to the left from the right edge on a black backdrop"
    detailed = expand(prompt, "builtin:auto", max_tokens=64, token_count=words)
    assert detailed.expanded.startswith("A large red circle moves slowly")
    short = expand(prompt, "builtin:auto", max_tokens=9, token_count=words)
    assert short.expanded == "a red circle moving left on a black background"
    assert "short style" in short.reason
    assert expand(prompt, "builtin", max_tokens=9, token_count=words).expanded == short.expanded
    kept = expand(prompt, "builtin", max_tokens=3, token_count=words)
    assert kept.expanded == prompt and "over the model's limit of 3" in kept.reason


def test_the_longest_builtin_expansion_fits_the_default_model(text_encoder):
    # Three objects with every detail, in the detailed style, counted by the real tokenizer.
    prompt = (
        "a medium-sized crimson triangle rushing quickly from the bottom right towards the top left, "
        "a medium-sized golden triangle rushing quickly from the top right towards the bottom left and "
        "a medium-sized snow-white triangle bouncing around quickly from the bottom left, on navy"
    )
    result = expand(prompt, "builtin:detailed", max_tokens=64, token_count=text_encoder.token_count)
    assert result.changed and len(result.parsed.objects) == 3 and result.expanded.startswith("A medium red")
    assert text_encoder.token_count(result.expanded) <= 64


@pytest.fixture(scope="module")
def text_encoder():
    from cinecube.text import get_text_encoder

    return get_text_encoder(64)


def test_parsing_agrees_with_the_heldout_scenes():
    # A direct check of the parser on the evaluation's prompts: every prompt it reads must name
    # exactly the scene's objects (and the background, when the prompt names one).
    from cinecube.evaluate.adherence import heldout_cases

    cases = heldout_cases(40, seed=1234)
    read = 0
    for case in cases:
        try:
            parsed = parse_prompt(case.prompt)
        except NotUnderstood:
            continue
        read += 1
        got = sorted((o.color, o.noun, o.motion) for o in parsed.objects)
        assert got == sorted((o.color, o.shape, o.motion) for o in case.scene.objects), case.prompt
        assert parsed.background in (None, case.scene.background)
    assert read >= 0.9 * len(cases)


def test_expansion_is_deterministic():
    rng = np.random.default_rng(0)
    prompts = list(PARAPHRASES)
    for i in rng.permutation(len(prompts))[:10]:
        assert expand(prompts[i], "builtin", token_count=len) == expand(prompts[i], "builtin", token_count=len)


# --------------------------------------------------------------------------- in the pipeline and the CLI


def test_the_pipeline_expands_by_default_and_records_it(tiny_run, tmp_path):
    from cinecube.pipeline import Pipeline
    from cinecube.safety.provenance import read_provenance

    pipe = Pipeline.from_pretrained(tiny_run)
    wording = "crimson disc drifting to the right over a pitch-black backdrop"
    video = pipe(wording, 4, 32, 32, steps=1, progress=False)
    assert video.info["expansion"]["expanded"] == "a red circle moving right on a black background"
    assert video.prompt == wording  # the user's words are the prompt of record
    claims = read_provenance(video.save(tmp_path / "v.mp4")).claims
    assert claims["prompt_expanded_by"] == "builtin" and len(claims["expanded_prompt_sha256"]) == 64
    plain = pipe(wording, 4, 32, 32, steps=1, progress=False, expand="none")
    assert plain.info["expansion"]["expanded"] == wording


def test_the_cli_prints_the_expansion_and_no_expand_turns_it_off(tiny_run, tmp_path, capsys):
    from cinecube.cli import main

    args = ["generate", "a ball that goes left", "--model", str(tiny_run), "--frames", "4", "--height", "32"]
    args += ["--width", "32", "--steps", "1"]
    assert main([*args, "-o", str(tmp_path / "a.mp4")]) == 0
    assert "prompt expanded (builtin): a " in capsys.readouterr().out
    assert main([*args, "--no-expand", "-o", str(tmp_path / "b.mp4")]) == 0
    assert "prompt expanded" not in capsys.readouterr().out


def test_a_denied_prompt_is_refused_before_any_expansion(tiny_run, monkeypatch):
    import cinecube.pipeline
    from cinecube.pipeline import Pipeline
    from cinecube.safety.guard import SafetyBlockedError

    def never(*args, **kwargs):
        raise AssertionError("expanded a prompt the policy denies")

    monkeypatch.setattr(cinecube.pipeline, "expand_prompt", never)
    with pytest.raises(SafetyBlockedError):
        Pipeline.from_pretrained(tiny_run)("a naked child", 4, 32, 32, steps=1, progress=False)
