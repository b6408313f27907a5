//! Shared by the `api_*` tests: a sandbox plus a raw HTTPS client, so the
//! tests see exactly the HTTP surface kubectl and Helm see.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use kleidia_sandbox::server::client::{Client, Reply};
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;

pub struct Api {
    pub sb: Sandbox,
    pub client: Client,
    pub rt: tokio::runtime::Runtime,
}

impl Api {
    pub fn start() -> Self {
        Self::start_with(SandboxOptions::default())
    }

    pub fn start_with(opts: SandboxOptions) -> Self {
        let sb = Sandbox::start(opts).expect("sandbox starts");
        let client = Client::new(sb.url(), sb.ca_pem(), Some(sb.token())).expect("client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime");
        Api { sb, client, rt }
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.rt
            .block_on(self.client.send(method, path, headers, body))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[], Bytes::new())
    }

    pub fn get_accept(&self, path: &str, accept: &str) -> Reply {
        self.request(Method::GET, path, &[("accept", accept)], Bytes::new())
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
    }

    pub fn put(&self, path: &str, body: &Value) -> Reply {
        self.request(
            Method::PUT,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
    }

    pub fn patch(&self, path: &str, content_type: &str, body: impl Into<Bytes>) -> Reply {
        self.request(Method::PATCH, path, &[("content-type", content_type)], body)
    }

    pub fn delete(&self, path: &str, body: Option<&Value>) -> Reply {
        match body {
            Some(b) => self.request(
                Method::DELETE,
                path,
                &[("content-type", "application/json")],
                b.to_string(),
            ),
            None => self.request(Method::DELETE, path, &[], Bytes::new()),
        }
    }

    /// Opens a watch and returns a reader of its events.
    pub fn watch(&self, path: &str) -> WatchReader<'_> {
        let resp = self
            .rt
            .block_on(self.client.open(Method::GET, path, &[], Bytes::new()))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(resp.status(), 200, "watch {path}");
        WatchReader {
            api: self,
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }
}

/// Reads newline-delimited watch events.
pub struct WatchReader<'a> {
    api: &'a Api,
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl WatchReader<'_> {
    /// The next event, or `None` when the stream ends. Gives up (panics)
    /// after 20 s so a broken server fails the test instead of hanging it.
    pub fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("watch line is JSON"));
            }
            let frame = self
                .api
                .rt
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(20), self.body.frame()).await
                })
                .expect("watch event within 20 s");
            match frame {
                None => return None,
                Some(Err(e)) => panic!("watch stream failed: {e}"),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }

    /// The next event that is not a BOOKMARK.
    pub fn next_change(&mut self) -> Option<Value> {
        loop {
            let e = self.next()?;
            if e["type"] != "BOOKMARK" {
                return Some(e);
            }
        }
    }
}

pub fn configmap(name: &str, labels: Value) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    })
}

pub fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string()
}

pub fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}
