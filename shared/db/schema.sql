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
    seq             integer NOT NULL,  -- the scorer's order: visit start, then numeric visit id
    visit_id        text NOT NULL,
    client_id       text NOT NULL,
    date_time       timestamp NOT NULL,
    visit_duration  integer NOT NULL,
    score           double precision NOT NULL,
    model_version   text NOT NULL,
    PRIMARY KEY (task_id, visit_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS task_visits_order ON task_visits (task_id, seq);

-- transactional outbox: a row is written with the work it announces and published by the relay
CREATE TABLE IF NOT EXISTS outbox (
    id              bigserial PRIMARY KEY,
    routing_key     text NOT NULL,
    body            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- webhooks: the secret is kept only as a SHA-256 hash, the OAuth token only encrypted
CREATE TABLE IF NOT EXISTS webhooks (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    description     text,
    counter_id      bigint NOT NULL,
    token_enc       bytea NOT NULL,
    secret_hash     bytea NOT NULL,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- rate limits shared by gateway replicas (webhook submissions per webhook, management calls per API
-- key): per subject, the requests granted in each of the last 61 whole seconds (shared/db/rates.py)
DROP TABLE IF EXISTS webhook_rate;  -- the fixed one-minute windows these replaced
CREATE TABLE IF NOT EXISTS rate_windows (
    subject         text PRIMARY KEY,
    second          bigint NOT NULL,  -- Unix second of counts[61]
    counts          integer[] NOT NULL,
    granted         integer NOT NULL  -- granted by the latest statement (read back by it)
);

-- a batch of conversions (the API's upload_id / batch_id), from a task, a single call or a webhook
CREATE TABLE IF NOT EXISTS batches (
    id              uuid PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('bulk', 'single', 'webhook')),
    task_id         uuid REFERENCES tasks (id) ON DELETE SET NULL,
    webhook_id      uuid REFERENCES webhooks (id) ON DELETE SET NULL,
    counter_id      bigint NOT NULL,
    token_enc       bytea NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('accepted', 'pending', 'uploaded', 'processing', 'completed', 'error')),
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS batches_task ON batches (task_id, created_at) WHERE task_id IS NOT NULL;

-- one row per conversion, with its own fate; idx is its position in the request
CREATE TABLE IF NOT EXISTS conversions (
    batch_id        uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    idx             integer NOT NULL,
    id_type         text CHECK (id_type IN ('CLIENT_ID', 'USER_ID', 'YCLID')),
    identifier      text,
    target          text,
    date_time       timestamptz,
    price           numeric,
    currency        text,
    purchase_id     text,
    status          text NOT NULL CHECK (status IN ('pending', 'uploaded', 'completed', 'error')),
    reason          text,
    file_id         bigint,
    PRIMARY KEY (batch_id, idx)
);

-- one Metrika upload (one CSV file) per batch and identifier type
CREATE TABLE IF NOT EXISTS upload_files (
    id              bigserial PRIMARY KEY,
    batch_id        uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    id_type         text NOT NULL CHECK (id_type IN ('CLIENT_ID', 'USER_ID', 'YCLID')),
    status          text NOT NULL DEFAULT 'new'
                    CHECK (status IN ('new', 'uploading', 'uploaded', 'processing', 'processed', 'failed')),
    metrika_upload_id text,
    metrika_status  text,
    line_quantity   integer,
    linked_quantity integer,
    user_not_found_quantity integer,
    goal_not_found_quantity integer,
    error           text,
    next_poll_at    timestamptz,
    uploaded_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- uploader reliability: durable retries (the next attempt time lives here, not in a sleeping coroutine),
-- the sweeper's re-queue count, rows a retry may send again, and slow re-checks of timed-out files
ALTER TABLE batches ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz;
ALTER TABLE batches ADD COLUMN IF NOT EXISTS last_error text;
ALTER TABLE batches ADD COLUMN IF NOT EXISTS retrying_since timestamptz;
ALTER TABLE batches ADD COLUMN IF NOT EXISTS requeues integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS batches_open ON batches (updated_at)
    WHERE status IN ('accepted', 'pending', 'uploaded', 'processing');
-- a row that failed before Metrika had it (goal missing, file refused, outage past the horizon) may be
-- sent again by POST .../retry; rows refused at the door or processed by Metrika may not
ALTER TABLE conversions ADD COLUMN IF NOT EXISTS retryable boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS conversions_file ON conversions (file_id) WHERE file_id IS NOT NULL;
-- a retry uploads the rows again in a new file: several files of one batch may share an identifier type
ALTER TABLE upload_files DROP CONSTRAINT IF EXISTS upload_files_batch_id_id_type_key;
CREATE INDEX IF NOT EXISTS upload_files_batch ON upload_files (batch_id, id_type);
ALTER TABLE upload_files ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
ALTER TABLE upload_files ADD COLUMN IF NOT EXISTS last_error text;
ALTER TABLE upload_files ADD COLUMN IF NOT EXISTS retrying_since timestamptz;
ALTER TABLE upload_files ADD COLUMN IF NOT EXISTS timed_out boolean NOT NULL DEFAULT false;
DROP INDEX IF EXISTS upload_files_to_poll;
CREATE INDEX IF NOT EXISTS upload_files_due ON upload_files (next_poll_at)
    WHERE status IN ('uploaded', 'processing') OR (status = 'failed' AND timed_out);

-- scorer reliability: durable retries (the next attempt time lives here, not in a sleeping coroutine), the
-- lease a running scorer renews, the sweeper's re-queue count, and when a task last moved
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS last_error text;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS retrying_since timestamptz;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS lease_until timestamptz;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS requeues integer NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (updated_at) WHERE status IN ('pending', 'running');
-- every Logs API request a task created, until it is canceled or cleaned (Yandex keeps a prepared one,
-- against the counter's 10 GB, until then): a crashed run's requests are cleaned by the next run or the
-- sweeper. Ids are Yandex's, kept as opaque text.
CREATE TABLE IF NOT EXISTS log_requests (
    counter         bigint NOT NULL,
    request_id      text NOT NULL,
    task_id         uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    source          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    released_at     timestamptz,
    PRIMARY KEY (counter, request_id)
);
CREATE INDEX IF NOT EXISTS log_requests_unreleased ON log_requests (task_id) WHERE released_at IS NULL;

-- dead letters: every message that reached a .dead queue (a poison message, or one RabbitMQ gave up
-- on), with the reason; the body is kept byte for byte; a replay writes it to the outbox again
CREATE TABLE IF NOT EXISTS dead_letters (
    id              bigserial PRIMARY KEY,
    routing_key     text NOT NULL,
    body            bytea NOT NULL,
    reason          text NOT NULL,
    headers         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    replayed_at     timestamptz,
    replay_count    integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dead_letters_by_key ON dead_letters (routing_key, id);
CREATE INDEX IF NOT EXISTS dead_letters_unreplayed ON dead_letters (id) WHERE replayed_at IS NULL;

-- issue 9: Idempotency-Key. A batch made under a key has the id uuid5(scope, key), so the batches table's
-- primary key holds the promise across replicas and restarts; beside it, the request's SHA-256 (a
-- different request under the same key is refused) and the answer a repeat gets again
CREATE TABLE IF NOT EXISTS idempotency_keys (
    batch_id        uuid PRIMARY KEY,
    request_hash    bytea NOT NULL,
    answer          jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- issue 9: one conversion is sent once. Its key: counter, target, identifier, and the purchase id or else
-- the time; the row that claimed it first owns it, a later row with the same key is a `duplicate`
CREATE TABLE IF NOT EXISTS conversion_keys (
    counter_id      bigint NOT NULL,
    target          text NOT NULL,
    id_type         text NOT NULL,
    identifier      text NOT NULL,
    discriminator   text NOT NULL,
    batch_id        uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    idx             integer NOT NULL,
    PRIMARY KEY (counter_id, target, id_type, identifier, discriminator)
);
CREATE INDEX IF NOT EXISTS conversion_keys_row ON conversion_keys (batch_id, idx);
DO $$ BEGIN  -- once: re-validating the constraint at every start would scan every row
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'conversions_status_check'
                   AND pg_get_constraintdef(oid) LIKE '%duplicate%') THEN
        ALTER TABLE conversions DROP CONSTRAINT IF EXISTS conversions_status_check;
        ALTER TABLE conversions ADD CONSTRAINT conversions_status_check
            CHECK (status IN ('pending', 'uploaded', 'completed', 'error', 'duplicate'));
    END IF;
END $$;

-- issue 9: the webhook resource (a source per webhook, its CRM mapping, Bitrix24 secrets; editable)
-- source is fixed at creation; mapping (shared/crm/mapping.py) is NULL for json webhooks; the Bitrix24
-- application token and inbound-webhook URL are kept encrypted like the Metrika token, never returned
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'json'
    CHECK (source IN ('json', 'amocrm', 'bitrix24'));
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS mapping jsonb;
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS application_token_enc bytea;
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS bitrix_webhook_url_enc bytea;
-- a webhook's batches: its token or counter change reaches those not uploaded yet; DELETE sets it NULL
CREATE INDEX IF NOT EXISTS batches_webhook ON batches (webhook_id) WHERE webhook_id IS NOT NULL;

-- issue 9: PurchaseId
-- a conversion with only a purchase_id is uploaded in its own PurchaseId file (client_id_type=PURCHASE_ID).
-- The wider CHECKs replace the original ones once: guarded, so that a service start does not re-check
-- every row under an exclusive lock each time.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'conversions'::regclass
                   AND conname = 'conversions_id_type_check'
                   AND pg_get_constraintdef(oid) LIKE '%PURCHASE_ID%') THEN
        ALTER TABLE conversions DROP CONSTRAINT IF EXISTS conversions_id_type_check;
        ALTER TABLE conversions ADD CONSTRAINT conversions_id_type_check
            CHECK (id_type IN ('CLIENT_ID', 'USER_ID', 'YCLID', 'PURCHASE_ID'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'upload_files'::regclass
                   AND conname = 'upload_files_id_type_check'
                   AND pg_get_constraintdef(oid) LIKE '%PURCHASE_ID%') THEN
        ALTER TABLE upload_files DROP CONSTRAINT IF EXISTS upload_files_id_type_check;
        ALTER TABLE upload_files ADD CONSTRAINT upload_files_id_type_check
            CHECK (id_type IN ('CLIENT_ID', 'USER_ID', 'YCLID', 'PURCHASE_ID'));
    END IF;
END
$$;

-- issue 9: CRM webhook requests (amoCRM/Kommo, Bitrix24) as they came: kept to be mapped by the uploader,
-- and for inspection (a malformed one too, with why). `batch_id` is the batch its events became.
CREATE TABLE IF NOT EXISTS crm_requests (
    id              bigserial PRIMARY KEY,
    webhook_id      uuid REFERENCES webhooks (id) ON DELETE SET NULL,
    batch_id        uuid UNIQUE,
    content_type    text,
    body            bytea NOT NULL,
    problem         text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    mapped_at       timestamptz
);
-- by time only (retention, and a replay's window, filtered by webhook: replays are rare, requests are not)
CREATE INDEX IF NOT EXISTS crm_requests_received ON crm_requests (received_at);
-- a CRM event is made a conversion once: its natural key (amoCRM account, lead, status, time; Bitrix24
-- portal, event, id, time) is claimed by the first request that brought it
CREATE TABLE IF NOT EXISTS crm_event_keys (
    webhook_id      uuid NOT NULL,
    natural_key     text NOT NULL,
    batch_id        uuid NOT NULL,
    idx             integer NOT NULL,
    PRIMARY KEY (webhook_id, natural_key)
);
DO $$ BEGIN  -- once: a CRM event that makes no conversion is kept as an `ignored` row, with why
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'conversions_status_check'
                   AND pg_get_constraintdef(oid) LIKE '%ignored%') THEN
        ALTER TABLE conversions DROP CONSTRAINT IF EXISTS conversions_status_check;
        ALTER TABLE conversions ADD CONSTRAINT conversions_status_check
            CHECK (status IN ('pending', 'uploaded', 'completed', 'error', 'duplicate', 'ignored'));
    END IF;
END $$;

-- issue 11: the headers a message is published with (the id of the request that wrote it, shared/logs.py)
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS headers jsonb;
-- issue 11: listings and search. A scored visit keeps its device class (the model that scored it: 'desktop'
-- or 'mobile'; NULL for rows stored before, shown as "unknown"). Listings are newest first: tasks by
-- creation (also by counter and day), a webhook's batches by time (this index replaces batches_webhook:
-- it serves the credentials update by webhook too), uploads (bulk and single batches) by time. Search finds
-- rows by identifier (client id, user id, yclid: a row keeps one, with its type) and by purchase id (a CRM
-- row's lead or deal id).
ALTER TABLE task_visits ADD COLUMN IF NOT EXISTS device_class text;
-- a completed task's count of level-4+ visits (its stored rows), kept for the listing; counted once for
-- tasks completed before
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS level4_visits integer;
UPDATE tasks t SET level4_visits = (SELECT count(*) FROM task_visits v WHERE v.task_id = t.id)
WHERE status = 'completed' AND level4_visits IS NULL;
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, created_at);
CREATE INDEX IF NOT EXISTS tasks_counter ON tasks (counter, created_at);
CREATE INDEX IF NOT EXISTS tasks_day ON tasks (day);
CREATE INDEX IF NOT EXISTS batches_webhook_time ON batches (webhook_id, created_at) WHERE webhook_id IS NOT NULL;
DROP INDEX IF EXISTS batches_webhook;
CREATE INDEX IF NOT EXISTS batches_uploads ON batches (created_at) WHERE source IN ('bulk', 'single');
CREATE INDEX IF NOT EXISTS conversions_identifier ON conversions (identifier, id_type)
    WHERE identifier IS NOT NULL;
CREATE INDEX IF NOT EXISTS conversions_purchase ON conversions (purchase_id) WHERE purchase_id IS NOT NULL;
-- issue 11: notifications. A task, an upload (bulk, single) or a webhook may name a callback URL; the
-- statement that gives a task or batch its final status also writes its notification here (the signed
-- summary POSTed to the URL by shared/notify.py), retried until next_attempt_at passes the horizon
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS callback_url text;
ALTER TABLE batches ADD COLUMN IF NOT EXISTS callback_url text;
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS callback_url text;
CREATE TABLE IF NOT EXISTS notifications (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('task', 'upload', 'batch')),
    subject_id      uuid NOT NULL,  -- the task's or the batch's id
    url             text NOT NULL,
    body            jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_subject ON notifications (subject_id, id);
-- issue 12: schedules. One schedule per counter: every day, once its counter-local `run_at` has passed, the
-- scheduler scores the counter-local yesterday (and catches up missed days from first_day on), re-scores
-- each day once at D+3, and uploads a completed run's level-4+ visits when upload_target is set. A run is
-- claimed by inserting its (counter, day, kind) row in the transaction that inserts its task and the task's
-- outbox message: the primary key makes "one run per counter and day" hold across every scheduler replica
-- and restart. Runs outlive their schedule (schedule_id set to NULL), so a schedule made again for the
-- counter does not score a day twice.
CREATE TABLE IF NOT EXISTS schedules (
    id              uuid PRIMARY KEY,
    counter         bigint NOT NULL UNIQUE,
    token_enc       bytea NOT NULL,
    run_at          time NOT NULL DEFAULT '03:00',  -- counter-local
    upload_target   text,
    paused          boolean NOT NULL DEFAULT false,
    first_day       date NOT NULL,  -- no run for an earlier day (moved on resume: paused days are skipped)
    callback_url    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS schedules_created ON schedules (created_at, id);
CREATE TABLE IF NOT EXISTS schedule_runs (
    counter         bigint NOT NULL,
    day             date NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('score', 'rescore')),
    schedule_id     uuid REFERENCES schedules (id) ON DELETE SET NULL,
    task_id         uuid NOT NULL,
    upload_id       uuid,
    status          text NOT NULL DEFAULT 'scoring'
                    CHECK (status IN ('scoring', 'completed', 'uploaded', 'failed')),
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (counter, day, kind)
);
CREATE INDEX IF NOT EXISTS schedule_runs_schedule ON schedule_runs (schedule_id, day);
-- the runs whose task may have finished since the last look (a failed run's task may be retried)
CREATE INDEX IF NOT EXISTS schedule_runs_open ON schedule_runs (updated_at) WHERE status IN ('scoring', 'failed');
-- issue 12: counter time zones. Each counter's IANA time zone as Metrika's Management API gave it
-- (GET /management/v1/counter/{id}, field time_zone_name), shared by every service and replica; asked
-- again once fetched_at is older than COUNTER_ZONE_TTL_S (shared/counter_zones.py)
CREATE TABLE IF NOT EXISTS counter_zones (
    counter    bigint PRIMARY KEY,
    timezone   text NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now()
);
-- issue 12: backfills and re-score runs. A backfill is a parent row (day..day_to, never scored: its status
-- is its days' aggregate, computed when read) and one child task per day (parent_id). A re-score of a day
-- is a new task row: rescore_of names the day's first task (the family's root), run counts from 1.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS parent_id uuid REFERENCES tasks (id) ON DELETE CASCADE;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS day_to date;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS rescore_of uuid REFERENCES tasks (id) ON DELETE CASCADE;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS run integer NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks (parent_id, day) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS tasks_runs ON tasks (rescore_of, run) WHERE rescore_of IS NOT NULL;
-- issue 12: bulk uploads in SQL. A bulk row keeps the visit it was made of: a later upload of the same
-- counter and target (a re-scored day) sends only the visits no earlier row sent (an `error` row did not)
ALTER TABLE conversions ADD COLUMN IF NOT EXISTS visit_id text;
CREATE INDEX IF NOT EXISTS conversions_visit ON conversions (visit_id, target) WHERE visit_id IS NOT NULL;
-- a bulk batch made in the request holds what its rows are to be made of ({target, zone, max_age_days,
-- reason, tasks}) until the uploader makes them, in one INSERT ... SELECT (shared/db/bulk.py)
ALTER TABLE batches ADD COLUMN IF NOT EXISTS from_task jsonb;

-- issue 12: fair sharing. A log request still being prepared when its task gave its turn back is kept
-- (not canceled) for the task's next attempt; the sweeper leaves the kept requests of a pending task alone
ALTER TABLE log_requests ADD COLUMN IF NOT EXISTS kept boolean NOT NULL DEFAULT false;

-- issue 12: backfill pacing. A backfill's days are queued BACKFILL_PARALLEL at a time: a day is `released`
-- once its ScoreTask message is written (the first days with the backfill, each next one by the statement
-- that finishes a day before it, or the sweeper's safety net); every other task is released from the start.
-- The sweeper re-queues released tasks only. A backfill's days have no callback URL: the parent is notified
-- once, by its last day to finish.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS released boolean NOT NULL DEFAULT true;
CREATE INDEX IF NOT EXISTS tasks_unreleased ON tasks (parent_id, day) WHERE NOT released AND status = 'pending';
-- issue 12: scheduler metrics. The paused schedules, counted at the end of each scheduler tick (the gauge
-- metrika_score_scheduler_schedules) without reading the table
CREATE INDEX IF NOT EXISTS schedules_paused ON schedules (counter) WHERE paused;
