//! Prometheus text metrics: request counts and latency, events sequenced.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub request_micros: AtomicU64,
    pub events_sent: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, micros: u64, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.request_micros.fetch_add(micros, Ordering::Relaxed);
        if error {
            self.request_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let r = self.requests.load(Ordering::Relaxed);
        let e = self.request_errors.load(Ordering::Relaxed);
        let us = self.request_micros.load(Ordering::Relaxed);
        let ev = self.events_sent.load(Ordering::Relaxed);
        format!(
            "# HELP sandcat_http_requests_total HTTP requests served.\n# TYPE sandcat_http_requests_total counter\nsandcat_http_requests_total {r}\n\
# HELP sandcat_http_request_errors_total HTTP requests answered with a 5xx.\n# TYPE sandcat_http_request_errors_total counter\nsandcat_http_request_errors_total {e}\n\
# HELP sandcat_http_request_seconds_sum Total time spent answering requests.\n# TYPE sandcat_http_request_seconds_sum counter\nsandcat_http_request_seconds_sum {:.6}\n\
# HELP sandcat_events_sent_total Events accepted through the client API.\n# TYPE sandcat_events_sent_total counter\nsandcat_events_sent_total {ev}\n",
            us as f64 / 1e6
        )
    }
}
