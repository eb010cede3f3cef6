-- The participant (design.md §6): its ledger (contracts, updates, completions), command
-- deduplication and in-flight submissions, pending confirmation requests, and what its Ledger
-- API manages (parties, users and rights, packages, synchronizer connections). Shared by the
-- participant's replicas; keyed by node so several nodes may share a database.

CREATE TABLE IF NOT EXISTS participant_contracts (
    node            TEXT NOT NULL,
    contract_id     TEXT NOT NULL,
    template_id     TEXT NOT NULL,
    -- JSON: {"argument", "signatories", "observers", "key", "maintainers"}
    contract        TEXT NOT NULL,
    -- JSON array of the stakeholders, for visibility filters.
    stakeholders    TEXT NOT NULL,
    created_offset  BIGINT NOT NULL,
    archived_offset BIGINT,
    created_at_us   BIGINT NOT NULL,
    PRIMARY KEY (node, contract_id)
);

-- Dense offsets from 1; one row per committed transaction.
CREATE TABLE IF NOT EXISTS participant_updates (
    node           TEXT NOT NULL,
    ledger_offset  BIGINT NOT NULL,
    update_id      TEXT NOT NULL,
    record_time_us BIGINT NOT NULL,
    -- JSON: the transaction with each event's witnesses among this participant's parties.
    body           TEXT NOT NULL,
    PRIMARY KEY (node, ledger_offset)
);

-- Dense completion offsets from 1.
CREATE TABLE IF NOT EXISTS participant_completions (
    node              TEXT NOT NULL,
    completion_offset BIGINT NOT NULL,
    user_id           TEXT NOT NULL,
    -- JSON: the Completion.
    body              TEXT NOT NULL,
    PRIMARY KEY (node, completion_offset)
);

-- Accepted changes, for deduplication: change id = hash(user, act_as, command id).
CREATE TABLE IF NOT EXISTS participant_dedup (
    node          TEXT NOT NULL,
    change_id     TEXT NOT NULL,
    update_id     TEXT NOT NULL,
    ledger_offset BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL,
    PRIMARY KEY (node, change_id)
);

-- Submissions sent and not yet completed; a new active replica completes each of them.
CREATE TABLE IF NOT EXISTS participant_in_flight (
    node        TEXT NOT NULL,
    change_id   TEXT NOT NULL,
    -- JSON: submission id, command id, user, act_as, message id, max sequencing time, ...
    body        TEXT NOT NULL,
    request_ts  BIGINT,
    PRIMARY KEY (node, change_id)
);

-- Confirmation requests this participant saw and awaits a verdict on.
CREATE TABLE IF NOT EXISTS participant_pending (
    node       TEXT NOT NULL,
    request_ts BIGINT NOT NULL,
    body       BYTEA NOT NULL,
    PRIMARY KEY (node, request_ts)
);

CREATE TABLE IF NOT EXISTS participant_parties (
    node         TEXT NOT NULL,
    party        TEXT NOT NULL,
    allocated_us BIGINT NOT NULL,
    PRIMARY KEY (node, party)
);

CREATE TABLE IF NOT EXISTS participant_users (
    node          TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    primary_party TEXT NOT NULL,
    -- JSON: {"admin": bool, "act_as": [...], "read_as": [...]}
    rights        TEXT NOT NULL,
    PRIMARY KEY (node, user_id)
);

CREATE TABLE IF NOT EXISTS participant_packages (
    node        TEXT NOT NULL,
    package_id  TEXT NOT NULL,
    format      TEXT NOT NULL,
    content     BYTEA NOT NULL,
    uploaded_us BIGINT NOT NULL,
    PRIMARY KEY (node, package_id)
);

CREATE TABLE IF NOT EXISTS participant_connections (
    node         TEXT NOT NULL,
    synchronizer TEXT NOT NULL,
    connected    BOOLEAN NOT NULL,
    PRIMARY KEY (node, synchronizer)
);
