-- All DDL of metrika-score. Idempotent: applied at every service start and once per test database.

CREATE TABLE IF NOT EXISTS tasks (
    id              uuid PRIMARY KEY,
    day             date NOT NULL,
    counter         bigint NOT NULL,
    token_enc       bytea NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    progress        smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    message         text,
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    total_visits    integer,
    model_version   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);

-- level-4+ visits of a task; ids are opaque text (UInt64 values do not fit bigint)
CREATE TABLE IF NOT EXISTS task_visits (
    task_id         uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    visit_id        text NOT NULL,
    client_id       text NOT NULL,
    date_time       timestamp NOT NULL,
    visit_duration  integer NOT NULL,
    score           double precision NOT NULL,
    model_version   text NOT NULL,
    PRIMARY KEY (task_id, visit_id)
);
CREATE INDEX IF NOT EXISTS task_visits_order ON task_visits (task_id, date_time, visit_id);

-- transactional outbox: a row is written with the work it announces and published by the relay
CREATE TABLE IF NOT EXISTS outbox (
    id              bigserial PRIMARY KEY,
    routing_key     text NOT NULL,
    body            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
