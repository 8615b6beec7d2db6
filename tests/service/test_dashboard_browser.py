"""The dashboard in real headless Chromium (Debian's `chromium`, driven by Playwright): seeded
studies served by the real app; counts come from the page's `window.clnas` state and from the
traces Plotly holds, never from the canvas. Screenshots go to each test's tmp_path, or to
$CLNAS_SCREENSHOTS when set (`CLNAS_SCREENSHOTS=docs/screenshots` refreshes the README's).

Chromium missing is a failure, not a skip (scripts/test.sh installs it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
from optuna.trial import TrialState
from playwright.sync_api import Browser, ConsoleMessage, Page, Route

from objectives import cost_report
from search_space import load_arch
from service.db import StudyRow, make_engine, sessions
from service.settings import Settings
from tests.service.browser import chromium, live_server
from tests.service.conftest import seed_study
from workers.study import StudySpec, parse_study
from workers.tune import (
    ARCH_ATTR,
    BASELINE_ATTR,
    COST_ATTR,
    CURVE_ATTR,
    PRUNED_AT_ATTR,
    DefineByRun,
    baselines_study_name,
    open_storage,
    prepare_studies,
    rejected_values,
)

pytestmark = pytest.mark.browser
ROOT = Path(__file__).parents[2]
EXAMPLE = json.loads((ROOT / "examples" / "synthetic_small.json").read_text())
CLNAS = str(Path(sys.executable).with_name("clnas"))
TOKEN = "dashboard-test-token"


def _doc(name: str, n: int) -> dict[str, Any]:
    return EXAMPLE | {"name": name, "budget": {"max_madds": 30_000_000},
                      "search": EXAMPLE["search"] | {"n_trials": n}}


def seed_baseline(url: str, spec: StudySpec, zoo_name: str, accuracy: float) -> None:
    """A zoo baseline trained "in the same study", stored as the runner stores it."""
    study = optuna.load_study(study_name=baselines_study_name(spec.name), storage=url)
    arch = load_arch(zoo_name)
    report = cost_report(arch)
    trial = study.ask()
    trial.set_user_attr(BASELINE_ATTR, zoo_name)
    trial.set_user_attr(ARCH_ATTR, arch.to_dict())
    trial.set_user_attr(COST_ATTR, {"madds": report.madds, "params": report.params,
                                    "fcrf": report.fcrf})
    trial.set_user_attr(CURVE_ATTR, [{"epoch": 1, "val_top1": accuracy, "synthetic": True}])
    study.tell(trial, [accuracy, report.madds])


def feasible_trial(study: optuna.Study, spec: StudySpec,
                   define: DefineByRun) -> tuple[optuna.Trial, dict[str, Any]]:
    """The next candidate within budget; rejected ones are told as a run tells them."""
    trial = study.ask()
    while (config := define(trial))["rejected"]:
        study.tell(trial, rejected_values(spec, config["cost"]))
        trial = study.ask()
    return trial, config


def seed_accuracies(url: str, doc: dict[str, Any], accuracies: list[float]) -> None:
    """Feasible candidates completed with the given proxy accuracies."""
    spec = parse_study(doc)
    storage = open_storage(url)
    prepare_studies(storage, spec)
    study = optuna.load_study(study_name=spec.name, storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=7))
    define = DefineByRun(spec)
    for acc in accuracies:
        trial, config = feasible_trial(study, spec, define)
        trial.set_user_attr(CURVE_ATTR, [{"epoch": 1, "val_top1": acc, "synthetic": True}])
        study.tell(trial, [acc, config["cost"]["madds"]])


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    """Never into the tracked docs/screenshots unless asked through $CLNAS_SCREENSHOTS."""
    folder = Path(os.environ.get("CLNAS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


def seed_unfinished(url: str, doc: dict[str, Any], states: list[TrialState]) -> None:
    """Feasible candidates that were pruned, failed or are still running, as a run leaves them."""
    spec = parse_study(doc)
    study = optuna.load_study(study_name=spec.name, storage=url,
                              sampler=optuna.samplers.RandomSampler(seed=99))
    define = DefineByRun(spec)
    for state in states:
        trial, _ = feasible_trial(study, spec, define)
        trial.set_user_attr(CURVE_ATTR, [{"epoch": 1, "val_top1": 0.1, "synthetic": True}])
        if state == TrialState.PRUNED:
            trial.set_user_attr(PRUNED_AT_ATTR, 1)
        if state != TrialState.RUNNING:
            study.tell(trial, state=state)


class Site:
    def __init__(self, base: str, db_url: str):
        self.base = base
        self.db_url = db_url
        self.http = httpx.Client(base_url=base, timeout=120)

    def submit(self, doc: dict[str, Any], n: int, status: str | None = None) -> int:
        sid = int(self.http.post("/api/studies", json=doc).json()["id"])
        if status is not None:
            with sessions(make_engine(self.db_url)).begin() as s:
                row = s.get(StudyRow, sid)
                assert row is not None
                row.run.status = status
        if n:
            seed_study(self.db_url, doc, n)
        return sid


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("dashboard")
    settings = Settings(db_url=f"sqlite:///{tmp / 'clnas.db'}", run_studies=False,
                        results_dir=str(tmp / "ray"))
    with live_server(settings) as base:
        yield Site(base, settings.db_url)


@pytest.fixture(scope="module")
def seeded(site: Site) -> int:
    doc = _doc("dashboard-seeded", 90)
    sid = site.submit(doc, 80)
    seed_unfinished(site.db_url, doc, [TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING])
    seed_baseline(site.db_url, StudySpec.model_validate(
        site.http.get(f"/api/studies/{sid}").json()["spec"]), "effnet_cifar100", 0.36)
    return sid


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if _is_error(m) else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == [], errors  # no console errors on any page any test opened


def _is_error(message: ConsoleMessage) -> bool:
    return message.type == "error"


def open_study(page: Page, site: Site, sid: int) -> dict[str, Any]:
    page.goto(f"{site.base}/#/studies/{sid}")
    page.wait_for_function(f"window.clnas && window.clnas.rendered === {sid}", timeout=30_000)
    plotted: dict[str, Any] = page.evaluate("window.clnas.plotted")
    return plotted


def click_trial(page: Page, number: int) -> None:
    """Click the scatter where Plotly draws trial `number` (pixel from Plotly's own axes)."""
    xy = page.evaluate(
        """(number) => {
          const gd = document.getElementById("scatter");
          const trace = gd.data.find(
            (d) => d.meta && d.meta.trials && d.customdata.includes(number));
          const i = trace.customdata.indexOf(number);
          const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, size = gd._fullLayout._size;
          const box = gd.getBoundingClientRect();
          return [box.left + size.l + xa.l2p(xa.d2l(trace.x[i])),
                  box.top + size.t + ya.l2p(ya.d2l(trace.y[i]))];
        }""",
        number,
    )
    page.mouse.move(xy[0], xy[1])
    page.mouse.click(xy[0], xy[1])


def test_study_view_plots_every_trial_and_the_front(page: Page, site: Site, seeded: int) -> None:
    plotted = open_study(page, site, seeded)
    trials = site.http.get(f"/api/studies/{seeded}/trials", params={"compact": True}).json()
    rejected = sum(t["rejected"] for t in trials["items"])
    states = [t["state"] for t in trials["items"] if not t["rejected"]]
    assert plotted["all"] == trials["total"] and 0 < rejected < trials["total"]
    assert plotted["visible"] == trials["total"] - rejected  # rejected hidden by default
    by = plotted["byCategory"]  # running, pruned and failed each get their own trace
    assert (by["running"], by["pruned"], by["failed"], by["rejected"]) == (
        states.count("RUNNING"), states.count("PRUNED"), states.count("FAIL"), rejected)
    assert by["running"] == by["pruned"] == by["failed"] == 1
    assert by["front"] + by["completed"] == states.count("COMPLETE")
    page.check("#show-rejected")
    page.wait_for_function(f"window.clnas.plotted.visible === {trials['total']}")
    front = site.http.get(f"/api/studies/{seeded}/front").json()["trials"]
    assert sorted(plotted["front"]) == sorted(t["number"] for t in front) != []
    assert plotted["baselines"] == 1
    assert page.locator("#synthetic-badge").is_visible()
    assert page.locator("#trial-table").get_attribute("data-rows") == str(trials["total"])
    assert page.locator("#trial-table tbody tr").count() == 50  # the first page
    page.select_option("#x-metric", "params")
    page.wait_for_function("document.getElementById('scatter')._fullLayout.xaxis.title.text"
                           " === 'parameters'")
    page.select_option("#x-metric", "madds")
    page.wait_for_function("document.getElementById('scatter')._fullLayout.xaxis.title.text"
                           " === 'MAdds'")


def test_click_front_point_and_download_a_valid_arch(page: Page, site: Site, seeded: int,
                                                     tmp_path: Path) -> None:
    plotted = open_study(page, site, seeded)
    front = sorted(plotted["front"])
    click_trial(page, front[len(front) // 2])
    page.wait_for_selector("#download-json", timeout=20_000)
    shown = int(page.locator("#trial-detail").get_attribute("data-trial") or -1)
    assert shown in front  # a neighbouring front point may sit under the cursor
    assert page.locator("#trial-detail table.arch tbody tr").count() >= 1
    page.wait_for_selector("#trial-detail .curve .main-svg")
    screenshot(page, tmp_path, "study.png")

    with page.expect_download() as download:
        page.click("#download-json")
    path = tmp_path / "arch.json"
    download.value.save_as(path)
    doc = json.loads(path.read_text())
    assert doc["provenance"]["trial"] == shown
    checked = subprocess.run([CLNAS, "validate", str(path)], capture_output=True, text=True,
                             timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    with page.expect_download() as download:
        page.click("#download-bundle")
    bundle = json.loads(Path(download.value.path()).read_text())
    assert bundle["format"] == "clnas.bundle/1" and len(bundle["archs"]) == len(front)


def test_accuracy_axis_keeps_two_significant_digits(page: Page, site: Site) -> None:
    """Proxy accuracies of about 1% (synthetic data, short runs): the y ticks must stay
    distinct and carry two significant digits ("0.40%", "1.2%"), not "1%, 1%, 0%"."""
    doc = _doc("dashboard-small-accuracies", 12)
    sid = site.submit(doc, 0)
    seed_accuracies(site.db_url, doc, [0.002 + 0.001 * i for i in range(12)])  # 0.2%-1.3%
    open_study(page, site, sid)
    labels: list[str] = page.evaluate(
        "[...document.querySelectorAll('#scatter .ytick text')].map((t) => t.textContent)")
    assert len(labels) >= 3, labels
    assert len(set(labels)) == len(labels), labels
    for label in labels:
        digits = re.fullmatch(r"(\d+(?:\.\d+)?)%", label)
        assert digits is not None, labels
        if float(digits[1]) != 0:
            significant = digits[1].replace(".", "").lstrip("0")
            assert len(significant) == 2, labels


def test_running_study_gains_points_without_reload(page: Page, site: Site) -> None:
    doc = _doc("dashboard-live", 30)
    sid = site.submit(doc, 6, status="running")
    plotted = open_study(page, site, sid)
    assert plotted["all"] == 6
    page.evaluate("window.notReloaded = true")
    seed_study(site.db_url, doc, 9, seed=6)  # the "running" study gains trials
    page.wait_for_function("window.clnas.plotted.all === 15", timeout=30_000)
    assert page.evaluate("window.notReloaded === true")
    total = site.http.get(f"/api/studies/{sid}/trials").json()["total"]
    assert page.evaluate("window.clnas.plotted.all") == total == 15
    assert page.locator("#study-header .stats").get_attribute("data-trials") == "15"


def test_studies_list(page: Page, site: Site, seeded: int, tmp_path: Path) -> None:
    """Runs after the tests that add studies, so the screenshot shows more than one."""
    page.goto(site.base + "/")
    page.wait_for_function("window.clnas && window.clnas.rendered === 'studies'")
    total = site.http.get("/api/studies").json()["total"]
    assert page.locator("#studies tbody tr").count() == total >= 1
    row = page.locator(f'#studies tr[data-study="{seeded}"]')
    assert "dashboard-seeded" in row.inner_text() and "synthetic" in row.inner_text().lower()
    assert "/ 90" in row.inner_text()  # progress: done / budget
    screenshot(page, tmp_path, "studies.png")


def test_promoted_trials_and_kendall_tau_render_when_present(page: Page, site: Site,
                                                             seeded: int) -> None:
    """Issue 7's fields (`full` on trials, `kendall_tau` on studies), injected into the
    dashboard's responses until that API lands."""
    front = site.http.get(f"/api/studies/{seeded}/front").json()["trials"]
    promoted = front[0]["number"]
    full = {"job_id": 3, "status": "completed", "recipe": "imagenet-short", "epochs": 90,
            "top1": 0.7123, "top5": 0.901}

    def add_issue7_fields(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["study"]["kendall_tau"] = {"tau": 0.61, "n": 1}
        for t in body["trials"]:
            t["full"] = full if t["number"] == promoted else None
        route.fulfill(response=response, json=body)

    def add_full(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, json=response.json() | {"full": full})

    page.route(f"**/api/dashboard/studies/{seeded}?*", add_issue7_fields)
    page.route(f"**/api/dashboard/studies/{seeded}", add_issue7_fields)
    page.route(f"**/api/dashboard/studies/{seeded}/trials/{promoted}", add_full)
    plotted = open_study(page, site, seeded)
    assert plotted["promoted"] == 1
    assert page.locator("#kendall-tau").inner_text().startswith("0.610")
    page.select_option("#trial-table .filter", "promoted")
    rows = page.locator("#trial-table tbody tr")
    assert rows.count() == 1 and "71.23%" in rows.inner_text()
    rows.first.click()
    page.wait_for_selector("#full-top1")
    assert "71.23%" in page.locator("#full-top1").inner_text()


def test_submit_form_shows_422_locations_and_asks_for_a_token(browser: Browser,
                                                              tmp_path: Path) -> None:
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'clnas.db'}", run_studies=False,
                        results_dir=str(tmp_path / "ray"), token=TOKEN)
    with live_server(settings) as base:
        page = browser.new_page()
        page.goto(base + "/")
        page.wait_for_function("window.clnas && window.clnas.rendered === 'studies'")
        page.wait_for_function("document.getElementById('study-json').value.length > 0")
        doc = json.loads(page.input_value("#study-json"))
        assert doc["format"] == "clnas.study/1" and doc["space"] == page.input_value("#space")
        page.fill("#study-json", json.dumps(doc | {"dataset": "synthetic"}))
        page.click("#submit-study button[type=submit]")
        page.wait_for_selector("#token-form:not([hidden])")  # 401: asks for the token
        assert page.evaluate("localStorage.getItem('clnas.token')") is None
        page.fill("#token-input", TOKEN)
        page.click("#token-form button[type=submit]")
        assert page.evaluate("localStorage.getItem('clnas.token')") == TOKEN

        bad = doc | {"dataset": "synthetic", "search": doc["search"] | {"n_trials": 0}}
        page.fill("#study-json", json.dumps(bad))
        page.click("#submit-study button[type=submit]")
        page.wait_for_selector("#problems li code")  # each problem names its path
        assert "search.n_trials" in page.locator("#problems").inner_text()

        page.fill("#study-json", json.dumps(doc | {"dataset": "synthetic"}))
        page.click("#submit-study button[type=submit]")
        page.wait_for_function("location.hash.startsWith('#/studies/')")
        sid = int(page.evaluate("location.hash").rsplit("/", 1)[1])
        page.wait_for_function(f"window.clnas.rendered === {sid}")
        assert httpx.get(f"{base}/api/studies/{sid}", timeout=60).json()["name"] == doc["name"]
        page.close()
