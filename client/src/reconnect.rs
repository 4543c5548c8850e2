//! The background task that keeps a client connected: it notices a lost
//! connection, resumes the session with exponential backoff, and restarts the
//! event stream where the application left off.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use kanal_proto::codes::CloseCode;

use crate::config::Credentials;
use crate::connection::Link;
use crate::error::ClientError;
use crate::events;
use crate::session::{CONNECT_TIMEOUT, LinkState, Session, Subscription, start_sync};

/// Delay before the first reconnection attempt (at most; jitter halves it at worst).
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Longest delay between attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Watches the client's connection and replaces it when it is lost, until
/// the client is closed or dropped, or the server refuses the session.
pub(crate) async fn supervise(client: Weak<Session>, mut link: Arc<Link>) {
    loop {
        let reason = link.conn.closed().await;
        let Some(inner) = client.upgrade() else {
            return;
        };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        let reason = ClientError::from(reason);
        tracing::warn!(%reason, generation = link.generation, "connection lost; reconnecting");
        inner.mark_reconnecting(reason.to_string()).await;
        drop(inner);
        let mut backoff = Backoff::new();
        link = loop {
            tokio::time::sleep(backoff.next_delay()).await;
            let Some(inner) = client.upgrade() else {
                return;
            };
            if inner.closing.load(Ordering::Acquire) {
                return;
            }
            match inner.reconnect(link.generation + 1).await {
                Ok(new) => {
                    tracing::info!(generation = new.generation, "reconnected");
                    break new;
                }
                Err(error) if error.ends_session() => {
                    tracing::warn!(%error, "the server refused to resume the session");
                    inner.end(error).await;
                    return;
                }
                Err(error) => {
                    tracing::debug!(%error, "reconnection attempt failed");
                    inner.mark_reconnecting(error.to_string()).await;
                }
            }
        };
    }
}

impl Session {
    /// Opens a new connection, resumes the session on it, restarts the event
    /// stream from the last event handed out, and makes it the current link.
    async fn reconnect(&self, generation: u64) -> Result<Arc<Link>, ClientError> {
        let token = self.welcome().resume_token.clone();
        let credentials = Credentials::Resume {
            token: token.clone(),
        };
        // The Hello says the availability the application set, so that the
        // server never sees the agent online in between.
        let availability = *self
            .availability
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (link, mut welcome) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.dialer.open(&credentials, generation, availability),
        )
        .await
        .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT, "the Welcome"))??;
        if welcome.resume_token.is_empty() {
            welcome.resume_token = token;
        }
        let link = Arc::new(link);
        let mut subscription = self.subscription.lock().await;
        if self.closing.load(Ordering::Acquire) {
            link.close(CloseCode::Normal, "closed");
            return Err(ClientError::Closed);
        }
        if let Some(active) = subscription.as_mut() {
            // The old reader must not deliver anything after the new one starts.
            if let Some(old) = active.reader.take() {
                old.abort();
                let _ = old.await;
            }
            let since = self.last_delivered.load(Ordering::Acquire);
            match start_sync(&link, since, &active.tx, true).await {
                Ok(reader) => active.reader = Some(reader),
                Err(error) => {
                    link.close(CloseCode::Normal, "sync failed");
                    return Err(error);
                }
            }
        }
        *self.welcome.lock().unwrap_or_else(PoisonError::into_inner) = welcome;
        tokio::spawn(events::read_datagrams(
            link.conn.clone(),
            self.typing_sink.clone(),
        ));
        self.link.send_replace(LinkState::Up(link.clone()));
        Ok(link)
    }

    /// Records that the connection is down (keeping when it went down).
    async fn mark_reconnecting(&self, last_error: String) {
        let _order = self.subscription.lock().await;
        self.link.send_modify(|state| match state {
            LinkState::Up(_) => {
                *state = LinkState::Reconnecting {
                    since: Instant::now(),
                    last_error,
                }
            }
            LinkState::Reconnecting {
                last_error: last, ..
            } => *last = last_error,
            LinkState::Ended(_) => {}
        });
    }

    /// Ends the session for good: waiters fail with `error`, events end.
    async fn end(&self, error: ClientError) {
        let mut subscription = self.subscription.lock().await;
        if let Some(Subscription {
            reader: Some(reader),
            ..
        }) = subscription.take()
        {
            reader.abort();
        }
        *self
            .typing_sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.link.send_modify(|state| {
            if !matches!(state, LinkState::Ended(_)) {
                *state = LinkState::Ended(Arc::new(error));
            }
        });
    }
}

/// Exponential backoff with jitter: about 100 ms, 200 ms, 400 ms, … 30 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    /// Starts at [`FIRST_RETRY`].
    pub(crate) fn new() -> Self {
        Self { next: FIRST_RETRY }
    }

    /// The delay before the next attempt: between half and all of the
    /// current step (so that many clients of a restarted server spread out).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(MAX_RETRY);
        let half = step / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_fast_and_is_capped() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(
            first <= FIRST_RETRY && first >= FIRST_RETRY / 2,
            "{first:?}"
        );
        let mut last = first;
        for _ in 0..20 {
            last = backoff.next_delay();
            assert!(last <= MAX_RETRY);
        }
        assert!(last >= MAX_RETRY / 2);
    }
}
