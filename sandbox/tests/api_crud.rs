//! Create, get, list (selectors, paging), update conflicts, delete with
//! cascades, dry runs, Table output and discovery, over HTTPS.

mod api_support;

use api_support::{Api, configmap, names, rv};
use serde_json::json;

const CMS: &str = "/api/v1/namespaces/kleidia/configmaps";

#[test]
fn missing_objects_and_namespaces_are_404_not_found() {
    let api = Api::start();
    let reply = api.get("/api/v1/namespaces/kleidia/configmaps/nope");
    assert_eq!(reply.status, 404);
    let s = reply.json();
    assert_eq!(s["reason"], "NotFound");
    assert_eq!(s["message"], "configmaps \"nope\" not found");
    assert_eq!(s["details"]["name"], "nope");

    let reply = api.post(
        "/api/v1/namespaces/absent/configmaps",
        &configmap("a", json!({})),
    );
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["message"], "namespaces \"absent\" not found");

    assert_eq!(api.get("/api/v1/nothings").status, 404);
    assert_eq!(
        api.get("/apis/apps/v1/namespaces/kleidia/deployments/web")
            .status,
        404
    );
}

#[test]
fn create_get_list_with_selectors_and_paging() {
    let api = Api::start();
    for (i, tier) in ["front", "back", "front", "db", "back"].iter().enumerate() {
        let reply = api.post(
            CMS,
            &configmap(&format!("cm-{i}"), json!({"tier": tier, "app": "shop"})),
        );
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let created = reply.json();
        assert!(created["metadata"]["uid"].is_string());
        assert!(created["metadata"]["creationTimestamp"].is_string());
        assert_eq!(created["metadata"]["generation"], 1);
    }
    let dup = api.post(CMS, &configmap("cm-0", json!({})));
    assert_eq!(dup.status, 409);
    assert_eq!(dup.json()["reason"], "AlreadyExists");

    let got = api.get(&format!("{CMS}/cm-1")).json();
    assert_eq!(got["metadata"]["labels"]["tier"], "back");

    let q = |sel: &str| names(&api.get(&format!("{CMS}?labelSelector={sel}")).json());
    assert_eq!(q("tier%3Dfront"), ["cm-0", "cm-2"]);
    assert_eq!(q("tier!%3Dfront"), ["cm-1", "cm-3", "cm-4"]);
    assert_eq!(q("tier+in+(db,back)"), ["cm-1", "cm-3", "cm-4"]);
    assert_eq!(q("tier+notin+(db,back)"), ["cm-0", "cm-2"]);
    assert_eq!(q("app"), ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
    assert!(q("!app").is_empty());
    let by_name = names(
        &api.get(&format!("{CMS}?fieldSelector=metadata.name%3Dcm-3"))
            .json(),
    );
    assert_eq!(by_name, ["cm-3"]);
    assert_eq!(
        api.get(&format!("{CMS}?labelSelector=tier+in+front"))
            .status,
        400
    );

    let mut seen = Vec::new();
    let mut path = format!("{CMS}?limit=2");
    loop {
        let page = api.get(&path).json();
        let items = names(&page);
        assert!(items.len() <= 2);
        seen.extend(items);
        match page["metadata"]["continue"].as_str() {
            Some(c) => path = format!("{CMS}?limit=2&continue={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);

    // Across namespaces.
    let all = api
        .get("/api/v1/configmaps?labelSelector=app%3Dshop")
        .json();
    assert_eq!(all["kind"], "ConfigMapList");
    assert_eq!(names(&all).len(), 5);

    let gen_name = api
        .post(
            CMS,
            &json!({"metadata": {"generateName": "gen-"}, "data": {}}),
        )
        .json();
    assert!(
        gen_name["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("gen-")
    );
}

#[test]
fn updates_with_a_stale_resource_version_conflict() {
    let api = Api::start();
    let created = api.post(CMS, &configmap("c", json!({}))).json();
    let mut first = created.clone();
    first["data"]["k"] = json!("first");
    let reply = api.put(&format!("{CMS}/c"), &first);
    assert_eq!(reply.status, 200);
    assert_ne!(rv(&reply.json()), rv(&created));

    let mut stale = created.clone();
    stale["data"]["k"] = json!("stale");
    let reply = api.put(&format!("{CMS}/c"), &stale);
    assert_eq!(reply.status, 409);
    let s = reply.json();
    assert_eq!(s["reason"], "Conflict");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );
    assert_eq!(api.get(&format!("{CMS}/c")).json()["data"]["k"], "first");
}

#[test]
fn deployments_bump_generation_and_status_is_separate() {
    let api = Api::start_with(kleidia_sandbox::server::SandboxOptions {
        controllers: false,
        ..Default::default()
    });
    let path = "/apis/apps/v1/namespaces/kleidia/deployments";
    let d = api
        .post(
            path,
            &json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "x:1"}]}}}}),
        )
        .json();
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let mut scaled = d.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["status"] = json!({"replicas": 99});
    let u = api.put(&format!("{path}/web"), &scaled).json();
    assert_eq!(u["metadata"]["generation"], 2);
    assert!(
        u.get("status").is_none_or(|s| s.get("replicas").is_none()),
        "PUT on the object ignores status"
    );
    let mut st = u.clone();
    st["status"] = json!({"replicas": 3, "observedGeneration": 2});
    let s = api.put(&format!("{path}/web/status"), &st).json();
    assert_eq!(s["status"]["replicas"], 3);
    assert_eq!(s["metadata"]["generation"], 2);
    let scale = api.get(&format!("{path}/web/scale")).json();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
}

