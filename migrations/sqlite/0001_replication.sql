-- Leadership of active-passive nodes (design.md §4). Times are the database's clock in ms.
CREATE TABLE IF NOT EXISTS replica_leader (
    node                TEXT PRIMARY KEY,
    -- Rises by one at every activation; every write of the leader checks it (fencing).
    epoch               BIGINT NOT NULL,
    holder              BIGINT NOT NULL,
    -- Postgres backend pid of the leader's lock connection; 0 on SQLite.
    holder_pid          BIGINT NOT NULL DEFAULT 0,
    lease_expires_at_ms BIGINT NOT NULL,
    acquired_at_ms      BIGINT NOT NULL
);

-- Every running replica's heartbeat, so a leader knows whether a standby could take over.
CREATE TABLE IF NOT EXISTS replica_members (
    node            TEXT NOT NULL,
    replica         BIGINT NOT NULL,
    role            TEXT NOT NULL,
    pid             BIGINT NOT NULL,
    health_address  TEXT NOT NULL,
    admin_address   TEXT NOT NULL,
    last_seen_at_ms BIGINT NOT NULL,
    PRIMARY KEY (node, replica)
);

-- Audit trail of leadership changes, written with fenced transactions.
CREATE TABLE IF NOT EXISTS replica_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    node    TEXT NOT NULL,
    replica BIGINT NOT NULL,
    epoch   BIGINT NOT NULL,
    event   TEXT NOT NULL,
    at_ms   BIGINT NOT NULL
);
