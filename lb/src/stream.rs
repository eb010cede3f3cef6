//! Ending streams from outside: each downstream request runs inside a task-local
//! `StreamSlot`; `upstream_peer` puts the chosen server's token in it, and the frontend drops
//! the request (RST_STREAM for HTTP/2, connection close for HTTP/1) when that token is
//! cancelled, i.e. when the server lost the active role.

use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

tokio::task_local! {
    static SLOT: Arc<StreamSlot>;
}

#[derive(Default)]
pub struct StreamSlot {
    token: Mutex<Option<CancellationToken>>,
    changed: Notify,
}

impl StreamSlot {
    /// The slot of the request running on this task, if it runs in one.
    pub fn current() -> Option<Arc<StreamSlot>> {
        SLOT.try_with(|s| s.clone()).ok()
    }

    /// Runs `request` in a fresh slot; `None` if the slot's token was cancelled first.
    pub async fn run<F: std::future::Future>(request: F) -> Option<F::Output> {
        let slot = Arc::new(StreamSlot::default());
        SLOT.scope(slot.clone(), async move {
            tokio::select! {
                out = request => Some(out),
                () = slot.ended() => None,
            }
        })
        .await
    }

    /// The request now goes to the server behind `token` (replacing a failed attempt's).
    pub fn watch(&self, token: CancellationToken) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
        self.changed.notify_one();
    }

    async fn ended(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let token = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match token {
                Some(token) => tokio::select! {
                    () = token.cancelled() => return,
                    () = &mut changed => {}
                },
                None => changed.await,
            }
        }
    }
}
