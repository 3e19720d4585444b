"""A real browser: Debian's chromium, headless, driven through Selenium and Debian's
chromium-driver, against a real arena server. Opens a battle, votes, sees the identities
revealed only after the vote and the leaderboard page change. Screenshots are kept under
the test's tmp folder (the path is printed)."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from arena_helpers import MODELS, missing, prefkit, write_outputs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and os.environ.get("PREFKIT_REQUIRE_ARENA_SERVICES") != "1",
    reason="Debian's chromium and chromium-driver are not installed (apt-get install chromium "
           "chromium-driver; .ci/run installs them, so this runs in CI)")

CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,900")


def _chrome(tmp_path, javascript: bool = True):
    if not (CHROMIUM and DRIVER):
        missing("chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in CHROME_FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    if not javascript:  # the page's scripts do not run (Chrome's content setting)
        opts.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = _chrome(tmp_path)
    yield driver
    driver.quit()


@pytest.fixture
def browser_without_js(tmp_path):
    driver = _chrome(tmp_path, javascript=False)
    yield driver
    driver.quit()


def _wait(cond, timeout=60.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def board(browser) -> list[list[str]]:
    """The leaderboard table's cell texts, read in one script call (the page replaces its
    rows on every live refresh, so element handles would go stale)."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#board tbody tr')].map("
        "tr => [...tr.querySelectorAll('td')].map(td => td.textContent));")


def test_vote_in_a_browser(browser, servers, sqlite_db, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # the leaderboard before any vote
    browser.get(s.url + "/leaderboard")
    _wait(lambda: "no votes yet" in browser.find_element(By.ID, "status").text, what="status")
    browser.save_screenshot(str(shots / "1_leaderboard_empty.png"))
    assert board(browser) == []

    # a battle: outputs shown, no identity on the page before the vote
    browser.get(s.url + "/")
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-battle")
          == "ready", what="the battle")
    page = browser.page_source.lower()
    for m in MODELS:
        assert m not in page, f"{m} visible before the vote"
    assert browser.find_element(By.ID, "out-a").text.startswith("Answer")
    assert browser.find_element(By.ID, "reveal-a").text == ""
    browser.save_screenshot(str(shots / "2_battle.png"))
    # no script or stylesheet name says anything either
    assets = [e.get_attribute("src") or e.get_attribute("href") for e in
              browser.find_elements(By.CSS_SELECTOR, "script[src], link[href]")]
    assert sorted(a.rsplit("/", 1)[1] for a in assets) == ["arena.css", "arena.js"]

    browser.find_element(By.CSS_SELECTOR, "[data-vote='a']").click()
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-battle")
          == "voted", what="the vote")
    ra = browser.find_element(By.ID, "reveal-a").text
    rb = browser.find_element(By.ID, "reveal-b").text
    winner, loser = ra.split(": ")[1], rb.split(": ")[1]
    assert {winner, loser} <= set(MODELS) and winner != loser
    assert browser.find_element(By.ID, "result").text == "Vote recorded."
    browser.save_screenshot(str(shots / "3_revealed.png"))

    # the leaderboard changes (live refresh: the page is not reloaded)
    browser.get(s.url + "/leaderboard")
    cells = _wait(lambda: board(browser), what="leaderboard rows")
    assert [c[1] for c in cells] == [winner, loser]
    assert float(cells[0][2]) > float(cells[1][2])
    assert _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#heatmap td"),
                 what="heatmap")
    browser.save_screenshot(str(shots / "4_leaderboard.png"))
    # a second vote, from another browser tab's session, reaches the open page by itself
    browser.execute_script("window.open('/', 'vote');")
    browser.switch_to.window("vote")
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-battle")
          == "ready", what="the second battle")
    browser.find_element(By.CSS_SELECTOR, "[data-vote='tie']").click()
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-battle")
          == "voted", what="the second vote")
    browser.switch_to.window(browser.window_handles[0])

    def total_votes() -> float:
        return sum(float(c[6] or 0) for c in board(browser))

    _wait(lambda: total_votes() == 4, what="the live refresh to show the second vote")
    browser.save_screenshot(str(shots / "5_leaderboard_live.png"))
    assert len(list(shots.glob("*.png"))) == 5
    with capsys.disabled():
        print(f"\n[browser] screenshots in {shots}")


