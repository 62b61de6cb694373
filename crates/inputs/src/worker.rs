//! The reconnect loop of one pulled input: run the driver, record why it ended, back off,
//! try again. Health (up or down) is judged by the supervisor from the media it receives.

use crate::drivers::{self, DriverConfig, InputError};
use crate::source::{Emitter, SourceEvent};
use crate::status::WorkerStatus;
use crate::url::{self, Kind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use store::{InputSpec, RetryPolicy};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A connection that delivered for this long resets the backoff to its first step.
const STABLE_AFTER: Duration = Duration::from_secs(10);

pub(crate) struct Worker {
    pub(crate) code: String,
    pub(crate) spec: InputSpec,
    pub(crate) kind: Kind,
    pub(crate) out: Emitter,
    pub(crate) status: Arc<Mutex<WorkerStatus>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) config: Arc<DriverConfig>,
}

fn lock(s: &Mutex<WorkerStatus>) -> std::sync::MutexGuard<'_, WorkerStatus> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Worker {
    pub(crate) async fn run(self, stop: CancellationToken) {
        let masked = url::masked(&self.spec.url);
        let mut delay = self.retry.initial_s;
        loop {
            {
                let mut st = lock(&self.status);
                st.attempts += 1;
                st.connecting = true;
                st.next_retry = None;
            }
            let started = Instant::now();
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = drivers::run_once(&self.spec, self.kind, &self.out, &self.config) => r,
            };
            let reason = match result {
                Err(InputError::Closed(_)) => return,
                Ok(()) => "the source ended".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::info!(stream = %self.code, input = %masked, reason = %reason, "input ended");
            if self
                .out
                .send(SourceEvent::Down(reason.clone()))
                .await
                .is_err()
            {
                return;
            }
            if started.elapsed() >= STABLE_AFTER {
                delay = self.retry.initial_s;
            }
            let wait = Duration::from_secs_f64(delay.max(0.05));
            {
                let mut st = lock(&self.status);
                st.connecting = false;
                st.record_error(reason);
                st.next_retry = Some((Instant::now().into_std(), SystemTime::now() + wait));
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            delay = (delay * 2.0).min(self.retry.max_s);
        }
    }
}
