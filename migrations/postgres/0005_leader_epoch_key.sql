-- Makes `epoch` a key column of `replica_leader` in Postgres's row-locking sense (a column of a
-- unique index), so fenced writes can lock the leader row FOR KEY SHARE: a takeover, which
-- raises the epoch, still waits for them to commit, while the leader's lease renewals, which
-- change no key column, no longer wait behind them. (`node` alone is unique already.)
CREATE UNIQUE INDEX IF NOT EXISTS replica_leader_node_epoch ON replica_leader (node, epoch);
