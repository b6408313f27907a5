//! Authentication (bearer token) and authorization (rules, 403 Status,
//! SelfSubjectAccessReview) over HTTPS.

mod api_support;

use api_support::Api;
use bytes::Bytes;
use hyper::Method;
use kleidia_sandbox::authz::Rule;
use kleidia_sandbox::server::SandboxOptions;
use serde_json::json;

#[test]
fn requests_without_the_token_get_401_status() {
    let api = Api::start();
    let anon = api.client.anonymous();
    let reply = api
        .rt
        .block_on(anon.send(Method::GET, "/api/v1/namespaces", &[], Bytes::new()))
        .unwrap();
    assert_eq!(reply.status, 401);
    let status = reply.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);

    let wrong = kleidia_sandbox::server::client::Client::new(
        api.sb.url(),
        api.sb.ca_pem(),
        Some("not-the-token"),
    )
    .unwrap();
    let reply = api
        .rt
        .block_on(wrong.send(Method::GET, "/api/v1/namespaces", &[], Bytes::new()))
        .unwrap();
    assert_eq!(reply.status, 401);

    // Health endpoints answer without a token, as a real server's do.
    let reply = api
        .rt
        .block_on(anon.send(Method::GET, "/readyz", &[], Bytes::new()))
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(api.get("/api/v1/namespaces").status, 200);
}

fn ssar(api: &Api, verb: &str, resource: &str, ns: &str) -> bool {
    let reply = api.post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": ns}},
        }),
    );
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["status"]["allowed"]
        .as_bool()
        .expect("status.allowed")
}

#[test]
fn rules_forbid_with_a_real_servers_message_and_reviews_agree() {
    let api = Api::start_with(SandboxOptions {
        authz_rules: Some(vec![Rule::deny(&["list"], &["pods"]), Rule::allow_all()]),
        ..SandboxOptions::default()
    });
    let reply = api.get("/api/v1/namespaces/kleidia/pods");
    assert_eq!(reply.status, 403);
    let status = reply.json();
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"sandbox-user\" cannot list resource \"pods\" in API group \"\" in the namespace \"kleidia\""
    );
    assert!(!ssar(&api, "list", "pods", "kleidia"));
    assert!(ssar(&api, "get", "pods", "kleidia"));
    assert_eq!(api.get("/api/v1/namespaces/kleidia/configmaps").status, 200);

    // Rules change at runtime through the admin endpoint.
    let reply = api.put("/sandbox/authz", &json!([{"allow": true}]));
    assert_eq!(reply.status, 200);
    assert_eq!(api.get("/api/v1/namespaces/kleidia/pods").status, 200);
    assert!(ssar(&api, "list", "pods", "kleidia"));

    // And through the library.
    api.sb.shared().authz.set_rules(vec![
        Rule::deny(&["create"], &["pods/exec"]),
        Rule::allow_all(),
    ]);
    let reply = api.post(
        "/api/v1/namespaces/kleidia/pods/x/exec?command=ls",
        &json!({}),
    );
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.json()["message"],
        "pods \"x\" is forbidden: User \"sandbox-user\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"kleidia\""
    );
    // kubectl's WebSocket exec is a GET, still authorized as create.
    assert_eq!(
        api.get("/api/v1/namespaces/kleidia/pods/x/exec?command=ls")
            .status,
        403
    );
    let reply = api.post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &json!({"spec": {"resourceAttributes": {"verb": "create", "resource": "pods", "subresource": "exec", "namespace": "kleidia"}}}),
    );
    assert_eq!(reply.json()["status"]["allowed"], false);
}

#[test]
fn rules_reviews_list_what_is_allowed() {
    let api = Api::start();
    let reply = api.post(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        &json!({"spec": {"namespace": "kleidia"}}),
    );
    assert_eq!(reply.status, 201);
    let rules = &reply.json()["status"]["resourceRules"];
    assert_eq!(rules[0]["verbs"], json!(["*"]));
}
