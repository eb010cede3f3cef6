//! Observing the ledger end for many queries at once. A query must read at least the ledger end
//! as of its start, so it joins the next observation that begins after it arrived, never one
//! already in flight; concurrent queries then share one `GetLedgerEnd` call instead of making
//! one each. At most one call is in flight; the queries that arrive meanwhile form the next
//! batch.

use crate::ledger::{CallContext, LedgerClient};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Waiter = (CallContext, oneshot::Sender<Result<i64, tonic::Status>>);

#[derive(Default)]
struct Batch {
    waiting: Vec<Waiter>,
    /// Whether a task is observing (and will serve `waiting` next).
    running: bool,
}

pub struct EndObserver {
    ledger: LedgerClient,
    batch: Mutex<Batch>,
}

impl EndObserver {
    pub fn new(ledger: LedgerClient) -> Arc<Self> {
        Arc::new(Self {
            ledger,
            batch: Mutex::new(Batch::default()),
        })
    }

    /// The ledger end as observed by a call that started after this one was made.
    pub async fn observe(self: &Arc<Self>, ctx: &CallContext) -> Result<i64, tonic::Status> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            b.waiting.push((ctx.clone(), tx));
            !std::mem::replace(&mut b.running, true)
        };
        if start {
            tokio::spawn(self.clone().run());
        }
        rx.await
            .unwrap_or_else(|_| Err(tonic::Status::unavailable("the gateway is stopping")))
    }

    async fn run(self: Arc<Self>) {
        loop {
            let mut batch = {
                let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
                if b.waiting.is_empty() {
                    b.running = false;
                    return;
                }
                std::mem::take(&mut b.waiting)
            };
            // One caller's credentials observe for the batch: the ledger end is the same for
            // everyone. If that call fails, only that caller gets the error; the rest go
            // first into the next round, under the next caller's credentials.
            let (ctx, first) = batch.remove(0);
            match self.ledger.ledger_end(&ctx).await {
                Ok(end) => {
                    let _ = first.send(Ok(end));
                    for (_, tx) in batch {
                        let _ = tx.send(Ok(end));
                    }
                }
                Err(status) => {
                    let _ = first.send(Err(status));
                    let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
                    batch.append(&mut b.waiting);
                    b.waiting = batch;
                }
            }
        }
    }
}
