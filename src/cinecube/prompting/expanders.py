"""Prompt expanders: turn a user's prompt into the caption style a model was trained on.

Why: like Sora, which rewrites short user prompts into the long captions its training videos
carried, cinecube follows prompts better in the phrasing it learned from. An expander is anything
that maps a prompt to a better prompt:

- `BuiltinExpander` ("builtin") reads the prompt into the built-in worlds' scene vocabulary and
  says it again in their training phrasebook; what it cannot read confidently it leaves alone;
- `CommandExpander` ("cmd:<shell command>") asks an external program, typically a language
  model behind a script, reading the prompt on stdin and printing the expansion on stdout;
- `CallableExpander` wraps any Python function `str -> str`;
- `NoExpander` ("none") keeps every prompt as given.

`expand(prompt, expander)` runs one and returns an `Expansion` with the prompt, the text to
encode, who produced it and why; it also holds every expansion to the model's text limit.

Safety: the prompt policy judges the prompt the user wrote, before expansion (the caller's job),
and the expanded prompt again when the pipeline is called with it. The built-in expander never
adds content: every word it writes names something it parsed, and any word it does not know makes
it keep the prompt unchanged, so it cannot turn a refused prompt into an allowed one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cinecube.errors import CinecubeError

from .parser import NotUnderstood, ParsedPrompt, parse_prompt
from .render import STYLES, render

#: The default model's text limit (`ModelConfig.text_max_tokens`), in encoder tokens.
DEFAULT_MAX_TOKENS = 64
#: How long an external expander command may take, in seconds.
DEFAULT_COMMAND_TIMEOUT = 30.0
#: The built-in expander's caption style. "short" measured best on the 120 held-out prompts:
#: direction 54 % against 48 % for "auto" (detailed captions when the prompt gives details) and
#: 33 % unexpanded (docs/prompt-expansion.md).
DEFAULT_STYLE = "short"


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one prompt.

    `prompt` is what the user wrote, `expanded` the text to give the model (equal to `prompt`
    when nothing changed), `by` the expander's name ("builtin", "none", "cmd:...") and `reason`
    one line on what happened ("parsed 1 object of the shapes world" or why the prompt was kept).
    `parsed` is the built-in expander's reading of the prompt, when it had one.
    """

    prompt: str
    expanded: str
    by: str
    reason: str
    parsed: ParsedPrompt | None = None

    @property
    def changed(self) -> bool:
        return self.expanded != self.prompt

    def to_dict(self) -> dict[str, str | bool]:
        """JSON-able summary, e.g. for a generation's metadata."""
        return {"prompt": self.prompt, "expanded": self.expanded, "by": self.by, "reason": self.reason}


@runtime_checkable
class Expander(Protocol):
    """Anything with a `name` and `expand(prompt) -> Expansion`."""

    name: str

    def expand(self, prompt: str) -> Expansion: ...


class NoExpander:
    """Keeps every prompt as it is ("none")."""

    name = "none"

    def expand(self, prompt: str) -> Expansion:
        return Expansion(prompt, prompt, self.name, "expansion is off")


class BuiltinExpander:
    """Rewrites prompts about the built-in worlds in their training phrasebook ("builtin").

    `style` is "short" (the default, which measured best: size, speed and start place are left
    out), "auto" (detailed captions when the prompt gives a size, speed or start place, short ones
    otherwise) or "detailed". A prompt it cannot parse comes back unchanged, with the reason.
    """

    name = "builtin"

    def __init__(self, style: str = DEFAULT_STYLE) -> None:
        if style not in STYLES:
            raise CinecubeError(f"unknown expansion style '{style}'; expected one of {', '.join(STYLES)}")
        self.style = style

    def expand(self, prompt: str) -> Expansion:
        try:
            parsed = parse_prompt(prompt)
        except NotUnderstood as error:
            return Expansion(prompt, prompt, self.name, f"kept as given: {error}")
        text = render(parsed, self.style)
        return Expansion(prompt, text, self.name, _summary(parsed), parsed)

    def shorter(self, expansion: Expansion) -> Expansion | None:
        """The same reading in the short style, when the first one was too long (else None)."""
        if expansion.parsed is None or self.style == "short":
            return None
        text = render(expansion.parsed, "short")
        if text == expansion.expanded:
            return None
        return Expansion(expansion.prompt, text, self.name, expansion.reason + " (short style)", expansion.parsed)


def _summary(parsed: ParsedPrompt) -> str:
    if parsed.world == "pans":
        what = "a photo" if parsed.image else f"a camera move ({parsed.camera})"
        text = f"parsed {what} of the pans world"
    else:
        n = len(parsed.objects)
        text = f"parsed {n} object{'s' if n != 1 else ''} of the {parsed.world} world"
    if parsed.dropped:
        text += f"; left out: {', '.join(dict.fromkeys(parsed.dropped))}"
    return text


