"""The crawler guard: refuse AI crawlers and agents by their User-Agent.

The names come from a maintained list shipped with Wardent
(crawler_data/ai_crawlers.yaml: crawler-user-agents' "ai-crawler" tag plus
ai.robots.txt, each entry with its source), or from an explicit list in the
YAML, plus names the YAML adds, minus an allow list (allow wins).

Matching costs the same whatever the number of names (DESIGN.md, "The
hot-path budget"): the User-Agent is lower-cased and cut into tokens in one
``bytes.translate`` + ``split`` (a token is a run of letters, digits, ``-``
and ``_``), and one ``frozenset.isdisjoint`` tells whether any token starts a
name at all. Only then does a scan find which name, checking the rest of a
multi-token name ("Kangaroo Bot", "bigsur.ai") where its first token sits.
Whole tokens only: "Applebot" does not match "Applebot-Extended", "AI2Bot"
does not match "Ai2Bot-Dolma", "Spider" appears nowhere inside "Baiduspider".
Verdicts are cached per raw header value in a bounded dict.

The same list answers /robots.txt: a ``Disallow: /`` group for every blocked
name and for the robots.txt-only tokens (Google-Extended, Applebot-Extended),
so a well-behaved crawler stops before the gateway has to refuse it.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import yaml

from wardent.guards.chain import Rejection

if TYPE_CHECKING:
    from wardent.context import RequestContext

BUILTIN = "builtin-ai"
DATA_FILE = "crawler_data/ai_crawlers.yaml"
CACHE_SIZE = 4096
# Longer User-Agents are matched but not cached, so the cache stays under
# CACHE_SIZE * CACHE_MAX_KEY bytes of keys whatever clients send.
CACHE_MAX_KEY = 1024

Kind = Literal["user_agent", "robots_token"]


def _token_table() -> bytes:
    table = bytearray(b" " * 256)
    for byte in b"abcdefghijklmnopqrstuvwxyz0123456789-_":
        table[byte] = byte
    for byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        table[byte] = byte + 32
    return bytes(table)


# Lower-cases ASCII letters, keeps digits, "-" and "_", turns every other byte
# (including non-ASCII) into a space: one translate + split tokenises.
_TOKENS = _token_table()


def tokenize(value: bytes) -> list[bytes]:
    """The lower-cased tokens of a User-Agent (or of a name), as the matcher sees them."""
    return value.translate(_TOKENS).split()


_NAME = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def _checked_name(name: object) -> str:
    """A name fit for a metrics label and a robots.txt line, or ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"crawler name {name!r}: expected a string")
    if len(name) > 100 or not _NAME.fullmatch(name) or "#" in name:
        raise ValueError(
            f"crawler name {name!r}: expected 1-100 printable ASCII characters, no '#',"
            " no leading or trailing space"
        )
    if not tokenize(name.encode()):
        raise ValueError(f"crawler name {name!r}: has no letters or digits to match")
    return name


@dataclass(frozen=True, slots=True)
class CrawlerEntry:
    """One entry of the builtin list (see the header of ai_crawlers.yaml)."""

    name: str
    kind: Kind
    operator: str
    source: str
    match: tuple[str, ...]
    note: str | None = None
    example: str | None = None


def _entry(raw: object, index: int) -> CrawlerEntry:
    where = f"{DATA_FILE} entry {index}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(raw) - {"name", "kind", "operator", "source", "match", "note", "example"}
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    try:
        name = _checked_name(raw.get("name"))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    kind = raw.get("kind")
    if kind not in ("user_agent", "robots_token"):
        raise ValueError(f"{where} ({name}): kind must be user_agent or robots_token")
    operator, source = raw.get("operator"), raw.get("source")
    if not isinstance(operator, str) or not isinstance(source, str) or not operator or not source:
        raise ValueError(f"{where} ({name}): operator and source must be non-empty strings")
    match = raw.get("match", [name])
    if not isinstance(match, list) or not match:
        raise ValueError(f"{where} ({name}): match must be a non-empty list")
    try:
        phrases = tuple(_checked_name(phrase) for phrase in match)
    except ValueError as exc:
        raise ValueError(f"{where} ({name}): {exc}") from None
    note, example = raw.get("note"), raw.get("example")
    if not isinstance(note, str | None) or not isinstance(example, str | None):
        raise ValueError(f"{where} ({name}): note and example must be strings")
    return CrawlerEntry(
        name=name,
        kind=kind,
        operator=operator,
        source=source,
        match=phrases,
        note=note,
        example=example,
    )


