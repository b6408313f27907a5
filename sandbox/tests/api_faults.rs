//! Fault injection over HTTPS: error rates (500, 429 with Retry-After)
//! limited to paths, and clearing them.

mod api_support;

use api_support::Api;
use serde_json::json;

#[test]
fn error_rate_faults_fail_matching_requests_until_cleared() {
    let api = Api::start();
    let r = api.post("/sandbox/faults", &json!({"errorRate": 1.0, "errorCode": 429, "retryAfter": 3, "pathContains": "/configmaps"}));
    assert_eq!(r.status, 200);
    let r = api.get("/api/v1/namespaces/kleidia/configmaps");
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "3");
    assert_eq!(r.json()["reason"], "TooManyRequests");
    assert_eq!(
        api.get("/api/v1/namespaces/kleidia/secrets").status,
        200,
        "other paths are not affected"
    );

    api.post("/sandbox/faults", &json!({"clear": true, "errorRate": 1.0}));
    let r = api.get("/api/v1/namespaces/kleidia/secrets");
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["reason"], "InternalError");

    // Half the requests fail: over 200 requests both outcomes occur.
    api.post("/sandbox/faults", &json!({"clear": true, "errorRate": 0.5}));
    let codes: Vec<u16> = (0..200)
        .map(|_| api.get("/api/v1/namespaces").status.as_u16())
        .collect();
    assert!(codes.contains(&500) && codes.contains(&200), "{codes:?}");

    api.post("/sandbox/faults", &json!({"clear": true}));
    assert_eq!(api.get("/api/v1/namespaces").status, 200);
    let settings = api.get("/sandbox/faults").json();
    assert_eq!(settings["errorRate"], 0.0);

    // Exec kill settings are exposed to the exec handler.
    api.post("/sandbox/faults", &json!({"execKill": {"db-0": 1024}}));
    assert_eq!(api.sb.faults().exec_kill_after("db-0"), Some(1024));
}
