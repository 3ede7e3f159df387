from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from loadtests import crawler_bench
from tests.support.contexts import request_context
from wardent.guards.chain import Guard, GuardChain, Rejection
from wardent.guards.crawlers import (
    CACHE_MAX_KEY,
    CrawlerEntry,
    CrawlerMatcher,
    builtin_crawlers,
    crawler_guard,
    robots_txt,
    tokenize,
)

if TYPE_CHECKING:
    from wardent.context import RequestContext

BUILTIN = builtin_crawlers()
USER_AGENTS = [e for e in BUILTIN if e.kind == "user_agent"]
ROBOTS_ONLY = [e for e in BUILTIN if e.kind == "robots_token"]
EXAMPLES = [e for e in USER_AGENTS if e.example]

BROWSERS = [
    # Chrome: Windows, macOS, Linux, Android, iOS
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.71 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
    # Firefox: Windows, Linux, Android
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Android 14; Mobile; rv:127.0) Gecko/127.0 Firefox/127.0",
    # Safari: macOS, iPhone, iPad
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    # Edge desktop and Android, Opera, Samsung Internet, Yandex Browser
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.68",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36 EdgA/126.0.2592.80",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 OPR/111.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 YaBrowser/24.6.0.0 Safari/537.36",
    # VS Code's Electron shell ("Code" is a robots.txt token only)
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Code/1.91.0 Chrome/124.0.6367.243 Electron/30.1.2 Safari/537.36",
    # HTTP clients
    "curl/8.8.0",
    "python-requests/2.32.3",
    "Python/3.11 aiohttp/3.9.5",
    "Wget/1.21.4",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "PostmanRuntime/7.39.0",
    # Search engines and link previews that are not AI crawlers
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
    "+http://www.bing.com/bingbot.htm) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0",
]


def bot_ua(token: str) -> bytes:
    """A User-Agent in the shape most crawlers send."""
    return (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
        f"{token}/1.2; +https://example.com/bot)"
    ).encode()


def fake_ctx(user_agent: bytes | None) -> RequestContext:
    return request_context(user_agent=user_agent)


@pytest.fixture(scope="module")
def matcher() -> CrawlerMatcher:
    return CrawlerMatcher()


# The list


def test_the_builtin_list_is_long_and_every_entry_says_where_it_came_from() -> None:
    assert len(BUILTIN) > 100
    assert len(USER_AGENTS) > 100
    for entry in BUILTIN:
        assert entry.source.startswith(("crawler-user-agents ", "ai-robots-txt ")), entry
        assert entry.operator, entry
    names = [entry.name.lower() for entry in BUILTIN]
    assert len(names) == len(set(names))
    assert names == sorted(names)


def test_the_list_has_the_well_known_ones() -> None:
    kinds = {entry.name: entry.kind for entry in BUILTIN}
    well_known = (
        "GPTBot ChatGPT-User OAI-SearchBot ClaudeBot Claude-User Claude-SearchBot Claude-Web "
        "anthropic-ai PerplexityBot Perplexity-User Bytespider CCBot Amazonbot "
        "Meta-ExternalAgent Meta-ExternalFetcher FacebookBot Applebot cohere-ai "
        "cohere-training-data-crawler Diffbot YouBot Google-CloudVertexBot ImagesiftBot "
        "omgilibot Timpibot PetalBot img2dataset AI2Bot Ai2Bot-Dolma"
    )
    for name in well_known.split():
        assert kinds.get(name) == "user_agent", name
    assert kinds["Kangaroo Bot"] == "user_agent"
    assert kinds["Google-Extended"] == "robots_token"
    assert kinds["Applebot-Extended"] == "robots_token"


def test_robots_only_entries_and_special_matches_say_why() -> None:
    for entry in BUILTIN:
        if entry.kind == "robots_token" or entry.match != (entry.name,):
            assert entry.note, entry.name


# Matching


@pytest.mark.parametrize("entry", USER_AGENTS, ids=lambda e: e.name)
def test_every_builtin_name_matches_a_user_agent_naming_it(
    matcher: CrawlerMatcher, entry: CrawlerEntry
) -> None:
    for phrase in entry.match:
        assert matcher.match(bot_ua(phrase)) == entry.name
        assert matcher.match(phrase.encode()) == entry.name


