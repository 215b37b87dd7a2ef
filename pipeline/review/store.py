"""The review console's view of the moderation database: queue, items, decisions, users, audit.

Batch and live runs write ``streams``, ``utterances`` and ``violations`` (:mod:`pipeline.sinks`);
the console adds ``users``, ``sessions``, ``reviews`` (a moderator's label and note per violation)
and ``audit`` (append-only: the database itself refuses updates and deletes).  Queries go through
SQLAlchemy with portable SQL, so the same code serves SQLite (the default) and PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from pipeline.classify.taxonomy import CATEGORIES, CODES, SEVERITIES
from pipeline.db import DatabaseError, ensure_schema, make_engine, statements, transaction
from pipeline.sinks import now_iso

ROLES = ("moderator", "lead")
STATUSES = ("pending", "confirmed", "dismissed", "escalated")
ACTIONS = {"confirm": "confirmed", "dismiss": "dismissed", "escalate": "escalated", "relabel": "confirmed"}
SORTS = {
    "newest": "v.created_at DESC, v.id",
    "oldest": "v.created_at ASC, v.id",
    "score": "v.score DESC, v.id",
    "severity": "CASE v.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, v.score DESC, v.id",
    "stream": "v.stream_id, v.start_s, v.id",
}

REVIEW_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL, created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    violation_id TEXT PRIMARY KEY, label TEXT, note TEXT, decided_by TEXT, decided_at TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id {serial}, at TEXT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, violation_id TEXT, detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_violation ON audit(violation_id, id);
CREATE INDEX IF NOT EXISTS violations_status ON violations(status, created_at);
CREATE INDEX IF NOT EXISTS violations_created ON violations(created_at);
"""

# Append-only audit: enforced by the database, not only by the absence of an API.
_AUDIT_GUARD = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION livemod_audit_guard() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql",
        "DROP TRIGGER IF EXISTS audit_guard ON audit",
        "CREATE TRIGGER audit_guard BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION livemod_audit_guard()",
    ],
}


class StoreError(Exception):
    """A problem the user can fix (unknown item, bad filter value, missing database)."""


@dataclass
class Filters:
    status: str | None = "pending"
    stream: str | None = None
    category: str | None = None
    subcategory: str | None = None
    severity: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    since: str | None = None  # detection time (ISO), inclusive
    until: str | None = None

    def validate(self) -> None:
        if self.status and self.status not in STATUSES:
            raise StoreError(f"status: unknown {self.status!r}; known: {', '.join(STATUSES)}")
        if self.category and self.category not in CATEGORIES:
            raise StoreError(f"category: unknown {self.category!r}; known: {', '.join(CATEGORIES)}")
        if self.subcategory and not any(c.endswith("." + self.subcategory) for c in CODES):
            raise StoreError(f"subcategory: unknown {self.subcategory!r}")
        if self.severity and self.severity not in SEVERITIES:
            raise StoreError(f"severity: unknown {self.severity!r}; known: {', '.join(SEVERITIES)}")

    def where(self, with_status: bool = True) -> tuple[str, dict]:
        clauses, params = [], {}
        for key, col in (
            ("stream", "stream_id"),
            ("category", "category"),
            ("subcategory", "subcategory"),
            ("severity", "severity"),
        ):
            value = getattr(self, key)
            if value:
                clauses.append(f"v.{col} = :{key}")
                params[key] = value
        if with_status and self.status:
            clauses.append("v.status = :status")
            params["status"] = self.status
        if self.score_min is not None:
            clauses.append("v.score >= :score_min")
            params["score_min"] = self.score_min
        if self.score_max is not None:
            clauses.append("v.score <= :score_max")
            params["score_max"] = self.score_max
        if self.since:
            clauses.append("v.created_at >= :since")
            params["since"] = self.since
        if self.until:
            clauses.append("v.created_at <= :until")
            params["until"] = self.until
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_QUEUE_COLUMNS = (
    "v.id, v.stream_id, v.start_s, v.end_s, v.category, v.subcategory, v.severity, v.score, v.text, "
    "v.status, v.created_at, v.evidence, r.label"
)


