use serde_json::json;

use super::*;
use crate::registry::{CONFIGMAPS, DEPLOYMENTS, NAMESPACES, PODS, REPLICASETS};

fn store_with_ns() -> Store {
    let s = Store::new(100);
    s.create(&NAMESPACES, None, json!({"metadata": {"name": "kleidia"}}))
        .unwrap();
    s
}

/// Creates `obj` in namespace kleidia; fails the test if the store
/// refuses it.
fn create(s: &Store, rt: &'static ResourceType, obj: Value) -> Value {
    s.create(rt, Some("kleidia"), obj)
        .unwrap_or_else(|e| panic!("create {} in kleidia: {e:?}", rt.plural))
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

#[test]
fn create_fills_metadata_and_rejects_duplicates() {
    let s = store_with_ns();
    let o = create(&s, &CONFIGMAPS, cm("a", json!({})));
    assert_eq!(o["kind"], "ConfigMap");
    assert_eq!(o["metadata"]["namespace"], "kleidia");
    assert_eq!(o["metadata"]["generation"], 1);
    assert!(o["metadata"]["uid"].as_str().unwrap().len() > 10);
    let e = s
        .create(&CONFIGMAPS, Some("kleidia"), cm("a", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), 409);
    let e = s
        .create(&CONFIGMAPS, Some("nope"), cm("a", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), 404);
    assert_eq!(e.message, "namespaces \"nope\" not found");
    let g = create(&s, &CONFIGMAPS, json!({"metadata": {"generateName": "x-"}}));
    assert!(name_of(&g).starts_with("x-") && name_of(&g).len() == 7);
    assert_eq!(
        s.get(&CONFIGMAPS, Some("kleidia"), "nope")
            .unwrap_err()
            .code(),
        404
    );
}

#[test]
fn list_filters_and_pages() {
    let s = store_with_ns();
    for i in 0..5 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        create(&s, &CONFIGMAPS, cm(&format!("c{i}"), json!({"tier": tier})));
    }
    let even = ListOptions::parse(Some("tier=even"), None, None, None).unwrap();
    assert_eq!(
        s.list(&CONFIGMAPS, Some("kleidia"), &even)
            .unwrap()
            .items
            .len(),
        3
    );
    let mut opts = ListOptions::parse(None, None, Some(2), None).unwrap();
    let mut names = Vec::new();
    loop {
        let page = s.list(&CONFIGMAPS, None, &opts).unwrap();
        names.extend(page.items.iter().map(|i| name_of(i).to_string()));
        match page.continue_token {
            Some(c) => opts.continue_token = Some(c),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
}

#[test]
fn update_conflicts_on_stale_version_and_bumps_generation() {
    let s = store_with_ns();
    let d = create(
        &s,
        &DEPLOYMENTS,
        json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}}),
    );
    let mut d2 = d.clone();
    d2["spec"]["replicas"] = json!(2);
    let u = s.update(&DEPLOYMENTS, Some("kleidia"), d2.clone()).unwrap();
    assert_eq!(u["metadata"]["generation"], 2);
    assert_eq!(
        s.update(&DEPLOYMENTS, Some("kleidia"), d2)
            .unwrap_err()
            .code(),
        409
    );
    // Status changes keep the generation.
    let mut st = u.clone();
    st["status"] = json!({"replicas": 2});
    let v = s.update_status(&DEPLOYMENTS, Some("kleidia"), st).unwrap();
    assert_eq!(v["metadata"]["generation"], 2);
    assert_eq!(v["status"]["replicas"], 2);
    // No-op writes keep the resourceVersion.
    let w = s
        .mutate(&DEPLOYMENTS, Some("kleidia"), "web", |_| {})
        .unwrap();
    assert_eq!(
        w["metadata"]["resourceVersion"],
        v["metadata"]["resourceVersion"]
    );
}

