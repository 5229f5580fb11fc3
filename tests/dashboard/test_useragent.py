"""The page-hits User-Agent parser over User-Agent strings real browsers, phones and crawlers
send."""

from __future__ import annotations

import pytest

from headrace.dashboard.useragent import Agent, breakdown, parse

REAL = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", Agent("Chrome", "Windows", "Desktop")),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51", Agent("Edge", "Windows", "Desktop")),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0", Agent("Opera", "Windows", "Desktop")),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
     Agent("Firefox", "Windows", "Desktop")),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4.1 Safari/605.1.15", Agent("Safari", "macOS", "Desktop")),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", Agent("Chrome", "macOS", "Desktop")),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", Agent("Chrome", "Linux", "Desktop")),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
     Agent("Firefox", "Linux", "Desktop")),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", Agent("Chrome", "Chrome OS", "Desktop")),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
     Agent("Safari", "iOS", "Mobile")),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
     Agent("Chrome", "iOS", "Mobile")),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
     Agent("Firefox", "iOS", "Mobile")),
    ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", Agent("Safari", "iOS", "Tablet")),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Mobile/21E219 [FBAN/FBIOS;FBAV/459.0.0.42.106;FBBV/584393480]",
     Agent("Facebook app", "iOS", "Mobile")),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Mobile Safari/537.36", Agent("Chrome", "Android", "Mobile")),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
     Agent("Samsung Internet", "Android", "Mobile")),
    ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", Agent("Chrome", "Android", "Tablet")),
    ("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
     Agent("Firefox", "Android", "Mobile")),
    ("Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 "
     "(KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36",
     Agent("Android WebView", "Android", "Mobile")),
    ("Mozilla/5.0 (Linux; Android 10; CUBOT P40) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Mobile Safari/537.36", Agent("Chrome", "Android", "Mobile")),
    ("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
     Agent("Internet Explorer", "Windows", "Desktop")),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     Agent("Googlebot", "Other", "Bot")),
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
     "like Gecko) Chrome/124.0.6367.91 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
     "+http://www.google.com/bot.html)", Agent("Googlebot", "Android", "Bot")),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
     Agent("Bingbot", "Other", "Bot")),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
     Agent("Facebook crawler", "Other", "Bot")),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/124.0.6367.60 Safari/537.36", Agent("Headless Chrome", "Linux", "Bot")),
    ("curl/8.5.0", Agent("curl", "Other", "Bot")),
    ("python-httpx/0.27.0", Agent("Python", "Other", "Bot")),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
     Agent("AhrefsBot", "Other", "Bot")),
    ("SomeThing/1.0", Agent("Other", "Other", "Unknown")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), REAL, ids=[e.browser for _, e in REAL])
def test_real_user_agents(text: str, expected: Agent) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_user_agent_is_unknown(text: str | None) -> None:
    assert parse(text) == Agent("Unknown", "Unknown", "Unknown")


def test_breakdown_counts_each_kind_and_the_unread_rest() -> None:
    chrome_win, safari_ios, bot = REAL[0][0], REAL[9][0], REAL[21][0]
    found = breakdown([(chrome_win, 5), (safari_ios, 3), (bot, 1), (None, 1)], total=12)
    assert found["browsers"] == [
        {"value": "Chrome", "count": 5},
        {"value": "Safari", "count": 3},
        {"value": "Other", "count": 2},  # the 2 events whose agents were not read
        {"value": "Googlebot", "count": 1},
        {"value": "Unknown", "count": 1},
    ]
    assert found["devices"][:2] == [
        {"value": "Desktop", "count": 5},
        {"value": "Mobile", "count": 3},
    ]
    assert {d["value"] for d in found["systems"]} == {"Windows", "iOS", "Other", "Unknown"}
