"""The drawing page in Debian's headless Chromium, driven by Selenium (digits_lab.browser): what a person
sees and clicks. The server under test is tests/test_demo.py's ``demo`` fixture, started as a user starts it."""

from __future__ import annotations

import base64
import io
import os

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_demo import demo, network, png, stroke_one  # noqa: F401  (fixtures shared with the product's tests)

from digits.data import load_mnist, normalize, standardize
from digits.handwriting import load_image, to_mnist
from digits_lab.browser import INSTALL, draw_vertical_stroke, start_chromium
from digits_lab.browser import installed as browser_installed

# --------------------------------------------------------------------------------------------------
# In a real browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not browser_installed():
        message = f"needs Debian's chromium and chromium-driver ({INSTALL}; .ci/run installs them in CI)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must not pass by skipping the browser
        pytest.skip(message)
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def wait_for_update(driver, count: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: int(d.execute_script("return document.body.dataset.updates || 0")) >= count
    )


def shown(driver, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, selector)]


def close_to_printed(text: str, expected: float, logits: torch.Tensor) -> bool:
    """Equal to the printed precision (half a unit in the last printed place), allowing the float32
    rounding of a loss computed from logits of this size (a few ulps of the largest logit)."""
    decimals = len(text.split(".")[1])
    float32 = 4 * torch.finfo(torch.float32).eps * float(logits.abs().max())
    return abs(float(text) - expected) <= 0.5 * 10**-decimals + float32


def test_in_a_browser_an_mnist_digit_shows_the_networks_prediction_and_loss(demo, browser, network, data_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    images, labels = load_mnist(data_dir, train=False, download=False)
    with torch.no_grad():
        confident = network(normalize(images[:200])).softmax(1).max(1)
    index = int(torch.nonzero(confident.values > 0.99)[0])  # a digit the network is sure of
    digit = tmp_path / "mnist-test-digit.png"
    Image.fromarray(images[index].numpy()).save(digit)
    # the network's logits for what the page sends it: the PNG after the project's preprocessing
    picture, _ = to_mnist(load_image(digit))
    with torch.no_grad():
        logits = network(standardize(picture)[None])[0]
    prediction = int(logits.argmax())
    assert prediction == int(confident.indices[index]) == int(labels[index])

    browser.get(demo.url)
    browser.find_element(By.ID, "upload").send_keys(str(digit))
    wait_for_update(browser, 1)
    assert browser.find_element(By.ID, "prediction").text == str(prediction)
    losses = shown(browser, "td.loss-value")
    assert len(losses) == 3
    at_prediction = F.cross_entropy(logits[None].double(), torch.tensor([prediction])).item()
    for text in losses:
        assert close_to_printed(text, at_prediction, logits), (text, at_prediction)
    assert browser.find_element(By.CSS_SELECTOR, "#scores tr.target").get_attribute("data-digit") == str(prediction)

    # another target: the least likely digit; its loss is the largest there is for this picture
    target = int(logits.argmin())
    Select(browser.find_element(By.ID, "target")).select_by_value(str(target))
    wait_for_update(browser, 2)
    expected = F.cross_entropy(logits[None].double(), torch.tensor([target])).item()
    assert expected > at_prediction + 1
    for text in shown(browser, "td.loss-value"):
        assert close_to_printed(text, expected, logits), (text, expected)
    assert browser.find_element(By.CSS_SELECTOR, "#scores tr.target").get_attribute("data-digit") == str(target)
    gradient = shown(browser, "td.grad")
    assert gradient[target].startswith("-") and gradient[prediction].startswith("+")

    # temperature 10: the loss of x / 10
    browser.execute_script(
        "const s = document.getElementById('temperature'); s.value = 100;s.dispatchEvent(new Event('input'));"
    )
    wait_for_update(browser, 3)
    cooled = F.cross_entropy(logits[None].double() / 10, torch.tensor([target])).item()
    for text in shown(browser, "td.loss-value"):
        assert close_to_printed(text, cooled, logits / 10), (text, cooled)

    browser.find_element(By.ID, "temperature-reset").click()
    wait_for_update(browser, 4)
    for text in shown(browser, "td.loss-value"):
        assert close_to_printed(text, expected, logits), (text, expected)

    browser.find_element(By.ID, "softmax-first").click()
    assert "1.461" in browser.find_element(By.ID, "mistake").text  # the floor, log(1 + 9/e)
    # every resource came from the demo itself
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(demo.url) for name in resources), resources
    browser.save_screenshot(str(tmp_path / "demo.png"))


def test_in_a_browser_a_drawn_stroke_is_read_as_a_one(demo, browser, network, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(demo.url)
    draw_vertical_stroke(browser)
    # set when the numbers that follow the release are on the page
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body.dataset.strokeToNumbersMs"))
    # what the page drew, through the project's preprocessing and the network rebuilt here
    data_url = browser.execute_script("return document.getElementById('pad').toDataURL('image/png')")
    drawing = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    picture, _ = to_mnist(drawing)
    with torch.no_grad():
        logits = network(standardize(picture)[None])[0]
    assert browser.find_element(By.ID, "prediction").text == str(int(logits.argmax())) == "1"
    expected = F.cross_entropy(logits[None].double(), torch.tensor([1])).item()
    for text in shown(browser, "td.loss-value"):
        assert close_to_printed(text, expected, logits), (text, expected)
    browser.save_screenshot(str(tmp_path / "drawn.png"))


def test_in_a_browser_bad_uploads_get_a_message_not_a_stack_trace(demo, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(demo.url)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are my notes, not a picture")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    for count, (path, says) in enumerate([(not_an_image, "not an image"), (blank, "no digit found")], start=1):
        browser.find_element(By.ID, "upload").send_keys(str(path))
        wait_for_update(browser, count)
        message = browser.find_element(By.ID, "message")
        assert says in message.text and "error" in message.get_attribute("class"), message.text
        assert "Traceback" not in browser.page_source
