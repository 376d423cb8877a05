"""Prompt expansion: say a user's prompt again in the caption style the model was trained on.

The bundled model learned its worlds from captions in one phrasebook and follows prompts in that
phrasing best; like Sora, cinecube can rewrite a short or differently worded prompt into that
style before encoding it. See docs/prompt-expansion.md for the measured effect.

    >>> expand("crimson disc drifting to the right over a pitch-black backdrop").expanded
    'a red circle moving right on a black background'

- `expand(prompt, expander="builtin", max_tokens=64, token_count=None) -> Expansion`
- `get_expander(spec)`: "none", "builtin" (the short caption style; "builtin:auto" and
  "builtin:detailed" also say size, speed and start place),
  "cmd:<shell command>", a function `str -> str`, or any `Expander`
- `parse_prompt(prompt) -> ParsedPrompt` (raises `NotUnderstood`) and `render(parsed, style)`:
  the built-in expander's two halves
"""

from .expanders import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_MAX_TOKENS,
    DEFAULT_STYLE,
    BuiltinExpander,
    CallableExpander,
    CommandExpander,
    Expander,
    Expansion,
    NoExpander,
    expand,
    get_expander,
)
from .parser import NotUnderstood, ParsedObject, ParsedPrompt, parse_prompt
from .render import STYLES, render

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_STYLE",
    "STYLES",
    "BuiltinExpander",
    "CallableExpander",
    "CommandExpander",
    "Expander",
    "Expansion",
    "NoExpander",
    "NotUnderstood",
    "ParsedObject",
    "ParsedPrompt",
    "expand",
    "get_expander",
    "parse_prompt",
    "render",
]
