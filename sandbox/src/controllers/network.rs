//! The Service network of the sandbox: what kube-proxy and cluster DNS do.
//!
//! Every port of every Service gets a listener at the Service's port on a
//! loopback address of its own (in 127.64.0.0/10, so a Service keeps its
//! port: PostgreSQL's stays 5432). A connection there goes to a ready
//! endpoint of the Service, as the Endpoints controller lists them (pod ->
//! the container declaring the port -> its runtime's `connect`); with no
//! ready endpoint it is reset at once.
//!
//! Cluster DNS names resolve to that address with a pod's search path
//! (`<ns>.svc.cluster.local svc.cluster.local cluster.local`): `svc`,
//! `svc.ns`, `svc.ns.svc` and `svc.ns.svc.cluster.local`, and the
//! Service's cluster IP maps to it too. Runtimes ask [`for_root`] for the
//! network of a container; real client programs in containers read the
//! hosts file ([`ClusterNet::hosts_path`]) through the shell runtime's
//! client wrappers.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;
use tokio::task::JoinHandle;

use super::{name, namespace, terminating, uid};
use crate::registry;
use crate::state::Shared;

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The address pods' resolv.conf names (kube-dns), for messages.
pub const DNS_SERVER: &str = "10.96.0.10";

/// Sandboxes of this process by data folder, so a runtime can find the
/// network of a container from its root folder.
static NETWORKS: Mutex<Vec<(PathBuf, Weak<ClusterNet>)>> = Mutex::new(Vec::new());

/// The network of the sandbox whose data folder holds `root` (a
/// container's root folder), if that sandbox runs its controllers.
pub fn for_root(root: &Path) -> Option<Arc<ClusterNet>> {
    let nets = NETWORKS.lock().unwrap_or_else(|e| e.into_inner());
    nets.iter()
        .filter(|(dir, _)| root.starts_with(dir))
        .max_by_key(|(dir, _)| dir.as_os_str().len())
        .and_then(|(_, net)| net.upgrade())
}

/// A Service that a name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddr {
    pub namespace: String,
    pub name: String,
    /// The loopback address its ports listen on.
    pub ip: Ipv4Addr,
    /// The cluster IP the API shows for it (`None` for headless ones).
    pub cluster_ip: Option<String>,
}