class CallableExpander:
    """Wraps a Python function `str -> str` (e.g. a call to a language model's API)."""

    def __init__(self, function: Callable[[str], str], name: str | None = None) -> None:
        self.function = function
        self.name = name or getattr(function, "__name__", "callable")

    def expand(self, prompt: str) -> Expansion:
        text = self.function(prompt)
        if not isinstance(text, str):
            raise CinecubeError(f"prompt expander '{self.name}' returned {type(text).__name__}, not text")
        text = _one_line(text)
        if not text:
            raise CinecubeError(f"prompt expander '{self.name}' returned an empty prompt")
        return Expansion(prompt, text, self.name, f"expanded by {self.name}")


class CommandExpander:
    """Runs a shell command ("cmd:<command>"): the prompt on its stdin, the expansion on stdout.

    The command runs through `sh -c` with a timeout; a timeout, a non-zero exit status or an
    empty output raise a one-line `CinecubeError` naming the command. Output lines are joined
    with spaces (a language model may wrap its answer).
    """

    def __init__(self, command: str, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> None:
        if not command.strip():
            raise CinecubeError("the prompt expander command is empty: use cmd:<shell command>")
        if timeout <= 0:
            raise CinecubeError(f"the prompt expander timeout must be positive, got {timeout}")
        self.command = command
        self.timeout = timeout
        self.name = f"cmd:{command}"

    def expand(self, prompt: str) -> Expansion:
        shown = _shorten(self.command)
        try:
            done = subprocess.run(
                ["sh", "-c", self.command],
                input=prompt,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CinecubeError(f"prompt expander command '{shown}' did not answer within {self.timeout:g} s") from None
        except OSError as error:
            raise CinecubeError(f"prompt expander command '{shown}' could not run: {error}") from None
        if done.returncode != 0:
            detail = _one_line(done.stderr)
            detail = f": {_shorten(detail)}" if detail else ""
            raise CinecubeError(f"prompt expander command '{shown}' failed with exit status {done.returncode}{detail}")
        text = _one_line(done.stdout)
        if not text:
            raise CinecubeError(f"prompt expander command '{shown}' printed no prompt")
        return Expansion(prompt, text, self.name, f"expanded by '{shown}'")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _shorten(text: str, limit: int = 120) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def get_expander(
    spec: str | Expander | Callable[[str], str] | None, *, timeout: float = DEFAULT_COMMAND_TIMEOUT
) -> Expander:
    """An expander from a spec: None / "none", "builtin" (or "builtin:short", "builtin:detailed",
    "builtin:auto"), "cmd:<shell command>", an `Expander`, or a function `str -> str`."""
    if spec is None:
        return NoExpander()
    if isinstance(spec, Expander):
        return spec
    if callable(spec):
        return CallableExpander(spec)
    if not isinstance(spec, str):
        raise CinecubeError(f"cannot make a prompt expander from {type(spec).__name__}")
    name, _, rest = spec.strip().partition(":")
    if name in ("", "none") and not rest:
        return NoExpander()
    if name == "builtin":
        return BuiltinExpander(rest or DEFAULT_STYLE)
    if name == "cmd":
        return CommandExpander(rest.strip(), timeout=timeout)
    raise CinecubeError(f"unknown prompt expander '{spec}': use none, builtin or cmd:<shell command>")


def expand(
    prompt: str,
    expander: str | Expander | Callable[[str], str] | None = "builtin",
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    token_count: Callable[[str], int] | None = None,
) -> Expansion:
    """Expand one prompt, keeping the result within `max_tokens` encoder tokens.

    `token_count` counts a text's tokens as the model's encoder does (pass
    `pipe.text_encoder.token_count`); by default the packaged MiniLM tokenizer is loaded. An
    expansion over the limit is replaced by the built-in expander's short style when there is
    one, and otherwise by the prompt itself, with the reason saying so.
    """
    chosen = get_expander(expander)
    result = chosen.expand(prompt)
    if not result.changed:
        return result
    count = token_count or _default_token_count(max_tokens)
    n = count(result.expanded)
    if n <= max_tokens:
        return result
    if isinstance(chosen, BuiltinExpander):
        short = chosen.shorter(result)
        if short is not None and count(short.expanded) <= max_tokens:
            return short
    return Expansion(
        prompt,
        prompt,
        result.by,
        f"kept as given: the expansion is {n} tokens long, over the model's limit of {max_tokens}",
    )


def _default_token_count(max_tokens: int) -> Callable[[str], int]:
    from cinecube.text import get_text_encoder

    return get_text_encoder(max_tokens).token_count
