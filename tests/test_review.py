"""The review console's API over a real moderation database (batch run on the demo clip + hostile
text): auth, CSRF, roles, filters, decisions, audit log, exports, personal data, clip safety."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.review.app import ReviewSettings, create_app
from pipeline.review.bench import log_in
from tests.conftest import REVIEW_USERS, ROOT

FC_CLIP = 2  # the demo clip: 包治百病 (efficacy claim) and 国家领导人专用/央视推荐 (fake authority)


def app_for(out: Path, **kw) -> TestClient:
    app = create_app(ReviewSettings(db=str(out / "moderation.db"), **kw))
    return TestClient(app, base_url="http://127.0.0.1:8000")


def login(client: TestClient, name: str, password: str | None = None):
    assert client.get("/login").status_code == 200  # the login page is open to everyone
    return log_in(client, name, password or REVIEW_USERS[name][1])


def session(out: Path, name: str) -> tuple[TestClient, str]:
    client = app_for(out)
    assert login(client, name).status_code == 200
    return client, client.get("/api/me").json()["csrf"]


@pytest.fixture
def lead(review_out):
    return session(review_out, "lena")


@pytest.fixture
def mod(review_out):
    return session(review_out, "mo")


def items(client, **params) -> dict:
    r = client.get("/api/violations", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def by_code(client, code: str, status: str = "pending") -> dict:
    cat, sub = code.split(".")
    found = items(client, category=cat, subcategory=sub, status=status)["items"]
    assert found, f"no {code} in the queue"
    return found[0]


# -- authentication --


def test_nothing_without_login(review_out):
    client = app_for(review_out)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    for path in ("/api/me", "/api/violations", "/api/facets", "/api/poll", "/api/export", "/api/audit"):
        assert client.get(path).status_code == 401, path
    vid = sqlite3.connect(review_out / "moderation.db").execute("SELECT id, clip FROM violations").fetchone()
    assert client.get(f"/api/violations/{vid[0]}").status_code == 401
    assert client.get(f"/media/{vid[1]}").status_code == 401
    r = client.post(f"/api/violations/{vid[0]}/decision", json={"action": "confirm"})
    assert r.status_code == 401


def test_login_sets_a_safe_cookie_and_wrong_passwords_fail(review_out):
    client = app_for(review_out)
    assert login(client, "lena", "wrong-password").status_code == 401
    assert login(client, "nobody", "whatever-password").status_code == 401
    r = login(client, "lena")
    assert r.status_code == 200 and r.json()["role"] == "lead"
    cookie = r.headers["set-cookie"]
    assert "livemod_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/api/me").json()["name"] == "lena"
    csrf = client.get("/api/me").json()["csrf"]
    assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/api/me").status_code == 401


def test_login_needs_its_csrf_token(review_out):
    client = app_for(review_out)
    client.get("/login")
    r = client.post("/login", json={"name": "lena", "password": REVIEW_USERS["lena"][1]})
    assert r.status_code == 403
    r = client.post(
        "/login",
        json={"name": "lena", "password": REVIEW_USERS["lena"][1]},
        headers={"X-CSRF-Token": "forged"},
    )
    assert r.status_code == 403


def test_failed_logins_are_rate_limited(review_out):
    client = app_for(review_out)
    for _ in range(5):
        assert login(client, "mo", "not-the-password").status_code == 401
    r = login(client, "mo")  # even the right password waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    log = sqlite3.connect(review_out / "moderation.db").execute(
        "SELECT COUNT(*) FROM audit WHERE action='login_failed' AND actor='mo'"
    )
    assert log.fetchone()[0] == 5


def test_state_changes_need_the_csrf_token(mod):
    client, csrf = mod
    vid = by_code(client, "false_claim.efficacy_claim")["id"]
    url = f"/api/violations/{vid}/decision"
    assert client.post(url, json={"action": "confirm"}).status_code == 403
    assert client.post(url, json={"action": "confirm"}, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    r = client.post(
        url, json={"action": "confirm"}, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    assert client.get(f"/api/violations/{vid}").json()["status"] == "pending"
    assert client.post(url, json={"action": "confirm"}, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get(f"/api/violations/{vid}").json()["status"] == "confirmed"


def test_pages_forbid_inline_script(lead):
    client, _ = lead
    r = client.get("/")
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "<script>" not in r.text  # only <script src=...>


# -- queue and filters --


def test_queue_filters_counts_and_paging(lead):
    client, _ = lead
    everything = items(client, status="")
    assert everything["total"] == len(everything["items"]) >= FC_CLIP + 3
    assert everything["counts"]["pending"] == everything["total"]
    fc = items(client, category="false_claim")
    assert {(i["subcategory"], round(i["start"])) for i in fc["items"]} == {
        ("efficacy_claim", 0),
        ("fake_authority", 11),
    }
    assert fc["total"] == 2 and fc["counts"] == {"pending": 2, "confirmed": 0, "dismissed": 0, "escalated": 0}
    fraud = items(client, category="fraud")["items"]
    assert {i["subcategory"] for i in fraud} == {"off_platform", "info_phishing"}
    assert all(i["stream_id"] == "hostile" for i in fraud)
    assert [i["stream_id"] for i in items(client, stream="hostile")["items"]] == ["hostile"] * len(fraud)
    high = items(client, score_min=0.9)["items"]
    assert high and all(i["score"] >= 0.9 for i in high)
    low = items(client, score_max=0.8)["items"]
    assert all(i["score"] <= 0.8 for i in low)
    assert len(high) + len(low) <= everything["total"]
    by_score = [i["score"] for i in items(client, sort="score")["items"]]
    assert by_score == sorted(by_score, reverse=True)
    page2 = items(client, per_page=2, page=2)
    assert page2["page"] == 2 and len(page2["items"]) == 2
    assert not {i["id"] for i in page2["items"]} & {i["id"] for i in items(client, per_page=2)["items"]}
    assert items(client, since="2999-01-01T00:00:00+00:00")["total"] == 0
    for bad in ({"category": "nonsense"}, {"status": "maybe"}, {"sort": "random"}, {"score_min": 2}):
        r = client.get("/api/violations", params=bad)
        assert r.status_code in (400, 422), bad


def test_facets_list_streams_and_taxonomy(lead):
    client, _ = lead
    f = client.get("/api/facets").json()
    assert "hostile" in f["streams"] and any(s.startswith("clip-") for s in f["streams"])
    assert "efficacy_claim" in f["categories"]["false_claim"]


def test_item_view_has_clip_context_evidence_and_versions(lead, review_out):
    client, _ = lead
    vid = by_code(client, "false_claim.fake_authority")["id"]
    it = client.get(f"/api/violations/{vid}").json()
    assert it["clip_url"].startswith("/media/clips/") and it["clip_start"] <= it["start_s"]
    assert it["start_s"] - it["clip_start"] >= 2  # room for the player's lead-in
    assert it["asr_model"] and it["classifier_version"].startswith(("lexicon", "fused", "model"))
    assert it["basis"]
    current = [u for u in it["context"] if u["current"]]
    assert len(current) == 1 and "央视" in current[0]["text"]
    assert len(it["context"]) >= 2  # the utterances around it
    央视 = next(e for e in it["evidence"] if e["match"] == "央视")
    assert current[0]["text"][央视["span"][0] : 央视["span"][1]] == "央视"
    clip = client.get(it["clip_url"], headers={"Range": "bytes=0-99"})
    assert clip.status_code == 206 and len(clip.content) == 100  # seekable in the browser
    assert client.get("/api/violations/nope").status_code == 404


# -- decisions and audit --


def test_decisions_are_recorded_and_audited(mod, lead):
    client, csrf = mod
    h = {"X-CSRF-Token": csrf}
    eff = by_code(client, "false_claim.efficacy_claim")["id"]
    auth_ = by_code(client, "false_claim.fake_authority")["id"]
    r = client.post(
        f"/api/violations/{eff}/decision", json={"action": "confirm", "note": "治病 claim"}, headers=h
    )
    assert r.json() == {"id": eff, "status": "confirmed", "label": None, "note": "治病 claim"}
    r = client.post(
        f"/api/violations/{auth_}/decision",
        json={"action": "relabel", "label": "false_claim.absolute_term"},
        headers=h,
    )
    assert r.json()["status"] == "confirmed" and r.json()["label"] == "false_claim.absolute_term"
    bad = client.post(
        f"/api/violations/{auth_}/decision", json={"action": "relabel", "label": "x.y"}, headers=h
    )
    assert bad.status_code == 400
    # a decision made on a stale view is refused, not silently overwritten
    stale = client.post(
        f"/api/violations/{eff}/decision", json={"action": "dismiss", "expected_status": "pending"}, headers=h
    )
    assert stale.status_code == 409
    assert items(client, category="false_claim")["total"] == 0
    assert items(client, category="false_claim", status="confirmed")["total"] == 2
    it = client.get(f"/api/violations/{eff}").json()
    assert it["decided_by"] == "mo" and it["note"] == "治病 claim"
    assert [(a["actor"], a["action"], a["detail"]["to"]) for a in it["audit"]] == [
        ("mo", "confirm", "confirmed")
    ]
    # the lead exports the whole log; a moderator may not
    assert client.get("/api/audit").status_code == 403
    lead_client, _ = lead
    rows = [json.loads(x) for x in lead_client.get("/api/audit").text.splitlines()]
    decided = [(r["actor"], r["action"], r["violation_id"]) for r in rows if r["violation_id"]]
    assert decided == [("mo", "confirm", eff), ("mo", "relabel", auth_)]
    assert any(r["action"] == "login" and r["actor"] == "mo" for r in rows)
    audit_csv = list(
        csv.DictReader(io.StringIO(lead_client.get("/api/audit?format=csv").text.lstrip("\ufeff")))
    )
    assert len(audit_csv) == len(rows) + 1  # the first export is itself in the log
    assert audit_csv[-1]["action"] == "export_audit" and audit_csv[-1]["actor"] == "lena"


def test_the_audit_log_is_append_only(mod, review_out):
    client, csrf = mod
    vid = by_code(client, "fraud.off_platform")["id"]
    client.post(
        f"/api/violations/{vid}/decision", json={"action": "escalate"}, headers={"X-CSRF-Token": csrf}
    )
    conn = sqlite3.connect(review_out / "moderation.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET actor='someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit")


def test_rerunning_a_batch_keeps_decisions(mod, review_out):
    client, csrf = mod
    vid = by_code(client, "false_claim.efficacy_claim")["id"]
    client.post(f"/api/violations/{vid}/decision", json={"action": "dismiss"}, headers={"X-CSRF-Token": csrf})
    from pipeline.cli import main
    from tests.conftest import CLIP

    assert main(["batch", str(CLIP), "--out", str(review_out), "--no-ray", "--quiet", "--no-clips"]) == 0
    assert client.get(f"/api/violations/{vid}").json()["status"] == "dismissed"


# -- personal data --


def test_moderators_see_personal_numbers_masked_leads_in_full(mod, lead):
    m, _ = mod
    lc, _ = lead
    vid = by_code(lc, "fraud.info_phishing")["id"]
    full = lc.get(f"/api/violations/{vid}").json()
    masked = m.get(f"/api/violations/{vid}").json()
    assert "13812345678" in full["text"] and "110101199003071234" in full["text"]
    assert "13812345678" not in json.dumps(masked, ensure_ascii=False)
    assert "138****5678" in masked["text"] and "110***********1234" in masked["text"]
    assert len(masked["text"]) == len(full["text"])  # evidence spans still line up
    assert "138****5678" in json.dumps(items(m, stream="hostile"), ensure_ascii=False)


# -- exports and feedback --


def _decide_all(client, csrf):
    h = {"X-CSRF-Token": csrf}
    for code, action in (
        ("false_claim.efficacy_claim", "confirm"),
        ("false_claim.fake_authority", "dismiss"),
        ("fraud.info_phishing", "confirm"),
        ("fraud.off_platform", "escalate"),
    ):
        vid = by_code(client, code)["id"]
        assert (
            client.post(f"/api/violations/{vid}/decision", json={"action": action}, headers=h).status_code
            == 200
        )


def test_exports_follow_the_exporters_role(mod, lead):
    m, csrf = mod
    _decide_all(m, csrf)
    rows = [json.loads(x) for x in m.get("/api/export?format=jsonl").text.splitlines()]
    assert {(r["model_label"], r["decision"]) for r in rows} >= {
        ("false_claim.efficacy_claim", "confirmed"),
        ("false_claim.fake_authority", "dismissed"),
        ("fraud.info_phishing", "confirmed"),
    }
    assert all(r["decided_by"] == "mo" for r in rows)
    moderator_dump = json.dumps(rows, ensure_ascii=False)
    assert "13812345678" not in moderator_dump and "138****5678" in moderator_dump
    lc, _ = lead
    assert "13812345678" in lc.get("/api/export?format=jsonl").text
    table = list(csv.DictReader(io.StringIO(m.get("/api/export?format=csv").text.lstrip("\ufeff"))))
    assert len(table) == len(rows) and {"id", "decision", "label", "text"} <= set(table[0])


def test_corpus_export_trains(mod, tmp_path):
    m, csrf = mod
    _decide_all(m, csrf)
    body = m.get("/api/export?format=corpus").text
    corpus = [json.loads(x) for x in body.splitlines()]
    by_label = {tuple(r["labels"]): r for r in corpus}
    assert ("false_claim.efficacy_claim",) in by_label
    assert () in by_label  # the dismissed fake-authority flag is a hard negative
    assert not any("薇信" in r["text"] for r in corpus)  # escalated: still undecided, left out
    path = tmp_path / "review_corpus.jsonl"
    path.write_text(body, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(
        "train_classifier", ROOT / "scripts" / "train_classifier.py"
    )
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    splits = train.load_splits(ROOT / "data" / "corpus", [path])
    assert sum(r.get("source") == "review" for r in splits["train"]) == len(corpus)


def test_lead_turns_a_dismissed_sound_match_into_an_allow_entry(lead, mod, review_out, config):
    m, mcsrf = mod
    lc, csrf = lead
    h = {"X-CSRF-Token": csrf}
    item = by_code(lc, "false_claim.efficacy_claim")
    vid = item["id"]
    detail = lc.get(f"/api/violations/{vid}").json()
    sound = next(e for e in detail["evidence"] if e["kind"] == "phonetic")
    # only dismissed items, only the lead
    assert lc.post(f"/api/violations/{vid}/allow", json={}, headers=h).status_code == 400
    m.post(f"/api/violations/{vid}/decision", json={"action": "dismiss"}, headers={"X-CSRF-Token": mcsrf})
    assert m.post(f"/api/violations/{vid}/allow", json={}, headers={"X-CSRF-Token": mcsrf}).status_code == 403
    assert lc.get(f"/api/violations/{vid}").json()["can_allow"] is True
    bad = lc.post(f"/api/violations/{vid}/allow", json={"phrase": "完全无关"}, headers=h)
    assert bad.status_code == 400
    r = lc.post(f"/api/violations/{vid}/allow", json={}, headers=h)
    assert r.status_code == 200 and r.json()["phrase"] == sound["match"]
    allow_file = review_out / "review_allow.yaml"
    assert allow_file.is_file()
    # the classifier with that file no longer raises this sound match
    from pipeline.config import load_config
    from pipeline.stages import ClassifyStage

    stage = ClassifyStage(load_config(overrides=[f"classifier.user_lexicons=[{allow_file}]"]))
    stage.setup()
    result = stage.classifier.classify_many([detail["text"]])[0]
    rules = {e.rule for lab in result.labels for e in lab.evidence}
    assert sound["rule"] not in rules
    log = lc.get(f"/api/violations/{vid}").json()["audit"]
    assert [a["action"] for a in log] == ["dismiss", "allow"]


# -- safety --


def test_clip_paths_cannot_escape_the_clip_folder(lead, review_out):
    client, _ = lead
    (review_out / "secret.txt").write_text("secret")
    for path in (
        "/media/../moderation.db",
        "/media/clips/../moderation.db",
        "/media/clips/%2e%2e/moderation.db",
        "/media/clips/..%2fsecret.txt",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media//etc/passwd",
        "/media/moderation.db",
        "/media/secret.txt",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert b"secret" not in r.content and b"SQLite" not in r.content


def test_hostile_text_is_returned_as_data(lead):
    client, _ = lead
    hostile = items(client, stream="hostile")["items"]
    assert any("<script>" in i["text"] for i in hostile)  # stored verbatim; the page renders it as text
    for i in hostile:
        r = client.get(f"/api/violations/{i['id']}")
        assert r.headers["content-type"].startswith("application/json")