#[test]
fn delete_cascades_to_dependents_unless_orphaned() {
    let api = Api::start_with(kleidia_sandbox::server::SandboxOptions {
        controllers: false,
        ..Default::default()
    });
    let owner = api.post(CMS, &configmap("owner", json!({}))).json();
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]);
    for n in ["dep-a", "dep-b"] {
        let mut c = configmap(n, json!({}));
        c["metadata"]["ownerReferences"] = owner_ref.clone();
        assert_eq!(api.post(CMS, &c).status, 201);
    }
    let reply = api.delete(&format!("{CMS}/owner"), Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})));
    assert_eq!(reply.status, 200);
    assert_eq!(api.get(&format!("{CMS}/dep-a")).status, 404);
    assert_eq!(api.get(&format!("{CMS}/dep-b")).status, 404);

    let owner = api.post(CMS, &configmap("owner", json!({}))).json();
    let mut c = configmap("kept", json!({}));
    c["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]);
    api.post(CMS, &c);
    let reply = api.delete(&format!("{CMS}/owner?propagationPolicy=Orphan"), None);
    assert_eq!(reply.status, 200);
    let kept = api.get(&format!("{CMS}/kept"));
    assert_eq!(kept.status, 200);
    assert!(kept.json()["metadata"].get("ownerReferences").is_none());

    // deletecollection with a selector.
    api.post(CMS, &configmap("x1", json!({"del": "yes"})));
    api.post(CMS, &configmap("x2", json!({"del": "yes"})));
    assert_eq!(
        api.delete(&format!("{CMS}?labelSelector=del%3Dyes"), None)
            .status,
        200
    );
    assert!(names(&api.get(&format!("{CMS}?labelSelector=del")).json()).is_empty());
    assert_eq!(api.delete(&format!("{CMS}/nope"), None).status, 404);
}

#[test]
fn dry_run_stores_nothing() {
    let api = Api::start();
    let reply = api.post(&format!("{CMS}?dryRun=All"), &configmap("dry", json!({})));
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json()["metadata"]["name"], "dry");
    assert_eq!(api.get(&format!("{CMS}/dry")).status, 404);
}

#[test]
fn tables_for_kubectl_get() {
    let api = Api::start_with(kleidia_sandbox::server::SandboxOptions {
        controllers: false,
        ..Default::default()
    });
    api.post(
        "/api/v1/namespaces/kleidia/pods",
        &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}),
    );
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let t = api
        .get_accept("/api/v1/namespaces/kleidia/pods", accept)
        .json();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(&cols[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(t["rows"][0]["cells"][0], "p");
    assert_eq!(t["rows"][0]["cells"][1], "0/1");
    assert_eq!(t["rows"][0]["cells"][2], "Pending");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let t = api
        .get_accept(
            "/api/v1/namespaces/kleidia/pods?includeObject=Object",
            accept,
        )
        .json();
    assert_eq!(t["rows"][0]["object"]["kind"], "Pod");
    let t = api.get_accept("/api/v1/namespaces", accept).json();
    assert_eq!(t["columnDefinitions"][1]["name"], "Status");
}

#[test]
fn discovery_plain_and_aggregated() {
    let api = Api::start();
    let v = api.get("/version").json();
    assert_eq!(v["major"], "1");
    let apis = api.get("/apis").json();
    assert_eq!(apis["kind"], "APIGroupList");
    let agg = api.get_accept(
        "/apis",
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
    );
    assert_eq!(
        agg.headers["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let agg = agg.json();
    assert_eq!(agg["kind"], "APIGroupDiscoveryList");
    let apps = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .unwrap();
    let deploy = apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(deploy["scope"], "Namespaced");
    let core = api.get("/api/v1").json();
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods/exec")
    );
    assert_eq!(api.get("/apis/apps/v1").json()["groupVersion"], "apps/v1");
    assert_eq!(api.get("/openapi/v3").status, 200);
}
