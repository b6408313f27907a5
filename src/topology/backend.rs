//! The backend's Service in the services release.

use serde::Serialize;

use super::TopologyError;
use super::manifest::ManifestObject;
use super::pods::names;
use super::workloads::{Workload, services, workloads};
use crate::config::BackendPins;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
/// The backend's Service, reached through the API server's service proxy.
pub struct BackendTarget {
    pub service: String,
    pub port: u16,
}

/// Whether a workload is the Kleidia backend (by name, container, image or
/// component label).
pub fn is_backend(w: &Workload) -> bool {
    let n = w.name.to_ascii_lowercase();
    n.contains("backend")
        || n.ends_with("-api")
        || w.containers.iter().any(|c| {
            c.name.to_ascii_lowercase().contains("backend")
                || c.image_name().to_ascii_lowercase().contains("backend")
        })
        || w.template_labels
            .get("app.kubernetes.io/component")
            .is_some_and(|v| v == "backend")
}

/// Finds the backend Service in the services release.
pub fn discover_backend(
    release: &str,
    objects: &[ManifestObject],
    pins: &BackendPins,
) -> Result<BackendTarget, TopologyError> {
    let svcs = services(objects);
    let ws = workloads(objects);
    let backend = ws.iter().find(|w| is_backend(w));
    let service = if let Some(name) = &pins.service {
        match svcs.iter().find(|s| &s.name == name) {
            Some(s) => s.clone(),
            None => {
                // Pinned to a Service outside the release: trust the pin.
                return Ok(BackendTarget {
                    service: name.clone(),
                    port: pins.port.unwrap_or(80),
                });
            }
        }
    } else {
        let by_selector = backend.and_then(|w| {
            svcs.iter().find(|s| {
                !s.selector.is_empty()
                    && s.selector
                        .iter()
                        .all(|(k, v)| w.template_labels.get(k) == Some(v))
            })
        });
        let by_name = || {
            svcs.iter()
                .find(|s| s.name.to_ascii_lowercase().contains("backend"))
        };
        by_selector
            .or_else(by_name)
            .cloned()
            .ok_or_else(|| TopologyError::NoBackendService {
                release: release.to_string(),
                workload: backend
                    .map(|w| w.display())
                    .unwrap_or_else(|| "a *backend* workload".into()),
                found: names(svcs.iter().map(|s| s.name.clone())),
            })?
    };
    let port = match pins.port {
        Some(p) => p,
        None => service
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some("http"))
            .or_else(|| service.ports.first())
            .map(|p| p.port)
            .ok_or_else(|| TopologyError::NoServicePort {
                service: service.name.clone(),
                detail: String::new(),
            })?,
    };
    Ok(BackendTarget {
        service: service.name,
        port,
    })
}
