"""Read a free-form prompt into the scene vocabulary of the built-in worlds, or say why not.

Why a parser at all: the bundled model learned its worlds from captions written from a small
phrasebook, and it follows prompts in that phrasing better than in others (single-object
direction 67 % in the training phrasing against 47 % in a held-out one). Reading a prompt into
the world's own terms (objects with colour, shape and motion; a background; a count) lets the
expander say the same thing again in the phrasing the model knows.

Why it refuses so readily: a wrong scene is worse than an unexpanded prompt. Every word must be
understood (see `lexicon`), every object must have a shape or garment, every colour must belong
to something, and the counts must add up; otherwise `NotUnderstood` says what stopped it and the
caller keeps the prompt as it was given. Nothing is ever added that the prompt did not say.

How: the prompt is folded to lower case, split into words (hyphens split too), and matched
greedily against the phrase table, longest phrase first. The resulting items are then read left
to right: colours and sizes wait for the noun they describe, motions attach to the object last
named (or to every object after "both"), "one red, one green" splits a plural noun into members,
and a colour after "on", "against" or before "background" is the background.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from cinecube.data.vocab import MOTION_VECTORS

from .lexicon import MAX_PHRASE_WORDS, PHRASES, Lexeme

#: The most objects a shapes scene has, and a fashion scene.
MAX_OBJECTS = {"shapes": 3, "fashion": 2}

_NOUNS = ("SHAPE", "GENERIC", "GARMENT")


class NotUnderstood(ValueError):
    """The prompt is not (confidently) a scene of the built-in worlds; the message says why."""


@dataclass(frozen=True)
class ParsedObject:
    """One object as the prompt describes it; None where the prompt does not say.

    `kind` is "shape" (noun: circle / square / triangle) or "garment" (noun: a Fashion-MNIST
    class name such as "sneaker"). `motion` is one of the shapes world's motions (the eight
    directions, "still", "bouncing"); `start` a rough region ("top left", "middle", "left").
    """

    kind: str
    noun: str
    color: str | None = None
    motion: str | None = None
    size: str | None = None
    speed: str | None = None
    start: str | None = None


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt read into one built-in world: "shapes", "fashion" or "pans".

    `background` is a plain background colour (a `BACKGROUND_COLORS` key); `photo` a photo's
    caption name ("a brick wall"), the background of a fashion scene or the subject of a pan.
    `image` asks for a single frame. `dropped` lists words understood but left out because the
    worlds have nothing for them ("shiny").
    """

    world: str
    objects: tuple[ParsedObject, ...] = ()
    background: str | None = None
    photo: str | None = None
    image: bool = False
    camera: str | None = None
    camera_speed: str | None = None
    dropped: tuple[str, ...] = ()

    @property
    def has_details(self) -> bool:
        """Whether any object has a size, speed or start place (what the detailed style says)."""
        return any(o.size or o.speed or o.start for o in self.objects) or bool(self.camera_speed)


@dataclass(frozen=True)
class Item:
    """One matched phrase: its meaning and the words it covered."""

    lexeme: Lexeme
    text: str

    @property
    def kind(self) -> str:
        return self.lexeme.kind


def tokenize(prompt: str) -> list[str]:
    """Lower-case words and punctuation; hyphens and underscores split words ("up-left")."""
    text = unicodedata.normalize("NFKC", prompt).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[-_\u2010-\u2015]", " ", text)
    return re.findall(r"[^\W_]+(?:'[^\W_]+)?|[,;:.!?()&/]", text)


def lex(prompt: str) -> list[Item]:
    """The prompt as matched phrases, longest match first; unmatched words are UNKNOWN items."""
    words = tokenize(prompt)
    items: list[Item] = []
    i = 0
    while i < len(words):
        for length in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
            phrase = " ".join(words[i : i + length])
            lexeme = PHRASES.get(phrase)
            if lexeme is not None:
                items.append(Item(lexeme, phrase))
                i += length
                break
        else:
            items.append(Item(Lexeme("UNKNOWN"), words[i]))
            i += 1
    return items


# ---------------------------------------------------------------------------------------------
# Reading the items
# ---------------------------------------------------------------------------------------------


