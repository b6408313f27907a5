use super::*;
use crate::report::Painter;
use crate::topology::Component;

fn servers(k: &str, h: Option<&str>, pg: &str, bao: &str) -> Servers {
    Servers {
        kubernetes: KubernetesServer {
            version: Some(k.into()),
            error: None,
        },
        helm: HelmClient {
            version: h.map(Into::into),
            ..Default::default()
        },
        postgresql: PostgresServer {
            version: Some(pg.into()),
            ..Default::default()
        },
        openbao: OpenbaoServer {
            version: Some(bao.into()),
            ..Default::default()
        },
        backend: BackendServer::default(),
    }
}

#[test]
fn matrix_marks_each_row() {
    let rows = compatibility(&servers("v1.33.1", Some("v3.16.0"), "15.8", "2.4.1"));
    assert!(rows.iter().all(|r| r.ok == Some(true)), "{rows:?}");
    let rows = compatibility(&servers("v1.23.9", None, "12.4", "2.3.0"));
    let by = |i: &str| rows.iter().find(|r| r.item == i).unwrap().ok;
    assert_eq!(by("Kubernetes"), Some(false));
    assert_eq!(by("Helm"), None);
    assert_eq!(by("PostgreSQL"), Some(false));
    assert_eq!(by("OpenBao"), Some(false));
    assert_eq!(rows[0].required, ">= 1.24");
    assert_eq!(rows[2].required, ">= 13");
}

fn sample_report() -> VersionsReport {
    let mut s = servers("v1.33.1", None, "15.4", "2.4.1");
    s.openbao.sealed = Some(false);
    s.openbao.initialized = Some(true);
    s.backend.version = Some("1.0.0".into());
    s.backend.error = Some("GET /api/health answered 503".into());
    VersionsReport {
        namespace: "kleidia".into(),
        context: "lab".into(),
        server: "https://127.0.0.1:6443".into(),
        components: vec![ComponentRow {
            component: Component::Data,
            release: "kleidia-data".into(),
            chart: Some("kleidia-data".into()),
            chart_version: Some("1.0.0".into()),
            app_version: Some("15.4".into()),
            revision: Some(2),
            status: Some("pending-upgrade".into()),
            first_deployed: None,
            last_deployed: Some("2026-02-01T10:00:00Z".into()),
            description: None,
            error: None,
            history: None,
        }],
        compatibility: compatibility(&s),
        servers: s,
        green: None,
        ok: false,
    }
}

#[test]
fn json_shape_has_the_documented_keys() {
    let v = serde_json::to_value(sample_report()).unwrap();
    let c = &v["components"][0];
    for key in [
        "component",
        "release",
        "chart",
        "chartVersion",
        "appVersion",
        "revision",
        "status",
    ] {
        assert!(c.get(key).is_some(), "components[].{key} missing: {c}");
    }
    assert_eq!(c["component"], "data");
    assert!(c.get("history").is_none(), "history only with --history");
    for path in [
        "/servers/kubernetes/version",
        "/servers/postgresql/version",
        "/servers/openbao/version",
        "/servers/openbao/sealed",
        "/servers/backend/version",
        "/servers/helm/version",
    ] {
        assert!(v.pointer(path).is_some(), "{path} missing");
    }
    for key in ["item", "required", "found", "ok"] {
        assert!(
            v["compatibility"][0].get(key).is_some(),
            "compatibility[].{key} missing"
        );
    }
    assert_eq!(v["servers"]["helm"]["version"], serde_json::Value::Null);
}

#[test]
fn plain_table_shows_problems_without_escape_codes() {
    let mut out = Vec::new();
    render_table(&sample_report(), Painter { color: false }, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.contains("pending-upgrade"), "{text}");
    assert!(text.contains("not found"), "{text}");
    assert!(text.contains("answered 503"), "{text}");
    let mut out = Vec::new();
    render_table(&sample_report(), Painter { color: true }, &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains('\x1b'));
}