@functools.cache
def builtin_crawlers() -> tuple[CrawlerEntry, ...]:
    """The shipped list, parsed and checked once per process."""
    text = importlib.resources.files("wardent.guards").joinpath(DATA_FILE).read_text("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = yaml.load(text, Loader=loader)
    if not isinstance(raw, list):
        raise ValueError(f"{DATA_FILE}: expected a list of entries")
    entries = tuple(_entry(item, index) for index, item in enumerate(raw))
    seen: set[str] = set()
    for entry in entries:
        key = entry.name.lower()
        if key in seen:
            raise ValueError(f"{DATA_FILE}: {entry.name!r} is listed twice")
        seen.add(key)
    return entries


# The tokens after the first one, and the bot name to report (None: an allowed name).
_Rule = tuple[list[bytes], str | None]


class CrawlerMatcher:
    """User-Agent → blocked bot name, compiled once per configuration.

    ``block`` is ``"builtin-ai"`` (the shipped list) or an explicit list of
    names (a builtin name keeps its builtin kind and match phrases; any other
    name is matched as given). ``add`` names are blocked too. ``allow`` wins
    twice over: an allowed name is never blocked, and a User-Agent that names
    an allowed bot passes even if it also names a blocked one.
    """

    __slots__ = (
        "_any_allowed",
        "_cache",
        "_cache_size",
        "_first",
        "_rules",
        "allowed",
        "blocked",
        "names",
        "robots_tokens",
    )

    def __init__(
        self,
        block: str | Iterable[str] = BUILTIN,
        add: Iterable[str] = (),
        allow: Iterable[str] = (),
        *,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        builtin = {entry.name.lower(): entry for entry in builtin_crawlers()}
        if isinstance(block, str):
            if block != BUILTIN:
                raise ValueError(f"block: expected {BUILTIN!r} or a list of names, got {block!r}")
            chosen = list(builtin.values())
        else:
            chosen = [self._lookup_entry(builtin, name) for name in block]
        chosen += [self._lookup_entry(builtin, name) for name in add]
        allowed = {_checked_name(name).lower(): name for name in allow}

        entries: dict[str, CrawlerEntry] = {}
        for entry in chosen:
            if entry.name.lower() not in allowed:
                entries.setdefault(entry.name.lower(), entry)
        ordered = sorted(entries.values(), key=lambda entry: entry.name.lower())
        # The bot names that can be reported (a bounded label set for metrics).
        self.names: tuple[str, ...] = tuple(e.name for e in ordered if e.kind == "user_agent")
        # Names written to robots.txt but never matched.
        self.robots_tokens: tuple[str, ...] = tuple(
            e.name for e in ordered if e.kind == "robots_token"
        )
        self.allowed: frozenset[str] = frozenset(allowed)
        # Rejections per bot name, incremented by the guard; exported as a metric.
        self.blocked: dict[str, int] = {}

        rules: dict[tuple[bytes, ...], str | None] = {}
        for entry in ordered:
            if entry.kind == "user_agent":
                for phrase in entry.match:
                    rules.setdefault(tuple(tokenize(phrase.encode())), entry.name)
        for key, name in allowed.items():
            known = builtin.get(key)
            for phrase in known.match if known is not None else (name,):
                rules[tuple(tokenize(phrase.encode()))] = None
        by_first: dict[bytes, list[_Rule]] = {}
        for phrase_tokens, label in rules.items():
            by_first.setdefault(phrase_tokens[0], []).append((list(phrase_tokens[1:]), label))
        # Per first token, the longest phrase first ("Sidetrade indexer bot" before "Sidetrade").
        self._rules: dict[bytes, tuple[_Rule, ...]] = {
            first: tuple(sorted(found, key=lambda rule: -len(rule[0])))
            for first, found in by_first.items()
        }
        self._first: frozenset[bytes] = frozenset(self._rules)
        self._any_allowed = bool(allowed)
        # Raw User-Agent → bot name, "" for none; cleared when full.
        self._cache: dict[bytes, str] = {}
        self._cache_size = cache_size

    @staticmethod
    def _lookup_entry(builtin: dict[str, CrawlerEntry], name: str) -> CrawlerEntry:
        known = builtin.get(_checked_name(name).lower())
        if known is not None:
            return known
        return CrawlerEntry(name, "user_agent", "configured", "wardent.yaml", (name,))

    def match(self, user_agent: bytes | None) -> str | None:
        """The blocked bot this User-Agent names, or None."""
        if not user_agent:
            return None
        cache = self._cache
        name = cache.get(user_agent)
        if name is None:
            tokens = user_agent.translate(_TOKENS).split()
            name = "" if self._first.isdisjoint(tokens) else self._scan(tokens)
            if len(user_agent) <= CACHE_MAX_KEY:
                if len(cache) >= self._cache_size:
                    cache.clear()
                cache[user_agent] = name
        return name or None

    def _scan(self, tokens: list[bytes]) -> str:
        """The leftmost blocked name among the tokens; "" if none, or if any is allowed."""
        found = ""
        rules_by_first = self._rules
        for index, token in enumerate(tokens):
            rules = rules_by_first.get(token)
            if rules is None:
                continue
            for rest, label in rules:
                if not rest or tokens[index + 1 : index + 1 + len(rest)] == rest:
                    if label is None:
                        return ""
                    if not self._any_allowed:
                        return label
                    found = found or label
                    break
        return found

    @property
    def cached(self) -> int:
        """How many User-Agents the cache holds now (never more than its size)."""
        return len(self._cache)


def robots_txt(
    matcher_or_names: CrawlerMatcher | Iterable[str], extra_tokens: Iterable[str] = ()
) -> bytes:
    """A /robots.txt body: ``Disallow: /`` for every blocked name and robots.txt
    token (and ``extra_tokens``), then ``Allow: /`` for everyone else.

    Sorted case-insensitively and deduplicated, so the same settings always give
    the same bytes. With a matcher, its allow list wins over ``extra_tokens`` too.
    """
    if isinstance(matcher_or_names, CrawlerMatcher):
        names = [*matcher_or_names.names, *matcher_or_names.robots_tokens]
        allowed = matcher_or_names.allowed
    else:
        names, allowed = list(matcher_or_names), frozenset()
    unique: dict[str, str] = {}
    for name in [*names, *extra_tokens]:
        key = _checked_name(name).lower()
        if key not in allowed:
            unique.setdefault(key, name)
    groups = [f"User-agent: {unique[key]}\nDisallow: /\n\n" for key in sorted(unique)]
    return ("".join(groups) + "User-agent: *\nAllow: /\n").encode("ascii")


def crawler_guard(
    matcher: CrawlerMatcher, status: int = 403
) -> Callable[[RequestContext], Rejection | None]:
    """The guard's check: reject a request whose User-Agent names a blocked bot.

    The reason is the bot name (the chain prefixes the guard's name), and
    ``matcher.blocked[name]`` counts every rejection, shadow ones included:
    the guard cannot tell, the chain decides.
    """
    match = matcher.match
    blocked = matcher.blocked
    rejections: dict[str, Rejection] = {}

    def check(ctx: RequestContext) -> Rejection | None:
        name = match(ctx.user_agent)
        if name is None:
            return None
        blocked[name] = blocked.get(name, 0) + 1
        rejection = rejections.get(name)
        if rejection is None:
            rejection = rejections[name] = Rejection(status, name)
        return rejection

    return check
