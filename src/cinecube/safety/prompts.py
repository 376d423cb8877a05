"""Prompt policy: refuse prompts in named harm categories before anything is generated.

Two stages, both run on a normalised copy of the prompt:

1. A blocklist (`policy_data/blocklist.json`, `policy_data/people.txt`). Normalisation folds what
   people use to slip words past a filter: case, accents, full-width and other compatibility
   forms (NFKC), confusable letters from other scripts (Cyrillic "а" for Latin "a"), zero-width
   and other invisible format characters, leetspeak inside words ("n4k3d"), letters split by
   spaces or punctuation ("n u d e", "n.u.d.e") and repeated letters ("naaaked": every letter
   of a term may repeat). Terms deny on their own, or in combination (a word for a minor AND a
   sexual word); a named real person denies when the name is used as a person ("Barack Obama
   surfing"), not as a place or thing ("the Lincoln Memorial").
2. A classifier on sentence embeddings of the packaged MiniLM text encoder (mean-pooled token
   embeddings, L2-normalised, as all-MiniLM-L6-v2 is trained to be used): a multinomial
   logistic regression over "benign" and the categories, fitted on the curated examples in
   `policy_data/examples.json`. It catches paraphrases and euphemisms the blocklist has no
   word for. The fitted weights ship as `policy_data/classifier.npz` (7 x 384 floats) stamped
   with a hash of the examples; if the examples change, the policy refits at load (about as
   long as embedding 250 short prompts) and `python -m cinecube.safety.prompts --fit` rewrites
   the file.

The red-team and benign prompt sets in `policy_data/` are measurement sets, disjoint from the
classifier's examples; `benchmarks/prompt_policy.py` prints the measured rates.

    >>> check_prompt("a red circle moving right on a black background").allowed
    True
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InvalidRequestError

POLICY_DATA = Path(__file__).resolve().parent / "policy_data"

# Category key -> what it covers. The order is the blocklist's priority when several match.
CATEGORIES: dict[str, str] = {
    "minors_sexual": "sexual content involving minors",
    "nonconsensual_intimate": "non-consensual intimate imagery",
    "hate": "hate symbols and slurs",
    "weapons_instructions": "instructions for weapons",
    "graphic_violence": "graphic violence and gore",
    "real_people": "realistic depictions of real named people",
}
BENIGN = "benign"
DEFAULT_THRESHOLD = 0.6  # deny when a category's probability reaches this (chosen on the shipped sets)
# Prompts longer than LONG_PROMPT_WORDS are also classified in overlapping windows of WINDOW_WORDS,
# so a short request buried in filler is judged on its own (a 32-word window dilutes it too much).
LONG_PROMPT_WORDS, WINDOW_WORDS, WINDOW_STRIDE = 24, 12, 6

Stage = Literal["blocklist", "classifier"]


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    category: str | None  # a CATEGORIES key when denied
    reason: str  # one line, safe to show to the user
    stage: Stage | None  # which stage denied it; None when allowed
    score: float  # 1.0 for a blocklist match, else the classifier's top category probability


class PromptRefused(InvalidRequestError):
    """A prompt the policy does not allow; the message names the category."""

    def __init__(self, decision: PolicyDecision):
        super().__init__(f"prompt refused: {decision.reason}")
        self.decision = decision


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

# Letters from other scripts that look like Latin ones (after NFKC, which already folds
# full-width, mathematical and other compatibility forms). A focused subset of Unicode's
# confusables.txt: the Cyrillic and Greek lookalikes that render identically in common fonts.
CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "ԁ": "d",
        "һ": "h",
        "ԛ": "q",
        "ԝ": "w",
        "ӏ": "l",
        "ɡ": "g",
        "ո": "n",
        "ս": "u",
        "А": "a",
        "В": "b",
        "Е": "e",
        "К": "k",
        "М": "m",
        "Н": "h",
        "О": "o",
        "Р": "p",
        "С": "c",
        "Т": "t",
        "У": "y",
        "Х": "x",
        "Ѕ": "s",
        "І": "i",
        "Ј": "j",
        # Greek
        "α": "a",
        "β": "b",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ω": "w",
        "Α": "a",
        "Β": "b",
        "Ε": "e",
        "Ζ": "z",
        "Η": "h",
        "Ι": "i",
        "Κ": "k",
        "Μ": "m",
        "Ν": "n",
        "Ο": "o",
        "Ρ": "p",
        "Τ": "t",
        "Υ": "y",
        "Χ": "x",
        # Latin lookalikes outside ASCII that NFKC keeps
        "ı": "i",
        "ł": "l",
        "ø": "o",
        "đ": "d",
        "ħ": "h",
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
    }
)

# Leetspeak, applied only inside tokens that also hold a letter (so "3 red circles" keeps its 3).
# "1" reads as i or l, so both readings are tried.
LEET = {
    "0": "o",
    "1": "i",
    "3": "e",
    "4": "a",
    "5": "s",
    "6": "g",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "l",
    "+": "t",
    "€": "e",
    "£": "l",
}
_LEET_I = str.maketrans(LEET)
_LEET_L = str.maketrans({**LEET, "1": "l"})
# Numbers with a unit are not leetspeak: 3d, 4k, 1990s, 2nd, 12yo, 60fps.
_NUMBER_WITH_UNIT = re.compile(r"^\d+(?:st|nd|rd|th|s|d|k|p|x|yo|yr|yrs|am|pm|mm|cm|m|km|kg|g|fps|mph)$")
_ARTICLE_LIKE = ("a", "i")  # a spaced-out word often follows "a": "a n u d e" -> "a nude"


def fold(text: str) -> str:
    """Case, compatibility forms, confusables, accents and invisible characters folded away."""
    text = unicodedata.normalize("NFKC", text)
    # Zero-width spaces/joiners, soft hyphens, bidi marks, BOM: all Unicode "format" characters.
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = text.translate(CONFUSABLES).casefold()
    # Accents: decompose and drop combining marks (also drops combining-character noise).
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).translate(CONFUSABLES)


def _decode_leet(text: str, table: dict) -> str:
    tokens = []
    for token in text.split():
        has_letter = any("a" <= ch <= "z" for ch in token)
        if has_letter and any(ch in LEET for ch in token) and not _NUMBER_WITH_UNIT.match(token):
            token = token.translate(table)
        tokens.append(token)
    return " ".join(tokens)


def _words(text: str) -> list[str]:
    """Letters and digits only, split into words ("n.u.d.e" -> ["n", "u", "d", "e"])."""
    return re.findall(r"[a-z0-9]+", text)


def _join_runs(words: list[str], split_article: bool) -> tuple[str, list[str]]:
    """Runs of 3+ one-letter words are one spaced-out word: ("a n u d e") -> "anude" or "a nude"."""
    out: list[str] = []
    runs: list[str] = []
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and len(words[j]) == 1 and words[j].isalpha():
            j += 1
        if j - i >= 3:
            letters = words[i:j]
            if split_article and letters[0] in _ARTICLE_LIKE and j - i >= 4:
                out.append(letters[0])
                letters = letters[1:]
            run = "".join(letters)
            out.append(run)
            runs.append(run)
            i = j
        else:
            out.append(words[i])
            i += 1
    return " ".join(out), runs


@dataclass(frozen=True)
class NormalisedPrompt:
    folded: str  # fold(prompt): punctuation and digits kept (for raw patterns)
    variants: tuple[str, ...]  # word forms: with and without leetspeak, runs joined two ways
    runs: tuple[str, ...]  # spaced-out words, matched without word boundaries
    text: str  # the reading given to the classifier


def normalise(prompt: str) -> NormalisedPrompt:
    folded = fold(prompt)
    variants: list[str] = []
    runs: list[str] = []
    for decoded in (folded, _decode_leet(folded, _LEET_I), _decode_leet(folded, _LEET_L)):
        words = _words(decoded)
        for split_article in (True, False):
            form, found = _join_runs(words, split_article)
            variants.append(form)
            runs += found
    unique = tuple(dict.fromkeys(variants))
    return NormalisedPrompt(folded, unique, tuple(dict.fromkeys(runs)), text=variants[2])


def normalise_text(prompt: str) -> str:
    """The single normalised reading of a prompt (leetspeak decoded, spaced words joined)."""
    return normalise(prompt).text


# --------------------------------------------------------------------------------------------
# Blocklist
# --------------------------------------------------------------------------------------------


def _term_pattern(term: str) -> str:
    """'naked*' -> letters that may repeat, any ending; 'nude' -> also 'nudes', 'nuuude'."""
    parts = []
    for token in re.findall(r"[a-z0-9]+\*?", fold(term)):
        letters = "".join(re.escape(ch) + "+" for ch in token.rstrip("*"))
        parts.append(letters + ("[a-z]*" if token.endswith("*") else ""))
    body = r"\s*".join(parts)
    return body if term.endswith("*") else body + "(?:e?s)?"


def _group_regex(terms: list[str], bounded: bool) -> re.Pattern:
    # Longest first so the reported match is the most specific term.
    alternatives = "|".join(_term_pattern(t) for t in sorted(terms, key=len, reverse=True))
    if bounded:
        return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")
    return re.compile(rf"(?:{alternatives})")


@dataclass
class _CategoryRules:
    key: str
    terms: tuple[re.Pattern, re.Pattern] | None  # (bounded, unbounded)
    all_of: list[tuple[re.Pattern, re.Pattern]]
    raw: list[re.Pattern]


def _allow_regex(data_dir: Path) -> re.Pattern | None:
    phrases = json.loads((data_dir / "blocklist.json").read_text(encoding="utf-8"))["allow_phrases"]
    return _group_regex(phrases, bounded=True) if phrases else None


class Blocklist:
    """The normalising blocklist: `match(prompt) -> (category, matched text) | None`."""

    def __init__(self, data_dir: Path = POLICY_DATA):
        spec = json.loads((data_dir / "blocklist.json").read_text(encoding="utf-8"))
        self.allow = _allow_regex(data_dir)
        self.rules: list[_CategoryRules] = []
        for key in CATEGORIES:
            if key == "real_people":
                continue
            cat = spec["categories"][key]
            terms = list(cat.get("terms", []))
            terms += [codecs.decode(s, "rot13") for s in cat.get("slurs_rot13", [])]
            self.rules.append(
                _CategoryRules(
                    key,
                    (_group_regex(terms, True), _group_regex(terms, False)) if terms else None,
                    [(_group_regex(g, True), _group_regex(g, False)) for g in cat.get("all_of", [])],
                    [re.compile(p) for p in cat.get("raw_patterns", [])],
                )
            )
        people = spec["real_people"]
        names = [
            line.strip()
            for line in (data_dir / people["names_file"]).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        self.names = names
        places = "|".join(re.escape(w) for w in people["not_a_depiction_after"])
        name_alternatives = "|".join(_term_pattern(n) for n in sorted(names, key=len, reverse=True))
        # A name followed by a place or thing noun is not a depiction of the person.
        self.people = re.compile(rf"(?<![a-z0-9])(?:{name_alternatives})(?![a-z0-9])(?!\s+s?\s*(?:{places})\b)")
        self.people_unbounded = re.compile(rf"(?:{name_alternatives})")

    def match(self, prompt: str | NormalisedPrompt) -> tuple[str, str] | None:
        norm = prompt if isinstance(prompt, NormalisedPrompt) else normalise(prompt)
        variants = [self.allow.sub(" ", v) if self.allow else v for v in norm.variants]
        runs = list(norm.runs)
        for rule in self.rules:
            if rule.terms is not None:
                hit = _search(rule.terms, variants, runs)
                if hit:
                    return rule.key, hit
            if rule.all_of:
                hits = [_search(group, variants, runs) for group in rule.all_of]
                if all(hits):
                    return rule.key, " + ".join(hits)
            for pattern in rule.raw:
                for text in [norm.folded, *variants]:
                    m = pattern.search(text)
                    if m:
                        return rule.key, m.group(0)
        for text in variants:
            m = self.people.search(text)
            if m:
                return "real_people", m.group(0)
        for run in runs:
            m = self.people_unbounded.search(run)
            if m:
                return "real_people", m.group(0)
        return None


def _search(patterns: tuple[re.Pattern, re.Pattern], variants: list[str], runs: list[str]) -> str | None:
    bounded, unbounded = patterns
    for text in variants:
        m = bounded.search(text)
        if m:
            return m.group(0)
    for run in runs:
        m = unbounded.search(run)
        if m:
            return m.group(0)
    return None


# --------------------------------------------------------------------------------------------
# Embedding classifier
# --------------------------------------------------------------------------------------------


def sentence_embeddings(texts: list[str], encoder=None) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings: (N, 384) float32."""
    from ..text import get_text_encoder

    encoder = encoder or get_text_encoder()
    tokens, mask = encoder.encode(texts)  # (N, L, 384), (N, L)
    m = mask.unsqueeze(-1).to(tokens.dtype)
    pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1)  # (N, 384)
    pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return pooled.numpy().astype(np.float32)