def test_own_prompt_in_a_browser(browser, servers, tmp_path):
    """A voter types a question; two scripted OpenAI-compatible servers answer it before
    the battle appears; the vote reveals which model wrote which answer."""
    import json

    from arena_helpers import fake_chat_server
    from selenium.webdriver.common.by import By

    one, two = fake_chat_server(0.05, "First:"), fake_chat_server(0.3, "Second:")
    ep = {"left-model": {"base_url": f"http://127.0.0.1:{one.server_address[1]}/v1"},
          "right-model": {"base_url": f"http://127.0.0.1:{two.server_address[1]}/v1"}}
    (tmp_path / "ep.json").write_text(json.dumps(ep))
    s = servers(str(tmp_path / "a.db"), "--rounds", "20", "--endpoints", str(tmp_path / "ep.json"))
    try:
        browser.get(s.url + "/")
        _wait(lambda: "No battle" in browser.find_element(By.ID, "prompt").text,
              what="no stored battle yet")
        browser.find_element(By.ID, "own").send_keys("why is the sky blue")
        browser.find_element(By.CSS_SELECTOR, "#ask button").click()
        _wait(lambda: browser.find_element(By.ID, "prompt").text == "why is the sky blue",
              what="the answers")
        answers = {browser.find_element(By.ID, f"out-{x}").text for x in "ab"}
        assert answers == {"First: eulb yks eht si yhw", "Second: eulb yks eht si yhw"}
        page = browser.page_source.lower()
        assert "left-model" not in page and "right-model" not in page
        browser.find_element(By.CSS_SELECTOR, "[data-vote='b']").click()
        _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-battle")
              == "voted", what="the vote")
        b_text = browser.find_element(By.ID, "out-b").text
        b_model = browser.find_element(By.ID, "reveal-b").text.split(": ")[1]
        assert b_model == ("left-model" if b_text.startswith("First:") else "right-model")
        browser.save_screenshot(str(tmp_path / "own_prompt.png"))
    finally:
        one.shutdown()
        two.shutdown()


def test_rank_three_in_a_browser(browser, servers, sqlite_db, tmp_path):
    """K-wise: three anonymous answers, ranked with a tie; the three models revealed; the
    leaderboard counts the three pairs."""
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20")
    browser.get(s.url + "/?k=3")
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-battle")
          == "ready", what="the battle")
    assert browser.find_element(By.ID, "votes").get_attribute("hidden") is not None
    assert all(browser.find_element(By.ID, f"out-{x}").text.startswith("Answer") for x in "abc")
    page = browser.page_source.lower()
    assert not any(m in page for m in MODELS)
    Select(browser.find_element(By.ID, "rank-a")).select_by_value("2")
    Select(browser.find_element(By.ID, "rank-b")).select_by_value("1")
    Select(browser.find_element(By.ID, "rank-c")).select_by_value("2")
    browser.find_element(By.CSS_SELECTOR, "#rank button").click()
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-battle")
          == "voted", what="the ranking")
    shown = {x: browser.find_element(By.ID, f"reveal-{x}").text.split(": ")[1] for x in "abc"}
    assert len(set(shown.values())) == 3
    browser.save_screenshot(str(tmp_path / "ranked.png"))
    lb = _wait(lambda: (d := httpx.get(s.url + "/api/leaderboard").json())["leaderboard"] and d,
               what="the leaderboard")
    assert lb["leaderboard"][0]["item"] == shown["b"]
    assert sum(r["votes"] for r in lb["leaderboard"]) == 6  # (b>a, b>c, a=c) x 2 sides


