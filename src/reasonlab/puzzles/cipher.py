"""Text cipher: a secret letter substitution over sentences from a small word list.

Generator (read off the train split): a random permutation of a-z (fixed points
allowed), 3-5 example sentences `cipher -> plain`, then a query sentence. Sentences
follow four equally likely templates over six word classes (see `TEMPLATES` and the
package data `data/cipher_words.json`, ~77 words):

    subject verb object            "wizard creates secret"
    the adjective subject verb     "the golden dragon follows"
    subject verb preposition place "queen discovers near valley"
    subject verb the adjective object  "student creates the magical door"

Solving: the letter map comes from the example pairs (a letter mapped two ways, or two
letters onto one, is a contradiction -> Unsolved). Query letters the examples never
show are inferred by matching each cipher word against the word list: same length,
same repeated-letter pattern, agreeing with every known letter, and new letters
keeping the map one-to-one across the whole sentence. When several sentences still
fit, those that follow a template are preferred; if several remain, the solver picks
the alphabetically first and returns a Solution with `candidates` > 1 (callers drop
`solution.ambiguous` rows from training). A word no listed word fits gives
Unsolved(reason, partial=decryption with '?' for unknown letters).
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from reasonlab.puzzles.base import Generated, PuzzleFormatError, Solution, Unsolved, boxed
from reasonlab.puzzles.prompt_lines import PromptLayout, example_count, match_lines

__all__ = [
    "NAME",
    "TEMPLATES",
    "CipherPuzzle",
    "CipherRule",
    "collect_word_classes",
    "generate",
    "parse",
    "partial_decryption",
    "render",
    "solve",
    "word_classes",
]

NAME = "cipher"

HEADER = "In Alice's Wonderland, secret encryption rules are used on text. Here are some examples:"
QUERY_LEAD = "Now, decrypt the following text: "
_TEXT = r"[a-z]+(?: [a-z]+)*"
_EXAMPLE = re.compile(rf"({_TEXT}) -> ({_TEXT})")
_QUERY = re.compile(re.escape(QUERY_LEAD) + rf"({_TEXT})")
_LAYOUT = PromptLayout(NAME, (HEADER,), _EXAMPLE, _QUERY)

EXAMPLE_COUNTS = (3, 4, 5)  # about a third each
UNKNOWN_LETTER = "?"
_WORDS_FILE = "cipher_words.json"
# Enough to count a real ambiguity; stops a query with almost no known letters exploding.
_MAX_SENTENCES = 1000

# Word-class sequences the generator writes; "the" is literal. Each is about 1/4 of rows.
TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("subject", "verb", "object"),
    ("the", "adjective", "subject", "verb"),
    ("subject", "verb", "preposition", "place"),
    ("subject", "verb", "the", "adjective", "object"),
)


@dataclass(frozen=True)
class CipherPuzzle:
    examples: tuple[tuple[str, str], ...]  # (cipher text, plain text)
    query: str


@dataclass(frozen=True)
class CipherRule:
    """The letter map used (cipher -> plain) and where each query word came from.

    `known` holds the pairs the examples show; `inferred` the pairs only the word list
    justifies; `from_list` the query words that needed the word list.
    """

    known: tuple[tuple[str, str], ...]
    inferred: tuple[tuple[str, str], ...]
    from_list: tuple[str, ...]


# --- the word list (package data, regenerated from the train split) -------------------


def collect_word_classes(plaintexts: Iterable[str]) -> dict[str, list[str]]:
    """Word classes read off plaintext sentences by position in their template.

    A sentence's template is known from its length (and, at 4 words, whether it opens
    with "the"), so every word's class follows from where it stands.
    """
    by_shape = {(len(t), t[0] == "the"): t for t in TEMPLATES}
    classes: dict[str, set[str]] = {}
    for sentence in plaintexts:
        words = sentence.split()
        template = by_shape.get((len(words), bool(words) and words[0] == "the"))
        if template is None:
            raise ValueError(f"sentence fits no template: {sentence!r}")
        for word_class, word in zip(template, words):
            if word_class != "the":
                classes.setdefault(word_class, set()).add(word)
    return {name: sorted(words) for name, words in sorted(classes.items())}


@cache
def word_classes() -> Mapping[str, tuple[str, ...]]:
    """The packaged word classes: subject, verb, adjective, object, preposition, place."""
    text = resources.files("reasonlab.puzzles").joinpath("data", _WORDS_FILE).read_text("utf-8")
    return {name: tuple(words) for name, words in json.loads(text)["classes"].items()}


@cache
def _vocabulary() -> tuple[str, ...]:
    words = {"the"} | {w for ws in word_classes().values() for w in ws}
    return tuple(sorted(words))


# --- parse -----------------------------------------------------------------------------


def parse(prompt: str) -> CipherPuzzle:
    matches, query = match_lines(prompt, _LAYOUT)
    examples = []
    for number, match in enumerate(matches, start=1):
        cipher_text, plain_text, line = match[1], match[2], match[0]
        if [len(w) for w in cipher_text.split()] != [len(w) for w in plain_text.split()]:
            raise PuzzleFormatError(
                f"cipher: example {number} word lengths differ on the two sides: {line!r}"
            )
        examples.append((cipher_text, plain_text))
    return CipherPuzzle(tuple(examples), query[1])


# --- solve -----------------------------------------------------------------------------


def _example_map(examples: Iterable[tuple[str, str]]) -> dict[str, str] | str:
    """cipher -> plain from the examples, or a string saying where they contradict."""
    mapping: dict[str, str] = {}
    source: dict[str, str] = {}  # plain letter -> cipher letter, for one-to-one
    for cipher_text, plain_text in examples:
        for c, p in zip(cipher_text.replace(" ", ""), plain_text.replace(" ", "")):
            if mapping.get(c, p) != p:
                return f"cipher letter {c!r} maps to both {mapping[c]!r} and {p!r}"
            if source.get(p, c) != c:
                return f"cipher letters {source[p]!r} and {c!r} both map to {p!r}"
            mapping[c], source[p] = p, c
    return mapping


def _extend(mapping: dict[str, str], cipher_word: str, plain_word: str) -> dict[str, str] | None:
    """`mapping` plus this word pair, or None when the pair breaks one-to-one."""
    if len(cipher_word) != len(plain_word):
        return None
    extended = dict(mapping)
    used = set(extended.values())
    for c, p in zip(cipher_word, plain_word):
        if c in extended:
            if extended[c] != p:
                return None
        elif p in used:
            return None
        else:
            extended[c] = p
            used.add(p)
    return extended


def _fits_template(words: tuple[str, ...]) -> bool:
    classes = word_classes()
    return any(
        len(t) == len(words)
        and all(w == "the" if c == "the" else w in classes.get(c, ()) for c, w in zip(t, words))
        for t in TEMPLATES
    )


def partial_decryption(mapping: Mapping[str, str], text: str) -> str:
    """`text` decrypted letter by letter; letters the map lacks become '?'."""
    return "".join(" " if ch == " " else mapping.get(ch, UNKNOWN_LETTER) for ch in text)


def _sentences(
    mapping: dict[str, str], cipher_words: list[str]
) -> list[tuple[tuple[str, ...], dict[str, str]]]:
    """Decryptions of the query (at most `_MAX_SENTENCES`): each word from the list or fully known."""
    options = []
    for word in cipher_words:
        if all(ch in mapping for ch in word):
            options.append((partial_decryption(mapping, word),))
        else:
            options.append(tuple(v for v in _vocabulary() if _extend(mapping, word, v) is not None))
    results: list[tuple[tuple[str, ...], dict[str, str]]] = []

    def search(index: int, current: dict[str, str], chosen: tuple[str, ...]) -> None:
        if len(results) >= _MAX_SENTENCES:
            return
        if index == len(cipher_words):
            results.append((chosen, current))
            return
        for candidate in options[index]:
            extended = _extend(current, cipher_words[index], candidate)
            if extended is not None:
                search(index + 1, extended, chosen + (candidate,))

    search(0, mapping, ())
    return results


def solve(puzzle: CipherPuzzle) -> Solution | Unsolved:
    mapping = _example_map(puzzle.examples)
    if isinstance(mapping, str):
        return Unsolved(f"examples contradict: {mapping}")
    cipher_words = puzzle.query.split()
    partial = partial_decryption(mapping, puzzle.query)
    found = _sentences(mapping, cipher_words)
    if not found:
        misses = [w for w in cipher_words if not any(_extend(mapping, w, v) for v in _vocabulary())]
        what = f"word(s) {', '.join(misses)}" if misses else "the words together"
        return Unsolved(f"no listed word fits {what} under the example letter map", partial=partial)
    grammatical = [f for f in found if _fits_template(f[0])]
    pool = sorted(grammatical or found, key=lambda f: f[0])
    words, full_map = pool[0]
    inferred = tuple(sorted((c, p) for c, p in full_map.items() if c not in mapping))
    from_list = tuple(c for c in cipher_words if any(ch not in mapping for ch in c))
    rule = CipherRule(tuple(sorted(mapping.items())), inferred, from_list)
    notes = () if grammatical else ("no decryption follows a sentence template",)
    return Solution(puzzle, " ".join(words), rule, candidates=len(pool), agreeing=1, notes=notes)


# --- render ----------------------------------------------------------------------------


def render(solution: Solution) -> str:
    puzzle: CipherPuzzle = solution.puzzle
    rule: CipherRule = solution.rule
    known = dict(rule.known)
    lines = ["Letter map from the examples (cipher=plain), query word by word:"]
    for cipher_word, plain_word in zip(puzzle.query.split(), solution.answer.split()):
        letters = " ".join(f"{c}={known.get(c, UNKNOWN_LETTER)}" for c in cipher_word)
        if cipher_word not in rule.from_list:
            lines.append(f"{cipher_word}: {letters} -> {plain_word}")
            continue
        fits = [v for v in _vocabulary() if _extend(known, cipher_word, v) is not None]
        new = " ".join(
            f"{c}={p}" for c, p in dict(zip(cipher_word, plain_word)).items() if c not in known
        )
        # Several listed words can fit one word alone; the sentence-wide one-to-one map
        # (and the templates) picked this one, so the trace names the others.
        choice = plain_word if fits == [plain_word] else f"fits {'/'.join(fits)} -> {plain_word}"
        lines.append(
            f"{cipher_word}: {letters} -> {partial_decryption(known, cipher_word)} -> {choice} ({new})"
        )
    lines.append(f"Decrypted: {solution.answer}")
    lines.append(boxed(solution.answer))
    return "\n".join(lines)


# --- generate --------------------------------------------------------------------------


def _sentence(rng: random.Random) -> str:
    classes = word_classes()
    template = rng.choice(TEMPLATES)
    return " ".join(c if c == "the" else rng.choice(classes[c]) for c in template)


def generate(rng: random.Random, n_examples: int | None = None, **knobs: Any) -> Generated:
    """A puzzle in the competition's wording; `n_examples` defaults to uniform 3-5.

    `rule` is the key as a dict plain -> cipher letter.
    """
    count = example_count(rng, NAME, n_examples, knobs, EXAMPLE_COUNTS)
    alphabet = string.ascii_lowercase
    key = dict(zip(alphabet, rng.sample(alphabet, len(alphabet))))
    sentences = [_sentence(rng) for _ in range(count + 1)]

    def encrypt(text: str) -> str:
        return "".join(key.get(ch, ch) for ch in text)

    lines = [HEADER] + [f"{encrypt(s)} -> {s}" for s in sentences[:-1]]
    lines.append(QUERY_LEAD + encrypt(sentences[-1]))
    return Generated("\n".join(lines), sentences[-1], rule=key)
