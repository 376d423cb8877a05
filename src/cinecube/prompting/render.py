"""Say a parsed scene again in the captions the bundled model was trained on.

Why these words: the model learned each world from captions built from that world's own
phrasebook (`data.shapes._TRAIN`, the fashion and pans templates); the closer a prompt is to
them, the better the model follows it. The renderer takes its words from those tables (always
the first choice of each, so an expansion is deterministic) rather than copying them, so a change
to a phrasebook changes the expansions with it.

Two styles, as in training: "short" ("a red circle moving right on a black background") and
"detailed" ("A large red circle moves quickly from the top left to the right on a black
background."), which also says size, speed and start place. "auto" uses the detailed style when
the prompt gave any of those, so nothing it said is left out, and the short one otherwise. The
bundled model follows the short style best, details or not (docs/prompt-expansion.md), so the
expander defaults to it. Nothing is invented: a part the prompt did not give (a colour, a
background, a motion, a size) is not said.
"""

from __future__ import annotations

from cinecube.data.fashion import _DIRECTIONS as _FASHION_DIRECTIONS
from cinecube.data.fashion import _MOVING, _OVER_COLOR, _OVER_PHOTO, _STILL, CLASS_NOUNS
from cinecube.data.pans import _IMAGE_TEMPLATES, _PAN_TEMPLATES, _STILL_TEMPLATES, _ZOOM_TEMPLATES
from cinecube.data.shapes import _TRAIN

from .parser import ParsedObject, ParsedPrompt

STYLES: tuple[str, ...] = ("auto", "short", "detailed")

# Region name -> (how a caption names it, its preposition), as `shapes._region` writes them.
_REGION_WORDS: dict[str, tuple[str, str]] = {
    "top left": ("the top left", "in"),
    "top right": ("the top right", "in"),
    "bottom left": ("the bottom left", "in"),
    "bottom right": ("the bottom right", "in"),
    "left": ("the left side", "on"),
    "right": ("the right side", "on"),
    "top": ("the top", "at"),
    "bottom": ("the bottom", "at"),
    "middle": ("the middle", "in"),
}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun(obj: ParsedObject, size: bool) -> str:
    words = [_TRAIN.sizes[obj.size][0] if size and obj.size else "", obj.color or "", obj.noun]
    return _article(" ".join(w for w in words if w))


def _short_shape(obj: ParsedObject, image: bool) -> str:
    noun = _noun(obj, size=False)
    if image or obj.motion is None:
        return noun
    if obj.motion == "still":
        return f"{noun} {_TRAIN.still_participle[0]}"
    if obj.motion == "bouncing":
        return f"{noun} {_TRAIN.bouncing[0]}"
    return f"{noun} {_TRAIN.moving[0]} {_TRAIN.directions[obj.motion][0]}"


def _detailed_shape(obj: ParsedObject, image: bool) -> str:
    noun = _noun(obj, size=True)
    region, prep = _REGION_WORDS[obj.start] if obj.start else ("", "")
    place = _TRAIN.place[0].format(region=region, prep=prep) if obj.start else ""
    speed = _TRAIN.speeds[obj.speed][0] if obj.speed else ""
    if image or obj.motion is None:
        parts = [noun, place]
    elif obj.motion == "still":
        parts = [noun, _TRAIN.still_finite[0], place]
    elif obj.motion == "bouncing":
        start = _TRAIN.bounce_start[0].format(region=region, prep=prep) if obj.start else ""
        parts = [noun, _TRAIN.bounces[0], speed, start]
    else:
        # The training captions' "noun verb speed start direction" order, with the longer
        # direction words a start place needs ("from the left side to the right").
        start = _TRAIN.start[0].format(region=region, prep=prep) if obj.start else ""
        parts = [noun, _TRAIN.moves[0], speed, start, _TRAIN.directions[obj.motion][1]]
    return " ".join(p for p in parts if p)


def _join(phrases: list[str], last: str) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + last + phrases[-1]


def render_shapes(parsed: ParsedPrompt, detailed: bool) -> str:
    """A shapes-world caption in the training phrasebook."""
    if detailed:
        body = _join([_detailed_shape(o, parsed.image) for o in parsed.objects], _TRAIN.join_long[0])
        if parsed.image:
            body = _TRAIN.image_long[0].format(body)
        background = _TRAIN.background_long[0].format(parsed.background) if parsed.background else ""
        text = body + background + "."
        return text[0].upper() + text[1:]
    body = _join([_short_shape(o, parsed.image) for o in parsed.objects], _TRAIN.join_short[0])
    if parsed.image:
        body = _TRAIN.image_short[1].format(body)  # "an image of {}"
    # " on a {} background": the short form that names the background most plainly.
    background = _TRAIN.background_short[2].format(parsed.background) if parsed.background else ""
    return body + background


def _garment(obj: ParsedObject, image: bool) -> str:
    noun = CLASS_NOUNS.get(obj.noun, obj.noun)
    item = _article(f"{obj.color} {noun}" if obj.color else noun)
    if image or obj.motion is None:
        return item
    if obj.motion == "still":
        return _STILL[0].format(obj=item)
    direction = _FASHION_DIRECTIONS[obj.motion][0]
    if obj.speed:
        # "{obj} sliding {speed}{dir}"
        return _MOVING[1].format(obj=item, speed=f"{obj.speed} ", dir=direction)
    return _MOVING[0].format(obj=item, dir=direction)


def render_fashion(parsed: ParsedPrompt) -> str:
    """A fashion-world caption: its items joined by "and", then the background."""
    body = " and ".join(_garment(o, parsed.image) for o in parsed.objects)
    if parsed.photo:
        return body + _OVER_PHOTO[0].format(bg=parsed.photo)
    if parsed.background:
        return body + _OVER_COLOR[0].format(bg=parsed.background)
    return body


def render_pans(parsed: ParsedPrompt) -> str:
    """A pans-world caption: a camera move over a photo, or a photo alone."""
    scene = parsed.photo or ""
    if parsed.image:
        return _IMAGE_TEMPLATES[0].format(scene=scene)
    if parsed.camera == "still":
        return _STILL_TEMPLATES[0].format(scene=scene)
    speed = {"slowly": "slow ", "quickly": "quick ", None: ""}[parsed.camera_speed]
    if parsed.camera and parsed.camera.startswith("zoom"):
        inout = parsed.camera.split()[1]
        return _ZOOM_TEMPLATES[1].format(speed=speed, inout=inout, scene=scene)  # "a {speed}zoom {in} on {scene}"
    return _PAN_TEMPLATES[0].format(speed=speed, move=parsed.camera, scene=scene)


def render(parsed: ParsedPrompt, style: str = "auto") -> str:
    """The caption of a parsed prompt in its world's training style (see the module docstring)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    if parsed.world == "shapes":
        detailed = style == "detailed" or (style == "auto" and parsed.has_details)
        return render_shapes(parsed, detailed)
    if parsed.world == "fashion":
        return render_fashion(parsed)
    return render_pans(parsed)