def test_vote_in_a_browser_without_javascript(browser_without_js, servers, sqlite_db,
                                              tmp_path):
    """JavaScript off: the battle page points to the plain forms; a battle, a vote (the
    forms' own POSTs, cookies and CSRF token as the browser keeps them), the models
    revealed after the vote only, and the vote on the leaderboard."""
    import httpx
    from selenium.webdriver.common.by import By

    b = browser_without_js
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20")
    b.get(s.url + "/")
    assert b.find_element(By.ID, "prompt").text == ""  # the script did not run: hidden
    assert b.find_element(By.ID, "prompt").is_displayed() is False
    link = b.find_element(By.CSS_SELECTOR, "#noscript a")
    assert link.is_displayed()
    link.click()
    _wait(lambda: b.find_elements(By.ID, "start"), what="the start form")
    b.find_element(By.ID, "start").click()
    _wait(lambda: "/vote/battles/" in b.current_url and b.find_elements(By.ID, "out-a"),
          what="the battle page")
    page = b.page_source.lower()
    assert not any(m in page for m in MODELS)
    assert b.find_element(By.ID, "out-a").text.startswith("Answer")
    b.save_screenshot(str(tmp_path / "nojs_battle.png"))
    b.find_element(By.CSS_SELECTOR, "button[name='winner'][value='b']").click()
    _wait(lambda: b.find_elements(By.ID, "result"), what="the vote's answer")
    assert b.find_element(By.ID, "result").text == "Vote recorded."
    ra = b.find_element(By.ID, "reveal-a").text.split(": ")[1]
    rb = b.find_element(By.ID, "reveal-b").text.split(": ")[1]
    assert {ra, rb} <= set(MODELS) and ra != rb
    b.save_screenshot(str(tmp_path / "nojs_revealed.png"))
    lb = _wait(lambda: (d := httpx.get(s.url + "/api/leaderboard").json())["leaderboard"] and d,
               what="the leaderboard")
    assert [r["item"] for r in lb["leaderboard"]] == [rb, ra]
    # the next battle from the same page
    b.find_element(By.ID, "start").click()
    assert _wait(lambda: b.find_elements(By.CSS_SELECTOR, "button[name='winner'][value='a']"),
                 what="the next battle")[0].is_displayed()


def test_leaderboard_without_javascript(browser_without_js, servers, sqlite_db, tmp_path):
    """JavaScript off: the leaderboard page shows the table and the win rates as of loading
    (rendered on the server) and says how to refresh it. Was: 'loading…' and an empty
    table."""
    import httpx
    from arena_helpers import api, wait_caught_up
    from selenium.webdriver.common.by import By

    b = browser_without_js
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0")
    c = api(s, "voter")
    for _ in range(3):
        battle = c.post("/api/battles").json()
        assert c.post(f"/api/battles/{battle['battle_id']}/vote",
                      json={"winner": "a"}).status_code == 200
    lb = wait_caught_up(s, 3)
    b.get(s.url + "/leaderboard")
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in b.find_elements(By.CSS_SELECTOR, "#board tbody tr")]
    assert [r[1] for r in rows] == [r["item"] for r in lb["leaderboard"]]
    assert [r[2] for r in rows] == [f"{r['rating']:.1f}" for r in lb["leaderboard"]]
    assert [r[6] for r in rows] == [str(round(r["votes"])) for r in lb["leaderboard"]]
    assert "loading" not in b.find_element(By.ID, "status").text
    assert b.find_element(By.ID, "noscript").is_displayed()
    n = len(lb["leaderboard"])
    assert len(b.find_elements(By.CSS_SELECTOR, "#heatmap td")) == n * n
    assert httpx.get(s.url + "/api/leaderboard").status_code == 200
    b.save_screenshot(str(tmp_path / "nojs_leaderboard.png"))