#[test]
fn delete_cascades_and_orphans() {
    let s = store_with_ns();
    let d = create(&s, &DEPLOYMENTS, json!({"metadata": {"name": "web"}}));
    let owner = |o: &Value| {
        json!([{"apiVersion": "apps/v1", "kind": o["kind"], "name": o["metadata"]["name"],
                 "uid": o["metadata"]["uid"], "controller": true}])
    };
    let rs = create(
        &s,
        &REPLICASETS,
        json!({"metadata": {"name": "web-1", "ownerReferences": owner(&d)}}),
    );
    create(
        &s,
        &PODS,
        json!({"metadata": {"name": "web-1-a", "ownerReferences": owner(&rs)}}),
    );
    s.delete(
        &DEPLOYMENTS,
        Some("kleidia"),
        "web",
        &DeleteOptions::default(),
    )
    .unwrap();
    assert!(s.try_get(&REPLICASETS, Some("kleidia"), "web-1").is_none());
    assert!(s.try_get(&PODS, Some("kleidia"), "web-1-a").is_none());

    let d = create(&s, &DEPLOYMENTS, json!({"metadata": {"name": "web"}}));
    create(
        &s,
        &REPLICASETS,
        json!({"metadata": {"name": "web-2", "ownerReferences": owner(&d)}}),
    );
    let orphan = DeleteOptions {
        propagation: Propagation::Orphan,
        ..Default::default()
    };
    s.delete(&DEPLOYMENTS, Some("kleidia"), "web", &orphan)
        .unwrap();
    let rs = s.get(&REPLICASETS, Some("kleidia"), "web-2").unwrap();
    assert!(rs["metadata"].get("ownerReferences").is_none());
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let s = store_with_ns();
    create(
        &s,
        &CONFIGMAPS,
        json!({"metadata": {"name": "f", "finalizers": ["x/y"]}}),
    );
    let d = s
        .delete(&CONFIGMAPS, Some("kleidia"), "f", &DeleteOptions::default())
        .unwrap();
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    s.mutate(&CONFIGMAPS, Some("kleidia"), "f", |o| {
        o["metadata"]["finalizers"] = json!([]);
    })
    .unwrap();
    assert!(s.try_get(&CONFIGMAPS, Some("kleidia"), "f").is_none());
}

#[tokio::test]
async fn watch_resumes_filters_and_expires() {
    let s = Store::new(5);
    s.create(&NAMESPACES, None, json!({"metadata": {"name": "kleidia"}}))
        .unwrap();
    let a = create(&s, &CONFIGMAPS, cm("a", json!({"app": "x"})));
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    create(&s, &CONFIGMAPS, cm("b", json!({"app": "y"})));
    s.mutate(&CONFIGMAPS, Some("kleidia"), "a", |o| {
        o["data"]["k"] = json!("w")
    })
    .unwrap();
    let mut w = s
        .watch(
            &CONFIGMAPS,
            Some("kleidia"),
            &WatchOptions {
                resource_version: Some(rv.clone()),
                label_selector: LabelSelector::parse("app=x").unwrap(),
                ..Default::default()
            },
        )
        .unwrap();
    match w.next().await.unwrap() {
        WatchEvent::Modified(o) => assert_eq!(o["data"]["k"], "w"),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    // Label change out of the selector reads as a delete.
    s.mutate(&CONFIGMAPS, Some("kleidia"), "a", |o| {
        o["metadata"]["labels"]["app"] = json!("z")
    })
    .unwrap();
    assert!(matches!(w.next().await.unwrap(), WatchEvent::Deleted(_)));

    let mut initial = s
        .watch(
            &CONFIGMAPS,
            Some("kleidia"),
            &WatchOptions {
                send_initial_events: true,
                resource_version: Some(String::new()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(matches!(
        initial.next().await.unwrap(),
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        initial.next().await.unwrap(),
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        initial.next().await.unwrap(),
        WatchEvent::InitialEventsEnd(_)
    ));

    for i in 0..10 {
        create(&s, &CONFIGMAPS, cm(&format!("n{i}"), json!({})));
    }
    let e = s
        .watch(
            &CONFIGMAPS,
            None,
            &WatchOptions {
                resource_version: Some(rv),
                ..Default::default()
            },
        )
        .err()
        .expect("expired");
    assert_eq!(e.code(), 410);
}

#[test]
fn namespace_delete_removes_content() {
    let s = store_with_ns();
    create(&s, &CONFIGMAPS, cm("a", json!({})));
    s.delete(&NAMESPACES, None, "kleidia", &DeleteOptions::default())
        .unwrap();
    assert!(
        s.list(&CONFIGMAPS, None, &ListOptions::default())
            .unwrap()
            .items
            .is_empty()
    );
}

#[test]
fn statefulset_replace_without_defaults_is_not_an_immutable_change() {
    use crate::registry::STATEFULSETS;
    let s = store_with_ns();
    let sts = json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "pg:15"}]}}}});
    create(&s, &STATEFULSETS, sts.clone());
    let mut newer = sts.clone();
    newer["spec"]["template"]["spec"]["containers"][0]["image"] = json!("pg:16");
    let u = s.update(&STATEFULSETS, Some("kleidia"), newer).unwrap();
    assert_eq!(u["metadata"]["generation"], 2);
    let mut bad = sts;
    bad["spec"]["serviceName"] = json!("other");
    assert_eq!(
        s.update(&STATEFULSETS, Some("kleidia"), bad)
            .unwrap_err()
            .code(),
        422
    );
}
