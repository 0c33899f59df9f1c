"""Debian's headless Chromium driven through Selenium, for the demo's browser test and benchmark.

The driver is /usr/bin/chromedriver from the ``chromium-driver`` package: Selenium is never asked to
find or download one, and the flags keep the browser off the network (no sync, no updates, no
background requests) and able to run as root without a display.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1180",
]
INSTALL = "apt-get install -y chromium chromium-driver"


def installed() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def start_chromium(profile: Path):
    """A headless Chromium with a fresh profile in ``profile``; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def draw_vertical_stroke(driver, x_offset: int = 0) -> None:
    """Press, move down the drawing pad in 10-pixel steps, release: a 1, as a mouse would draw it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    actions = ActionChains(driver).move_to_element_with_offset(driver.find_element(By.ID, "pad"), x_offset, -90)
    actions.click_and_hold()
    for _ in range(18):
        actions.move_by_offset(0, 10)
    actions.release().perform()
