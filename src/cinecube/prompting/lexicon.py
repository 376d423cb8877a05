"""The words the built-in expander understands, and what each one means in the built-in worlds.

Why a word list and not a learned parser: the worlds have a closed vocabulary (eight object
colours, six backgrounds, three shapes, ten garments, eight directions, still and bouncing), so
a phrase table with English synonyms covers them exactly and fails loudly on anything else. The
sentence encoder places "crimson" nearer "purple" than "red" and "black" nearest "white" (cosine
of mean-pooled MiniLM word embeddings), so it cannot be trusted to name a colour or a direction;
what it cannot tell apart is written out here instead.

Phrases are written in a small pattern language (see `variants`): "[to|towards|] [the|] left"
stands for "to the left", "towards left", "left" and the rest of the product. Every phrase maps to
one `Lexeme`. The tokeniser splits hyphens and folds case first, so "up-left", "Up Left" and
"up left" are one phrase.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from cinecube.data.fashion import CLASS_NAMES
from cinecube.data.pans import SCENE_PHOTOS
from cinecube.data.vocab import BACKGROUND_COLORS, MOTION_VECTORS, OBJECT_COLORS, SHAPES


@dataclass(frozen=True)
class Lexeme:
    """What a phrase means: a `kind` (see KINDS) and its value.

    `value` is the canonical word of the world's vocabulary ("red", "circle", "up-left"); a colour
    carries two values, as an object colour and as a background colour (either may be None:
    "black" is only a background, "red" only an object colour). `start` is set on direction
    phrases that also say where the motion begins ("from left to right").
    """

    kind: str
    value: str | int | None = None
    background: str | None = None
    plural: bool = False
    start: str | None = None


KINDS = (
    "COLOR",  # object colour and/or background colour
    "SHAPE",  # circle / square / triangle (value), plural flag
    "SHAPEADJ",  # "round", "triangular": a shape said as an adjective of a generic noun
    "GENERIC",  # "shape", "object", "thing": an object whose shape must come from an adjective
    "GARMENT",  # a Fashion-MNIST class name
    "NUM",  # an object count
    "ONE",  # "one", "the other": a member of a plural group, as in "one red, one green"
    "ALL",  # "both", "all of them": what follows applies to every object so far
    "DIR",  # one of the eight directions
    "STILL",  # not moving
    "STILL_WEAK",  # "sits", "stays": still unless a direction is also given
    "BOUNCE",  # bouncing off the walls
    "SPEED",  # slowly / quickly
    "SIZE",  # small / medium / large
    "REGION",  # a place on the canvas where an object starts or stays
    "BGPREP",  # "on", "against", "over": what may introduce a background
    "BGNOUN",  # "background", "backdrop"
    "LINK",  # "is", "of", "in", ":": glue that may sit between a background noun and its colour
    "PLAIN",  # "plain", "solid": adjectives of a background that change nothing
    "ART",  # "a", "an", "the"
    "AND",  # "and", "plus", "as well as"
    "SEP",  # punctuation and clause connectives
    "IMAGE",  # "an image of": a single frame
    "PHOTO",  # a photo the fashion and pans worlds use as background or subject
    "CAMERA",  # a camera move of the pans world
    "RELATION",  # "above", "left of": where objects are relative to each other, never captioned
    "FILLER",  # words that carry no scene content ("video", "moving", "showing")
    "STYLE",  # adjectives with no counterpart in the worlds ("shiny"): dropped, and reported
)  # plus "UNKNOWN", which the parser gives every word no phrase covers


def variants(pattern: str) -> list[str]:
    """All phrases of a pattern: words separated by spaces, "[a|b|]" a choice ("" = nothing).

    >>> variants("[to|towards] [the|] left")
    ['to the left', 'to left', 'towards the left', 'towards left']
    """
    slots = []
    for part in re.findall(r"\[[^\]]*\]|\S+", pattern):
        slots.append(part[1:-1].split("|") if part.startswith("[") else [part])
    out = []
    for combo in itertools.product(*slots):
        out.append(" ".join(" ".join(w for w in combo if w).split()))
    return [p for p in dict.fromkeys(out) if p]


# ---------------------------------------------------------------------------------------------
# Colours. Object colours are the eight of the shapes world; background colours are its six
# plain backgrounds. Shades are mapped only where the palette leaves no doubt: "pink" or
# "brown" have no palette colour near them and stay unknown, so a prompt naming them is left
# as it is rather than drawn in a colour that was not asked for.
# ---------------------------------------------------------------------------------------------

OBJECT_COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "ruby", "cherry red", "cherry", "vermilion", "vermillion", "blood red"),
    "green": ("green", "emerald", "lime", "lime green", "jade", "grass green", "bright green", "leaf green"),
    "blue": ("blue", "cobalt", "sapphire", "royal blue", "ultramarine", "azure", "bright blue"),
    "yellow": ("yellow", "gold", "golden", "lemon", "lemon yellow", "canary", "canary yellow", "sunflower yellow"),
    "orange": ("orange", "amber", "tangerine", "pumpkin", "bright orange"),
    "purple": ("purple", "violet", "plum", "lilac", "lavender", "amethyst"),
    "cyan": ("cyan", "turquoise", "aqua", "aquamarine", "teal"),
    "white": ("white", "snow white", "snowy", "bright white", "pure white"),
}
BACKGROUND_COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "black": ("black", "pitch black", "jet black", "coal black", "ink black", "inky black", "inky", "ebony"),
    "white": ("white", "snow white", "snowy", "bright white", "pure white"),
    "gray": ("gray", "grey", "mid gray", "mid grey", "medium gray", "medium grey", "slate gray", "slate grey"),
    "dark blue": ("dark blue", "navy", "navy blue", "midnight blue", "deep blue"),
    "dark green": ("dark green", "forest green", "deep green", "bottle green", "hunter green", "pine green"),
    "beige": ("beige", "cream", "creamy", "tan", "sand", "sandy", "khaki", "ecru", "oatmeal"),
}

# ---------------------------------------------------------------------------------------------
# Things: shapes, the generic nouns a shape adjective can complete, garments.
# ---------------------------------------------------------------------------------------------

SHAPE_NOUNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # shape: (singular phrases, plural phrases)
    "circle": (
        ("circle", "disc", "disk", "dot", "ball", "orb", "sphere", "round blob", "round shape", "coin shape"),
        ("circles", "discs", "disks", "dots", "balls", "orbs", "spheres"),
    ),
    "square": (("square", "box", "block", "cube", "tile"), ("squares", "boxes", "blocks", "cubes", "tiles")),
    "triangle": (("triangle", "pyramid"), ("triangles", "pyramids")),
}
SHAPE_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "circle": ("round", "circular", "disc shaped", "ball shaped"),
    "square": ("square shaped", "boxy"),
    "triangle": ("triangular", "triangle shaped", "three sided", "three cornered"),
}
GENERIC_NOUNS = (("shape", "object", "thing", "figure", "item", "blob"), ("shapes", "objects", "things", "figures"))

GARMENT_NOUNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "t-shirt": (("tshirt", "t shirt", "tee", "tee shirt"), ("tshirts", "t shirts", "tees")),
    "trouser": (("[a|] pair of [trousers|pants|jeans|slacks]", "trousers", "pants", "jeans", "slacks"), ()),
    "pullover": (("pullover", "sweater", "jumper", "sweatshirt"), ("pullovers", "sweaters", "jumpers")),
    "dress": (("dress", "gown", "frock"), ("dresses", "gowns")),
    "coat": (("coat", "jacket", "overcoat", "parka", "anorak"), ("coats", "jackets")),
    "sandal": (("sandal", "flip flop"), ("sandals", "flip flops")),
    "shirt": (("shirt", "blouse", "button up shirt", "button down shirt"), ("shirts", "blouses")),
    "sneaker": (("sneaker", "trainer", "running shoe", "sports shoe", "tennis shoe"), ("sneakers", "trainers")),
    "bag": (("bag", "handbag", "purse", "tote", "tote bag", "satchel", "shoulder bag"), ("bags", "handbags")),
    "ankle boot": (("ankle boot", "boot", "bootie"), ("ankle boots", "boots")),
}
assert set(GARMENT_NOUNS) == set(CLASS_NAMES)

# Photo scenes: the caption names of `pans.SCENE_PHOTOS`, with a few everyday synonyms. A photo
# is only ever a background (fashion) or the subject of a camera move (pans).
PHOTO_WORDS: dict[str, tuple[str, ...]] = {
    "a town seen from the air": ("[a|the|] [town|city] seen from [the air|above]", "an aerial view of a [town|city]"),
    "an aloe plant": ("[an|the|] aloe [plant|]",),
    "a baboon": ("[a|the] [baboon|mandrill]",),
    "a circuit board": ("[a|the|] circuit board",),
    "a building": ("[a|the] building",),
    "a butterfly": ("[a|the] butterfly",),
    "a small dog": ("[a|the] [small|little|] [dog|puppy]",),
    "sliced fruit": ("[some|] sliced fruit", "[some|] fruit slices"),
    "a graffiti wall": ("[a|the|] graffiti [wall|]",),
    "an old street": ("[an|the] old street", "[a|the] [cobbled|cobblestone] street"),
    "a car": ("[a|the] car",),
    "a football pitch": ("[a|the] [football|soccer] [pitch|field]",),
    "a painting of a starry night": ("[a|the|] painting of a starry night", "[a|the|] starry night painting"),
    "an astronaut": ("[an|the] astronaut",),
    "a brick wall": ("[a|the|] brick wall", "bricks"),
    "a cat": ("[a|the] [cat|kitten|tabby cat]",),
    "a pile of coins": ("[a|the] pile of coins", "[some|] coins"),
    "grass": ("[the|some|] grass", "[a|the] lawn"),
    "gravel": ("[the|some|] gravel",),
    "deep space": ("[deep|outer] space", "[the|a] starfield", "[a|the] star field"),
    "the surface of the moon": ("the [surface of the|] moon", "[the|] lunar surface", "the moon's surface"),
    "a motorcycle": ("[a|the] [motorcycle|motorbike]",),
    "a cup of coffee": ("[a|the] cup of coffee", "[a|the] coffee cup"),
    "a squirrel": ("[a|the] squirrel",),
    "a palace": ("[a|the] palace",),
    "a rocket on its launch pad": ("[a|the] rocket on [its|the|a] launch pad", "[a|the] rocket"),
    "coloured sweets": ("[some|] [coloured|colored] sweets", "[some|] [coloured|colored|] candies", "smarties"),
}
assert set(PHOTO_WORDS) <= set(SCENE_PHOTOS.values())

# ---------------------------------------------------------------------------------------------
# Motion. Directions are checked against regions by what comes before them: "towards the top
# left" is where an object goes, "from the top left" / "in the top left" where it starts.
# ---------------------------------------------------------------------------------------------

_TOWARDS = "[to|towards|toward|into|for]"
_EDGE = "[side|edge|hand side|half|border|]"
_CORNER = "[corner|]"
_TOP, _BOTTOM = "[top|upper]", "[bottom|lower]"

STRAIGHT_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "left": (
        "left",
        "leftward",
        "leftwards",
        "westward",
        "westwards",
        "west",
        f"{_TOWARDS} [the|its|] left {_EDGE}",
        "to the west",
    ),
    "right": (
        "right",
        "rightward",
        "rightwards",
        "eastward",
        "eastwards",
        "east",
        f"{_TOWARDS} [the|its|] right {_EDGE}",
        "to the east",
    ),
    "up": (
        "up",
        "upward",
        "upwards",
        "skyward",
        "skywards",
        "northward",
        "northwards",
        "north",
        "rising",
        "rises",
        "rise",
        "ascending",
        "ascends",
        "climbing",
        "climbs",
        f"{_TOWARDS} [the|] {_TOP} [edge|side|border|]",
        "to the top",
    ),
    "down": (
        "down",
        "downward",
        "downwards",
        "southward",
        "southwards",
        "south",
        "falling",
        "falls",
        "fall",
        "dropping",
        "drops",
        "sinking",
        "sinks",
        "descending",
        "descends",
        f"{_TOWARDS} [the|] {_BOTTOM} [edge|side|border|]",
        "to the bottom",
    ),
}


def _diagonal_phrases(vert: str, horiz: str) -> tuple[str, ...]:
    v_adverb = "[up|upward|upwards]" if vert == "up" else "[down|downward|downwards]"
    v_place = _TOP if vert == "up" else _BOTTOM
    compass = ("north" if vert == "up" else "south") + ("west" if horiz == "left" else "east")
    return (
        f"[diagonally|] {v_adverb} [and|] [to the|towards the|toward the|] {horiz}",
        f"[diagonally|] {v_adverb} [and|] {horiz}ward[s|]",
        f"[diagonally|] {horiz} and {vert}",
        f"[diagonally|] {horiz}ward[s|] and {v_adverb}",
        f"[diagonally|] {_TOWARDS} [the|] {v_place} {horiz} {_CORNER}",
        f"diagonally {v_place} {horiz}",
        f"[diagonally|] {compass}",
        f"[diagonally|] {compass}ward[s|]",
        f"[diagonally|] {compass.replace('th', 'th ')}",
        f"[diagonally|] {_TOWARDS} the {compass}",
    )


DIAGONAL_DIRECTIONS: dict[str, tuple[str, ...]] = {
    f"{v}-{h}": _diagonal_phrases(v, h) for v in ("up", "down") for h in ("left", "right")
}
assert set(STRAIGHT_DIRECTIONS) | set(DIAGONAL_DIRECTIONS) == set(MOTION_VECTORS)

# Regions: canonical name -> phrases naming it (after an optional article).
REGIONS: dict[str, tuple[str, ...]] = {
    "top left": (f"{_TOP} left {_CORNER}", f"left {_TOP} {_CORNER}"),
    "top right": (f"{_TOP} right {_CORNER}", f"right {_TOP} {_CORNER}"),
    "bottom left": (f"{_BOTTOM} left {_CORNER}", f"left {_BOTTOM} {_CORNER}"),
    "bottom right": (f"{_BOTTOM} right {_CORNER}", f"right {_BOTTOM} {_CORNER}"),
    "left": (f"left {_EDGE}",),
    "right": (f"right {_EDGE}",),
    "top": (f"{_TOP} [edge|side|border|half|]", "top of the [frame|screen|canvas|picture|image]"),
    "bottom": (f"{_BOTTOM} [edge|side|border|half|]", "bottom of the [frame|screen|canvas|picture|image]"),
    "middle": ("[middle|centre|center]", "[middle|centre|center] of the [frame|screen|canvas|picture|image]"),
}
# What may introduce a start or resting place. "to", "towards" and "into" are not here: those
# introduce where an object goes.
_REGION_PREPS = (
    "[starts|starting|start|begins|beginning|begin] [at|in|on|near|from|by|off|out of|]",
    "from",
    "out of",
    "near",
    "in",
    "at",
    "on",
    "by",
    "off",
    "leaving",
    "placed [at|in|on|near]",
    "positioned [at|in|on|near]",
    "located [at|in|on|near]",
)

STILL_PHRASES = (
    "still",
    "[standing|staying|sitting|holding|keeping|remaining|resting|lying|stands|stays|sits|holds|keeps|remains|rests|lies]"
    " still",
    "stays put",
    "staying put",
    "not moving",
    "[isn't|is not|does not|doesn't|do not|don't|never] [move|moving|moves]",
    "without moving",
    "not in motion",
    "motionless",
    "stationary",
    "static",
    "immobile",
    "unmoving",
    "frozen [in place|]",
    "[at|in] rest",
    "[resting|rests|sitting|sits|staying|stays|remaining|remains|fixed] in place",
    "[sitting|sits|staying|stays|remaining|remains] motionless",
    "[remaining|remains|staying|stays] stationary",
    "stock still",
    "perfectly still",
    "completely still",
    "does nothing",
)
STILL_WEAK_PHRASES = (
    "sits",
    "sitting",
    "stays",
    "staying",
    "remains",
    "remaining",
    "rests",
    "resting",
    "waits",
    "waiting",
    "lies",
    "lying",
    "parked",
    "idle",
    "idles",
    "idling",
)
BOUNCE_PHRASES = (
    "[bouncing|bounces|bounce|ricocheting|ricochets|ricochet|rebounding|rebounds|rebound|pinging|pings]"
    " [around|about|off the walls|off the edges|off the sides|off the borders|back and forth|around the frame"
    "|around the screen|around the canvas|off the walls of the frame|]",
    "[ping pong|ping pongs|ping ponging|pingpongs|pingponging] [around|back and forth|]",
    "back and forth",
)
SPEED_PHRASES: dict[str, tuple[str, ...]] = {
    "slowly": (
        "slowly",
        "slow",
        "gently",
        "gradually",
        "leisurely",
        "lazily",
        "sluggishly",
        "unhurriedly",
        "at a [slow|gentle|leisurely|lazy] pace",
        "[very|rather|quite|] slowly",
    ),
    "quickly": (
        "quickly",
        "quick",
        "fast",
        "rapidly",
        "swiftly",
        "speedily",
        "briskly",
        "hastily",
        "at [high|full|great|] speed",
        "at a [fast|quick|rapid|brisk] pace",
        "[very|rather|quite|] [quickly|fast]",
        "in a hurry",
    ),
}
SIZE_PHRASES: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny", "smallish", "mini", "[small|little] sized", "petite"),
    "medium": (
        "medium",
        "[medium|mid|middle|average|moderate|moderately|normal|regular] sized",
        "midsize",
        "midsized",
        "mid size",
        "moderate",
    ),
    "large": ("large", "big", "huge", "giant", "enormous", "largish", "[large|big] sized", "massive", "oversized"),
}

# Pans: the camera moves of `pans.CAMERA_MOVES`.
CAMERA_PHRASES: dict[str, tuple[str, ...]] = {
    "pan right": ("[pan|pans|panning] [right|rightwards|to the right]", "camera [moves|moving|slides|sliding] right"),
    "pan left": ("[pan|pans|panning] [left|leftwards|to the left]", "camera [moves|moving|slides|sliding] left"),
    "tilt up": ("[tilt|tilts|tilting] [up|upwards]", "camera [moves|moving] up"),
    "tilt down": ("[tilt|tilts|tilting] [down|downwards]", "camera [moves|moving] down"),
    "pan up and to the right": ("[pan|pans|panning] [up and to the right|up and right|diagonally up right]",),
    "pan down and to the left": ("[pan|pans|panning] [down and to the left|down and left|diagonally down left]",),
    "zoom in": ("[zoom|zooms|zooming] in", "[push|pushes|pushing] in", "[dolly|dollies|dollying] in"),
    "zoom out": ("[zoom|zooms|zooming] out", "[pull|pulls|pulling] [out|back]", "[dolly|dollies|dollying] out"),
    "still": ("still shot", "static [camera|shot]", "locked off [camera|shot]", "fixed camera", "still camera"),
}

NUMBER_PHRASES: dict[int, tuple[str, ...]] = {
    1: ("single", "lone", "solitary", "one single", "just one", "only one"),
    2: ("two", "2", "a couple of", "couple of", "twin", "both the"),
    3: ("three", "3", "a trio of", "trio of"),
    4: ("four", "4", "five", "5", "six", "6", "several", "many", "lots of", "a few", "some", "multiple"),
}
ONE_PHRASES = ("the other", "the other one", "another", "another one", "the second", "the second one", "the third")
ALL_PHRASES = (
    "both",
    "both of them",
    "all",
    "all of them",
    "all three",
    "each",
    "each of them",
    "each one",
    "together",
    "they",
    "they are",
    "they all",
    "they both",
    "all moving",
    "in unison",
)

BACKGROUND_NOUNS = ("background", "backdrop", "back drop", "backgrounds", "bg", "canvas")
BACKGROUND_PREPS = (
    "on",
    "upon",
    "against",
    "over",
    "atop",
    "on top of",
    "in front of",
    "set against",
    "across",
)
LINK_WORDS = (
    "is",
    "are",
    "of",
    "in",
    ":",
    "colour",
    "color",
    "coloured",
    "colored",
    "colour of",
    "color of",
    "painted",
    "shaded",
    "tinted",
    "that is",
    "which is",
)
PLAIN_WORDS = ("plain", "solid", "flat", "uniform", "simple", "empty", "blank", "featureless", "clean", "bare")
ARTICLES = ("a", "an", "the")
AND_WORDS = ("and", "&", "plus", "as well as", "along with", "alongside", "together with", "next to", "beside")
SEPARATORS = (",", ";", ".", "!", "?", "(", ")", "while", "whilst", "as", "meanwhile", "whereas", "with", "-", "/")
IMAGE_PHRASES = (
    "[an|a|] [image|picture|photo|photograph|still image|still picture|snapshot|still frame|frame|single frame] "
    "[of|showing|with]",
    "[an|a] [image|picture|photo|photograph|snapshot]",
)

# Where one object is relative to another. The worlds' captions never say this, and read as
# motions ("to the left of" is not "to the left") they would give a wrong scene: refused.
RELATION_PHRASES = (
    "[to the|] [left|right] of",
    "[to the|] [left|right] hand side of",
    "above",
    "below",
    "under",
    "underneath",
    "beneath",
    "behind",
    "inside",
    "within",
    "on top",
    "around",
    "towards [a|an|the] [circle|square|triangle|ball|box|disc|dot]",
    "[the|] [other|opposite|same|reverse] [way|direction]",
    "in [the|] [opposite|same|reverse|different] directions",
)

# Words that say nothing about the scene: requests, verbs of motion whose direction comes from
# elsewhere, and the names of the medium.
FILLER_WORDS = (
    "video",
    "clip",
    "animation",
    "animated",
    "movie",
    "footage",
    "film",
    "scene",
    "sequence",
    "shot",
    "showing",
    "shows",
    "show",
    "shown",
    "depicting",
    "depicts",
    "featuring",
    "features",
    "containing",
    "contains",
    "with",
    "there",
    "here",
    "we",
    "see",
    "you",
    "can",
    "i",
    "me",
    "please",
    "make",
    "create",
    "generate",
    "render",
    "draw",
    "want",
    "[i|we|] would like",
    "it",
    "its",
    "it is",
    "that",
    "which",
    "who",
    "this",
    "these",
    "those",
    "has",
    "have",
    "having",
    "be",
    "being",
    "just",
    "only",
    "also",
    "off",
    "away",
    "totally",
    "completely",
    "entirely",
    "perfectly",
    "very",
    "quite",
    "rather",
    "really",
    "fairly",
    "zooming",
    "zooms",
    "darting",
    "darts",
    "whizzing",
    "whizzes",
    "rushing",
    "rushes",
    "hurrying",
    "hurries",
    "zipping",
    "zips",
    "wandering",
    "wanders",
    "creeping",
    "creeps",
    "frame",
    "screen",
    "view",
    "moving",
    "moves",
    "move",
    "going",
    "goes",
    "go",
    "sliding",
    "slides",
    "slide",
    "gliding",
    "glides",
    "glide",
    "drifting",
    "drifts",
    "drift",
    "travelling",
    "traveling",
    "travels",
    "travel",
    "heading",
    "heads",
    "head",
    "floating",
    "floats",
    "float",
    "rolling",
    "rolls",
    "roll",
    "flying",
    "flies",
    "fly",
    "running",
    "runs",
    "run",
    "racing",
    "races",
    "race",
    "crawling",
    "crawls",
    "crawl",
    "scrolling",
    "scrolls",
    "shifting",
    "shifts",
    "sweeping",
    "sweeps",
    "cruising",
    "cruises",
    "passing",
    "passes",
    "crossing",
    "crosses",
    "makes its way",
    "making its way",
    "steadily",
    "smoothly",
    "straight",
    "directly",
    "constantly",
    "continuously",
    "diagonally",
    "across the [screen|frame|canvas|picture|image|view]",
    "[on|across|over|through] [the|] [screen|frame|canvas|picture|image|view]",
    "[in|into|out of] [the|] [frame|view|shot]",
    "sized",
    "shaped",
    "colour",
    "color",
    "coloured",
    "colored",
    "in color",
    "in colour",
    "bright",
    "vivid",
    "vividly",
    "brightly",
    "pure",
    "rich",
    "deep",
    "along",
    "way",
    "direction",
    "in the direction of",
    "[is|are|was|were]",
    "[gets|get|getting]",
)
# Adjectives the worlds have no counterpart for. They are dropped (the expansion says so) rather
# than refusing the whole prompt, because none of them changes what the worlds can draw.
STYLE_WORDS = (
    "shiny",
    "glossy",
    "matte",
    "cute",
    "nice",
    "pretty",
    "beautiful",
    "lovely",
    "neat",
    "crisp",
    "sharp",
    "smooth",
    "perfect",
    "simple",
    "basic",
    "cartoon",
    "flat shaded",
    "2d",
    "geometric",
    "minimal",
    "minimalist",
    "clean",
    "colourful",
    "colorful",
    "lonely",
    "happy",
    "tidy",
)


def _table() -> dict[str, Lexeme]:
    """phrase -> Lexeme, built once. Later entries never overwrite earlier ones, so the order
    below is the priority when two lists name the same phrase (a colour word beats filler)."""
    table: dict[str, Lexeme] = {}

    def add(patterns, lexeme: Lexeme) -> None:
        for pattern in patterns:
            for phrase in variants(pattern):
                table.setdefault(phrase, lexeme)

    # Colours: a word may be both an object and a background colour ("white").
    words: dict[str, list[str | None]] = {}
    for name, phrases in OBJECT_COLOR_WORDS.items():
        for p in phrases:
            words.setdefault(p, [None, None])[0] = name
    for name, phrases in BACKGROUND_COLOR_WORDS.items():
        for p in phrases:
            words.setdefault(p, [None, None])[1] = name
    for phrase, (obj, bg) in words.items():
        add([phrase], Lexeme("COLOR", obj, background=bg))
    for shape, (singular, plural) in SHAPE_NOUNS.items():
        add(singular, Lexeme("SHAPE", shape))
        add(plural, Lexeme("SHAPE", shape, plural=True))
    for shape, phrases in SHAPE_ADJECTIVES.items():
        add(phrases, Lexeme("SHAPEADJ", shape))
    add(GENERIC_NOUNS[0], Lexeme("GENERIC"))
    add(GENERIC_NOUNS[1], Lexeme("GENERIC", plural=True))
    for garment, (singular, plural) in GARMENT_NOUNS.items():
        add(singular, Lexeme("GARMENT", garment))
        add(plural, Lexeme("GARMENT", garment, plural=True))
    for scene, patterns in PHOTO_WORDS.items():
        add(patterns, Lexeme("PHOTO", scene))
    for move, patterns in CAMERA_PHRASES.items():
        add([f"[the|a|] [camera|] {p}" for p in patterns], Lexeme("CAMERA", move))
    add(RELATION_PHRASES, Lexeme("RELATION"))
    # "From the left to the right": a direction that also names its start.
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    to_dir = {"left": "left", "right": "right", "top": "up", "bottom": "down"}
    for a, b in opposite.items():
        add([f"[from|] [the|] {a} {_EDGE} to [the|] {b} {_EDGE}"], Lexeme("DIR", to_dir[b], start=a))
    for v in ("top", "bottom"):
        for h in ("left", "right"):
            direction = f"{to_dir[opposite[v]]}-{opposite[h]}"
            add(
                [f"from [the|] {v} {h} {_CORNER} to [the|] {opposite[v]} {opposite[h]} {_CORNER}"],
                Lexeme("DIR", direction, start=f"{v} {h}"),
            )
    # Regions after their prepositions, before directions: "in the top left" is a place, while a
    # bare "left" (no preposition) is a direction.
    for region, patterns in REGIONS.items():
        add([f"{prep} [the|] {p}" for prep in _REGION_PREPS for p in patterns], Lexeme("REGION", region))
    for direction, patterns in DIAGONAL_DIRECTIONS.items():
        add(patterns, Lexeme("DIR", direction))
    for direction, patterns in STRAIGHT_DIRECTIONS.items():
        add(patterns, Lexeme("DIR", direction))
    add(STILL_PHRASES, Lexeme("STILL", "still"))
    add(BOUNCE_PHRASES, Lexeme("BOUNCE", "bouncing"))
    add(STILL_WEAK_PHRASES, Lexeme("STILL_WEAK", "still"))
    for speed, patterns in SPEED_PHRASES.items():
        add(patterns, Lexeme("SPEED", speed))
    for size, patterns in SIZE_PHRASES.items():
        add(patterns, Lexeme("SIZE", size))
    for n, patterns in NUMBER_PHRASES.items():
        add(patterns, Lexeme("NUM", n))
    add(["[a|] pair of"], Lexeme("NUM", 2, start="pair"))  # "a pair of trousers" is one garment
    add(["one"], Lexeme("NUM", 1))  # "one red circle"; the parser reads "one red, one green" as ONE
    add(ONE_PHRASES, Lexeme("ONE"))
    add(ALL_PHRASES, Lexeme("ALL"))
    add(IMAGE_PHRASES, Lexeme("IMAGE"))
    add([f"[with|] [a|an|the|] {n}" for n in BACKGROUND_NOUNS], Lexeme("BGNOUN"))
    add(BACKGROUND_PREPS, Lexeme("BGPREP"))
    add(LINK_WORDS, Lexeme("LINK"))
    add(PLAIN_WORDS, Lexeme("PLAIN"))
    add(ARTICLES, Lexeme("ART"))
    add(AND_WORDS, Lexeme("AND"))
    add(SEPARATORS, Lexeme("SEP"))
    add(STYLE_WORDS, Lexeme("STYLE"))
    add(FILLER_WORDS, Lexeme("FILLER"))
    return table


PHRASES: dict[str, Lexeme] = _table()
MAX_PHRASE_WORDS: int = max(len(p.split()) for p in PHRASES)

# The canonical background and object colour names must be the worlds' own.
assert set(BACKGROUND_COLOR_WORDS) == set(BACKGROUND_COLORS)
assert set(OBJECT_COLOR_WORDS) == set(OBJECT_COLORS)
assert set(SHAPE_NOUNS) == set(SHAPES)