@pytest.mark.parametrize("entry", EXAMPLES, ids=lambda e: e.name)
def test_every_real_example_user_agent_is_blocked(
    matcher: CrawlerMatcher, entry: CrawlerEntry
) -> None:
    assert entry.example is not None
    # Some real UAs name two bots ("Claude-User (claude-code/2.1)"): the leftmost is reported.
    assert matcher.match(entry.example.encode()) in matcher.names


def test_real_user_agents_report_the_bot_they_name(matcher: CrawlerMatcher) -> None:
    cases = {
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
        "+https://openai.com/gptbot)": "GPTBot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
        "+claudebot@anthropic.com)": "ClaudeBot",
        "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/"
        "crawler)": "Meta-ExternalAgent",
        "Mozilla/5.0 (compatible; Kangaroo Bot/1.0; +http://www.kangaroo.com)": "Kangaroo Bot",
        "Mozilla/5.0 (compatible; Spider; +https://www.spider.com/)": "Spider",
        "bigsur.ai": "bigsur.ai",
        "CCBot/2.0 (https://commoncrawl.org/faq/)": "CCBot",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
        "Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)": "Bytespider",
    }
    for user_agent, name in cases.items():
        assert matcher.match(user_agent.encode()) == name, user_agent


@pytest.mark.parametrize("user_agent", BROWSERS)
def test_browsers_clients_and_search_engines_pass(matcher: CrawlerMatcher, user_agent: str) -> None:
    assert matcher.match(user_agent.encode()) is None


def test_whole_tokens_only_no_substrings(matcher: CrawlerMatcher) -> None:
    assert matcher.match(b"Mozilla/5.0 (compatible; MyGPTBotClone/1.0)") is None
    assert matcher.match(b"Mozilla/5.0 (compatible; GPTBot2/1.0)") is None
    assert matcher.match(b"Mozilla/5.0 (compatible; NotCCBot)") is None
    assert matcher.match(b"Mozilla/5.0 (compatible; KangarooBot/1.0)") is None  # one token
    assert matcher.match(b"Mozilla/5.0 (compatible; Kangaroo-Bot/1.0)") is None
    assert matcher.match(b"Mozilla/5.0 (compatible; Kangaroo/Bot)") == "Kangaroo Bot"
    # "Spider" is matched on spider.com only: a bare "spider" is in search engines' UAs.
    assert matcher.match(b"Mozilla/5.0 (compatible; Spider)") is None


def test_hyphenated_names_are_distinct_tokens() -> None:
    only_ai2bot = CrawlerMatcher(block=["AI2Bot"])
    assert only_ai2bot.match(b"Mozilla/5.0 (compatible; Ai2Bot-Dolma)") is None
    assert only_ai2bot.match(b"Mozilla/5.0 (compatible; AI2Bot)") == "AI2Bot"
    only_applebot = CrawlerMatcher(block=["Applebot"])
    assert only_applebot.match(b"Mozilla/5.0 (compatible; Applebot-Extended/1.0)") is None
    assert only_applebot.match(b"Mozilla/5.0 (Applebot/0.1; +http://www.apple.com/go/applebot)")


def test_matching_ignores_case(matcher: CrawlerMatcher) -> None:
    for user_agent in (b"gptbot/1.0", b"GPTBOT/1.0", b"Mozilla/5.0 (compatible; gPtBoT)"):
        assert matcher.match(user_agent) == "GPTBot"
    assert matcher.match(b"KANGAROO BOT/1.0") == "Kangaroo Bot"


def test_robots_only_tokens_are_never_matched(matcher: CrawlerMatcher) -> None:
    assert ROBOTS_ONLY
    for entry in ROBOTS_ONLY:
        assert matcher.match(bot_ua(entry.name)) is None, entry.name
        assert entry.name in matcher.robots_tokens
        assert entry.name not in matcher.names
    # Named explicitly in the block list, a robots.txt token stays one.
    explicit = CrawlerMatcher(block=["GPTBot", "Google-Extended"])
    assert explicit.match(bot_ua("Google-Extended")) is None
    assert explicit.robots_tokens == ("Google-Extended",)


def test_empty_or_missing_user_agent_passes(matcher: CrawlerMatcher) -> None:
    assert matcher.match(None) is None
    assert matcher.match(b"") is None
    assert matcher.match(b"   ") is None
    assert matcher.match(b"\xff\xfe\x00") is None