def _examples_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_examples(data_dir: Path = POLICY_DATA) -> tuple[list[str], list[str]]:
    """The curated classifier examples as (texts, labels), normalised like prompts are."""
    spec = json.loads((data_dir / "examples.json").read_text(encoding="utf-8"))
    texts, labels = [], []
    for key, prompts in spec["categories"].items():
        texts += prompts
        labels += [key] * len(prompts)
    texts += spec["benign"]
    labels += [BENIGN] * len(spec["benign"])
    return texts, labels


def fit_logistic_regression(
    x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 3e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with class-balanced weights, fitted by L-BFGS.

    x (N, D) float32, y (N,) int -> weight (C, D), bias (C,).
    """
    import torch

    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y).long()
    counts = torch.bincount(yt, minlength=n_classes).double()
    class_weight = counts.sum() / (n_classes * counts.clamp(min=1))
    weight = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ weight.T + bias, yt, weight=class_weight)
        loss = loss + l2 * (weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach().float().numpy(), bias.detach().float().numpy()


class EmbeddingClassifier:
    """Logistic regression over MiniLM sentence embeddings: `probabilities(texts) -> (N, C)`."""

    def __init__(self, classes: list[str], weight: np.ndarray, bias: np.ndarray, encoder=None):
        self.classes = classes
        self.weight, self.bias = weight, bias  # (C, 384), (C,)
        self.encoder = encoder

    @classmethod
    def fit(cls, data_dir: Path = POLICY_DATA, encoder=None) -> EmbeddingClassifier:
        texts, labels = load_examples(data_dir)
        classes = [BENIGN, *CATEGORIES]
        x = sentence_embeddings([normalise_text(t) for t in texts], encoder)
        y = np.array([classes.index(label) for label in labels])
        weight, bias = fit_logistic_regression(x, y, len(classes))
        return cls(classes, weight, bias, encoder)

    @classmethod
    def load(cls, data_dir: Path = POLICY_DATA, encoder=None) -> EmbeddingClassifier:
        """The shipped weights when they match the examples; otherwise refit from the examples."""
        path = data_dir / "classifier.npz"
        if path.exists():
            stored = np.load(path)
            if str(stored["examples_sha256"]) == _examples_digest(data_dir / "examples.json"):
                return cls([str(c) for c in stored["classes"]], stored["weight"], stored["bias"], encoder)
        return cls.fit(data_dir, encoder)

    def save(self, data_dir: Path = POLICY_DATA) -> Path:
        path = data_dir / "classifier.npz"
        np.savez(
            path,
            classes=np.array(self.classes),
            weight=self.weight.astype(np.float32),
            bias=self.bias.astype(np.float32),
            examples_sha256=np.array(_examples_digest(data_dir / "examples.json")),
        )
        return path

    def probabilities(self, texts: list[str]) -> np.ndarray:
        logits = sentence_embeddings(texts, self.encoder) @ self.weight.T + self.bias  # (N, C)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def _windows(text: str) -> list[str]:
    """The whole text, plus overlapping word windows when it is longer than the encoder reads."""
    words = text.split()
    if len(words) <= LONG_PROMPT_WORDS:
        return [text]
    starts = range(0, len(words) - WINDOW_WORDS + WINDOW_STRIDE, WINDOW_STRIDE)
    return [text] + [" ".join(words[s : s + WINDOW_WORDS]) for s in starts]


# --------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------


class PromptPolicy:
    """`PromptPolicy().check(prompt) -> PolicyDecision`; `enforce` raises `PromptRefused` instead.

    `use_blocklist` / `use_classifier` switch a stage off (for measuring each stage alone);
    `threshold` is the category probability at which the classifier denies.
    """

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        use_blocklist: bool = True,
        use_classifier: bool = True,
        data_dir: Path = POLICY_DATA,
        encoder=None,
    ):
        self.threshold = threshold
        self.blocklist = Blocklist(data_dir) if use_blocklist else None
        # Known-benign phrases that look like harm words ("bath bomb", "glue gun") are blanked
        # for the classifier too, so it judges the rest of the prompt.
        self.allow = _allow_regex(data_dir)
        self.classifier = EmbeddingClassifier.load(data_dir, encoder) if use_classifier else None

    def check(self, prompt: str) -> PolicyDecision:
        if not isinstance(prompt, str):
            raise InvalidRequestError(f"prompt must be a string, got {type(prompt).__name__}")
        norm = normalise(prompt)
        if self.blocklist is not None:
            hit = self.blocklist.match(norm)
            if hit:
                category, matched = hit
                return PolicyDecision(
                    False, category, f"{CATEGORIES[category]} (matched {matched.strip()!r})", "blocklist", 1.0
                )
        if self.classifier is None or not norm.text.strip():
            return PolicyDecision(True, None, "allowed", None, 0.0)
        text = self.allow.sub(" ", norm.text) if self.allow else norm.text
        probs = self.classifier.probabilities(_windows(" ".join(text.split()) or norm.text)).max(axis=0)  # (C,)
        categories = [i for i, c in enumerate(self.classifier.classes) if c != BENIGN]
        top = max(categories, key=lambda i: probs[i])
        score = float(probs[top])
        if score >= self.threshold:
            category = self.classifier.classes[top]
            return PolicyDecision(
                False, category, f"{CATEGORIES[category]} (classifier score {score:.2f})", "classifier", score
            )
        return PolicyDecision(True, None, "allowed", None, score)

    def enforce(self, prompt: str) -> PolicyDecision:
        decision = self.check(prompt)
        if not decision.allowed:
            raise PromptRefused(decision)
        return decision


@lru_cache(maxsize=1)
def default_policy() -> PromptPolicy:
    """One shared policy: loading the text encoder takes seconds, reuse it."""
    return PromptPolicy()


def check_prompt(prompt: str) -> PolicyDecision:
    return default_policy().check(prompt)


# --------------------------------------------------------------------------------------------
# Shipped prompt sets
# --------------------------------------------------------------------------------------------


def load_redteam(name: str = "redteam.jsonl", data_dir: Path = POLICY_DATA) -> list[dict]:
    """Red-team prompts as dicts {"prompt", "category", "variant"} (ROT13 entries decoded)."""
    rows = []
    for line in (data_dir / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row.pop("rot13", False):
                row["prompt"] = codecs.decode(row["prompt"], "rot13")
            rows.append(row)
    return rows


def load_benign(name: str = "benign.txt", data_dir: Path = POLICY_DATA) -> list[str]:
    lines = (data_dir / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cinecube.safety.prompts",
        description="Check prompts against the policy, or refit the classifier.",
    )
    parser.add_argument("prompts", nargs="*", help="prompts to check")
    parser.add_argument("--fit", action="store_true", help="refit the classifier from examples.json and save it")
    args = parser.parse_args(argv)
    if args.fit:
        print(f"wrote {EmbeddingClassifier.fit().save()}")
    for prompt in args.prompts:
        d = check_prompt(prompt)
        print(f"{'allowed' if d.allowed else 'DENIED '} {d.stage or '-':10s} {d.score:.2f} {prompt!r}: {d.reason}")


if __name__ == "__main__":
    main()
