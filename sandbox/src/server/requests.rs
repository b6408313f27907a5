//! Request accounting for tests: every request the API serves (except the
//! sandbox's own `/sandbox/` endpoints) is counted by verb, resource,
//! subresource, namespace and dry-run, with the status codes it was
//! answered with, so a test can say "this command listed pods once" or
//! "a dry run performed no mutating request".
//!
//! Read with [`crate::server::Sandbox::requests`], `GET /sandbox/requests`
//! or `kleidia-sandbox requests --dir DIR`; reset with
//! [`crate::server::Sandbox::reset_requests`], `DELETE /sandbox/requests`
//! (answers the counts it cleared) or `kleidia-sandbox requests --reset`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What a request was, as counted. Resource requests have `resource` set;
/// the others (discovery, OpenAPI, `/version`, health) have `path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestKey {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete,
    /// deletecollection (exec, attach and portforward are `create`, as a
    /// real API server authorizes them); for non-resource requests the
    /// lower-case HTTP method.
    pub verb: String,
    /// API group (`""`: core).
    #[serde(default)]
    pub group: String,
    /// Plural resource name (`pods`); empty for non-resource requests.
    #[serde(default)]
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    /// Empty for cluster-scoped resources and for lists across namespaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `dryRun=All` was in the query: nothing was stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The path of a non-resource request (`/api`, `/openapi/v3/...`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// How often requests of one [`RequestKey`] were served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCount {
    #[serde(flatten)]
    pub key: RequestKey,
    pub count: u64,
    /// Answers by HTTP status code (`"200"`, `"404"`, ...).
    pub codes: BTreeMap<String, u64>,
}

/// Every request counted since the start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    pub total: u64,
    /// Sorted by verb, group, resource, subresource, namespace.
    pub requests: Vec<RequestCount>,
}

/// Resources whose `create` stores nothing (reviews answer a question).
const REVIEWS: &[&str] = &[
    "tokenreviews",
    "subjectaccessreviews",
    "selfsubjectaccessreviews",
    "selfsubjectrulesreviews",
    "localsubjectaccessreviews",
    "selfsubjectreviews",
];

impl RequestCount {
    /// A write that changes stored objects: create, update, patch, delete
    /// or deletecollection without `dryRun=All`, not an access review and
    /// not a stream (exec, attach, port-forward) or proxy.
    pub fn is_mutating(&self) -> bool {
        let k = &self.key;
        matches!(
            k.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) && !k.resource.is_empty()
            && !k.dry_run
            && !REVIEWS.contains(&k.resource.as_str())
            && !matches!(
                k.subresource.as_str(),
                "exec" | "attach" | "portforward" | "proxy"
            )
    }
}

impl RequestCounts {
    /// Requests with this verb on this resource (any namespace,
    /// subresource or outcome).
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.count_where(|c| c.key.verb == verb && c.key.resource == resource)
    }

    /// Requests for which `f` holds.
    pub fn count_where(&self, f: impl Fn(&RequestCount) -> bool) -> u64 {
        self.requests.iter().filter(|c| f(c)).map(|c| c.count).sum()
    }

    /// The counts for which `f` holds (to show in a failure message).
    pub fn filter(&self, f: impl Fn(&RequestCount) -> bool) -> Vec<&RequestCount> {
        self.requests.iter().filter(|c| f(c)).collect()
    }

    /// The writes that changed stored objects (see
    /// [`RequestCount::is_mutating`]).
    pub fn mutating(&self) -> Vec<&RequestCount> {
        self.filter(RequestCount::is_mutating)
    }
}

#[derive(Default)]
struct Entry {
    count: u64,
    codes: BTreeMap<u16, u64>,
}

/// The counters of one sandbox.
#[derive(Default)]
pub struct Requests {
    inner: Mutex<BTreeMap<RequestKey, Entry>>,
}

impl Requests {
    /// Counts one answered request.
    pub fn record(&self, key: RequestKey, code: u16) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(key).or_default();
        e.count += 1;
        *e.codes.entry(code).or_default() += 1;
    }

    /// What was counted so far.
    pub fn snapshot(&self) -> RequestCounts {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        counts_of(&m)
    }

    /// What was counted so far; the counters start again from zero (in one
    /// step, so no request is lost between reading and clearing).
    pub fn take(&self) -> RequestCounts {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let out = counts_of(&m);
        m.clear();
        out
    }
}

fn counts_of(m: &BTreeMap<RequestKey, Entry>) -> RequestCounts {
    let requests: Vec<RequestCount> = m
        .iter()
        .map(|(k, e)| RequestCount {
            key: k.clone(),
            count: e.count,
            codes: e.codes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        })
        .collect();
    RequestCounts {
        total: requests.iter().map(|c| c.count).sum(),
        requests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verb: &str, resource: &str) -> RequestKey {
        RequestKey {
            verb: verb.into(),
            resource: resource.into(),
            namespace: "kleidia".into(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_codes_and_mutations() {
        let r = Requests::default();
        r.record(key("list", "pods"), 200);
        r.record(key("list", "pods"), 200);
        r.record(key("delete", "jobs"), 404);
        r.record(key("delete", "jobs"), 200);
        r.record(
            RequestKey {
                dry_run: true,
                ..key("patch", "deployments")
            },
            200,
        );
        r.record(key("create", "selfsubjectaccessreviews"), 201);
        r.record(
            RequestKey {
                subresource: "exec".into(),
                ..key("create", "pods")
            },
            101,
        );
        let c = r.snapshot();
        assert_eq!(c.total, 7);
        assert_eq!(c.count("list", "pods"), 2);
        let deletes = c.filter(|c| c.key.verb == "delete");
        assert_eq!(deletes[0].codes["404"], 1);
        assert_eq!(deletes[0].codes["200"], 1);
        let mutating: Vec<&str> = c.mutating().iter().map(|m| m.key.verb.as_str()).collect();
        assert_eq!(mutating, ["delete"]);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["requests"][0]["verb"], "create");
        assert!(json["requests"][0].get("dryRun").is_none());
        let back: RequestCounts = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        assert_eq!(r.take().total, 7);
        assert_eq!(r.snapshot().total, 0);
    }
}
