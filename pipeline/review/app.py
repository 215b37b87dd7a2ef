"""The review console: a FastAPI app over the moderation database.

Pages: ``/login`` and ``/`` (the queue and the item view, one page driven by ``static/app.js``).
API under ``/api``; clips under ``/media``.  Every page, API call and clip needs a session;
every state-changing request needs the session's CSRF token in ``X-CSRF-Token``.
"""

import csv
import hmac
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from pipeline.review import auth
from pipeline.review.pii import mask_record
from pipeline.review.store import ConflictError, Filters, Store, StoreError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
ALLOW_KINDS = ("phonetic", "variant")


@dataclass
class ReviewSettings:
    db: str
    media_root: Path | None = None  # folder holding clips/ (default: the database's folder)
    allow_file: Path | None = None  # YAML allow-list the lead's "allow" action appends to
    secure_cookies: bool = False  # set when served over HTTPS
    login_limit: int = 5
    login_window_s: float = 300.0


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class Decision(BaseModel):
    action: str
    label: str | None = None
    note: str | None = Field(default=None, max_length=4000)
    expected_status: str | None = None


class AllowRequest(BaseModel):
    phrase: str | None = Field(default=None, max_length=200)


def _public(user: dict, record: Any) -> Any:
    """What this user may see: the lead sees personal numbers, a moderator sees them masked."""
    return record if user["role"] == "lead" else mask_record(record)