@dataclass
class Store:
    engine: Engine
    dialect: str = field(init=False)

    def __post_init__(self) -> None:
        self.dialect = self.engine.dialect.name

    @classmethod
    def open(cls, db: str | Path, create: bool = False) -> Store:
        try:
            store = cls(make_engine(db, must_exist=not create))
            store.ensure_schema()
        except DatabaseError as exc:
            raise StoreError(str(exc)) from None
        return store

    def ensure_schema(self) -> None:
        ensure_schema(self.engine)
        pg = self.dialect == "postgresql"
        serial = "BIGSERIAL PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"

        def create(c) -> None:
            if pg:  # several consoles or workers may start at once
                c.execute(text("SELECT pg_advisory_xact_lock(20261129)"))
            for stmt in statements(REVIEW_SCHEMA.format(serial=serial)) + _AUDIT_GUARD.get(self.dialect, []):
                c.execute(text(stmt))

        transaction(self.engine, create, "review schema")

    def close(self) -> None:
        self.engine.dispose()

    # -- users and sessions --

    def add_user(self, name: str, role: str, pw_hash: str, update: bool = False) -> None:
        if role not in ROLES:
            raise StoreError(f"role: unknown {role!r}; known: {', '.join(ROLES)}")

        def work(c):
            exists = c.execute(text("SELECT 1 FROM users WHERE name=:n"), {"n": name}).first()
            if exists and not update:
                raise StoreError(f"user {name!r} exists (use --update to change the password or role)")
            if exists:
                c.execute(
                    text("UPDATE users SET role=:r, pw_hash=:h WHERE name=:n"),
                    {"n": name, "r": role, "h": pw_hash},
                )
                c.execute(text("DELETE FROM sessions WHERE name=:n"), {"n": name})
            else:
                c.execute(
                    text("INSERT INTO users VALUES (:n, :r, :h, :t)"),
                    {"n": name, "r": role, "h": pw_hash, "t": now_iso()},
                )

        return transaction(self.engine, work, "review write")

    def remove_user(self, name: str) -> bool:
        def work(c):
            c.execute(text("DELETE FROM sessions WHERE name=:n"), {"n": name})
            return c.execute(text("DELETE FROM users WHERE name=:n"), {"n": name}).rowcount > 0

        return transaction(self.engine, work, "review write")

    def users(self) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(text("SELECT name, role, created_at FROM users ORDER BY name")).mappings()
            return [dict(r) for r in rows]

    def user(self, name: str) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(text("SELECT * FROM users WHERE name=:n"), {"n": name}).mappings().first()
            return dict(row) if row else None

    def set_pw_hash(self, name: str, pw_hash: str) -> None:
        def work(c):
            c.execute(text("UPDATE users SET pw_hash=:h WHERE name=:n"), {"n": name, "h": pw_hash})

        return transaction(self.engine, work, "review write")

    def add_session(self, token_hash: str, name: str, csrf: str, expires_at: str) -> None:
        def work(c):
            c.execute(text("DELETE FROM sessions WHERE expires_at < :t"), {"t": now_iso()})
            c.execute(
                text("INSERT INTO sessions VALUES (:h, :n, :c, :t, :e)"),
                {"h": token_hash, "n": name, "c": csrf, "t": now_iso(), "e": expires_at},
            )

        return transaction(self.engine, work, "review write")

    def session(self, token_hash: str) -> dict | None:
        with self.engine.connect() as c:
            row = (
                c.execute(
                    text(
                        "SELECT s.name, s.csrf, s.expires_at, u.role FROM sessions s "
                        "JOIN users u ON u.name = s.name WHERE s.token_hash=:h AND s.expires_at > :t"
                    ),
                    {"h": token_hash, "t": now_iso()},
                )
                .mappings()
                .first()
            )
            return dict(row) if row else None

    def drop_session(self, token_hash: str) -> None:
        def work(c):
            c.execute(text("DELETE FROM sessions WHERE token_hash=:h"), {"h": token_hash})

        return transaction(self.engine, work, "review write")

    # -- audit --

    def audit(self, actor: str, role: str, action: str, violation_id: str | None, detail: dict) -> None:
        def work(c):
            self._audit(c, actor, role, action, violation_id, detail)

        return transaction(self.engine, work, "review write")

    @staticmethod
    def _audit(c, actor: str, role: str, action: str, violation_id: str | None, detail: dict) -> None:
        c.execute(
            text(
                "INSERT INTO audit (at, actor, role, action, violation_id, detail) "
                "VALUES (:at, :actor, :role, :action, :vid, :detail)"
            ),
            {
                "at": now_iso(),
                "actor": actor,
                "role": role,
                "action": action,
                "vid": violation_id,
                "detail": json.dumps(detail, ensure_ascii=False),
            },
        )

    def audit_log(self, violation_id: str | None = None, limit: int | None = None) -> list[dict]:
        sql = "SELECT id, at, actor, role, action, violation_id, detail FROM audit"
        params: dict[str, Any] = {}
        if violation_id:
            sql += " WHERE violation_id = :vid"
            params["vid"] = violation_id
        sql += " ORDER BY id"
        if limit:
            sql += " LIMIT :limit"
            params["limit"] = limit
        with self.engine.connect() as c:
            rows = c.execute(text(sql), params).mappings().all()
        return [{**dict(r), "detail": json.loads(r["detail"] or "{}")} for r in rows]

    # -- queue --

    def queue(self, f: Filters, sort: str = "newest", page: int = 1, per_page: int = 50) -> dict:
        f.validate()
        if sort not in SORTS:
            raise StoreError(f"sort: unknown {sort!r}; known: {', '.join(SORTS)}")
        page, per_page = max(1, page), min(max(1, per_page), 500)
        where, params = f.where()
        where_any, params_any = f.where(with_status=False)
        with self.engine.connect() as c:
            rows = c.execute(
                text(
                    f"SELECT {_QUEUE_COLUMNS} FROM violations v LEFT JOIN reviews r ON r.violation_id = v.id"
                    f"{where} ORDER BY {SORTS[sort]} LIMIT :limit OFFSET :offset"
                ),
                {**params, "limit": per_page, "offset": (page - 1) * per_page},
            ).mappings()
            items = [_queue_item(r) for r in rows]
            counts = {s: 0 for s in STATUSES}
            for status, n in c.execute(
                text(f"SELECT v.status, COUNT(*) FROM violations v{where_any} GROUP BY v.status"), params_any
            ):
                counts[status] = n
        total = counts[f.status] if f.status else sum(counts.values())
        return {"items": items, "total": total, "counts": counts, "page": page, "per_page": per_page}

    def facets(self) -> dict:
        with self.engine.connect() as c:
            streams = [r[0] for r in c.execute(text("SELECT stream_id FROM streams ORDER BY stream_id"))]
        return {
            "streams": streams,
            "categories": {k: list(v) for k, v in CATEGORIES.items()},
            "severities": list(SEVERITIES),
            "statuses": list(STATUSES),
            "sorts": list(SORTS),
        }

    def latest(self) -> dict:
        with self.engine.connect() as c:
            latest = c.execute(text("SELECT MAX(created_at) FROM violations")).scalar()  # index only
        return {"latest": latest}

    # -- items and decisions --

    def item(self, violation_id: str, context_s: float = 20.0) -> dict:
        with self.engine.connect() as c:
            row = (
                c.execute(
                    text(
                        "SELECT v.*, r.label, r.note, r.decided_by, r.decided_at FROM violations v "
                        "LEFT JOIN reviews r ON r.violation_id = v.id WHERE v.id = :id"
                    ),
                    {"id": violation_id},
                )
                .mappings()
                .first()
            )
            if row is None:
                raise StoreError(f"no violation {violation_id!r}")
            context = c.execute(
                text(
                    "SELECT id, idx, start_s, end_s, text FROM utterances WHERE stream_id = :s "
                    "AND end_s >= :a AND start_s <= :b ORDER BY start_s"
                ),
                {"s": row["stream_id"], "a": row["start_s"] - context_s, "b": row["end_s"] + context_s},
            ).mappings()
            context = [dict(u) for u in context]
        item = dict(row)
        item["evidence"] = json.loads(item["evidence"] or "[]")
        item["code"] = f"{item['category']}.{item['subcategory']}"
        for u in context:
            u["current"] = u["id"] == item["utterance_id"]
        item["context"] = context
        item["audit"] = self.audit_log(violation_id)
        return item

    def decide(
        self,
        violation_id: str,
        actor: str,
        role: str,
        action: str,
        label: str | None = None,
        note: str | None = None,
        expected_status: str | None = None,
    ) -> dict:
        """Apply one moderator action in one transaction, with its audit record."""
        if action not in (*ACTIONS, "note"):
            raise StoreError(f"action: unknown {action!r}; known: {', '.join([*ACTIONS, 'note'])}")
        if action == "relabel" and label not in CODES:
            raise StoreError(f"label: unknown {label!r}; known: {', '.join(CODES)}")
        if action == "note" and not (note or "").strip():
            raise StoreError("note: empty")
        ts = now_iso()

        def work(c):
            row = c.execute(text("SELECT status FROM violations WHERE id=:id"), {"id": violation_id}).first()
            if row is None:
                raise StoreError(f"no violation {violation_id!r}")
            before = row[0]
            if expected_status and expected_status != before:
                raise ConflictError(f"{violation_id} is now {before} (decided by someone else); reload")
            status = ACTIONS.get(action, before)
            if status != before:
                c.execute(
                    text("UPDATE violations SET status=:s, updated_at=:t WHERE id=:id"),
                    {"s": status, "t": ts, "id": violation_id},
                )
            review = c.execute(
                text("SELECT label, note FROM reviews WHERE violation_id=:id"), {"id": violation_id}
            ).first()
            new_label = label if action == "relabel" else (review[0] if review else None)
            new_note = note.strip() if note and note.strip() else (review[1] if review else None)
            params = {"id": violation_id, "l": new_label, "n": new_note, "by": actor, "at": ts}
            if review is None:
                c.execute(text("INSERT INTO reviews VALUES (:id, :l, :n, :by, :at)"), params)
            else:
                c.execute(
                    text(
                        "UPDATE reviews SET label=:l, note=:n, decided_by=:by, decided_at=:at WHERE violation_id=:id"
                    ),
                    params,
                )
            detail = {"from": before, "to": status}
            if action == "relabel":
                detail["label"] = label
            if note and note.strip():
                detail["note"] = note.strip()
            self._audit(c, actor, role, action, violation_id, detail)
            return {"id": violation_id, "status": status, "label": new_label, "note": new_note}

        return transaction(self.engine, work, "review write")

    def decisions(self, statuses: tuple[str, ...] = ("confirmed", "dismissed", "escalated")) -> list[dict]:
        """Reviewed violations with their utterance text, in stream order."""
        marks = ", ".join(f":s{i}" for i in range(len(statuses)))
        with self.engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT v.id, v.stream_id, v.utterance_id, v.start_s, v.end_s, v.category, v.subcategory, "
                    "v.severity, v.score, v.text, v.evidence, v.status, v.classifier_version, v.asr_model, "
                    "r.label, r.note, r.decided_by, r.decided_at, u.text AS utterance_text "
                    "FROM violations v LEFT JOIN reviews r ON r.violation_id = v.id "
                    "LEFT JOIN utterances u ON u.id = v.utterance_id "
                    f"WHERE v.status IN ({marks}) ORDER BY v.stream_id, v.start_s, v.id"
                ),
                {f"s{i}": s for i, s in enumerate(statuses)},
            ).mappings()
            return [{**dict(r), "evidence": json.loads(r["evidence"] or "[]")} for r in rows]


class ConflictError(StoreError):
    """The item changed since the moderator loaded it."""


def _queue_item(r) -> dict:
    evidence = json.loads(r["evidence"] or "[]")
    return {
        "id": r["id"],
        "stream_id": r["stream_id"],
        "start": r["start_s"],
        "end": r["end_s"],
        "category": r["category"],
        "subcategory": r["subcategory"],
        "label": r["label"],
        "severity": r["severity"],
        "score": r["score"],
        "text": r["text"],
        "status": r["status"],
        "created_at": r["created_at"],
        "kinds": sorted({e.get("kind", "") for e in evidence}),
    }