struct Entry {
    uid: String,
    ports: Vec<u16>,
    addr: ServiceAddr,
    listeners: Vec<JoinHandle<()>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

/// One sandbox's Service listeners and DNS records.
pub struct ClusterNet {
    shared: Weak<Shared>,
    data_dir: PathBuf,
    hosts: PathBuf,
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl ClusterNet {
    /// Registers the network of `shared`'s sandbox; it goes away with the
    /// returned value.
    pub fn new(shared: &Arc<Shared>) -> Arc<ClusterNet> {
        let data_dir = shared.options.data_dir.clone();
        let net = Arc::new(ClusterNet {
            shared: Arc::downgrade(shared),
            hosts: data_dir.join("cluster-dns").join("hosts"),
            data_dir: data_dir.clone(),
            entries: Mutex::new(HashMap::new()),
        });
        let mut nets = NETWORKS.lock().unwrap_or_else(|e| e.into_inner());
        nets.retain(|(_, n)| n.strong_count() > 0);
        nets.push((data_dir, Arc::downgrade(&net)));
        drop(nets);
        net.write_hosts(&[]);
        net
    }

    /// The hosts file (`<address> <name>` lines, fully qualified names and
    /// cluster IPs only) that client wrappers resolve names with.
    pub fn hosts_path(&self) -> &Path {
        &self.hosts
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Listens for new and changed Services, stops listening for deleted
    /// ones, and rewrites the hosts file when anything changed.
    pub fn reconcile(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let services: Vec<Arc<Value>> = shared
            .store
            .snapshot(&registry::SERVICES, None)
            .into_iter()
            .filter(|s| !terminating(s) && s["spec"]["type"].as_str() != Some("ExternalName"))
            .collect();
        let mut entries = self.entries();
        let mut changed = false;
        let live: std::collections::HashSet<(String, String)> = services
            .iter()
            .map(|s| (namespace(s).to_string(), name(s).to_string()))
            .collect();
        let before = entries.len();
        entries.retain(|k, _| live.contains(k));
        changed |= entries.len() != before;
        for svc in &services {
            let key = (namespace(svc).to_string(), name(svc).to_string());
            let ports = service_ports(svc);
            if entries
                .get(&key)
                .is_some_and(|e| e.uid == uid(svc) && e.ports == ports)
            {
                continue;
            }
            entries.remove(&key);
            changed = true;
            if let Some(entry) = self.listen(&key.0, &key.1, svc, ports) {
                entries.insert(key, entry);
            }
        }
        if changed {
            let addrs: Vec<ServiceAddr> = entries.values().map(|e| e.addr.clone()).collect();
            drop(entries);
            self.write_hosts(&addrs);
        }
    }

    /// Binds every port of one Service on a free loopback address.
    fn listen(&self, ns: &str, svc_name: &str, svc: &Value, ports: Vec<u16>) -> Option<Entry> {
        let seed = address_seed(&self.data_dir, ns, svc_name);
        for attempt in 0..64u32 {
            let ip = loopback_address(seed.wrapping_add(attempt));
            let bound: Result<Vec<std::net::TcpListener>, _> = ports
                .iter()
                .map(|p| std::net::TcpListener::bind((ip, *p)))
                .collect();
            let Ok(bound) = bound else {
                continue;
            };
            let mut listeners = Vec::new();
            for (l, port) in bound.into_iter().zip(ports.iter().copied()) {
                if l.set_nonblocking(true).is_err() {
                    continue;
                }
                let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                    continue;
                };
                let shared = self.shared.clone();
                let (ns, svc_name) = (ns.to_string(), svc_name.to_string());
                listeners.push(tokio::spawn(accept_loop(l, shared, ns, svc_name, port)));
            }
            let cluster_ip = svc["spec"]["clusterIP"]
                .as_str()
                .filter(|ip| !ip.is_empty() && *ip != "None")
                .map(str::to_string);
            return Some(Entry {
                uid: uid(svc).to_string(),
                ports,
                addr: ServiceAddr {
                    namespace: ns.to_string(),
                    name: svc_name.to_string(),
                    ip,
                    cluster_ip,
                },
                listeners,
            });
        }
        None
    }

    fn write_hosts(&self, addrs: &[ServiceAddr]) {
        let mut lines: Vec<String> = addrs
            .iter()
            .flat_map(|a| {
                let fqdn = format!("{}.{}.svc.{CLUSTER_DOMAIN}", a.name, a.namespace);
                let mut l = vec![format!("{} {fqdn}", a.ip)];
                if let Some(cip) = &a.cluster_ip {
                    l.push(format!("{} {cip}", a.ip));
                }
                l
            })
            .collect();
        lines.sort();
        let mut text = lines.join("\n");
        text.push('\n');
        if let Some(dir) = self.hosts.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Readers never see a half-written file.
        let tmp = self.hosts.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.hosts);
        }
    }

    /// The Service a client in namespace `ns` reaches as `host`, as cluster
    /// DNS answers it; `None` when the name is not a Service's.
    pub fn resolve(&self, ns: &str, host: &str) -> Option<ServiceAddr> {
        let entries = self.entries();
        let by_fqdn: HashMap<String, &ServiceAddr> = entries
            .values()
            .map(|e| {
                (
                    format!("{}.{}.svc.{CLUSTER_DOMAIN}", e.addr.name, e.addr.namespace),
                    &e.addr,
                )
            })
            .collect();
        for candidate in search_names(ns, host) {
            if let Some(a) = by_fqdn.get(&candidate) {
                return Some((*a).clone());
            }
        }
        let host = host.trim_end_matches('.');
        entries
            .values()
            .find(|e| e.addr.cluster_ip.as_deref() == Some(host))
            .map(|e| e.addr.clone())
    }

    /// The ready pod behind `svc`'s port `port`, as (pod name, target port).
    pub fn ready_endpoint(&self, svc: &ServiceAddr, port: u16) -> Option<(String, u16)> {
        let shared = self.shared.upgrade()?;
        ready_endpoint(&shared, &svc.namespace, &svc.name, port)
    }
}

impl Drop for ClusterNet {
    fn drop(&mut self) {
        // This network's own entry is dead by now.
        let mut nets = NETWORKS.lock().unwrap_or_else(|e| e.into_inner());
        nets.retain(|(_, n)| n.strong_count() > 0);
    }
}

/// The names a resolver with a pod's search path tries for `host`, in
/// order (`ndots:5`: names with fewer dots go through the search list
/// first).
pub fn search_names(ns: &str, host: &str) -> Vec<String> {
    if let Some(absolute) = host.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    let search = [
        format!("{ns}.svc.{CLUSTER_DOMAIN}"),
        format!("svc.{CLUSTER_DOMAIN}"),
        CLUSTER_DOMAIN.to_string(),
    ];
    let mut names: Vec<String> = search.iter().map(|d| format!("{host}.{d}")).collect();
    if host.matches('.').count() >= 5 {
        names.insert(0, host.to_string());
    } else {
        names.push(host.to_string());
    }
    names
}