def test_non_ascii_bytes_separate_tokens(matcher: CrawlerMatcher) -> None:
    assert matcher.match("Mozilla/5.0 (compatible; GPTBot\u00e9/1.0)".encode()) == "GPTBot"
    assert tokenize(b"A\xc3\xa9B-c_d.E/F") == [b"a", b"b-c_d", b"e", b"f"]


# Configuration: explicit lists, added names, the allow list


def test_an_explicit_list_blocks_only_its_names() -> None:
    matcher = CrawlerMatcher(block=["GPTBot", "Custom-Bot"])
    assert matcher.names == ("Custom-Bot", "GPTBot")
    assert matcher.match(bot_ua("GPTBot")) == "GPTBot"
    assert matcher.match(bot_ua("custom-bot")) == "Custom-Bot"
    assert matcher.match(bot_ua("ClaudeBot")) is None


def test_names_added_in_yaml_match_as_written() -> None:
    matcher = CrawlerMatcher(add=["MyScraper", "Acme Crawler", "acme.io"])
    assert matcher.match(b"MyScraper/3.1 (+https://example.com)") == "MyScraper"
    assert matcher.match(b"Mozilla/5.0 (compatible; Acme Crawler/2.0)") == "Acme Crawler"
    assert matcher.match(b"Mozilla/5.0 (compatible; acme crawler)") == "Acme Crawler"
    assert matcher.match(b"Mozilla/5.0 (compatible; AcmeCrawler/2.0)") is None
    assert matcher.match(b"Mozilla/5.0 (+https://www.acme.io/bot)") == "acme.io"
    assert matcher.match(bot_ua("GPTBot")) == "GPTBot"  # the builtin list still applies
    assert len(matcher.names) == len(USER_AGENTS) + 3


def test_a_builtin_name_added_again_is_not_duplicated() -> None:
    matcher = CrawlerMatcher(add=["gptbot"])
    assert matcher.names.count("GPTBot") == 1
    assert len(matcher.names) == len(USER_AGENTS)


def test_allow_wins_over_the_builtin_list_and_added_names() -> None:
    matcher = CrawlerMatcher(add=["Acme"], allow=["gptbot", "Acme", "Applebot"])
    assert matcher.match(bot_ua("GPTBot")) is None
    assert matcher.match(bot_ua("Acme")) is None
    assert matcher.match(b"Mozilla/5.0 (Applebot/0.1; +http://www.apple.com/go/applebot)") is None
    assert matcher.match(bot_ua("ClaudeBot")) == "ClaudeBot"
    assert "GPTBot" not in matcher.names
    assert "Applebot" not in matcher.names


def test_a_user_agent_naming_an_allowed_bot_passes_even_if_it_names_a_blocked_one() -> None:
    matcher = CrawlerMatcher(allow=["ChatGPT-User"])
    assert matcher.match(b"Mozilla/5.0 (compatible; GPTBot/1.0; ChatGPT-User/1.0)") is None
    assert matcher.match(b"Mozilla/5.0 (compatible; ChatGPT-User/1.0; GPTBot/1.0)") is None
    assert matcher.match(b"Mozilla/5.0 (compatible; GPTBot/1.0)") == "GPTBot"


