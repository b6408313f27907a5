//! PATCH in every flavour, server-side apply with two field managers, and
//! protobuf request bodies, over HTTPS.

mod api_support;
mod support;

use api_support::{Api, configmap};
use base64::Engine;
use kleidia_sandbox::server::SandboxOptions;
use serde_json::{Value, json};
use support::managers;

const CMS: &str = "/api/v1/namespaces/kleidia/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/kleidia/deployments";

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "side:1"}]}}}
    })
}

#[test]
fn merge_json_and_strategic_patches() {
    let api = Api::start_with(SandboxOptions {
        controllers: false,
        ..Default::default()
    });
    api.post(CMS, &configmap("c", json!({"a": "1"})));
    let r = api.patch(
        &format!("{CMS}/c"),
        "application/merge-patch+json",
        json!({"data": {"k": null, "n": "2"}, "metadata": {"labels": {"b": "2"}}}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let c = r.json();
    assert_eq!(c["data"], json!({"n": "2"}));
    assert_eq!(c["metadata"]["labels"], json!({"a": "1", "b": "2"}));

    let r = api.patch(
        &format!("{CMS}/c"),
        "application/json-patch+json",
        json!([
            {"op": "add", "path": "/data/j", "value": "3"},
            {"op": "remove", "path": "/metadata/labels/a"},
        ])
        .to_string(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["j"], "3");
    assert!(r.json()["metadata"]["labels"].get("a").is_none());
    let r = api.patch(
        &format!("{CMS}/c"),
        "application/json-patch+json",
        json!([{"op": "test", "path": "/data/j", "value": "nope"}]).to_string(),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        api.patch(
            &format!("{CMS}/c"),
            "application/json-patch+json",
            "not json"
        )
        .status,
        400
    );
    assert_eq!(
        api.patch(
            &format!("{CMS}/absent"),
            "application/merge-patch+json",
            "{}"
        )
        .status,
        404
    );
    assert_eq!(
        api.patch(&format!("{CMS}/c"), "text/plain", "{}").status,
        415
    );

    assert_eq!(api.post(DEPLOYS, &deployment()).status, 201);
    // Strategic: containers merge by name, env by name.
    let r = api.patch(
        &format!("{DEPLOYS}/web"),
        "application/strategic-merge-patch+json",
        json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "web:2", "env": [{"name": "B", "value": "2"}]}]}}}})
        .to_string(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let d = r.json();
    let cs = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0]["image"], "web:2");
    assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
    assert_eq!(d["metadata"]["generation"], 2);

    // kubectl scale patches the scale subresource.
    let r = api.patch(
        &format!("{DEPLOYS}/web/scale"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 4}}).to_string(),
    );
    assert_eq!(r.json()["spec"]["replicas"], 4);
    assert_eq!(
        api.get(&format!("{DEPLOYS}/web")).json()["spec"]["replicas"],
        4
    );
}

#[test]
fn server_side_apply_by_two_managers() {
    let api = Api::start_with(SandboxOptions {
        controllers: false,
        ..Default::default()
    });
    let apply = |manager: &str, force: bool, body: &Value| {
        api.patch(
            &format!(
                "{DEPLOYS}/web?fieldManager={manager}{}",
                if force { "&force=true" } else { "" }
            ),
            "application/apply-patch+yaml",
            serde_yaml_ng::to_string(body).unwrap(),
        )
    };
    let r = apply("alice", false, &deployment());
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        managers(&r.json()),
        [("alice".to_string(), "Apply".to_string())]
    );

    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let r = apply("bob", false, &bob);
    assert_eq!(r.status, 409);
    let s = r.json();
    assert_eq!(s["reason"], "Conflict");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("conflict with \"alice\""),
        "{s}"
    );
    assert!(
        s["message"].as_str().unwrap().contains(".spec.replicas"),
        "{s}"
    );

    let r = apply("bob", true, &bob);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let d = r.json();
    assert_eq!(d["spec"]["replicas"], 3);
    let m = managers(&d);
    assert!(m.contains(&("alice".to_string(), "Apply".to_string())));
    assert!(m.contains(&("bob".to_string(), "Apply".to_string())));
    let bob_fields = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "bob")
        .unwrap();
    assert!(bob_fields["fieldsV1"]["f:spec"]["f:replicas"].is_object());

    // Without fieldManager apply is refused.
    let r = api.patch(
        &format!("{DEPLOYS}/web"),
        "application/apply-patch+yaml",
        "{}",
    );
    assert_eq!(r.status, 400);

    // An update with a fieldManager records an Update entry.
    let r = api.patch(
        &format!("{DEPLOYS}/web?fieldManager=carol"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"x": "y"}}}).to_string(),
    );
    assert!(managers(&r.json()).contains(&("carol".to_string(), "Update".to_string())));
}

#[test]
fn protobuf_secret_bodies_are_decoded() {
    let api = Api::start();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "sh.helm.release.v1.demo.v1", "namespace": "kleidia",
            "labels": {"name": "demo", "owner": "helm", "status": "deployed", "version": "1"}},
        "type": "helm.sh/release.v1",
        "data": {"release": base64::engine::general_purpose::STANDARD.encode(b"H4sIAAAA-release-payload")},
    });
    let body = kleidia_sandbox::proto::encode_secret(&secret).expect("encode");
    let r = api.request(
        hyper::Method::POST,
        "/api/v1/namespaces/kleidia/secrets",
        &[
            ("content-type", "application/vnd.kubernetes.protobuf"),
            (
                "accept",
                "application/vnd.kubernetes.protobuf, application/json",
            ),
        ],
        body,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/json");
    let got = api
        .get("/api/v1/namespaces/kleidia/secrets/sh.helm.release.v1.demo.v1")
        .json();
    assert_eq!(got["type"], "helm.sh/release.v1");
    assert_eq!(got["data"]["release"], secret["data"]["release"]);
    assert_eq!(got["metadata"]["labels"]["owner"], "helm");
    // Kinds the decoder does not know are 415 UnsupportedMediaType.
    let other = kleidia_sandbox::proto::envelope("example.com/v1", "Frobnicator", vec![]);
    let r = api.request(
        hyper::Method::POST,
        DEPLOYS,
        &[("content-type", "application/vnd.kubernetes.protobuf")],
        other,
    );
    assert_eq!(r.status, 415);
}
