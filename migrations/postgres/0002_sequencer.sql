-- The sequencer's shared state (design.md §5.1). Timestamps are microseconds since the epoch,
-- partitioned by writer index: ts % total_node_count = writer.

-- Members admitted to the synchronizer, with the key their requests are signed with.
CREATE TABLE IF NOT EXISTS sequencer_members (
    member           TEXT PRIMARY KEY,
    public_key       BYTEA NOT NULL,
    registered_at_us BIGINT NOT NULL
);

-- One row per writer index. A writer never writes an event at or below its watermark; readers
-- deliver only up to the lowest watermark of the online writers. `session` fences a writer that
-- peers marked offline.
CREATE TABLE IF NOT EXISTS sequencer_writers (
    idx          BIGINT PRIMARY KEY,
    online       BOOLEAN NOT NULL,
    watermark_us BIGINT NOT NULL,
    session      BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS sequencer_events (
    ts            BIGINT PRIMARY KEY,
    writer        BIGINT NOT NULL,
    sender        TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    -- JSON array of member ids.
    recipients    TEXT NOT NULL,
    payload       BYTEA NOT NULL,
    error_code    TEXT,
    error_message TEXT,
    UNIQUE (sender, message_id)
);

-- Who sees which event: the recipients, and the sender (its receipt).
CREATE TABLE IF NOT EXISTS sequencer_deliveries (
    member TEXT NOT NULL,
    ts     BIGINT NOT NULL,
    PRIMARY KEY (member, ts)
);

CREATE TABLE IF NOT EXISTS sequencer_acknowledgements (
    member TEXT PRIMARY KEY,
    ts     BIGINT NOT NULL
);