@dataclass
class _Holder:
    """Motion, size, speed, start and colour said of one object (or of a group, or of all)."""

    color: str | None = None
    size: str | None = None
    speed: str | None = None
    start: str | None = None
    motions: list[str] = field(default_factory=list)
    weak_still: bool = False
    twin: bool = False  # "a red circle and a blue one": must get a colour of its own

    def merge(self, other: _Holder) -> None:
        for name in ("color", "size", "speed", "start"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is None:
                setattr(self, name, theirs)
            elif theirs is not None and theirs != mine:
                raise NotUnderstood(f"one object is said to be both {mine} and {theirs}")
        self.motions += [m for m in other.motions if m not in self.motions]
        self.weak_still |= other.weak_still


@dataclass
class _Group:
    """A noun phrase: one object, or several of one shape ("two squares")."""

    kind: str
    noun: str
    plural: bool
    count: int | None
    colors: list[str]
    common: _Holder
    members: list[_Holder] = field(default_factory=list)


def _next_index(items: list[Item], i: int, skip: tuple[str, ...]) -> int | None:
    """Index of the first item after i whose kind is not in skip."""
    for j in range(i + 1, len(items)):
        if items[j].kind not in skip:
            return j
    return None


def _prev_index(items: list[Item], i: int, skip: tuple[str, ...]) -> int | None:
    for j in range(i - 1, -1, -1):
        if items[j].kind not in skip:
            return j
    return None


def _before_noun(items: list[Item], i: int) -> bool:
    j = _next_index(items, i, ("COLOR", "SIZE", "STYLE", "PLAIN", "SHAPEADJ"))
    return j is not None and items[j].kind in _NOUNS


def _is_pronoun_one(items: list[Item], i: int) -> bool:
    """Whether a bare "one" stands for an object ("one red, one green") rather than counting
    one ("one red circle"): it counts only when a noun follows its adjectives."""
    j = _next_index(items, i, ("COLOR", "SIZE", "STYLE", "SHAPEADJ", "FILLER", "PLAIN"))
    return j is None or items[j].kind not in _NOUNS


def _color_roles(items: list[Item]) -> dict[int, str]:
    """For every colour item: "bg" (the background), "pre" (waits for the noun after it) or
    "post" (describes the object named before it: "a circle in red", "one red, one green")."""
    roles: dict[int, str] = {}
    for i, item in enumerate(items):
        if item.kind != "COLOR":
            continue
        after = _next_index(items, i, ("PLAIN", "STYLE", "FILLER", "LINK"))
        if after is not None and items[after].kind == "BGNOUN":
            roles[i] = "bg"
            continue
        noun_after = _next_index(items, i, ("SIZE", "STYLE", "PLAIN", "FILLER", "SHAPEADJ"))
        directly_noun = noun_after is not None and items[noun_after].kind in (*_NOUNS, "ONE")
        before = _prev_index(items, i, ("ART", "PLAIN", "STYLE", "FILLER"))
        if before is not None and items[before].kind == "BGPREP" and not directly_noun:
            roles[i] = "bg"
            continue
        if before is not None and items[before].kind == "LINK":
            linked = _prev_index(items, before, ("LINK", "ART", "PLAIN", "FILLER"))
            if linked is not None and items[linked].kind == "BGNOUN":
                roles[i] = "bg"  # "background: gray", "the backdrop is black"
                continue
        named_before = _prev_index(items, i, ("LINK", "FILLER", "ART"))
        if named_before is not None and (
            items[named_before].kind in (*_NOUNS, "ONE")
            or (items[named_before].text == "one" and _is_pronoun_one(items, named_before))
        ):
            roles[i] = "post"
            continue
        ahead = _next_index(items, i, ("COLOR", "SIZE", "AND", "ART", "STYLE", "PLAIN", "FILLER", "SEP", "SHAPEADJ"))
        if ahead is not None and (
            items[ahead].kind in (*_NOUNS, "ONE") or (items[ahead].kind == "NUM" and items[ahead].text == "one")
        ):
            # A comma may separate colours of one list ("red, green and blue circles"), but not
            # a colour from a noun of the next clause ("..., blue. A circle"): stop at those.
            stops = [k for k in range(i + 1, ahead) if items[k].text in (".", ";", "!", "?", "(", ")")]
            roles[i] = "post" if stops else "pre"
            continue
        roles[i] = "post"
    return roles


def _reference(
    groups: list[_Group],
    items: list[Item],
    i: int,
    colors: list[tuple[str, bool]],
    count: int | None,
    size: str | None,
) -> _Holder | None:
    """The object an item "the [colour] <noun>" refers back to, if exactly one was named before."""
    if count is not None or size is not None or len(colors) > 1 or items[i].lexeme.plural:
        return None
    j = _prev_index(items, i, ("COLOR",))
    if j is None or items[j].text != "the":
        return None
    color = colors[0][0] if colors else None
    if items[i].kind in ("ONE", "NUM"):  # "the blue one": any object of that colour
        if color is None:
            return None
        members = [m for g in groups for m in g.members if m.color == color]
        return members[0] if len(members) == 1 else None
    noun = items[i].lexeme.value
    found = [
        m for g in groups if not g.plural and g.noun == noun for m in g.members if color is None or m.color == color
    ]
    return found[0] if len(found) == 1 else None


def _resolve_motion(holder: _Holder) -> str | None:
    """One motion from what was said: a vertical and a horizontal direction make a diagonal."""
    motions = list(dict.fromkeys(holder.motions))
    if not motions:
        return "still" if holder.weak_still else None
    if len(motions) == 1:
        return motions[0]
    if len(motions) == 2:
        # "rising up and to the right": a straight direction that is part of the diagonal.
        diagonal = [m for m in motions if "-" in m]
        if len(diagonal) == 1 and all(m == diagonal[0] or m in diagonal[0].split("-") for m in motions):
            return diagonal[0]
        vertical = [m for m in motions if m in ("up", "down")]
        horizontal = [m for m in motions if m in ("left", "right")]
        if len(vertical) == 1 and len(horizontal) == 1:
            return f"{vertical[0]}-{horizontal[0]}"
    raise NotUnderstood(f"one object is said to move in more than one way ({', '.join(motions)})")


def _attach(targets: list[_Holder], item: Item) -> None:
    lexeme = item.lexeme
    for holder in targets:
        if item.kind == "DIR":
            holder.motions.append(str(lexeme.value))
            if lexeme.start is not None:
                holder.merge(_Holder(start=lexeme.start))
        elif item.kind in ("STILL", "BOUNCE"):
            holder.motions.append(str(lexeme.value))
        elif item.kind == "STILL_WEAK":
            holder.weak_still = True
        elif item.kind == "SPEED":
            holder.merge(_Holder(speed=str(lexeme.value)))
        elif item.kind == "SIZE":
            holder.merge(_Holder(size=str(lexeme.value)))
        elif item.kind == "REGION":
            holder.merge(_Holder(start=str(lexeme.value)))


def parse_prompt(prompt: str) -> ParsedPrompt:
    """The scene a prompt asks for, in the built-in worlds' vocabulary.

    Raises `NotUnderstood` (with the reason) when any word is unknown, a colour or motion cannot
    be tied to an object, counts disagree, or the result is no scene the worlds draw.
    """
    items = lex(prompt)
    unknown = [it.text for it in items if it.kind == "UNKNOWN"]
    if unknown:
        words = ", ".join(f"'{w}'" for w in dict.fromkeys(unknown))
        raise NotUnderstood(f"words outside the built-in worlds' vocabulary: {words}")
    relations = [it.text for it in items if it.kind == "RELATION"]
    if relations:
        raise NotUnderstood(
            f"'{relations[0]}': where objects are relative to each other is not in the worlds' captions"
        )
    for i, item in enumerate(items):
        j = _next_index(items, i, ("ART", "COLOR", "SIZE", "STYLE", "PLAIN", "FILLER", "SHAPEADJ"))
        if item.kind == "BGPREP" and j is not None and items[j].kind in _NOUNS:
            # "on a blue square", "over a circle": objects placed on objects, not a background.
            raise NotUnderstood(f"'{item.text} ... {items[j].text}': objects are never placed on other objects")
    roles = _color_roles(items)

    groups: list[_Group] = []
    pending = _Holder()  # said before any object: goes to the next one
    pre_colors: list[tuple[str, bool]] = []  # (colour, had its own article)
    pre_size: str | None = None
    pre_count: int | None = None
    pre_pair = False
    pre_shape: str | None = None
    targets: list[_Holder] | None = None
    last_member_group: _Group | None = None  # the plural group whose member was named last
    backgrounds: list[str] = []
    photos: list[tuple[str, bool]] = []  # (scene, said as a background)
    cameras: list[str] = []
    camera_speed: str | None = None
    image = False
    dropped: list[str] = []

    def color_word(i: int) -> str:
        value = items[i].lexeme.value
        if value is None:
            raise NotUnderstood(f"'{items[i].text}' is not a colour the built-in worlds draw objects in")
        return str(value)

    def new_member(group: _Group, color: str | None) -> _Holder:
        nonlocal targets
        member = _Holder(color=color, size=pre_size)
        group.members.append(member)
        targets = [member]
        return member

    for i, item in enumerate(items):
        kind, lexeme = item.kind, item.lexeme
        if kind == "NUM" and item.text == "one" and _is_pronoun_one(items, i):
            kind = "ONE"
        if kind == "COLOR":
            role = roles[i]
            if role == "bg":
                if lexeme.background is None:
                    raise NotUnderstood(f"'{item.text}' is not a background colour of the built-in worlds")
                backgrounds.append(lexeme.background)
            elif role == "pre":
                article = i > 0 and items[i - 1].kind in ("ART", "NUM")
                pre_colors.append((color_word(i), article))
            else:
                color = color_word(i)
                if targets is None:
                    raise NotUnderstood(f"could not tell what '{item.text}' describes")
                for holder in targets:
                    group = next((g for g in groups if holder is g.common and g.plural), None)
                    if group is not None:
                        group.colors.append(color)
                    elif holder.color not in (None, color):
                        raise NotUnderstood(f"one object is said to be both {holder.color} and {color}")
                    else:
                        holder.color = color
        elif kind == "NUM":
            if int(lexeme.value or 0) > 3:
                raise NotUnderstood(f"'{item.text}': the built-in worlds draw at most three objects")
            pre_count, pre_pair = int(lexeme.value or 0), lexeme.start == "pair"
        elif kind == "SIZE":
            j = _next_index(items, i, ("COLOR", "ART", "STYLE", "PLAIN", "FILLER", "SHAPEADJ", "SIZE"))
            if j is not None and (items[j].kind in _NOUNS or items[j].kind == "ONE"):
                pre_size = str(lexeme.value)
            elif targets is not None:
                _attach(targets, item)
            else:
                _attach([pending], item)
        elif kind == "SPEED":
            j = _next_index(items, i, ("COLOR", "ART", "STYLE", "PLAIN", "FILLER", "SHAPEADJ", "SIZE"))
            if (j is not None and items[j].kind == "CAMERA") or (cameras and not groups):
                camera_speed = str(lexeme.value)
            elif j is not None and items[j].kind in _NOUNS:
                _attach([pending], item)
            else:
                _attach(targets if targets is not None else [pending], item)
        elif kind == "SHAPEADJ":
            pre_shape = str(lexeme.value)
        elif kind in _NOUNS:
            before = _prev_index(items, i, ("ART",))
            if before is not None and items[before].text in ("in", "into", "like", "as"):
                # "moving in a circle", "shaped like a ball": a path or a likeness, not an object.
                raise NotUnderstood(f"'{items[before].text} ... {item.text}' does not name an object")
            earlier = _reference(groups, items, i, pre_colors, pre_count, pre_size)
            if earlier is not None:
                # "the cube ... the sphere": objects named before, not new ones.
                targets, last_member_group = [earlier], None
                pre_colors, pre_shape = [], None
                continue
            if kind == "GENERIC":
                if pre_shape is None:
                    raise NotUnderstood(f"'{item.text}' has no shape: say circle, square or triangle")
                noun, group_kind = pre_shape, "shape"
            else:
                noun, group_kind = str(lexeme.value), "shape" if kind == "SHAPE" else "garment"
            plural = lexeme.plural
            count = pre_count
            if pre_pair and not plural:
                count = None  # "a pair of trousers" is one garment
            if count is not None and count > 1 and not plural:
                plural = True  # "two circle"
            if count == 1 and plural:
                raise NotUnderstood(f"'one' and the plural '{item.text}' disagree")
            common = _Holder(size=pre_size)
            common.merge(pending)
            group = _Group(group_kind, noun, plural, count, [c for c, _ in pre_colors], common)
            groups.append(group)
            if not plural:
                if len(pre_colors) > 1:
                    if not all(article for _, article in pre_colors[1:]):
                        raise NotUnderstood(f"one {noun} is given {len(pre_colors)} colours")
                    # "a red and a blue circle": two circles.
                    group.plural, group.count = True, len(pre_colors)
                    targets = [common]
                else:
                    new_member(group, pre_colors[0][0] if pre_colors else None)
                last_member_group = None
            else:
                targets = [common]
                last_member_group = group
            pending = _Holder()
            pre_colors, pre_size, pre_count, pre_pair, pre_shape = [], None, None, False, None
        elif kind == "ONE":
            earlier = _reference(groups, items, i, pre_colors, pre_count, pre_size)
            if earlier is not None:
                # "the blue one": an object named before.
                targets, last_member_group = [earlier], None
                pre_colors = []
                continue
            if not groups:
                raise NotUnderstood(f"'{item.text}' does not refer to an object named before it")
            group = groups[-1]
            color = pre_colors[0][0] if len(pre_colors) == 1 else None
            if len(pre_colors) > 1:
                raise NotUnderstood(f"'{item.text}' is given {len(pre_colors)} colours")
            if group.plural:
                new_member(group, color)
                last_member_group = group
            else:
                # "a red circle and a blue one": another object of the same kind.
                twin = _Group(group.kind, group.noun, False, None, [], _Holder())
                groups.append(twin)
                new_member(twin, color).twin = True
                last_member_group = None
            pre_colors, pre_size, pre_count = [], None, None
        elif kind == "ALL":
            targets = [g.common for g in groups] if groups else None
            last_member_group = None
        elif kind == "DIR" and item.text in ("left", "right", "up", "down") and _before_noun(items, i):
            # "the left circle" says where it is, not where it goes.
            raise NotUnderstood(f"'{item.text}' before a noun says where an object is, not where it goes")
        elif kind in ("DIR", "STILL", "STILL_WEAK", "BOUNCE", "REGION"):
            if cameras and not groups:
                raise NotUnderstood(f"'{item.text}' after a camera move: say one camera move")
            _attach(targets if targets is not None else [pending], item)
        elif kind == "SEP":
            # "two squares, one red one green, moving up": after a list of members that have no
            # motion yet, a motion set off by a comma is said of the whole group.
            group = last_member_group
            if group is not None and not any(m.motions or m.weak_still for m in group.members):
                targets = [group.common]
        elif kind == "STYLE":
            dropped.append(item.text)
        elif kind == "IMAGE":
            image = True
        elif kind == "PHOTO":
            before = _prev_index(items, i, ("ART", "PLAIN", "STYLE", "FILLER", "LINK"))
            after = _next_index(items, i, ("PLAIN", "FILLER"))
            as_background = (before is not None and items[before].kind in ("BGPREP", "BGNOUN")) or (
                after is not None and items[after].kind == "BGNOUN"
            )
            photos.append((str(lexeme.value), as_background))
        elif kind == "CAMERA":
            cameras.append(str(lexeme.value))
        # ART, AND, BGPREP, BGNOUN, LINK, PLAIN, FILLER carry nothing by themselves.

    if pre_colors:
        raise NotUnderstood(f"could not tell what '{pre_colors[-1][0]}' describes")
    if pre_count is not None or pre_shape is not None:
        raise NotUnderstood("a count or shape word is not followed by what it describes")
    if len(set(backgrounds)) > 1:
        raise NotUnderstood(f"more than one background: {', '.join(dict.fromkeys(backgrounds))}")
    background = backgrounds[0] if backgrounds else None
    objects = _objects(groups)
    if pending.motions or pending.weak_still or pending.speed or pending.size or pending.start:
        # Said before any object and never followed by one.
        raise NotUnderstood("a motion, size or place is said, but of no object the built-in worlds draw")
    return _world(objects, background, photos, cameras, camera_speed, image, tuple(dropped))


def _objects(groups: list[_Group]) -> list[ParsedObject]:
    objects: list[ParsedObject] = []
    for group in groups:
        if group.plural:
            members = group.members
            colors = list(group.colors)
            if members:
                n = group.count or len(members)
                if len(members) != n:
                    raise NotUnderstood(f"{n} {group.noun}s are announced but {len(members)} are described")
                if colors:
                    if len(colors) != n or any(m.color for m in members):
                        raise NotUnderstood(f"the colours of the {group.noun}s do not add up")
                    for member, color in zip(members, colors):
                        member.color = color
            else:
                n = group.count or (len(colors) if len(colors) > 1 else 0)
                if not n:
                    raise NotUnderstood(f"how many {group.noun}s? give a number or their colours")
                if colors and len(colors) not in (1, n):
                    raise NotUnderstood(f"{n} {group.noun}s but {len(colors)} colours")
                if len(colors) == 1:
                    colors = colors * n  # "two red squares"
                members = [_Holder(color=colors[k] if colors else None) for k in range(n)]
        else:
            members = group.members
        for member in members:
            if member.twin and member.color is None:
                raise NotUnderstood(f"'one' or 'the other' names no new {group.noun}: give it a colour")
            member.merge(group.common)
            objects.append(
                ParsedObject(
                    kind=group.kind,
                    noun=group.noun,
                    color=member.color,
                    motion=_resolve_motion(member),
                    size=member.size,
                    speed=member.speed,
                    start=member.start,
                )
            )
    return objects


def _world(
    objects: list[ParsedObject],
    background: str | None,
    photos: list[tuple[str, bool]],
    cameras: list[str],
    camera_speed: str | None,
    image: bool,
    dropped: tuple[str, ...],
) -> ParsedPrompt:
    """Check the objects make one scene of one world, and which."""
    kinds = {o.kind for o in objects}
    if len(kinds) > 1:
        raise NotUnderstood("shapes and garments never share a scene in the built-in worlds")
    if cameras:
        if objects or len(set(cameras)) > 1 or len({p for p, _ in photos}) != 1 or background:
            raise NotUnderstood("a camera move needs exactly one photo scene and nothing else")
        if image:
            raise NotUnderstood("a single image has no camera move")
        return ParsedPrompt("pans", photo=photos[0][0], camera=cameras[0], camera_speed=camera_speed, dropped=dropped)
    if not objects:
        if image and len(photos) == 1 and background is None:
            return ParsedPrompt("pans", photo=photos[0][0], image=True, dropped=dropped)
        raise NotUnderstood("no object of the built-in worlds (a shape or a garment) is named")
    world = "shapes" if kinds == {"shape"} else "fashion"
    if len(objects) > MAX_OBJECTS[world]:
        raise NotUnderstood(f"{len(objects)} objects: the {world} world draws at most {MAX_OBJECTS[world]}")
    photo = None
    if photos:
        if world == "shapes":
            raise NotUnderstood(f"'{photos[0][0]}': shapes are drawn on plain backgrounds")
        if len(photos) > 1 or not photos[0][1]:
            raise NotUnderstood(f"'{photos[0][0]}' is not said to be the background")
        if background is not None:
            raise NotUnderstood("both a photo and a plain colour are given as the background")
        photo = photos[0][0]
    for obj in objects:
        if image and obj.motion not in (None, "still"):
            raise NotUnderstood(f"a single image cannot show the {obj.noun} moving {obj.motion}")
        if world == "fashion" and obj.motion == "bouncing":
            raise NotUnderstood("garments in the fashion world never bounce")
        if obj.motion is not None and obj.motion not in MOTION_VECTORS and obj.motion not in ("still", "bouncing"):
            raise AssertionError(obj.motion)  # pragma: no cover
    if image:
        objects = [ParsedObject(o.kind, o.noun, o.color, None, o.size, None, o.start) for o in objects]
    return ParsedPrompt(world, tuple(objects), background, photo, image, dropped=dropped)