def create_app(settings: ReviewSettings, store: Store | None = None) -> FastAPI:
    store = store or Store.open(settings.db)
    if settings.media_root is None and "://" not in settings.db:
        settings.media_root = Path(settings.db).expanduser().resolve().parent
    media_root = settings.media_root.resolve() if settings.media_root else None
    allow_file = settings.allow_file or (media_root / "review_allow.yaml" if media_root else None)
    throttle = auth.LoginThrottle(settings.login_limit, settings.login_window_s)

    app = FastAPI(title="livemod review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
                return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if request.url.path.startswith("/api"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def session_user(request: Request) -> dict | None:
        token = request.cookies.get(auth.SESSION_COOKIE)
        return store.session(auth.token_hash(token)) if token else None

    def user(request: Request) -> dict:
        u = session_user(request)
        if u is None:
            raise HTTPException(401, "log in first")
        if request.method not in ("GET", "HEAD") and not hmac.compare_digest(
            request.headers.get("x-csrf-token", ""), u["csrf"]
        ):
            raise HTTPException(403, "missing or wrong CSRF token")
        return u

    User = Annotated[dict, Depends(user)]

    def lead(u: User) -> dict:
        if u["role"] != "lead":
            raise HTTPException(403, "lead role required")
        return u

    Lead = Annotated[dict, Depends(lead)]

    def set_cookie(resp: Response, name: str, value: str, max_age: int) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
            path="/",
        )

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError):
        status = 409 if isinstance(exc, ConflictError) else (404 if str(exc).startswith("no ") else 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    # -- pages --

    def page(name: str, **values: str) -> HTMLResponse:
        html = (STATIC / name).read_text(encoding="utf-8")
        for key, value in values.items():
            html = html.replace("{{" + key + "}}", value)  # values are tokens we made: [A-Za-z0-9_-]
        return HTMLResponse(html)

    @app.get("/login", include_in_schema=False)
    def login_page() -> HTMLResponse:
        token = auth.new_token()
        resp = page("login.html", csrf=token)
        set_cookie(resp, auth.LOGIN_CSRF_COOKIE, token, 3600)
        return resp

    @app.post("/login", include_in_schema=False)
    def login(body: Login, request: Request) -> Response:
        expected = request.cookies.get(auth.LOGIN_CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(request.headers.get("x-csrf-token", ""), expected):
            raise HTTPException(403, "missing or wrong CSRF token (reload the login page)")
        client = request.client.host if request.client else "?"
        keys = (f"ip:{client}", f"user:{body.name}")
        wait = throttle.retry_after(*keys)
        if wait > 0:
            return JSONResponse(
                {"detail": f"too many failed logins; try again in {int(wait) + 1} s"},
                status_code=429,
                headers={"Retry-After": str(int(wait) + 1)},
            )
        u = auth.authenticate(store, body.name, body.password)
        if u is None:
            throttle.failed(*keys)
            store.audit(body.name, "-", "login_failed", None, {"client": client})
            raise HTTPException(401, "wrong name or password")
        throttle.succeeded(f"user:{body.name}")
        token, _csrf = auth.start_session(store, u["name"])
        store.audit(u["name"], u["role"], "login", None, {"client": client})
        resp = JSONResponse({"name": u["name"], "role": u["role"]})
        set_cookie(resp, auth.SESSION_COOKIE, token, auth.SESSION_HOURS * 3600)
        resp.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, u: User) -> Response:
        store.drop_session(auth.token_hash(request.cookies.get(auth.SESSION_COOKIE, "")))
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(auth.SESSION_COOKIE, path="/")
        return resp

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        u = session_user(request)
        if u is None:
            return RedirectResponse("/login", status_code=303)
        return page("index.html", csrf=u["csrf"])

    # -- API --

    @app.get("/api/me")
    def me(u: User) -> dict:
        return {"name": u["name"], "role": u["role"], "csrf": u["csrf"]}

    @app.get("/api/facets")
    def facets(u: User) -> dict:
        return store.facets()

    @app.get("/api/violations")
    def violations(
        u: User,
        status: str | None = "pending",
        stream: str | None = None,
        category: str | None = None,
        subcategory: str | None = None,
        severity: str | None = None,
        score_min: float | None = Query(None, ge=0, le=1),
        score_max: float | None = Query(None, ge=0, le=1),
        since: str | None = None,
        until: str | None = None,
        sort: str = "newest",
        page: int = Query(1, ge=1),
        per_page: int = Query(50, ge=1, le=500),
    ) -> dict:
        f = Filters(
            status=status or None,
            stream=stream or None,
            category=category or None,
            subcategory=subcategory or None,
            severity=severity or None,
            score_min=score_min,
            score_max=score_max,
            since=since or None,
            until=until or None,
        )
        return _public(u, store.queue(f, sort=sort, page=page, per_page=per_page))

    @app.get("/api/poll")
    def poll(u: User) -> dict:
        return store.latest()

    @app.get("/api/violations/{violation_id}")
    def item(violation_id: str, u: User) -> dict:
        it = store.item(violation_id)
        it["clip_url"] = f"/media/{it['clip']}" if it.get("clip") else None
        it["can_allow"] = (
            u["role"] == "lead"
            and it["status"] == "dismissed"
            and any(e.get("kind") in ALLOW_KINDS for e in it["evidence"])
        )
        return _public(u, it)

    @app.post("/api/violations/{violation_id}/decision")
    def decide(violation_id: str, body: Decision, u: User) -> dict:
        return store.decide(
            violation_id,
            u["name"],
            u["role"],
            body.action,
            label=body.label,
            note=body.note,
            expected_status=body.expected_status,
        )

    @app.post("/api/violations/{violation_id}/allow")
    def allow(violation_id: str, body: AllowRequest, u: Lead) -> dict:
        if allow_file is None:
            raise HTTPException(400, "no allow-list file: start the console with --allow-file")
        it = store.item(violation_id)
        if it["status"] != "dismissed":
            raise HTTPException(400, "only dismissed items can become allow-list entries")
        matches = [e["match"] for e in it["evidence"] if e.get("kind") in ALLOW_KINDS]
        if not matches:
            raise HTTPException(400, "only phonetic or variant matches can be allow-listed")
        phrase = (body.phrase or matches[0]).strip()
        utterance = next((c["text"] for c in it["context"] if c["current"]), it["text"]) or ""
        if not any(m in phrase for m in matches) or phrase not in utterance:
            raise HTTPException(400, "the phrase must contain the matched words and be part of the utterance")
        added = _append_allow(allow_file, phrase)
        store.audit(u["name"], u["role"], "allow", violation_id, {"phrase": phrase, "file": str(allow_file)})
        return {"phrase": phrase, "file": str(allow_file), "added": added}

    @app.get("/api/audit")
    def audit_export(u: Lead, format: str = Query("jsonl", pattern="^(jsonl|csv)$")) -> Response:
        rows = store.audit_log()
        store.audit(u["name"], u["role"], "export_audit", None, {"rows": len(rows), "format": format})
        return _download(rows, format, "audit")

    @app.get("/api/export")
    def export(u: User, format: str = Query("jsonl", pattern="^(jsonl|csv|corpus)$")) -> Response:
        rows = [_public(u, _decision_row(r)) for r in store.decisions()]
        store.audit(u["name"], u["role"], "export", None, {"rows": len(rows), "format": format})
        if format == "corpus":
            return _download(_corpus(rows), "jsonl", "review_corpus")
        return _download(rows, format, "decisions")

    @app.get("/media/{path:path}", include_in_schema=False)
    def media(path: str, u: User) -> FileResponse:
        if media_root is None:
            raise HTTPException(404, "no media folder (start the console with --media-root)")
        clips = (media_root / "clips").resolve()
        target = (media_root / path).resolve()
        if not target.is_relative_to(clips) or not target.is_file():
            raise HTTPException(404, "no such clip")
        return FileResponse(target)

    return app


def _decision_row(r: dict) -> dict:
    model_label = f"{r['category']}.{r['subcategory']}"
    return {
        "id": r["id"],
        "stream_id": r["stream_id"],
        "utterance_id": r["utterance_id"],
        "start": r["start_s"],
        "end": r["end_s"],
        "text": r["utterance_text"] or r["text"],
        "model_label": model_label,
        "decision": r["status"],
        "label": r["label"] or (model_label if r["status"] == "confirmed" else None),
        "score": r["score"],
        "severity": r["severity"],
        "evidence": r["evidence"],
        "note": r["note"],
        "decided_by": r["decided_by"],
        "decided_at": r["decided_at"],
        "classifier_version": r["classifier_version"],
        "asr_model": r["asr_model"],
    }


def _corpus(rows: list[dict]) -> list[dict]:
    """One labelled line per reviewed utterance, as ``scripts/train_classifier.py --extra`` reads:
    confirmed labels are positives; an utterance whose every flag was dismissed is a hard negative.
    Escalated items are undecided and left out."""
    by_utt: dict[str, dict] = {}
    for r in rows:
        u = by_utt.setdefault(
            r["utterance_id"],
            {
                "id": f"review-{r['utterance_id']}",
                "text": r["text"],
                "labels": [],
                "group": f"review-{r['stream_id']}",
                "aug": "none",
                "source": "review",
                "_open": False,
            },
        )
        if r["decision"] == "confirmed" and r["label"] not in u["labels"]:
            u["labels"].append(r["label"])
        elif r["decision"] == "escalated":
            u["_open"] = True
    return [{k: v for k, v in u.items() if k != "_open"} for u in by_utt.values() if not u["_open"]]


def _download(rows: list[dict], fmt: str, name: str) -> Response:
    if fmt == "csv":
        buf = io.StringIO()
        keys = list(dict.fromkeys(k for r in rows for k in r)) or ["id"]
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                    for k, v in r.items()
                }
            )
        body, media_type = "\ufeff" + buf.getvalue(), "text/csv; charset=utf-8"  # BOM: Excel reads UTF-8
    else:
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        media_type = "application/x-ndjson; charset=utf-8"
    ext = "csv" if fmt == "csv" else "jsonl"
    return Response(
        body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}.{ext}"'}
    )


def _append_allow(path: Path, phrase: str) -> bool:
    """Add a phrase to a user lexicon's ``allow:`` list (atomic rewrite); False if already there."""
    doc = {}
    if path.is_file():
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    allow = list(doc.get("allow") or [])
    if phrase in allow:
        return False
    doc["allow"] = [*allow, phrase]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".allow-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Phrases moderators dismissed; added by the review console (livemod review).\n")
        yaml.safe_dump(doc, fh, allow_unicode=True, sort_keys=False)
    os.replace(tmp, path)
    return True
