"""Write docs/images/mlflow-runs.png and mlflow-registry.png: the MLflow UI on this repository's
tracking store as `denoise ui` opens it, drawn by Debian's headless Chromium (chromium and
chromium-driver) through selenium (the dev extra). Run after `make run`: `make screenshots`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from denoise.core.config import load_params
from denoise.core.locations import tracking_uri
from denoise.tracking.runs import configure
from denoise.tracking.views import experiment_link

IMAGES = Path("docs/images")
WAIT_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"error: {what} did not happen within {WAIT_SECONDS} s")


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    params = load_params("params.yaml")
    uri = tracking_uri(params)
    if not uri.startswith("sqlite:///") or not Path(uri.removeprefix("sqlite:///")).is_file():
        raise SystemExit(f"error: no local tracking store at {uri}: run `make run` first")
    experiment = configure(params)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).with_name("mlflow")
    address = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", uri, *address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,900"):
        options.add_argument(argument)
    driver = None
    try:
        _wait_until(lambda: urllib.request.urlopen(f"{base}/health").status == 200, "MLflow up")
        service = webdriver.ChromeService(shutil.which("chromedriver") or "chromedriver")
        driver = webdriver.Chrome(options=options, service=service)

        def text(_: object) -> str:
            return str(driver.find_element("tag name", "body").text)

        IMAGES.mkdir(parents=True, exist_ok=True)
        driver.get(experiment_link(base, experiment))
        WebDriverWait(driver, WAIT_SECONDS).until(lambda d: "champion.test_psnr" in text(d))
        time.sleep(2)  # the charts and cells settle
        driver.save_screenshot(str(IMAGES / "mlflow-runs.png"))
        driver.get(f"{base}/#/models/{params.register.model_name}")
        WebDriverWait(driver, WAIT_SECONDS).until(lambda d: "@ champion" in text(d))
        time.sleep(2)
        driver.save_screenshot(str(IMAGES / "mlflow-registry.png"))
        print(f"wrote {IMAGES}/mlflow-runs.png and {IMAGES}/mlflow-registry.png")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