def test_allowing_a_robots_token_keeps_it_out_of_robots_txt() -> None:
    matcher = CrawlerMatcher(allow=["Google-Extended"])
    assert "Google-Extended" not in matcher.robots_tokens
    assert b"Google-Extended" not in robots_txt(matcher, ["google-extended"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"block": "everything"},
        {"block": ["ok", "bad\nname"]},
        {"add": ["#comment"]},
        {"add": [" padded"]},
        {"add": ["..."]},
        {"allow": [""]},
        {"add": ["x" * 101]},
        {"cache_size": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CrawlerMatcher(**kwargs)  # type: ignore[arg-type]


# The cache


def test_the_cache_is_bounded_and_clears_when_full() -> None:
    matcher = CrawlerMatcher(cache_size=8)
    for i in range(100):
        assert matcher.match(f"Mozilla/5.0 Chrome/{i}.0".encode()) is None
        assert matcher.cached <= 8
        assert matcher.match(f"GPTBot/{i}.0".encode()) == "GPTBot"
        assert matcher.cached <= 8
    assert matcher.match(b"GPTBot/1.0") == "GPTBot"  # a hit, after many clears


def test_a_cached_verdict_is_the_same_verdict(matcher: CrawlerMatcher) -> None:
    user_agent = (
        b"Mozilla/5.0 (compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)"
    )
    first = matcher.match(user_agent)
    assert first == "PerplexityBot"
    assert matcher.match(user_agent) == first
    assert matcher.match(BROWSERS[0].encode()) is None
    assert matcher.match(BROWSERS[0].encode()) is None


def test_long_user_agents_are_matched_but_not_cached() -> None:
    matcher = CrawlerMatcher()
    padding = b"x" * CACHE_MAX_KEY
    assert matcher.match(padding + b" GPTBot/1.0") == "GPTBot"
    assert matcher.match(padding + b" Chrome/126.0") is None
    assert matcher.cached == 0


# robots.txt


def test_robots_txt_disallows_every_blocked_name_and_robots_token(
    matcher: CrawlerMatcher,
) -> None:
    body = robots_txt(matcher, ["Extra-Token"]).decode()
    groups = body.split("\n\n")
    agents = [group.split("\n")[0].removeprefix("User-agent: ") for group in groups]
    assert agents[-1] == "*"
    assert groups[-1] == "User-agent: *\nAllow: /\n"
    assert all(group.endswith("\nDisallow: /") for group in groups[:-1])
    expected = {*matcher.names, *matcher.robots_tokens, "Extra-Token"}
    assert set(agents[:-1]) == expected
    assert "Google-Extended" in agents and "Applebot-Extended" in agents and "GPTBot" in agents
    assert agents[:-1] == sorted(agents[:-1], key=str.lower)


def test_robots_txt_is_deterministic_and_deduplicated() -> None:
    one = robots_txt(["b-bot", "A-Bot", "a-bot"], ["B-BOT", "c bot"])
    assert one == robots_txt(["b-bot", "A-Bot", "a-bot"], ["B-BOT", "c bot"])
    assert one == (
        b"User-agent: A-Bot\nDisallow: /\n\n"
        b"User-agent: b-bot\nDisallow: /\n\n"
        b"User-agent: c bot\nDisallow: /\n\n"
        b"User-agent: *\nAllow: /\n"
    )
    assert robots_txt(CrawlerMatcher()) == robots_txt(CrawlerMatcher())
    assert robots_txt([]) == b"User-agent: *\nAllow: /\n"


def test_robots_txt_refuses_a_name_that_would_break_the_file() -> None:
    with pytest.raises(ValueError):
        robots_txt(["GPTBot"], ["Evil\nDisallow: /"])


# The guard


def test_the_guard_rejects_with_the_bot_name_and_counts_per_bot() -> None:
    matcher = CrawlerMatcher()
    check = crawler_guard(matcher, 403)
    assert check(fake_ctx(None)) is None
    assert check(fake_ctx(BROWSERS[0].encode())) is None
    assert check(fake_ctx(bot_ua("GPTBot"))) == Rejection(403, "GPTBot")
    assert check(fake_ctx(bot_ua("GPTBot"))) == Rejection(403, "GPTBot")
    assert check(fake_ctx(bot_ua("CCBot"))) == Rejection(403, "CCBot")
    assert matcher.blocked == {"GPTBot": 2, "CCBot": 1}


def test_the_guard_in_the_chain_and_in_shadow_mode() -> None:
    matcher = CrawlerMatcher()
    chain = GuardChain([Guard("crawlers", crawler_guard(matcher, 451), mode="shadow")])
    context = fake_ctx(bot_ua("ClaudeBot"))
    assert chain.admit(context) is None
    assert context.shadow_reasons == ["crawlers:ClaudeBot"]
    assert matcher.blocked == {"ClaudeBot": 1}


# The benchmark (a smoke run: no timing assertions)


def test_the_benchmark_runs() -> None:
    results = crawler_bench.run(iterations=20)
    assert set(results) == {
        "cache hit",
        "miss, browser UA",
        "miss, bot UA",
        "regex, browser UA",
        "regex, bot UA",
    }
    assert all(value > 0 for value in results.values())
    assert "regex / miss" in crawler_bench.report(results, len(USER_AGENTS))
