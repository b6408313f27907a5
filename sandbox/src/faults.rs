//! Fault injection: make the API misbehave on purpose so clients' retry and
//! recovery paths can be tested. Set from the library ([`Faults::set`]) or
//! over HTTP (`POST /sandbox/faults`, what `kleidia-sandbox fault` uses).

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The fault settings in force. `Default` is "no faults".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultSettings {
    /// Fraction (0.0..=1.0) of matching requests that fail.
    pub error_rate: f64,
    /// Status of injected failures: 500 (InternalError) or 429
    /// (TooManyRequests, with `Retry-After`). Anything else means 500.
    pub error_code: u16,
    /// Seconds in `Retry-After` for 429s (default 1).
    pub retry_after: Option<u64>,
    /// Only requests whose path contains this fail (and are delayed).
    pub path_contains: Option<String>,
    /// Added to every matching request.
    pub latency_ms: u64,
    /// Exec/attach streams of these pods (by name) are cut after this many
    /// output bytes.
    pub exec_kill: BTreeMap<String, u64>,
}

/// The body of `POST /sandbox/faults`: settings to merge in, plus one-shot
/// actions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultRequest {
    /// Reset everything first.
    pub clear: bool,
    pub error_rate: Option<f64>,
    pub error_code: Option<u16>,
    pub retry_after: Option<u64>,
    pub path_contains: Option<String>,
    pub latency_ms: Option<u64>,
    /// Pod name -> bytes; 0 removes the pod's entry.
    pub exec_kill: BTreeMap<String, u64>,
    /// End every open watch stream now.
    pub drop_watches: bool,
}

/// Fault state shared by the server and the subresource handlers.
pub struct Faults {
    settings: RwLock<FaultSettings>,
    drops: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            settings: RwLock::new(FaultSettings::default()),
            drops: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Faults {
    pub fn new() -> Self {
        Self::default()
    }

    /// The settings in force.
    pub fn get(&self) -> FaultSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the settings.
    pub fn set(&self, s: FaultSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Back to no faults.
    pub fn clear(&self) {
        self.set(FaultSettings::default());
    }

    /// Applies a request (see [`FaultRequest`]); returns the new settings.
    pub fn apply(&self, req: &FaultRequest) -> FaultSettings {
        let mut s = if req.clear {
            FaultSettings::default()
        } else {
            self.get()
        };
        if let Some(r) = req.error_rate {
            s.error_rate = r.clamp(0.0, 1.0);
        }
        if let Some(c) = req.error_code {
            s.error_code = c;
        }
        if req.retry_after.is_some() {
            s.retry_after = req.retry_after;
        }
        if let Some(p) = &req.path_contains {
            s.path_contains = (!p.is_empty()).then(|| p.clone());
        }
        if let Some(l) = req.latency_ms {
            s.latency_ms = l;
        }
        for (pod, bytes) in &req.exec_kill {
            if *bytes == 0 {
                s.exec_kill.remove(pod);
            } else {
                s.exec_kill.insert(pod.clone(), *bytes);
            }
        }
        self.set(s.clone());
        if req.drop_watches {
            self.drop_watches();
        }
        s
    }

    /// Kills exec/attach streams of `pod` after this many output bytes.
    pub fn set_exec_kill(&self, pod: &str, bytes: Option<u64>) {
        let mut s = self.settings.write().unwrap_or_else(|e| e.into_inner());
        match bytes {
            Some(b) => s.exec_kill.insert(pod.to_string(), b),
            None => s.exec_kill.remove(pod),
        };
    }

    /// How many output bytes an exec/attach stream of `pod` may carry
    /// before it is cut (read by the exec handler when a stream opens).
    pub fn exec_kill_after(&self, pod: &str) -> Option<u64> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .exec_kill
            .get(pod)
            .copied()
    }

    /// Ends every watch stream open now.
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// Changes whenever [`Faults::drop_watches`] is called; watch handlers
    /// end their stream when it does.
    pub fn watch_drops(&self) -> tokio::sync::watch::Receiver<u64> {
        self.drops.subscribe()
    }

    fn applies_to(s: &FaultSettings, path: &str) -> bool {
        s.path_contains.as_deref().is_none_or(|p| path.contains(p))
    }

    /// Extra latency for a request to `path`.
    pub fn latency(&self, path: &str) -> Option<Duration> {
        let s = self.settings.read().unwrap_or_else(|e| e.into_inner());
        (s.latency_ms > 0 && Self::applies_to(&s, path))
            .then(|| Duration::from_millis(s.latency_ms))
    }

    /// The error to answer a request to `path` with, if the dice say so.
    pub fn injected_error(&self, path: &str) -> Option<ApiError> {
        let s = self.settings.read().unwrap_or_else(|e| e.into_inner());
        if s.error_rate <= 0.0 || !Self::applies_to(&s, path) {
            return None;
        }
        if rand::random::<f64>() >= s.error_rate {
            return None;
        }
        Some(if s.error_code == 429 {
            ApiError::too_many_requests(s.retry_after.unwrap_or(1))
        } else {
            ApiError::internal("injected fault: internal error")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_one_always_fails_and_clear_stops_it() {
        let f = Faults::new();
        f.apply(&FaultRequest {
            error_rate: Some(1.0),
            error_code: Some(429),
            path_contains: Some("/pods".into()),
            ..Default::default()
        });
        assert_eq!(f.injected_error("/api/v1/pods").unwrap().code(), 429);
        assert!(f.injected_error("/api/v1/secrets").is_none());
        f.clear();
        assert!(f.injected_error("/api/v1/pods").is_none());
        f.set_exec_kill("db-0", Some(10));
        assert_eq!(f.exec_kill_after("db-0"), Some(10));
    }
}
