"""A small User-Agent parser for the page-hits breakdowns: browser, operating system and device
class of the major ones, and nothing it cannot tell.

It reads the tokens browsers have sent for a decade (``Edg/``, ``OPR/``, ``SamsungBrowser/``,
``Firefox/``, ``CriOS/``, ``Chrome/``, ``Version/… Safari/``, ``Trident/``), in the order that
tells them apart: every Chromium browser also says ``Chrome/`` and ``Safari/``, so the specific
names come first. What it cannot tell, it says so ("Other") rather than guess. Known limits,
inherent in the header: Brave says it is Chrome; iPadOS Safari in its default desktop mode says
it is a Mac; Chrome's reduced User-Agent freezes the OS version (so none is reported).

Crawlers, HTTP libraries and headless browsers are the device class "Bot".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

UNKNOWN = "Unknown"
OTHER = "Other"


@dataclass(frozen=True)
class Agent:
    """What a User-Agent says about its sender."""

    browser: str
    os: str
    device: str  # Desktop, Mobile, Tablet, Bot or Unknown


# (pattern, name), first match wins: specific crawlers and tools before the generic words
_BOTS = [
    (r"Googlebot|Google-InspectionTool|AdsBot-Google|Mediapartners-Google|APIs-Google",
     "Googlebot"),
    (r"bingbot|BingPreview|msnbot", "Bingbot"),
    (r"YandexBot|YandexMobileBot", "YandexBot"),
    (r"Baiduspider", "Baiduspider"),
    (r"DuckDuckBot", "DuckDuckBot"),
    (r"Applebot", "Applebot"),
    (r"facebookexternalhit|facebookcatalog", "Facebook crawler"),
    (r"Twitterbot", "Twitterbot"),
    (r"Slackbot|Slack-ImgProxy", "Slackbot"),
    (r"Discordbot", "Discordbot"),
    (r"LinkedInBot", "LinkedInBot"),
    (r"AhrefsBot", "AhrefsBot"),
    (r"SemrushBot", "SemrushBot"),
    (r"GPTBot|ChatGPT-User|OAI-SearchBot", "OpenAI crawler"),
    (r"HeadlessChrome", "Headless Chrome"),
    (r"Chrome-Lighthouse|Lighthouse", "Lighthouse"),
    (r"^curl/", "curl"),
    (r"^Wget/", "Wget"),
    (r"python-requests|python-httpx|python-urllib|aiohttp|^Python/|^Scrapy", "Python"),
    (r"Go-http-client", "Go"),
    (r"okhttp", "OkHttp"),
    (r"^Java/|Apache-HttpClient", "Java"),
    (r"node-fetch|axios/|undici|^node$", "Node.js"),
    (r"PostmanRuntime", "Postman"),
    # "bot" as a word's end, but not the Cubot phone brand ("CUBOT P40")
    (r"(?<!cu)bot\b|crawl|spider|slurp|scanner|monitor|uptime|pingdom|preview", "Other bot"),
]  # fmt: skip
_BOT_PATTERNS = [(re.compile(p, re.IGNORECASE), name) for p, name in _BOTS]

_BROWSERS = [
    (r"\bEdg(?:e|A|iOS)?/", "Edge"),
    (r"\bOPR/|\bOPiOS/|\bOpera[/ ]", "Opera"),
    (r"\bSamsungBrowser/", "Samsung Internet"),
    (r"\bYaBrowser/", "Yandex Browser"),
    (r"\bUCBrowser/|\bUCWEB", "UC Browser"),
    (r"\bVivaldi/", "Vivaldi"),
    (r"\bFBAN/|\bFBAV/", "Facebook app"),
    (r"\bInstagram ", "Instagram app"),
    (r"\bFirefox/|\bFxiOS/", "Firefox"),
    (r"; wv\).*\bChrome/", "Android WebView"),
    (r"\bCriOS/|\bChrome/", "Chrome"),
    (r"\bChromium/", "Chromium"),
    (r"\bVersion/[\d.]+.*\bSafari/", "Safari"),
    (r"\b(?:iPhone|iPad|iPod)\b.*AppleWebKit/(?!.*Safari/)", "iOS app (WebView)"),
    (r"\bMSIE |\bTrident/", "Internet Explorer"),
]
_BROWSER_PATTERNS = [(re.compile(p), name) for p, name in _BROWSERS]

_SYSTEMS = [
    (r"Windows Phone", "Windows Phone"),
    (r"\b(?:iPhone|iPad|iPod)\b", "iOS"),
    (r"\bAndroid\b", "Android"),
    (r"\bCrOS\b", "Chrome OS"),
    (r"\bWindows\b", "Windows"),
    (r"\bMac OS X\b|\bMacintosh\b", "macOS"),
    (r"\bLinux\b|\bX11\b|\bUbuntu\b|\bFedora\b", "Linux"),
]
_SYSTEM_PATTERNS = [(re.compile(p), name) for p, name in _SYSTEMS]

_TABLET = re.compile(r"\biPad\b|Tablet|\bKindle\b|\bSilk/|PlayBook|\bSM-T\d")
_MOBILE = re.compile(r"Mobi|\biPhone\b|\biPod\b|Windows Phone|Opera Mini|IEMobile")


@functools.lru_cache(maxsize=4096)
def parse(user_agent: str | None) -> Agent:
    """The browser, OS and device class a User-Agent header names."""
    text = (user_agent or "").strip()
    if not text:
        return Agent(UNKNOWN, UNKNOWN, UNKNOWN)
    system = next((name for p, name in _SYSTEM_PATTERNS if p.search(text)), OTHER)
    bot = next((name for p, name in _BOT_PATTERNS if p.search(text)), None)
    if bot is not None:
        return Agent(bot, system, "Bot")
    browser = next((name for p, name in _BROWSER_PATTERNS if p.search(text)), OTHER)
    if _TABLET.search(text) or (system == "Android" and "Mobile" not in text):
        device = "Tablet"  # an Android phone says "Mobile"; an Android tablet does not
    elif _MOBILE.search(text):
        device = "Mobile"
    elif browser == OTHER and system == OTHER:
        device = UNKNOWN
    else:
        device = "Desktop"
    return Agent(browser, system, device)


def breakdown(agents: Iterable[tuple[str | None, int]], total: int) -> dict[str, Any]:
    """Counts per browser, OS and device class from (User-Agent, count) pairs; events beyond
    the pairs given (rare agents past the query's limit) count as "Other"."""
    tallies: dict[str, dict[str, int]] = {"browsers": {}, "systems": {}, "devices": {}}
    counted = 0
    for text, count in agents:
        agent = parse(text)
        for kind, name in (("browsers", agent.browser), ("systems", agent.os),
                           ("devices", agent.device)):  # fmt: skip
            tallies[kind][name] = tallies[kind].get(name, 0) + count
        counted += count
    if total > counted:
        for tally in tallies.values():
            tally[OTHER] = tally.get(OTHER, 0) + total - counted
    return {
        kind: [{"value": name, "count": n}
               for name, n in sorted(tally.items(), key=lambda item: (-item[1], item[0]))]
        for kind, tally in tallies.items()
    }  # fmt: skip