fn service_ports(svc: &Value) -> Vec<u16> {
    let mut ports: Vec<u16> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
        .filter_map(|p| u16::try_from(p["port"].as_u64()?).ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn address_seed(data_dir: &Path, ns: &str, svc: &str) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}\0{ns}\0{svc}", data_dir.display()).as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// An address in 127.64.0.0/10 (never 127.0.0.x, where pods' IPs are).
fn loopback_address(n: u32) -> Ipv4Addr {
    let n = n % (64 * 256 * 254);
    Ipv4Addr::new(
        127,
        64 + (n / (256 * 254)) as u8,
        ((n / 254) % 256) as u8,
        (n % 254) as u8 + 1,
    )
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Weak<Shared>,
    ns: String,
    svc: String,
    port: u16,
) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            // Out of file descriptors and the like: try again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (ns, svc) = (ns.clone(), svc.clone());
        tokio::spawn(async move {
            match connect_endpoint(&shared, &ns, &svc, port).await {
                Some(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                // No ready endpoint: the connection is reset at once.
                None => {
                    let _ = client.set_zero_linger();
                }
            }
        });
    }
}

async fn connect_endpoint(
    shared: &Arc<Shared>,
    ns: &str,
    svc: &str,
    port: u16,
) -> Option<crate::runtime::BoxedStream> {
    let (pod_name, target) = ready_endpoint(shared, ns, svc, port)?;
    let pod = shared.store.try_get(&registry::PODS, Some(ns), &pod_name)?;
    let containers = pod["spec"]["containers"].as_array()?;
    let container = containers
        .iter()
        .find(|c| {
            c["ports"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["containerPort"].as_u64() == Some(u64::from(target)))
            })
        })
        .or_else(|| containers.first())?;
    let c = super::pods::container_ref(shared, &pod, container["name"].as_str()?)?;
    let rt = shared.runtimes.for_image(&c.image)?;
    rt.connect(&c, target).await.ok()
}

/// A ready pod behind port `port` of Service `ns/svc`, from its Endpoints:
/// (pod name, target port). The first by name, so a Service with one
/// database pod always reaches that one.
fn ready_endpoint(shared: &Shared, ns: &str, svc: &str, port: u16) -> Option<(String, u16)> {
    let service = shared.store.try_get(&registry::SERVICES, Some(ns), svc)?;
    let sp = service["spec"]["ports"]
        .as_array()?
        .iter()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))?
        .clone();
    let endpoints = shared.store.try_get(&registry::ENDPOINTS, Some(ns), svc)?;
    let mut found: Vec<(String, u16)> = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let ports = subset["ports"].as_array().cloned().unwrap_or_default();
        let target = ports
            .iter()
            .find(|p| match (p["name"].as_str(), sp["name"].as_str()) {
                (Some(a), Some(b)) => a == b,
                _ => ports.len() == 1,
            })
            .and_then(|p| u16::try_from(p["port"].as_u64()?).ok());
        let Some(target) = target else {
            continue;
        };
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(pod) = a["targetRef"]["name"].as_str() {
                found.push((pod.to_string(), target));
            }
        }
    }
    found.sort();
    found.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_go_through_the_search_path() {
        assert_eq!(
            search_names("kleidia", "db"),
            [
                "db.kleidia.svc.cluster.local",
                "db.svc.cluster.local",
                "db.cluster.local",
                "db"
            ]
        );
        let fqdn = "db.kleidia.svc.cluster.local";
        assert!(search_names("other", "db.kleidia").contains(&fqdn.to_string()));
        assert!(search_names("other", "db.kleidia.svc").contains(&fqdn.to_string()));
        assert_eq!(search_names("other", fqdn).last().unwrap(), fqdn);
        assert_eq!(
            search_names("other", "db.kleidia.svc.cluster.local."),
            [fqdn]
        );
    }

    #[test]
    fn service_addresses_stay_off_the_pod_range() {
        for n in [0, 1, 253, 254, 65_000, u32::MAX] {
            let ip = loopback_address(n);
            let o = ip.octets();
            assert_eq!(o[0], 127);
            assert!((64..128).contains(&o[1]), "{ip}");
            assert!(o[3] >= 1 && o[3] <= 254, "{ip}");
        }
        assert_ne!(loopback_address(0), loopback_address(1));
    }
}
