-- Identities, topology and the mediator (design.md §5.2, §5.3).

-- A logical node's Ed25519 identity; its replicas share it.
CREATE TABLE IF NOT EXISTS node_identity (
    node   TEXT PRIMARY KEY,
    member TEXT NOT NULL,
    seed   BLOB NOT NULL
);

-- Topology transactions a node knows: on the topology manager its proposals and accepted ones
-- still to broadcast; on every member the sequenced ones, from which it rebuilds the state.
CREATE TABLE IF NOT EXISTS topology_transactions (
    node           TEXT NOT NULL,
    hash           TEXT NOT NULL,
    signed         BLOB NOT NULL,
    -- proposed | accepted | sequenced
    status         TEXT NOT NULL,
    accepted_order BIGINT,
    sequenced_us   BIGINT,
    effective_us   BIGINT,
    PRIMARY KEY (node, hash)
);

-- The timestamp of the last sequenced event a member processed.
CREATE TABLE IF NOT EXISTS member_cursors (
    node TEXT PRIMARY KEY,
    ts   BIGINT NOT NULL
);

-- The topology manager that bootstrapped the sequencers: the only sender of broadcasts.
CREATE TABLE IF NOT EXISTS sequencer_trust_root (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    member     TEXT NOT NULL,
    public_key BLOB NOT NULL
);

-- Members come from the topology state now, not from an operator's registration.
DROP TABLE IF EXISTS sequencer_members;

-- The mediator's confirmation requests: pending ones survive a failover.
CREATE TABLE IF NOT EXISTS mediator_requests (
    node          TEXT NOT NULL,
    request_ts    BIGINT NOT NULL,
    submitter     TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    deadline_us   BIGINT NOT NULL,
    -- pending | approved | rejected
    state         TEXT NOT NULL,
    -- The aggregation so far (JSON): votes per view and party.
    aggregation   TEXT NOT NULL,
    -- The encoded verdict once decided, and whether the sequencer has it.
    verdict       BLOB,
    verdict_sent  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (node, request_ts)
);
