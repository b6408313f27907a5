//! Watches over HTTPS: resumption, selectors, bookmarks, 410 Expired,
//! streaming lists (sendInitialEvents) and fault-injected drops.

mod api_support;

use std::time::Duration;

use api_support::{Api, configmap, rv};
use kleidia_sandbox::server::SandboxOptions;
use serde_json::json;

const CMS: &str = "/api/v1/namespaces/kleidia/configmaps";

#[test]
fn watch_resumes_after_a_resource_version_with_selectors() {
    let api = Api::start();
    let a = api.post(CMS, &configmap("a", json!({"app": "x"}))).json();
    api.post(CMS, &configmap("b", json!({"app": "y"})));
    let mut changed = a.clone();
    changed["data"]["k"] = json!("changed");
    api.put(&format!("{CMS}/a"), &changed);
    api.delete(&format!("{CMS}/b"), None);

    // Everything after `a` was created, in order.
    let mut w = api.watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&a)));
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["data"]["k"].as_str()),
        (Some("MODIFIED"), Some("changed"))
    );
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("b"))
    );
    // Live changes follow.
    api.post(CMS, &configmap("c", json!({"app": "x"})));
    let e = w.next_change().unwrap();
    assert_eq!(e["object"]["metadata"]["name"], "c");

    // A label selector filters, and a label change out of it is a DELETED.
    let mut w = api.watch(&format!(
        "{CMS}?watch=1&labelSelector=app%3Dx&resourceVersion={}",
        rv(&a)
    ));
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("MODIFIED"), Some("a"))
    );
    let e = w.next_change().unwrap();
    assert_eq!(e["object"]["metadata"]["name"], "c");
    let mut relabel = api.get(&format!("{CMS}/c")).json();
    relabel["metadata"]["labels"]["app"] = json!("z");
    api.put(&format!("{CMS}/c"), &relabel);
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("c"))
    );
}

#[test]
fn bookmarks_carry_a_resumable_resource_version() {
    let api = Api::start_with(SandboxOptions {
        bookmark_interval: Duration::from_millis(100),
        ..SandboxOptions::default()
    });
    let a = api.post(CMS, &configmap("a", json!({}))).json();
    let mut w = api.watch(&format!(
        "{CMS}?watch=1&allowWatchBookmarks=true&resourceVersion={}",
        rv(&a)
    ));
    let b = loop {
        let e = w.next().unwrap();
        if e["type"] == "BOOKMARK" {
            break e;
        }
    };
    assert_eq!(b["object"]["kind"], "ConfigMap");
    let bookmark_rv = b["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    api.post(CMS, &configmap("after", json!({})));
    let mut w = api.watch(&format!("{CMS}?watch=1&resourceVersion={bookmark_rv}"));
    assert_eq!(
        w.next_change().unwrap()["object"]["metadata"]["name"],
        "after"
    );
}

#[test]
fn too_old_resource_versions_are_410_expired() {
    let api = Api::start_with(SandboxOptions {
        watch_history: 5,
        ..SandboxOptions::default()
    });
    let first = api.post(CMS, &configmap("first", json!({}))).json();
    for i in 0..10 {
        api.post(CMS, &configmap(&format!("n{i}"), json!({})));
    }
    let mut w = api.watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&first)));
    let e = w.next().unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(w.next().is_none(), "the stream ends after the error");
}

#[test]
fn streaming_lists_end_initial_events_with_a_bookmark() {
    let api = Api::start();
    api.post(CMS, &configmap("one", json!({"app": "s"})));
    api.post(CMS, &configmap("two", json!({"app": "s"})));
    api.post(CMS, &configmap("other", json!({"app": "t"})));
    let mut w = api.watch(&format!(
        "{CMS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=app%3Ds"
    ));
    let mut added = Vec::new();
    let end = loop {
        let e = w.next().unwrap();
        match e["type"].as_str().unwrap() {
            "ADDED" => added.push(
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            "BOOKMARK" => break e,
            other => panic!("unexpected {other}"),
        }
    };
    assert_eq!(added, ["one", "two"]);
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    api.post(CMS, &configmap("three", json!({"app": "s"})));
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("three"))
    );
}

#[test]
fn watches_end_on_timeout_and_on_the_drop_fault() {
    let api = Api::start();
    let mut w = api.watch(&format!(
        "{CMS}?watch=1&timeoutSeconds=1&resourceVersion={}",
        api.sb.shared().store.current_rv()
    ));
    assert!(w.next().is_none());
    let mut w = api.watch(&format!(
        "{CMS}?watch=1&resourceVersion={}",
        api.sb.shared().store.current_rv()
    ));
    api.sb.faults().drop_watches();
    assert!(w.next().is_none());
}

#[test]
fn legacy_watch_paths_and_table_watches() {
    let api = Api::start();
    let start = api.sb.shared().store.current_rv();
    api.post(CMS, &configmap("legacy", json!({})));
    let mut w = api.watch(&format!(
        "/api/v1/watch/namespaces/kleidia/configmaps?resourceVersion={start}"
    ));
    assert_eq!(
        w.next_change().unwrap()["object"]["metadata"]["name"],
        "legacy"
    );

    // kubectl get -w asks for Table rows; only the first carries columns.
    let resp = api
        .rt
        .block_on(api.client.open(
            hyper::Method::GET,
            &format!("{CMS}?watch=1&resourceVersion={start}"),
            &[(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
            bytes::Bytes::new(),
        ))
        .unwrap();
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while buf.iter().filter(|b| **b == b'\n').count() < 1 {
        use http_body_util::BodyExt;
        let f = api.rt.block_on(body.frame()).unwrap().unwrap();
        buf.extend_from_slice(&f.into_data().unwrap());
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap();
    let ev: serde_json::Value = serde_json::from_slice(line).unwrap();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["kind"], "Table");
    assert_eq!(ev["object"]["columnDefinitions"][0]["name"], "Name");
    assert_eq!(ev["object"]["rows"][0]["cells"][0], "legacy");
}
